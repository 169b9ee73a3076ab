"""Guardrails: every draft, from any generator, is checked before a human sees it.

`check_draft(draft, pack, brief, voice, catalog)` returns one `Verdict` per
check, each with the reasons it failed:

    grounding      every price, date, number and product name matches a fact in the pack or the live catalog
    actions        every action the copy says the customer took is in their facts
    citations      cited fact ids exist (and none is customer-written text)
    offer_cta      the CTA and the offer are the brief's, within its price rules; no stray codes, links or discounts
    tone           length, exclamation marks, banned phrases, shouting, greeting, sign-off
    surveillance   no "we noticed you opened", scores, tracking or browsing talk
    personal_data  nothing personal beyond the first name
    injection      nothing that echoes or obeys instructions written inside a support ticket
    staleness      the warehouse data is fresh enough for the brief

Pure functions over plain data: no database, no Dagster.
"""

from __future__ import annotations

import re
from functools import lru_cache
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Iterable

from dagster_project.messaging.briefs import BrandVoice, Brief
from dagster_project.messaging.context_pack import Catalog, ContextPack
from dagster_project.messaging.generators.base import Draft

MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august",
          "september", "october", "november", "december"]
_MONTH_RE = r"(jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
_WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_WEEKDAY_RE = r"(?:(monday|tuesday|wednesday|thursday|friday|saturday|sunday),?\s+)?"
_ORD = r"(?:st|nd|rd|th)?"

# Weekdays are matched separately (just before the date) so these regexes start on a month or a digit.
DATE_MONTH_DAY = re.compile(rf"\b{_MONTH_RE}\.?\s+(\d{{1,2}}){_ORD}\b(?:,?\s+(\d{{4}}))?", re.I)
DATE_DAY_MONTH = re.compile(rf"\b(\d{{1,2}}){_ORD}\s+(?:of\s+)?{_MONTH_RE}\b(?:,?\s+(\d{{4}}))?", re.I)
WEEKDAY_BEFORE = re.compile(r"(monday|tuesday|wednesday|thursday|friday|saturday|sunday),?\s+$", re.I)
MONTH_STEMS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DATE_MONTH_YEAR = re.compile(rf"\b{_MONTH_RE}\s+(\d{{4}})\b", re.I)
DATE_ISO = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
DATE_SLASH = re.compile(r"\b(\d{1,2})/(\d{1,2})(?:/(\d{2,4}))?\b")
PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s?(?:%|percent\b)", re.I)
NUMBER = re.compile(r"(\d+(?:[.,]\d+)*)(?:st|nd|rd|th)?\b")
URL = re.compile(r"\b(?:https?://|www\.)\S+", re.I)
EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.-]+\b")
PHONE = re.compile(r"[+\d][\d\s().-]{7,}\d")
ADDRESS = re.compile(r"\b\d+\s+(?:[A-Z][a-z]+\s+){1,3}(?:Street|St|Avenue|Ave|Road|Rd|Lane|Ln|Drive|Dr|Boulevard|Blvd)\b")
CARD = re.compile(r"\b(?:card|account)\s+ending\s+(?:in\s+)?\d+", re.I)
CODE_CANDIDATE = re.compile(r"\b[A-Z0-9]{5,}\b")


def find_codes(text: str) -> list[str]:
    """Discount-code-like tokens: 5+ capitals and digits, with at least one of each (BEANS20)."""
    return [t for t in CODE_CANDIDATE.findall(text) if not t.isdigit() and not t.isalpha()]


SHOUT = re.compile(r"\b[A-Z]{4,}\b")
GREETING = re.compile(r"^\s*(?:hi|hello|hey|dear|good (?:morning|afternoon|evening))\s+([A-Z][\w'-]*)", re.I)
CAPITALISED_RUN = re.compile(r"\b[A-Z][\w'’-]*(?:\s+(?:of\s+|the\s+|de\s+)?[A-Z][\w'’-]*)+")
KIND_WORD = re.compile(r"\b([A-Z][a-z]+)\s+(blend|roast|beans|espresso|coffee|grinder|kettle|mug|filters?)\b")
RELATIVE_TIME = re.compile(r"\b(yesterday|last (?:week|night)|this morning|earlier today|a few days ago)\b", re.I)
DISCOUNT_WORDS = re.compile(r"\b(discount|coupon|promo(?:tion)? code|voucher|free shipping|on the house|% off|percent off)\b", re.I)
DISCOUNT_LITERALS = ("discount", "coupon", "promo", "voucher", "free shipping", "on the house", "% off", "percent off")
RELATIVE_LITERALS = ("yesterday", "last week", "last night", "this morning", "earlier today", "days ago")
KIND_LITERALS = ("blend", "roast", "beans", "espresso", "coffee", "grinder", "kettle", "mug", "filter")
ADDRESS_LITERALS = ("St", "Av", "Road", "Rd", "Lane", "Ln", "Dr", "Blvd", "Boulevard")
# Capitals to "A", digits to "0", the rest to " ": one cheap pass tells whether SHOUT or a code can match.
_SHAPES = str.maketrans({**{chr(c): " " for c in range(128)}, **{c: "A" for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"},
                         **{c: "0" for c in "0123456789"}})


def _shape(text: str) -> str | None:
    """`text` as capitals/digits/other ("AAAA" for a shout; "A0" or "0A" inside any code), None if not ASCII."""
    return text.translate(_SHAPES) if text.isascii() else None

# Words that start sentences or greetings and are not names.
COMMON_CAPITALISED = {
    "a", "an", "and", "as", "at", "but", "by", "for", "from", "hello", "hey", "hi", "dear", "i", "if", "in",
    "it", "its", "it's", "just", "my", "no", "not", "of", "on", "or", "our", "so", "since", "thanks", "thank",
    "that", "the", "this", "to", "we", "we'd", "we're", "we've", "what", "when", "whatever", "you", "your",
    "you're", "you've", "you'd", "yours", "either", "here", "here's", "there", "there's", "right", "happy",
    "still", "welcome", "sorry", "fancy", "none", "nothing", "or", "with", "all", "team", "next", "some",
    "more", "add", "keep", "skip", "try", "see", "restart", "reply", "adjust", "space", "life", "looking",
    "getting", "switching", "moving", "staying", "want", "p.s", "ps", "best", "cheers", "warmly", "love",
    "good", "morning", "afternoon", "evening", "one", "two", "three", "also", "then", "now", "these", "those",
}
COMMON_CAPITALISED |= set(MONTHS) | set(_WEEKDAYS)

# (literal that must appear in the lower-cased text, pattern): the literal check skips most regex scans.
SURVEILLANCE = [(needs, re.compile(p, re.I)) for needs, p in (
    (("we noticed", "we saw", "we see", "we can see", "we could see"), r"\bwe (?:noticed|saw|see|can see|could see) (?:that )?you (?:opened|clicked|read|viewed|visited|browsed|looked|haven't opened|stopped opening|logged)"),
    (("you opened", "you clicked", "you haven't", "you didn't open", "you stopped opening"), r"\byou (?:opened|clicked|haven't opened|didn't open|stopped opening|haven't clicked) (?:our|my|the|this|that|an|any)? ?(?:e-?mails?|messages?|newsletters?|links?)"),
    (("logged in", "visited", "browsed", "viewed", "looked at"), r"\byou (?:logged in|visited|browsed|viewed|looked at)\b"),
    (("track", "monitor", "watch"), r"\b(?:track(?:ed|ing)?|monitor(?:ed|ing)?|watch(?:ed|ing) (?:you|your))\b"),
    (("churn", "propensity", "score", "lifetime value", "ltv", "segment", "likely to"),
     r"\b(?:churn|propensity|risk score|your score|score of|engagement score|lifetime value|ltv|segment(?:ed|s)?|likely to (?:cancel|leave|churn))\b"),
    (("at-risk", "at risk"), r"\bat[- ]risk\b"),
    (("our data", "our record", "our algorithm", "our model", "our system"), r"\b(?:our (?:data|records|algorithm|model|system)s? (?:show|shows|suggest|suggests|says|tell))\b"),
    (("based on your",), r"\bbased on your (?:activity|behaviou?r|engagement|browsing)\b"),
)]

# (trigger literals, pattern, predicate over the pack, what the claim needs) for actions the copy says the customer took.
def _has(pack: ContextPack, suffix: str, value=None) -> bool:
    return any(fid.endswith(suffix) and (value is None or f.value == value) for fid, f in pack.facts.items())


ACTION_CLAIMS = [
    (("you skipped", "you've skipped", "you have skipped", "your skip"), re.compile(r"\byou(?:'ve| have)? skipped\b|\byour skip(?:ped)?\b", re.I),
     lambda p: _has(p, ":status", "skipped") or bool(p.value(f"customer:{p.customer_id}:recent_skips")), "a skipped order"),
    (('paus',), re.compile(r"\byou(?:'ve| have)? paused\b|\byour paused\b", re.I),
     lambda p: _has(p, ":status", "paused"), "a paused subscription"),
    (("you cancel", "you've cancel", "you have cancel", "you stopped", "you've stopped", "you have stopped",
      "led your subscription", "stopped your subscription"), re.compile(r"\byou(?:'ve| have)? (?:cancell?ed|canceled|stopped)\b|\b(?:cancell?ed|stopped) your subscription\b", re.I),
     lambda p: _has(p, ":status", "cancelled"), "a cancelled subscription"),
    (('added', 'picked up'), re.compile(r"\byou(?:'ve| have)? (?:added|picked up)\b", re.I),
     lambda p: _has(p, ":one_time"), "a one-time add-on"),
    (("swapped", "switched", "changed your", "for swapping", "for switching", "for changing your"), re.compile(r"\byou(?:'ve| have)? (?:swapped|switched|changed your (?:coffee|schedule|cadence|delivery))\b|"
                r"\bfor (?:swapping|switching|changing your)\b", re.I),
     lambda p: False, "a product or schedule change (not in the pack)"),
    (('upgraded',), re.compile(r"\byou(?:'ve| have)? upgraded\b", re.I),
     lambda p: _has(p, ":cancel_reason", "upgraded"), "an upgrade"),
    (('contact', 'reached out', 'wrote to us', 'got in touch', 'called us', 'emailed us', 'chatted', 'getting in touch', 'your ticket', 'support request', 'your call'), re.compile(r"\byou (?:contacted|reached out|wrote to us|got in touch|called us|emailed us|chatted with)\b|"
                r"\bgetting in touch\b|\byour (?:ticket|support request|call)\b", re.I),
     lambda p: _has(p, ":topic"), "a support ticket"),
    (('refund',), re.compile(r"\b(?:your refund|you were refunded|we refunded)\b", re.I),
     lambda p: _has(p, ":status", "refunded"), "a refunded order"),
    (('payment', 'declined'), re.compile(r"\b(?:payment (?:failed|didn't go through|was declined)|card (?:was )?declined)\b", re.I),
     lambda p: _has(p, ":status", "failed"), "a failed payment"),
    (('rated', 'review'), re.compile(r"\byou (?:rated|reviewed|left (?:us )?a review)\b", re.I), lambda p: False, "a rating (not in the pack)"),
    (('told us', 'said'), re.compile(r"\byou (?:told us|said)\b", re.I),
     lambda p: _has(p, ":cancel_reason") or _has(p, ":topic"), "something the customer told us"),
    (('arrived', 'delivered'), re.compile(r"\b(?:arrived|was delivered|were delivered)\b", re.I),
     lambda p: _has(p, ":delivered_at"), "a delivered order"),
    (('gift',), re.compile(r"\byour gift\b|\bgift subscription\b", re.I), lambda p: _has(p, ":is_gift"), "a gift subscription"),
]

INJECTION_MARKERS = re.compile(
    r"\b(ignore (?:all |any )?(?:previous|prior|above|earlier|the) (?:instructions|prompts?|rules)|disregard|"
    r"system prompt|you are (?:now|an? )|as an ai|new instructions|tell (?:me|everyone|them)|say (?:that|our|i)|"
    r"write (?:that|me)|include (?:the|this|a)|respond with|give me|promise me|repeat after)\b", re.I)


@dataclass
class Verdict:
    """The outcome of one check on one draft; `reasons` say what failed, in words a reviewer can act on."""

    check: str
    passed: bool
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def passed(verdicts: Iterable[Verdict]) -> bool:
    return all(v.passed for v in verdicts)


def failure_reasons(verdicts: Iterable[Verdict]) -> list[str]:
    """Every reason of every failed check, prefixed by the check ("tone: 3 exclamation marks ...")."""
    return [f"{v.check}: {r}" for v in verdicts if not v.passed for r in v.reasons]


# --------------------------------------------------------------------------- indexes


class _CatalogIndex:
    """Per-catalog lookups, built once and reused across a batch."""

    def __init__(self, catalog: Catalog, voice: BrandVoice):
        # Longest names first, so "Morning Mist Blend Decaf" is found before "Morning Mist Blend".
        self.names = sorted(((p.name.lower(), p, re.compile(re.escape(p.name), re.I)) for p in catalog.products),
                            key=lambda x: -len(x[0]))
        self.terms = sorted(set(voice.allowed_terms + [voice.store_name, voice.sign_off]), key=len, reverse=True)
        self.money = {_cents(p.price) for p in catalog.products if p.active}
        self.numbers = {float(d) for d in catalog.cadence_options}
        self.fact_ids = set(catalog.facts())
        self.currency = re.compile(re.escape(voice.currency_symbol) + r"\s?(\d{1,6}(?:,\d{3})*(?:\.\d{1,2})?)")
        self.banned = [(phrase, phrase.lower()) for phrase in voice.banned_phrases]


_INDEX_CACHE: dict[tuple[int, int], tuple[Catalog, BrandVoice, _CatalogIndex]] = {}


def _catalog_index(catalog: Catalog, voice: BrandVoice) -> _CatalogIndex:
    key = (id(catalog), id(voice))
    hit = _INDEX_CACHE.get(key)
    if hit is None or hit[0] is not catalog or hit[1] is not voice:
        if len(_INDEX_CACHE) > 32:
            _INDEX_CACHE.clear()
        hit = (catalog, voice, _CatalogIndex(catalog, voice))
        _INDEX_CACHE[key] = hit
    return hit[2]


@lru_cache(maxsize=4096)  # prices repeat across a batch ("25.20" in every order of a subscription)
def _cents(value) -> int:
    text = str(value).replace(",", "")
    whole, _, frac = text.partition(".")
    return int(whole or 0) * 100 + int((frac + "00")[:2])


class _PackIndex:
    """The pack's facts by kind, from one pass; each lookup set is built the first time a check needs it."""

    def __init__(self, pack: ContextPack, brief: Brief):
        self.brief = brief
        money, numbers, dates, names = [], [], [], set()
        for fid, fact in pack.facts.items():
            kind = fact.kind
            if kind == "date":
                dates.append(fact.value)
            elif kind == "number":
                numbers.append(fact.value)
            elif kind == "money":
                money.append(fact.value)
            elif kind == "text" and fid.endswith((":name", ":product")):
                names.add(str(fact.value).lower())
        self.product_names = names
        self._raw = {"money": money, "numbers": numbers, "dates": dates}
        self._built: dict[str, set] = {}

    def _get(self, what: str) -> set:
        built = self._built.get(what)
        if built is None:
            raw = self._raw[what]
            if what == "dates":
                built = {(int(v[:4]), int(v[5:7]), int(v[8:10])) for v in raw}
            elif what == "numbers":
                built = {float(v) for v in raw}
            else:
                built = {_cents(v) for v in raw}
                # Prices after an allowed discount ("$21.42 after 15% off") and the saving itself are grounded too.
                for offer in self.brief.offers:
                    if offer.kind == "percent_off":
                        pct = offer.percent_off / 100
                        for cents in list(built):
                            built.add(round(cents * (1 - pct)))
                            built.add(round(cents * pct))
            self._built[what] = built
        return built

    money = property(lambda self: self._get("money"))
    numbers = property(lambda self: self._get("numbers"))
    dates = property(lambda self: self._get("dates"))


def _month_no(name: str) -> int:
    # casefold, not lower: re.I also matches "ſeptember", and only casefold maps "ſ" to "s".
    return MONTH_STEMS.index(name[:3].casefold()) + 1


def _seen(gate: str | None, literals: Iterable[str]) -> bool:
    """Whether any literal is in `gate` (the lower-cased ASCII text); always True without a gate.

    A pattern runs only when a literal every match of it contains is present. Lower-casing
    matches what re.I matches for ASCII only, so non-ASCII text (gate None) runs every pattern.
    """
    return gate is None or any(map(gate.__contains__, literals))


# Lower-case twins of the re.I date patterns, for ASCII text lower-cased (equal matches, found faster).
_DATE_TWINS = {pattern: re.compile(pattern.pattern) for pattern in (DATE_MONTH_DAY, DATE_DAY_MONTH, DATE_MONTH_YEAR)}


def _date_matches(pattern: re.Pattern, text: str, from_months: bool) -> list[re.Match]:
    """What `pattern.sub` on `text` would replace, left to right; spans index `text`.

    On ASCII text the lower-case twin runs on text.lower(); with `from_months` it is only
    tried where a month name starts, the only places a match can start.
    """
    if not text.isascii():
        return list(pattern.finditer(text))
    low, twin = text.lower(), _DATE_TWINS[pattern]
    if not from_months:
        return list(twin.finditer(low))
    starts = []
    for stem in MONTH_STEMS:
        i = low.find(stem)
        while i >= 0:
            starts.append(i)
            i = low.find(stem, i + 1)
    out, end = [], 0
    for start in sorted(starts):
        if start >= end:
            m = twin.match(low, start)
            if m:
                out.append(m)
                end = m.end()
    return out


def _blank(text: str, matches: list[re.Match]) -> str:
    """`text` with each match's span replaced by one space (as `pattern.sub(" ", text)`)."""
    if not matches:
        return text
    parts, last = [], 0
    for m in matches:
        parts.append(text[last:m.start()])
        parts.append(" ")
        last = m.end()
    parts.append(text[last:])
    return "".join(parts)


# --------------------------------------------------------------------------- checks


def _grounding(text: str, lowered: str, gate: str | None, pack: ContextPack, px: _PackIndex,
               cx: _CatalogIndex) -> tuple[list[str], str]:
    """Prices, dates, numbers and product names; returns reasons and the text with grounded spans removed."""
    reasons: list[str] = []
    for name, product, pattern in cx.names:
        if name in lowered:
            if not product.active and name not in px.product_names:
                reasons.append(f"names {product.name!r}, which is not in the live catalog")
            text = pattern.sub(" ", text)
            lowered = lowered.replace(name, " ")

    def money(m: re.Match) -> str:
        cents = _cents(m.group(1))
        if cents not in px.money and cents not in cx.money:
            reasons.append(f"price {m.group(0)} matches no price in the customer's facts or the catalog")
        return " "

    text = cx.currency.sub(money, text)

    def check_date(month: int, day: int, year: str | None, start: int, shown: str, source: str) -> None:
        weekday = WEEKDAY_BEFORE.search(source, max(0, start - 12), start)
        hits = [d for d in px.dates if d[1] == month and d[2] == day and (not year or d[0] == int(year))]
        if not hits:
            reasons.append(f"date {shown!r} matches no date in the customer's facts")
        elif weekday and all(date(*d).weekday() != _WEEKDAYS.index(weekday.group(1).lower()) for d in hits):
            reasons.append(f"date {weekday.group(0) + shown!r}: the weekday is wrong")

    if gate is None or any(stem in lowered for stem in MONTH_STEMS):
        source = text
        found = _date_matches(DATE_MONTH_DAY, text, True)
        for m in found:
            check_date(_month_no(m.group(1)), int(m.group(2)), m.group(3), m.start(), source[m.start():m.end()], source)
        text = source = _blank(text, found)
        found = _date_matches(DATE_DAY_MONTH, text, False)
        for m in found:
            check_date(_month_no(m.group(2)), int(m.group(1)), m.group(3), m.start(), source[m.start():m.end()], source)
        text = source = _blank(text, found)
        found = _date_matches(DATE_MONTH_YEAR, text, True)
        for m in found:
            month, year = _month_no(m.group(1)), int(m.group(2))
            if not any(d[0] == year and d[1] == month for d in px.dates):
                reasons.append(f"date {source[m.start():m.end()]!r} matches no date in the customer's facts")
        text = _blank(text, found)
    if "-" in text:
        text = DATE_ISO.sub(lambda m: check_date(int(m.group(2)), int(m.group(3)), m.group(1), m.start(),
                                                 m.group(0), "") or " ", text)
    if "/" in text:
        def slash(m: re.Match) -> str:
            year = m.group(3)
            year = "20" + year if year and len(year) == 2 else year
            check_date(int(m.group(1)), int(m.group(2)), year, m.start(), m.group(0), "")
            return " "
        text = DATE_SLASH.sub(slash, text)
    if "%" in text or "percent" in lowered or gate is None:
        text = PERCENT.sub(" ", text)  # percentages belong to the offer check
    for m in NUMBER.finditer(text):
        if m.start() and (text[m.start() - 1].isalnum() or text[m.start() - 1] in "._"):
            continue  # part of a word or an id, not a number
        try:
            value = float(m.group(1).replace(",", ""))
        except ValueError:
            value = None
        if value is None or (value not in px.numbers and value not in cx.numbers):
            reasons.append(f"number {m.group(0)} matches no fact in the pack or the catalog")
    if _seen(gate, RELATIVE_LITERALS):
        for m in RELATIVE_TIME.finditer(text):
            reasons.append(f"{m.group(0)!r} is a time claim no fact supports; use the date")
    return reasons, text


def _unknown_names(text: str, pack: ContextPack, cx: _CatalogIndex) -> list[str]:
    """Capitalised phrases that look like product or brand names but are in neither pack nor catalog."""
    for term in cx.terms:
        if term in text:
            text = text.replace(term, " . ")
    if pack.first_name and pack.first_name in text:
        text = text.replace(pack.first_name, " . ")
    reasons = []
    for m in CAPITALISED_RUN.finditer(text):
        words = [w for w in m.group(0).split() if w.lower().strip("'’") not in COMMON_CAPITALISED
                 and w.lower() not in ("of", "the", "de")]
        if len(words) >= 2:
            reasons.append(f"names {' '.join(words)!r}, which is not a product in the catalog or a fact")
    if _seen(text, KIND_LITERALS):  # KIND_WORD is case-sensitive: its lower-case kind word is in the text
        for m in KIND_WORD.finditer(text):
            if m.group(1).lower() not in COMMON_CAPITALISED:
                reasons.append(f"names {m.group(0)!r}, which is not a product in the catalog")
    return sorted(set(reasons))


def _actions(text: str, gate: str | None, pack: ContextPack) -> list[str]:
    reasons = []
    for triggers, pattern, holds, needs in ACTION_CLAIMS:
        if _seen(gate, triggers):
            m = pattern.search(text)
            if m and not holds(pack):
                reasons.append(f"says {m.group(0)!r} but nothing in the customer's facts shows {needs}")
    return reasons


def _citations(draft: Draft, pack: ContextPack, cx: _CatalogIndex) -> list[str]:
    reasons = []
    if not draft.cited_fact_ids:
        reasons.append("cites no facts; every draft must cite the facts it uses")
    for fid in draft.cited_fact_ids:
        if fid in pack.facts:
            if pack.facts[fid].kind == "customer_text":
                reasons.append(f"cites {fid}, customer-written text, which is data, not a source of claims")
        elif fid not in cx.fact_ids:
            reasons.append(f"cites {fid}, which is not in the context pack or the catalog")
    return reasons


def _find_codes(text: str, shape: str | None) -> list[str]:
    # A code mixes capitals and digits, so somewhere a capital touches a digit.
    return find_codes(text) if shape is None or "A0" in shape or "0A" in shape else []


def _offer_cta(draft: Draft, text: str, lowered: str, gate: str | None, shape: str | None, pack: ContextPack,
               brief: Brief) -> list[str]:
    reasons = []
    if brief.cta(draft.cta) is None:
        reasons.append(f"CTA {draft.cta!r} is not one of the brief's ({', '.join(c.id for c in brief.ctas)})")
    offer = None
    if draft.offer_id:
        offer = brief.offer(draft.offer_id)
        if offer is None:
            allowed = ", ".join(o.id for o in brief.offers) or "none"
            reasons.append(f"offer {draft.offer_id!r} is not in the brief (allowed: {allowed})")
        else:
            rules = offer.rules
            orders = int(pack.value(f"customer:{pack.customer_id}:fulfilled_orders", 0) or 0)
            if pack.tenure_months < rules.min_tenure_months:
                reasons.append(f"offer {offer.id!r} needs tenure >= {rules.min_tenure_months} months; "
                               f"customer has {pack.tenure_months}")
            if orders < rules.min_orders:
                reasons.append(f"offer {offer.id!r} needs >= {rules.min_orders} orders; customer has {orders}")
    if "%" in text or "percent" in lowered or gate is None:
        for m in PERCENT.finditer(text):
            pct = float(m.group(1))
            if offer is None or offer.kind != "percent_off":
                reasons.append(f"mentions {m.group(0)} but the draft carries no percent-off offer")
            elif pct > offer.rules.max_percent_off:
                reasons.append(f"{m.group(0)} is above the offer's price rule (at most {offer.rules.max_percent_off:g}%)")
            elif pct != offer.percent_off:
                reasons.append(f"{m.group(0)} is not the offer's {offer.percent_off:g}%")
    if offer is None and not reasons and _seen(gate, DISCOUNT_LITERALS):
        m = DISCOUNT_WORDS.search(text)
        if m:
            reasons.append(f"mentions {m.group(0)!r} but the draft carries no offer from the brief")
    for code in _find_codes(text, shape):
        reasons.append(f"mentions code {code!r}, which no offer in the brief defines")
    if "http" in lowered or "www." in lowered or gate is None:
        allowed_urls = {c.url for c in brief.ctas}
        for m in URL.finditer(text):
            if m.group(0).rstrip(".,)") not in allowed_urls:
                reasons.append(f"links to {m.group(0)!r}, which is not one of the brief's CTAs")
    return reasons


def _tone(draft: Draft, text: str, lowered: str, shape: str | None, pack: ContextPack, voice: BrandVoice,
          cx: _CatalogIndex) -> list[str]:
    reasons = []
    words = len(draft.body.split())
    limit = voice.max_words_brief if pack.tone == "brief" else voice.max_words
    if words > limit:
        who = "a brief writer" if pack.tone == "brief" else "any customer"
        reasons.append(f"body is {words} words; at most {limit} for {who}")
    if not draft.subject.strip() or not draft.body.strip():
        reasons.append("subject and body must not be empty")
    if len(draft.subject) > voice.max_subject_chars:
        reasons.append(f"subject is {len(draft.subject)} characters; at most {voice.max_subject_chars}")
    bangs = text.count("!")
    if bangs > voice.max_exclamations:
        reasons.append(f"{bangs} exclamation marks; at most {voice.max_exclamations}")
    for phrase, low in cx.banned:
        if low in lowered:
            reasons.append(f"uses banned phrase {phrase!r}")
    shouting = [w for w in SHOUT.findall(text) if w.isalpha()] if shape is None or "AAAA" in shape else []
    if shouting:
        reasons.append(f"shouts in capitals: {', '.join(sorted(set(shouting)))}")
    if voice.sign_off.lower() not in draft.body.lower():
        reasons.append(f"missing the sign-off {voice.sign_off!r}")
    return reasons


def _surveillance(text: str, gate: str | None) -> list[str]:
    reasons = []
    for needs, pattern in SURVEILLANCE:
        if _seen(gate, needs):
            m = pattern.search(text)
            if m:
                reasons.append(f"surveillance phrasing {m.group(0)!r}: the copy must not reveal tracking, "
                               "scores or segments")
    return reasons


def _personal_data(draft: Draft, text: str, lowered: str, gate: str | None, pack: ContextPack) -> list[str]:
    reasons = []
    checks = [("a phone number", PHONE)]
    if _seen(text, ADDRESS_LITERALS):  # ADDRESS is case-sensitive: its street word is in the text
        checks.append(("a street address", ADDRESS))
    if "@" in text:
        checks.append(("an email address", EMAIL))
    if "ending" in lowered or gate is None:
        checks.append(("payment card details", CARD))
    for label, pattern in checks:
        m = pattern.search(text)
        if m:
            reasons.append(f"contains {label} ({m.group(0)!r}); only the first name may appear")
    if pack.customer_id and pack.customer_id in text:
        reasons.append("contains the internal customer id")
    m = GREETING.match(draft.body)
    if m and m.group(1).lower() not in {(pack.first_name or "").lower(), "there", "team"}:
        reasons.append(f"greets {m.group(1)!r}, who is not this customer")
    return reasons


_WORD = re.compile(r"[a-z0-9%$']+")


def _phrases(words: list[str], n: int) -> tuple[str, ...]:
    """Each run of n words as " w1 ... wn ": in " " + " ".join(other words) + " " exactly when the run is."""
    return tuple(" " + " ".join(words[i:i + n]) + " " for i in range(len(words) - n + 1))


@lru_cache(maxsize=4096)
def _ticket(body: str) -> tuple[tuple[str, ...], tuple[str, ...] | None, tuple[str, ...]]:
    """What the injection check needs from one ticket body, worked out once per body.

    (its 6-word phrases, the payload it asks to include or None when it gives no
    instructions, the 4-word phrases of its instruction sentences).
    """
    six = _phrases(_WORD.findall(body.lower()), 6)
    if not INJECTION_MARKERS.search(body):
        return six, None, ()
    payload = set(find_codes(body)) | set(URL.findall(body)) | set(PERCENT.findall(body))
    payload |= set(re.findall(r"[\"“]([^\"”]{3,})[\"”]", body))
    instruction_words = _WORD.findall(" ".join(
        s for s in re.split(r"(?<=[.!?])\s+", body) if INJECTION_MARKERS.search(s) or find_codes(s)).lower())
    return six, tuple(sorted(p for p in payload if p)), _phrases(instruction_words, 4)


def _injection(lowered: str, pack: ContextPack) -> list[str]:
    reasons = []
    draft_words = None
    for fid, fact in pack.facts.items():
        if fact.kind != "customer_text" or not fact.value:
            continue
        six, payload, four = _ticket(str(fact.value))
        if not six and payload is None:
            continue
        if draft_words is None:
            draft_words = " " + " ".join(_WORD.findall(lowered)) + " "
        ticket = fid.split(":")[1]
        if any(phrase in draft_words for phrase in six):
            reasons.append(f"repeats the customer's own words from ticket {ticket}; ticket text is data, not copy")
            continue
        if payload is None:
            continue
        echoed = [p for p in payload if p.lower() in lowered]
        if echoed or any(phrase in draft_words for phrase in four):
            what = f" ({', '.join(echoed)})" if echoed else ""
            reasons.append(f"follows instructions written in ticket {ticket}{what}; ticket text is data, never instructions")
    return reasons


def _staleness(pack: ContextPack, brief: Brief) -> list[str]:
    if not pack.data_fresh_at:
        return []
    age = (date.fromisoformat(pack.as_of) - date.fromisoformat(pack.data_fresh_at[:10])).days
    if age > brief.max_data_staleness_days:
        return [f"newest order data is {age} days old; the brief allows {brief.max_data_staleness_days}"]
    return []


def check_draft(draft: Draft, pack: ContextPack, brief: Brief, voice: BrandVoice, catalog: Catalog) -> list[Verdict]:
    """Run every guardrail on one draft; a draft may go to review only when all pass."""
    cx = _catalog_index(catalog, voice)
    px = _PackIndex(pack, brief)
    text = draft.text()
    lowered = text.lower()
    gate = lowered if text.isascii() else None  # literal pre-checks are exact for ASCII text only
    shape = _shape(text)
    grounding, rest = _grounding(text, lowered, gate, pack, px, cx)
    grounding += _unknown_names(rest, pack, cx)
    results = {
        "grounding": grounding,
        "actions": _actions(text, gate, pack),
        "citations": _citations(draft, pack, cx),
        "offer_cta": _offer_cta(draft, text, lowered, gate, shape, pack, brief),
        "tone": _tone(draft, text, lowered, shape, pack, voice, cx),
        "surveillance": _surveillance(text, gate),
        "personal_data": _personal_data(draft, text, lowered, gate, pack),
        "injection": _injection(lowered, pack),
        "staleness": _staleness(pack, brief),
    }
    return [Verdict(name, not reasons, reasons) for name, reasons in results.items()]

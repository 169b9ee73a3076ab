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
from dataclasses import asdict, dataclass, field
from datetime import date
from decimal import Decimal
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

DATE_MONTH_DAY = re.compile(rf"\b{_WEEKDAY_RE}{_MONTH_RE}\.?\s+(\d{{1,2}}){_ORD}\b(?:,?\s+(\d{{4}}))?", re.I)
DATE_DAY_MONTH = re.compile(rf"\b{_WEEKDAY_RE}(\d{{1,2}}){_ORD}\s+(?:of\s+)?{_MONTH_RE}\b(?:,?\s+(\d{{4}}))?", re.I)
DATE_MONTH_YEAR = re.compile(rf"\b{_MONTH_RE}\s+(\d{{4}})\b", re.I)
DATE_ISO = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
DATE_SLASH = re.compile(r"\b(\d{1,2})/(\d{1,2})(?:/(\d{2,4}))?\b")
PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s?(?:%|percent\b)", re.I)
NUMBER = re.compile(r"(?<![\w.])(\d+(?:[.,]\d+)*)(?:st|nd|rd|th)?(?![\w])")
URL = re.compile(r"\b(?:https?://|www\.)\S+", re.I)
EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.-]+\b")
PHONE = re.compile(r"(?:\+?\d[\d\s().-]{7,}\d)")
ADDRESS = re.compile(r"\b\d+\s+(?:[A-Z][a-z]+\s+){1,3}(?:Street|St|Avenue|Ave|Road|Rd|Lane|Ln|Drive|Dr|Boulevard|Blvd)\b")
CARD = re.compile(r"\b(?:card|account)\s+ending\s+(?:in\s+)?\d+", re.I)
CODE = re.compile(r"\b(?=[A-Z0-9]*\d)(?=[A-Z0-9]*[A-Z])[A-Z0-9]{5,}\b")
SHOUT = re.compile(r"\b[A-Z]{4,}\b")
GREETING = re.compile(r"^\s*(?:hi|hello|hey|dear|good (?:morning|afternoon|evening))\s+([A-Z][\w'-]*)", re.I)
CAPITALISED_RUN = re.compile(r"\b[A-Z][\w'’-]*(?:\s+(?:of\s+|the\s+|de\s+)?[A-Z][\w'’-]*)+")
KIND_WORD = re.compile(r"\b([A-Z][a-z]+)\s+(blend|roast|beans|espresso|coffee|grinder|kettle|mug|filters?)\b")
RELATIVE_TIME = re.compile(r"\b(yesterday|last (?:week|night)|this morning|earlier today|a few days ago)\b", re.I)
DISCOUNT_WORDS = re.compile(r"\b(discount|coupon|promo(?:tion)? code|voucher|free shipping|on the house|% off|percent off)\b", re.I)

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

SURVEILLANCE = [re.compile(p, re.I) for p in (
    r"\bwe (?:noticed|saw|see|can see|could see) (?:that )?you (?:opened|clicked|read|viewed|visited|browsed|looked|haven't opened|stopped opening|logged)",
    r"\byou (?:opened|clicked|haven't opened|didn't open|stopped opening|haven't clicked) (?:our|my|the|this|that|an|any)? ?(?:e-?mails?|messages?|newsletters?|links?)",
    r"\byou (?:logged in|visited|browsed|viewed|looked at)\b",
    r"\b(?:track(?:ed|ing)?|monitor(?:ed|ing)?|watch(?:ed|ing) (?:you|your))\b",
    r"\b(?:churn|propensity|risk score|your score|score of|engagement score|lifetime value|ltv|segment(?:ed|s)?|likely to (?:cancel|leave|churn))\b",
    r"\bat[- ]risk\b",
    r"\b(?:our (?:data|records|algorithm|model|system)s? (?:show|shows|suggest|suggests|says|tell))\b",
    r"\bbased on your (?:activity|behaviou?r|engagement|browsing)\b",
)]

# (pattern, predicate over the pack, what the claim needs) for actions the copy says the customer took.
def _has(pack: ContextPack, suffix: str, value=None) -> bool:
    return any(fid.endswith(suffix) and (value is None or f.value == value) for fid, f in pack.facts.items())


ACTION_CLAIMS = [
    (re.compile(r"\byou(?:'ve| have)? skipped\b|\byour skip(?:ped)?\b", re.I),
     lambda p: _has(p, ":status", "skipped") or bool(p.value(f"customer:{p.customer_id}:recent_skips")), "a skipped order"),
    (re.compile(r"\byou(?:'ve| have)? paused\b|\byour paused\b", re.I),
     lambda p: _has(p, ":status", "paused"), "a paused subscription"),
    (re.compile(r"\byou(?:'ve| have)? (?:cancell?ed|canceled|stopped)\b|\b(?:cancell?ed|stopped) your subscription\b", re.I),
     lambda p: _has(p, ":status", "cancelled"), "a cancelled subscription"),
    (re.compile(r"\byou(?:'ve| have)? (?:added|picked up)\b", re.I),
     lambda p: _has(p, ":one_time"), "a one-time add-on"),
    (re.compile(r"\byou(?:'ve| have)? (?:swapped|switched|changed your (?:coffee|schedule|cadence|delivery))\b|"
                r"\bfor (?:swapping|switching|changing your)\b", re.I),
     lambda p: False, "a product or schedule change (not in the pack)"),
    (re.compile(r"\byou(?:'ve| have)? upgraded\b", re.I),
     lambda p: _has(p, ":cancel_reason", "upgraded"), "an upgrade"),
    (re.compile(r"\byou (?:contacted|reached out|wrote to us|got in touch|called us|emailed us|chatted with)\b|"
                r"\bgetting in touch\b|\byour (?:ticket|support request|call)\b", re.I),
     lambda p: _has(p, ":topic"), "a support ticket"),
    (re.compile(r"\b(?:your refund|you were refunded|we refunded)\b", re.I),
     lambda p: _has(p, ":status", "refunded"), "a refunded order"),
    (re.compile(r"\b(?:payment (?:failed|didn't go through|was declined)|card (?:was )?declined)\b", re.I),
     lambda p: _has(p, ":status", "failed"), "a failed payment"),
    (re.compile(r"\byou (?:rated|reviewed|left (?:us )?a review)\b", re.I), lambda p: False, "a rating (not in the pack)"),
    (re.compile(r"\byou (?:told us|said)\b", re.I),
     lambda p: _has(p, ":cancel_reason") or _has(p, ":topic"), "something the customer told us"),
    (re.compile(r"\b(?:arrived|was delivered|were delivered)\b", re.I),
     lambda p: _has(p, ":delivered_at"), "a delivered order"),
    (re.compile(r"\byour gift\b|\bgift subscription\b", re.I), lambda p: _has(p, ":is_gift"), "a gift subscription"),
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
        self.products = {p.name.lower(): p for p in catalog.products}
        names = sorted((p.name for p in catalog.products), key=len, reverse=True)
        self.name_re = re.compile(r"\b(" + "|".join(re.escape(n) for n in names) + r")\b", re.I) if names else None
        terms = sorted(voice.allowed_terms + [voice.store_name, voice.sign_off], key=len, reverse=True)
        self.terms_re = re.compile("|".join(re.escape(t) for t in terms), re.I)
        self.money = {_cents(p.price) for p in catalog.products if p.active}
        self.numbers = {Decimal(d) for d in catalog.cadence_options}
        self.fact_ids = set(catalog.facts())
        self.currency = re.compile(re.escape(voice.currency_symbol) + r"\s?(\d{1,6}(?:,\d{3})*(?:\.\d{1,2})?)")


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


def _cents(value) -> int:
    return int((Decimal(str(value).replace(",", "")) * 100).to_integral_value())


@dataclass
class _PackIndex:
    money: set[int]
    numbers: set[Decimal]
    dates: set[tuple[int, int, int]]
    product_names: set[str]


def _pack_index(pack: ContextPack, brief: Brief) -> _PackIndex:
    money, numbers, dates, names = set(), set(), set(), set()
    for fid, fact in pack.facts.items():
        kind, value = fact.kind, fact.value
        if kind == "money":
            money.add(_cents(value))
        elif kind == "number":
            numbers.add(Decimal(str(value)))
        elif kind == "date":
            dates.add((int(value[:4]), int(value[5:7]), int(value[8:10])))
        elif kind == "text" and (fid.endswith(":name") or fid.endswith(":product")):
            names.add(str(value).lower())
    # Prices after an allowed discount ("$21.42 after 15% off") and the saving itself are grounded too.
    for offer in brief.offers:
        if offer.kind == "percent_off":
            pct = Decimal(str(offer.percent_off)) / 100
            for cents in list(money):
                money.add(int((cents * (1 - pct)).to_integral_value()))
                money.add(int((cents * pct).to_integral_value()))
    return _PackIndex(money, numbers, dates, names)


# --------------------------------------------------------------------------- checks


def _grounding(text: str, pack: ContextPack, px: _PackIndex, cx: _CatalogIndex) -> tuple[list[str], str]:
    """Prices, dates, numbers and product names; returns reasons and the text with grounded spans removed."""
    reasons: list[str] = []
    if cx.name_re is not None:
        for m in cx.name_re.finditer(text):
            name = m.group(1)
            product = cx.products[name.lower()]
            if not product.active and name.lower() not in px.product_names:
                reasons.append(f"names {product.name!r}, which is not in the live catalog")
        text = cx.name_re.sub(" ", text)

    def money(m: re.Match) -> str:
        if _cents(m.group(1)) not in px.money and _cents(m.group(1)) not in cx.money:
            reasons.append(f"price {m.group(0)} matches no price in the customer's facts or the catalog")
        return " "

    text = cx.currency.sub(money, text)

    def check_date(month: int, day: int, year: str | None, weekday: str | None, shown: str) -> None:
        hits = [d for d in px.dates if d[1] == month and d[2] == day and (not year or d[0] == int(year))]
        if not hits:
            reasons.append(f"date {shown!r} matches no date in the customer's facts")
        elif weekday and all(date(*d).weekday() != _WEEKDAYS.index(weekday.lower()) for d in hits):
            reasons.append(f"date {shown!r}: the weekday is wrong")

    def month_no(name: str) -> int:
        return next(i + 1 for i, m in enumerate(MONTHS) if m.startswith(name.lower()[:3]))

    def md(m: re.Match) -> str:
        check_date(month_no(m.group(2)), int(m.group(3)), m.group(4), m.group(1), m.group(0).strip())
        return " "

    def dm(m: re.Match) -> str:
        check_date(month_no(m.group(3)), int(m.group(2)), m.group(4), m.group(1), m.group(0).strip())
        return " "

    def iso(m: re.Match) -> str:
        check_date(int(m.group(2)), int(m.group(3)), m.group(1), None, m.group(0))
        return " "

    def slash(m: re.Match) -> str:
        year = m.group(3)
        check_date(int(m.group(1)), int(m.group(2)), ("20" + year if year and len(year) == 2 else year), None, m.group(0))
        return " "

    def month_year(m: re.Match) -> str:
        month, year = month_no(m.group(1)), int(m.group(2))
        if not any(d[0] == year and d[1] == month for d in px.dates):
            reasons.append(f"date {m.group(0)!r} matches no date in the customer's facts")
        return " "

    if any(ch.isdigit() for ch in text):
        text = DATE_ISO.sub(iso, text)
        text = DATE_MONTH_DAY.sub(md, text)
        text = DATE_DAY_MONTH.sub(dm, text)
        text = DATE_MONTH_YEAR.sub(month_year, text)
        text = DATE_SLASH.sub(slash, text)
        text = PERCENT.sub(" ", text)  # percentages belong to the offer check
        for m in NUMBER.finditer(text):
            try:
                value = Decimal(m.group(1).replace(",", ""))
            except ArithmeticError:
                value = None
            if value is None or (value not in px.numbers and value not in cx.numbers):
                reasons.append(f"number {m.group(0)} matches no fact in the pack or the catalog")
    for m in RELATIVE_TIME.finditer(text):
        reasons.append(f"{m.group(0)!r} is a time claim no fact supports; use the date")
    return reasons, text


def _unknown_names(text: str, pack: ContextPack, cx: _CatalogIndex) -> list[str]:
    """Capitalised phrases that look like product or brand names but are in neither pack nor catalog."""
    text = cx.terms_re.sub(" . ", text)
    if pack.first_name:
        text = re.sub(rf"\b{re.escape(pack.first_name)}\b", " . ", text)
    reasons = []
    for m in CAPITALISED_RUN.finditer(text):
        words = [w for w in re.split(r"\s+", m.group(0)) if w.lower().strip("'’") not in COMMON_CAPITALISED
                 and w.lower() not in ("of", "the", "de")]
        if len(words) >= 2:
            reasons.append(f"names {' '.join(words)!r}, which is not a product in the catalog or a fact")
    for m in KIND_WORD.finditer(text):
        if m.group(1).lower() not in COMMON_CAPITALISED:
            reasons.append(f"names {m.group(0)!r}, which is not a product in the catalog")
    return sorted(set(reasons))


def _actions(text: str, pack: ContextPack) -> list[str]:
    return [f"says {m.group(0)!r} but nothing in the customer's facts shows {needs}"
            for pattern, holds, needs in ACTION_CLAIMS
            for m in [pattern.search(text)] if m and not holds(pack)]


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


def _offer_cta(draft: Draft, text: str, pack: ContextPack, brief: Brief) -> list[str]:
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
    for m in PERCENT.finditer(text):
        pct = float(m.group(1))
        if offer is None or offer.kind != "percent_off":
            reasons.append(f"mentions {m.group(0)} but the draft carries no percent-off offer")
        elif pct > offer.rules.max_percent_off:
            reasons.append(f"{m.group(0)} is above the offer's price rule (at most {offer.rules.max_percent_off:g}%)")
        elif pct != offer.percent_off:
            reasons.append(f"{m.group(0)} is not the offer's {offer.percent_off:g}%")
    if offer is None and not reasons:
        m = DISCOUNT_WORDS.search(text)
        if m:
            reasons.append(f"mentions {m.group(0)!r} but the draft carries no offer from the brief")
    for m in CODE.finditer(text):
        reasons.append(f"mentions code {m.group(0)!r}, which no offer in the brief defines")
    allowed_urls = {c.url for c in brief.ctas}
    for m in URL.finditer(text):
        if m.group(0).rstrip(".,)") not in allowed_urls:
            reasons.append(f"links to {m.group(0)!r}, which is not one of the brief's CTAs")
    return reasons


def _tone(draft: Draft, pack: ContextPack, voice: BrandVoice) -> list[str]:
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
    text = draft.text()
    bangs = text.count("!")
    if bangs > voice.max_exclamations:
        reasons.append(f"{bangs} exclamation marks; at most {voice.max_exclamations}")
    lowered = text.lower()
    for phrase in voice.banned_phrases:
        if phrase.lower() in lowered:
            reasons.append(f"uses banned phrase {phrase!r}")
    shouting = [w for w in SHOUT.findall(text) if not CODE.fullmatch(w)]
    if shouting:
        reasons.append(f"shouts in capitals: {', '.join(sorted(set(shouting)))}")
    if voice.sign_off.lower() not in draft.body.lower():
        reasons.append(f"missing the sign-off {voice.sign_off!r}")
    return reasons


def _surveillance(text: str) -> list[str]:
    return [f"surveillance phrasing {m.group(0)!r}: the copy must not reveal tracking, scores or segments"
            for pattern in SURVEILLANCE for m in [pattern.search(text)] if m]


def _personal_data(draft: Draft, pack: ContextPack) -> list[str]:
    text = draft.text()
    reasons = []
    for label, pattern in (("an email address", EMAIL), ("a phone number", PHONE), ("a street address", ADDRESS),
                           ("payment card details", CARD)):
        m = pattern.search(text)
        if m:
            reasons.append(f"contains {label} ({m.group(0)!r}); only the first name may appear")
    if pack.customer_id and re.search(rf"\b{re.escape(pack.customer_id)}\b", text):
        reasons.append("contains the internal customer id")
    m = GREETING.match(draft.body)
    if m and m.group(1).lower() not in {(pack.first_name or "").lower(), "there", "team"}:
        reasons.append(f"greets {m.group(1)!r}, who is not this customer")
    return reasons


def _ngrams(words: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


_WORD = re.compile(r"[a-z0-9%$']+")


def _injection(text: str, pack: ContextPack) -> list[str]:
    reasons = []
    draft_words = None
    for fid, fact in pack.facts.items():
        if fact.kind != "customer_text" or not fact.value:
            continue
        body = str(fact.value)
        if draft_words is None:
            draft_words = _WORD.findall(text.lower())
            draft6, draft4 = _ngrams(draft_words, 6), _ngrams(draft_words, 4)
        ticket = fid.split(":")[1]
        if _ngrams(_WORD.findall(body.lower()), 6) & draft6:
            reasons.append(f"repeats the customer's own words from ticket {ticket}; ticket text is data, not copy")
            continue
        if not INJECTION_MARKERS.search(body):
            continue
        payload = set(CODE.findall(body)) | set(URL.findall(body)) | set(PERCENT.findall(body))
        payload |= set(re.findall(r"[\"“]([^\"”]{3,})[\"”]", body))
        echoed = sorted(p for p in payload if p and p.lower() in text.lower())
        instruction_words = _WORD.findall(" ".join(
            s for s in re.split(r"(?<=[.!?])\s+", body) if INJECTION_MARKERS.search(s) or CODE.search(s)).lower())
        if echoed or (_ngrams(instruction_words, 4) & draft4):
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
    px = _pack_index(pack, brief)
    text = draft.text()
    grounding, rest = _grounding(text, pack, px, cx)
    grounding += _unknown_names(rest, pack, cx)
    results = {
        "grounding": grounding,
        "actions": _actions(text, pack),
        "citations": _citations(draft, pack, cx),
        "offer_cta": _offer_cta(draft, text, pack, brief),
        "tone": _tone(draft, pack, voice),
        "surveillance": _surveillance(text),
        "personal_data": _personal_data(draft, pack),
        "injection": _injection(text, pack),
        "staleness": _staleness(pack, brief),
    }
    return [Verdict(name, not reasons, reasons) for name, reasons in results.items()]

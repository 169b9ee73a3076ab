"""Guardrails: every draft, from any generator, is checked before a human sees it.

`check_draft(draft, pack, brief, voice, catalog)` returns one `Verdict` per
check, each with the reasons it failed:

    grounding      every price, date, number and product name matches a fact in the pack or the live catalog
                   (a retired product they had is named as history, never offered as still there)
    actions        every action the copy says the customer took is in their facts
    citations      cited fact ids exist (and none is customer-written text)
    offer_cta      the CTA and the offer are the brief's, within its price rules; no stray codes, links or discounts
    tone           length, exclamation marks, banned phrases, shouting, greeting, sign-off
    surveillance   no "we noticed you opened", scores, tracking or browsing talk
    personal_data  nothing personal beyond the first name
    injection      nothing that echoes or obeys instructions written inside a support ticket
    staleness      the warehouse data is fresh enough for the brief

How the text is read (the fast route for plain text, the word pre-checks, the price, date and
number scanners) is in `text_scan.py`; here are the rules. Pure functions over plain data: no
database, no Dagster.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from typing import Iterable

from dagster_project.messaging.briefs import BrandVoice, Brief
from dagster_project.messaging.context_pack import Catalog, ContextPack
from dagster_project.messaging.generators.base import Draft
from dagster_project.messaging.text_scan import (
    MONTHS, NUMBER_WORDS, PERCENT, URL, WEEKDAYS, Gated, Text, Twin, blank_name, find_clock_times, find_codes, find_links,
    find_percents, price_cents, price_pattern, scan_dates, scan_number_words, scan_numbers, scan_prices, search_each,
    seen, shown, straight,
)

EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.-]+\b")
PHONE = re.compile(r"[+\d][\d\s().-]{7,}\d")
ADDRESS = re.compile(r"\b\d\d*\s+(?:[A-Z][a-z]+\s+){1,3}(?:Street|St|Avenue|Ave|Road|Rd|Lane|Ln|Drive|Dr|Boulevard|Blvd)\b")
CARD = re.compile(r"\b(?:card|account)\s+ending\s+(?:in\s+)?\d+", re.I)
SHOUT = re.compile(r"\b[A-Z][A-Z]{3,}\b")
# A greeting and the rest of its line, which starts with whom it greets ("Hi again, Anna," "Hi, Ben.").
GREETING = re.compile(r"^\s*(?:hi|hello|hey|dear|good (?:morning|afternoon|evening))\b[ \t,]*(.*)", re.I)
GREETED_WORD = re.compile(r"([^\W\d_][\w'-]*)[ \t,]*")
# Words a greeting may start with that greet no one in particular ("Hi again, Anna", "Hi there").
NOT_NAMES = {"again", "there", "team", "all", "everyone", "folks", "friend", "friends", "you"}
CAPITALISED_RUN = re.compile(r"\b[A-Z][\w'’-]*(?:\s+(?:of\s+|the\s+|de\s+)?[A-Z][\w'’-]*)+")
KIND_WORD = re.compile(r"\b([A-Z][a-z]+)\s+(blend|roast|beans|espresso|coffee|grinder|kettle|mug|filters?)\b")
RELATIVE_TIME = re.compile(r"\b(yesterday|last (?:week|night)|this morning|earlier today|a few days ago)\b", re.I)
RELATIVE_LITERALS = ("yesterday", "last week", "last night", "this morning", "earlier today", "days ago")
KIND_LITERALS = ("blend", "roast", "beans", "espresso", "coffee", "grinder", "kettle", "mug", "filter")
# Talk of a discount when the draft carries no offer, and a street address (whole words, then literals,
# every match holds: see text_scan.Gated). "free" only where something is given away ("is free", "free bag"),
# not "feel free to reply"; "on us" only after what is given ("delivery is on us"), not a reply's "that's on us".
DISCOUNT = Gated(
    ("discount", "coupon", "promo", "promotion", "voucher", "house", "off", "free", "half", "us"),
    ("discount", "coupon", "promo", "voucher", "on the house", " off", "free", "half", "on us"),
    re.compile(r"\b(discount|coupon|promo(?:tion)? code|voucher|on the house|% off|per ?cent off|half[- ]price|half off"
               r"|(?:is|are|'s|comes?|ships?|for) free|free of charge"
               r"|free (?:bags?|coffee|delivery|deliveries|shipping|gifts?|samples?|box(?:es)?|refills?|upgrades?"
               r"|months?)"
               r"|(?:delivery|deliveries|bags?|box|shipping|order|coffee|one)(?:'s| is| are)?,? on us"
               r"|knock(?:s|ed|ing)? (?:[\w$.,]+ ){1,3}off|(?:\d|dollars?|bucks) off)\b", re.I))
STREET_ADDRESS = Gated(
    ("street", "st", "avenue", "ave", "road", "rd", "lane", "ln", "drive", "dr", "boulevard", "blvd"),
    ("St", "Av", "Road", "Rd", "Lane", "Ln", "Dr", "Blvd", "Boulevard"), ADDRESS)
# What PHONE may match (digits, + ( ) . - and ASCII whitespace) to "0", the rest to " ": nine in a row or no phone.
_PHONE_SHAPES = str.maketrans({chr(c): "0" if chr(c) in "0123456789+().- \t\n\r\x0b\x0c" else " " for c in range(128)})

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
COMMON_CAPITALISED |= set(MONTHS) | set(WEEKDAYS)


# Phrases that reveal tracking, scores or segments: (words, literals, pattern), see text_scan.Gated.
# Between "you" and what they did: "you've been opening", "you usually read", "you last logged in".
_YOU = r"you(?:'ve| have| had| were)?(?: been)?(?: \w+ly| always| never| just| last| first)?"
SURVEILLANCE = [Gated(words, needs, re.compile(p, re.I)) for words, needs, p in (
    (("noticed", "saw", "see", "tell"),
     ("we noticed", "we saw", "we see", "we can see", "we could see", "we can tell", "we could tell"),
     r"\bwe (?:noticed|saw|see|can see|could see|can tell|could tell) (?:that )?you(?:'ve| have| had| were)?(?: been)? "
     r"(?:opened|opening|clicked|clicking|read|reading|viewed|viewing|visited|visiting|browsed|browsing|looked|looking"
     r"|haven't opened|stopped opening|logged|logging)\b"),
    (("opened", "opening", "open", "clicked", "clicking", "click", "read", "reading"), ("open", "click", "read"),
     rf"\b{_YOU} (?:opened|opening|clicked|clicked on|clicking|read|reading|haven't opened|haven't clicked"
     r"|didn't open|didn't click|stopped opening) (?:[\w-]+ ){0,4}(?:e-?mails?|messages?|newsletters?|links?)\b"),
    (("logged", "logging", "signed", "visited", "visiting", "browsed", "browsing", "viewed", "viewing", "looked",
      "looking"),
     ("logged", "logging", "signed in", "visit", "brows", "view", "looked at", "looking at"),
     rf"\b{_YOU} (?:logged (?:in|on)|logging in|signed in|visited|visiting|browsed|browsing|viewed|viewing"
     r"|looked at|looking at)\b"),
    (("last", "latest", "recent"), ("visit", "log", "session"),
     r"\byour (?:last|latest|recent) (?:visits?|log-?ins?|sessions?)\b"),
    # Tracking the person, not a parcel: "you can track your next delivery" is a good draft.
    (("track", "tracks", "tracked", "tracking", "monitor", "monitored", "monitoring", "watched", "watching"),
     ("track", "monitor", "watch"),
     r"\b(?:track(?:s|ed|ing)? (?:you|your (?:activity|behaviou?r|clicks|opens|visits|browsing|habits|usage))"
     r"|we(?:'ve| have| are|'re)?(?: been)? track(?:ed|ing)? (?:how|when|what|which|whether|where)"
     r"|monitor(?:ed|ing)?|watch(?:ed|ing) (?:you|your))\b"),
    (("churn", "propensity", "score", "lifetime", "ltv", "segment", "segmented", "segments", "likely"),
     ("churn", "propensity", "score", "lifetime value", "ltv", "segment", "likely to"),
     r"\b(?:churn|propensity|risk score|your score|score of|engagement score|lifetime value|ltv|segment(?:ed|s)?|likely to (?:cancel|leave|churn))\b"),
    (("risk",), ("at-risk", "at risk"), r"\bat[- ]risk\b"),
    (("data", "datas", "records", "recordss", "algorithm", "algorithms", "model", "models", "system", "systems"),
     ("our data", "our record", "our algorithm", "our model", "our system"),
     r"\b(?:our (?:data|records|algorithm|model|system)s? (?:show|shows|suggest|suggests|says|tell))\b"),
    (("based",), ("based on your",), r"\bbased on your (?:activity|behaviou?r|engagement|browsing)\b"),
)]

# Actions the copy says the customer took: (the phrase, gated by words and literals; a predicate over the
# pack's index; what the claim needs).
ACTION_CLAIMS = [(Gated(words, triggers, re.compile(p, re.I)), holds, needs)
                 for words, triggers, p, holds, needs in (
    (("skipped", "skip"), ("you skipped", "you've skipped", "you have skipped", "your skip"),
     r"\byou(?:'ve| have)? skipped\b|\byour skip(?:ped)?\b",
     lambda x: x.has(":status", "skipped") or bool(x.pack.value(f"customer:{x.pack.customer_id}:recent_skips")), "a skipped order"),
    (("paused",), ('paus',), r"\byou(?:'ve| have)? paused\b|\byour paused\b",
     lambda x: x.has(":status", "paused"), "a paused subscription"),
    (("cancelled", "canceled", "stopped"), ("you cancel", "you've cancel", "you have cancel", "you stopped", "you've stopped",
                                            "you have stopped", "led your subscription", "stopped your subscription"),
     r"\byou(?:'ve| have)? (?:cancell?ed|canceled|stopped)\b|\b(?:cancell?ed|stopped) your subscription\b",
     lambda x: x.has(":status", "cancelled"), "a cancelled subscription"),
    (("added", "picked"), ('added', 'picked up'), r"\byou(?:'ve| have)? (?:added|picked up)\b",
     lambda x: x.has(":one_time"), "a one-time add-on"),
    (("swapped", "switched", "changed", "swapping", "switching", "changing"),
     ("swapped", "switched", "changed your", "for swapping", "for switching", "for changing your"),
     r"\byou(?:'ve| have)? (?:swapped|switched|changed your (?:coffee|schedule|cadence|delivery))\b|"
     r"\bfor (?:swapping|switching|changing your)\b",
     lambda x: False, "a product or schedule change (not in the pack)"),
    (("upgraded",), ('upgraded',), r"\byou(?:'ve| have)? upgraded\b",
     lambda x: x.has(":cancel_reason", "upgraded"), "an upgrade"),
    (("contacted", "reached", "wrote", "got", "called", "emailed", "chatted", "getting", "ticket", "support", "call"),
     ('contact', 'reached out', 'wrote to us', 'got in touch', 'called us', 'emailed us', 'chatted', 'getting in touch',
      'your ticket', 'support request', 'your call'),
     r"\byou (?:contacted|reached out|wrote to us|got in touch|called us|emailed us|chatted with)\b|"
     r"\bgetting in touch\b|\byour (?:ticket|support request|call)\b",
     lambda x: x.has(":topic"), "a support ticket"),
    (("refund", "refunded"), ('refund',), r"\b(?:your refund|you were refunded|we refunded)\b",
     lambda x: x.has(":status", "refunded"), "a refunded order"),
    (("payment", "declined"), ('payment', 'declined'),
     r"\b(?:payment (?:failed|didn't go through|was declined)|card (?:was )?declined)\b",
     lambda x: x.has(":status", "failed"), "a failed payment"),
    (("rated", "reviewed", "review"), ('rated', 'review'), r"\byou (?:rated|reviewed|left (?:us )?a review)\b",
     lambda x: False, "a rating (not in the pack)"),
    (("told", "said"), ('told us', 'said'), r"\byou (?:told us|said)\b",
     lambda x: x.has(":cancel_reason") or x.has(":topic"), "something the customer told us"),
    (("arrived", "delivered"), ('arrived', 'delivered'), r"\b(?:arrived|was delivered|were delivered)\b",
     lambda x: x.has(":delivered_at"), "a delivered order"),
    (("gift",), ('gift',), r"\byour gift\b|\bgift subscription\b", lambda x: x.has(":is_gift"), "a gift subscription"),
)]

# A retired product (in the catalog, no longer active) the customer had may be named as history ("you had
# House Espresso"), never offered: a sentence naming it may not say it is still there to restart, order or get
# back, unless the same sentence says it is gone ("we no longer roast House Espresso").
ON_OFFER = re.compile(
    r"\b(?:still (?:here|there|around|available|in stock|on (?:the|our) shel(?:f|ves))|back in stock|in stock"
    r"|on (?:the|our) shel(?:f|ves)|available|restart\w*|re-?order\w*|order (?:it|more|some|another)"
    r"|add (?:it|some|another)|get it|have it|again|like (?:your |some )?[\w' ]{0,40}back|way back to)\b", re.I)
GONE = re.compile(r"\b(?:no longer|not (?:available|in stock|on (?:the|our) shel(?:f|ves))|isn't (?:available|in stock)"
                  r"|retired|discontinued|sold out|out of stock|stopped (?:roasting|making|selling|carrying))\b", re.I)
_SENTENCE_ENDS = ".!?\n"

INJECTION_MARKERS = re.compile(
    r"\b(ignore (?:all |any )?(?:previous|prior|above|earlier|the) (?:instructions|prompts?|rules)|disregard|"
    r"system prompt|you are (?:now|an? )|as an ai|new instructions|tell (?:me|everyone|them)|say (?:that|our|i)|"
    r"write (?:that|me)|include (?:the|this|a)|respond with|give me|promise me|repeat after)\b", re.I)


_ACTION_PHRASES = [phrase for phrase, _, _ in ACTION_CLAIMS]
_RELATIVE_TIME, _PHONE, _EMAIL, _CARD = map(Twin, (RELATIVE_TIME, PHONE, EMAIL, CARD))
_CAPITALISED_RUN, _KIND_WORD, _SHOUT = map(Twin, (CAPITALISED_RUN, KIND_WORD, SHOUT))


@dataclass
class Verdict:
    """The outcome of one check on one draft; `reasons` say what failed, in words a reviewer can act on."""

    check: str
    passed: bool
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        # Not `asdict`: its deep copy was most of turning a chunk's drafts into rows (nine verdicts each).
        return {"check": self.check, "passed": self.passed, "reasons": list(self.reasons)}


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
        # Names and terms are read as the draft is: with straight apostrophes (text_scan.straight).
        names = ((straight(p.name), p) for p in catalog.products)
        self.names = sorted(((name.lower(), p, re.compile(re.escape(name), re.I), name.isascii()) for name, p in names),
                            key=lambda x: -len(x[0]))
        self.terms = sorted({straight(term) for term in voice.allowed_terms + [voice.store_name, voice.sign_off]},
                            key=len, reverse=True)
        self.money = {price_cents(p.price) for p in catalog.products if p.active}
        self.numbers = {float(d) for d in catalog.cadence_options}
        self.fact_ids = set(catalog.facts())
        self.currency = price_pattern(voice.currency_symbol)
        self.banned = [(phrase, " ".join(straight(phrase).lower().split())) for phrase in voice.banned_phrases]
        self.sign_off = voice.sign_off.lower()


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


class _PackIndex:
    """The pack's facts by kind, from one pass; each lookup is built the first time a check needs it."""

    def __init__(self, pack: ContextPack, brief: Brief):
        self.pack, self.brief = pack, brief
        dates, numbers, money, texts = [], [], [], []
        for fid, fact in pack.facts.items():
            kind = fact.kind
            if kind == "date":
                dates.append(fact.value)
            elif kind == "number":
                numbers.append(fact.value)
            elif kind == "money":
                money.append(fact.value)
            elif kind == "customer_text":
                texts.append((fid, fact.value))
        self.dates, self.customer_texts = dates, texts
        self._numbers, self._money = numbers, money
        self._built: dict[str, object] = {}
        self._hits: dict[tuple, list] = {}

    def date_hits(self, month: int, day: int, year: str | None) -> list[tuple[int, int, int]]:
        """(year, month, day) of the pack's dates on this day of the year (and in `year`, when given)."""
        key = (month, day, year)
        hits = self._hits.get(key)  # a draft often repeats its date (preheader and body)
        if hits is None:
            mm, dd = f"{month:02d}", f"{day:02d}"  # compared as text: only candidates are parsed
            hits = self._hits[key] = [(int(v[:4]), month, day) for v in self.dates if v[8:10] == dd and v[5:7] == mm
                                      and (not year or int(v[:4]) == int(year))]
        return hits

    def has_month(self, year: int, month: int) -> bool:
        mm = f"{month:02d}"
        return any(v[5:7] == mm and int(v[:4]) == year for v in self.dates)

    @property
    def numbers(self) -> set:
        if "numbers" not in self._built:
            self._built["numbers"] = {float(v) for v in self._numbers}
        return self._built["numbers"]

    def has_price(self, cents: int) -> bool:
        """Whether a price (in cents) is one of the pack's, or one of them after an allowed percent-off."""
        base = self._built.get("money")
        if base is None:
            base = self._built["money"] = {price_cents(v) for v in self._money}
        if cents in base:
            return True
        full = self._built.get("discounted")
        if full is None:
            full = self._built["discounted"] = set(base)
            # Prices after an allowed discount ("$21.42 after 15% off") and the saving itself are grounded too.
            for offer in self.brief.offers:
                if offer.kind == "percent_off":
                    pct = offer.percent_off / 100
                    for price in list(full):
                        full.add(round(price * (1 - pct)))
                        full.add(round(price * pct))
        return cents in full

    @property
    def product_names(self) -> set:
        if "names" not in self._built:
            self._built["names"] = {straight(str(f.value)).lower() for fid, f in self.pack.facts.items()
                                    if f.kind == "text" and fid.endswith((":name", ":product"))}
        return self._built["names"]

    def has(self, suffix: str, value=None) -> bool:
        """Whether a fact id ends with `suffix` (and, when given, that fact's value is `value`)."""
        return any(fid.endswith(suffix) and (value is None or f.value == value) for fid, f in self.pack.facts.items())


# --------------------------------------------------------------------------- checks


def _grounding(t: Text, px: _PackIndex, cx: _CatalogIndex) -> tuple[list[str], str]:
    """Prices, dates, numbers and product names; returns reasons and the text with grounded spans removed."""
    text, lowered, gate, fast = t.text, t.lowered, t.gate, t.fast
    reasons: list[str] = []
    for name, product, pattern, ascii_name in cx.names:
        if name in lowered:
            if not product.active and name not in px.product_names:
                reasons.append(f"names {product.name!r}, which is not in the live catalog")
            elif not product.active:
                reasons += _offered_retired(lowered, name, product.name)
            if gate is not None and ascii_name:
                text, lowered = blank_name(text, lowered, name)
            else:
                text = pattern.sub(" ", text)
                lowered = lowered.replace(name, " ")
    prices, text = scan_prices(text, cx.currency)
    for amount, written in prices:
        if amount not in cx.money and not px.has_price(amount):
            reasons.append(f"price {written} matches no price in the customer's facts or the catalog")
    dates, text = scan_dates(text, fast)
    for d in dates:
        if d.day is None:  # a month and year: any fact in that month grounds it
            if not px.has_month(int(d.year), d.month):
                reasons.append(f"date {d.shown!r} matches no date in the customer's facts")
            continue
        hits = px.date_hits(d.month, d.day, d.year)
        if not hits:
            reasons.append(f"date {d.shown!r} matches no date in the customer's facts")
        elif d.weekday is not None and all(date(*hit).weekday() != d.weekday for hit in hits):
            reasons.append(f"date {d.weekday_shown + d.shown!r}: the weekday is wrong")
    numbers, text = scan_numbers(text, fast)
    for value, written in [*numbers, *scan_number_words(text, t.words)]:
        if value is None or (value not in px.numbers and value not in cx.numbers):
            reasons.append(f"number {written} matches no fact in the pack or the catalog")
    if seen(gate, RELATIVE_LITERALS):
        for m in _RELATIVE_TIME.finditer(text, fast):
            reasons.append(f"{shown(m, text)!r} is a time claim no fact supports; use the date")
    return reasons, text


def _offered_retired(lowered: str, name: str, shown_name: str) -> list[str]:
    """A sentence (of the lower-cased text) that offers the retired product `name` as still there to have."""
    reasons, at = [], lowered.find(name)
    while at >= 0:
        end = at + len(name)
        start = max(lowered.rfind(c, 0, at) for c in _SENTENCE_ENDS) + 1
        stop = min((i for i in (lowered.find(c, end) for c in _SENTENCE_ENDS) if i >= 0), default=len(lowered))
        sentence = lowered[start:stop]
        if (m := ON_OFFER.search(sentence)) and not GONE.search(sentence):
            reasons.append(f"offers {shown_name!r} ({m.group(0)!r}), which is no longer in the live catalog; "
                           "name it only as what they had, or suggest an active product")
        at = lowered.find(name, stop)
    return reasons


def _customer_name(first_name: str | None) -> str:
    """The customer's first name as the checks read it, "" for none: curly apostrophes straightened, as
    they are in the draft's text (`straight`), and its ends trimmed. Callers fold case or spacing as they compare."""
    return straight(first_name or "").strip()


def _unknown_names(text: str, fast: bool, pack: ContextPack, cx: _CatalogIndex) -> list[str]:
    """Capitalised phrases that look like product or brand names but are in neither pack nor catalog."""
    for term in cx.terms:
        if term in text:
            text = text.replace(term, " . ")
    name = _customer_name(pack.first_name)
    if name and name in text:
        text = text.replace(name, " . ")
    reasons = []
    for m in _CAPITALISED_RUN.finditer(text, fast):
        words = [w for w in m.group(0).split() if w.lower().strip("'’") not in COMMON_CAPITALISED
                 and w.lower() not in ("of", "the", "de")]
        if len(words) >= 2:
            reasons.append(f"names {' '.join(words)!r}, which is not a product in the catalog or a fact")
    if seen(text, KIND_LITERALS):  # KIND_WORD is case-sensitive: its lower-case kind word is in the text
        for m in _KIND_WORD.finditer(text, fast):
            if m.group(1).lower() not in COMMON_CAPITALISED:
                reasons.append(f"names {m.group(0)!r}, which is not a product in the catalog")
    return sorted(set(reasons))


def _actions(t: Text, px: _PackIndex) -> list[str]:
    reasons = []
    for (_, holds, needs), m in zip(ACTION_CLAIMS, search_each(_ACTION_PHRASES, t)):
        if m and not holds(px):
            reasons.append(f"says {shown(m, t.text)!r} but nothing in the customer's facts shows {needs}")
    return reasons + _skip_counts(t, px)


# How many skips, and of how many deliveries: the counts must be the customer's own, not any number in
# the pack ("you've skipped 5 deliveries" when 5 is their order count).
_COUNT = r"(\d+|one|" + "|".join(NUMBER_WORDS) + ")"
SKIP_COUNT = re.compile(rf"\bskipped {_COUNT}\b|\b{_COUNT} (?:skips|skipped)\b", re.I)
SKIP_WINDOW = re.compile(rf"\b(?:of|in) your last {_COUNT} (?:deliveries|orders|boxes|bags)\b", re.I)


_COUNT_WORDS = {"one": 1, **NUMBER_WORDS}


def _count(written: str) -> int:
    return int(written) if written.isdigit() else _COUNT_WORDS[written.lower()]


def _skip_counts(t: Text, px: _PackIndex) -> list[str]:
    """A count of skips, or of the deliveries they were among, that is not the customer's."""
    if t.words is not None and t.words.isdisjoint(("skipped", "skips")):
        return []
    cid = px.pack.customer_id
    skips = px.pack.value(f"customer:{cid}:recent_skips")
    window = px.pack.value(f"customer:{cid}:recent_deliveries")
    reasons = []
    for pattern, fact, what in ((SKIP_COUNT, skips, "skips"), (SKIP_WINDOW, window, "recent deliveries")):
        for m in pattern.finditer(t.text):
            if fact is None or _count(m.group(m.lastindex)) != int(fact):
                reasons.append(f"says {m.group(0)!r} but the customer's facts show "
                               + (f"{int(fact)} {what}" if fact is not None else f"no count of {what}"))
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


def _offer_cta(draft: Draft, t: Text, pack: ContextPack, brief: Brief) -> list[str]:
    text, lowered, fast = t.text, t.lowered, t.fast
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
    for m in find_percents(text, fast, lowered):
        pct, written = float(m.group(1)), shown(m, text)
        if offer is None or offer.kind != "percent_off":
            reasons.append(f"mentions {written} but the draft carries no percent-off offer")
        elif pct > offer.rules.max_percent_off:
            reasons.append(f"{written} is above the offer's price rule (at most {offer.rules.max_percent_off:g}%)")
        elif pct != offer.percent_off:
            reasons.append(f"{written} is not the offer's {offer.percent_off:g}%")
    if offer is None and not reasons and (m := DISCOUNT.search(t)):
        reasons.append(f"mentions {shown(m, text)!r} but the draft carries no offer from the brief")
    codes = find_codes(text, fast, t.shape)
    # The customer's own name is no code, even one with a digit in it (a handle given as a first name).
    named = {word.lower() for word in _customer_name(pack.first_name).split()} if codes else set()
    for code in codes:
        if code.lower() not in named:
            reasons.append(f"mentions code {code!r}, which no offer in the brief defines")
    links = find_links(text, fast, lowered)
    allowed_urls = {c.url for c in brief.ctas} if links else set()
    for m in links:
        if shown(m, text).rstrip(".,)") not in allowed_urls:
            reasons.append(f"links to {shown(m, text)!r}, which is not one of the brief's CTAs")
    return reasons


def _tone(draft: Draft, t: Text, pack: ContextPack, voice: BrandVoice, cx: _CatalogIndex) -> list[str]:
    text, shape = t.text, t.shape
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
    squeezed = " ".join(t.lowered.split())  # "don't  miss out" and "act\nnow" are the banned phrases too
    for phrase, low in cx.banned:
        if low in squeezed:
            reasons.append(f"uses banned phrase {phrase!r}")
    if shape is None or "AAAA" in shape:
        shouting = [m.group(0) for m in _SHOUT.finditer(text, t.fast) if m.group(0).isalpha()]
        if shouting:
            reasons.append(f"shouts in capitals: {', '.join(sorted(set(shouting)))}")
    if cx.sign_off not in draft.body.lower():
        reasons.append(f"missing the sign-off {voice.sign_off!r}")
    return reasons


def _surveillance(t: Text) -> list[str]:
    reasons = []
    for m in search_each(SURVEILLANCE, t):
        if m:
            reasons.append(f"surveillance phrasing {shown(m, t.text)!r}: the copy must not reveal tracking, "
                           "scores or segments")
    for m in find_clock_times(t.text, t.fast, t.lowered):
        reasons.append(f"clock time {shown(m, t.text)!r}: when the customer reads, orders or visits is tracking; "
                       "use the date")
    return reasons


def _personal_data(draft: Draft, t: Text, pack: ContextPack) -> list[str]:
    text, lowered, gate, fast = t.text, t.lowered, t.gate, t.fast
    found = []
    if not fast or "0" * 9 in text.translate(_PHONE_SHAPES):
        found.append(("a phone number", _PHONE.search(text, fast, lowered)))
    found.append(("a street address", STREET_ADDRESS.search(t)))
    if "@" in text:
        found.append(("an email address", _EMAIL.search(text, fast, lowered)))
    if "ending" in lowered or gate is None:
        found.append(("payment card details", _CARD.search(text, fast, lowered)))
    reasons = [f"contains {label} ({shown(m, text)!r}); only the first name may appear" for label, m in found if m]
    if pack.customer_id and pack.customer_id in text:
        reasons.append("contains the internal customer id")
    greeted = _greeted(straight(draft.body), pack.first_name)
    if greeted:
        reasons.append(f"greets {greeted!r}, who is not this customer")
    return reasons


def _greeted(body: str, first_name: str | None) -> str | None:
    """The name the greeting opens with when it is not the customer's whole first name ("Hi, Ben." to Anna).

    A name is capitalised, or ends the salutation ("hi ben,"); "Hi again, Anna" and "Hi there" greet no one else.
    """
    m = GREETING.match(body)
    if not m:
        return None
    rest = m.group(1)
    name = " ".join(_customer_name(first_name).split()).lower()
    while True:
        after = rest[len(name):len(name) + 1]
        if name and rest[:len(name)].lower() == name and not (after.isalnum() or after in ("_", "-", "'")):
            return None
        word = GREETED_WORD.match(rest)
        if word is None:
            return None
        if word.group(1).lower() not in NOT_NAMES:
            ends = rest[word.end(1):word.end(1) + 1] in ("", ",", "!", ".", ":")
            return word.group(1) if word.group(1)[0].isupper() or ends else None
        rest = rest[word.end():]


_WORD = re.compile(r"[a-z0-9%$']+")
# Every ASCII character _WORD does not take, to a space: on ASCII text, translate + split finds its words.
_NOT_WORD = str.maketrans({chr(c): chr(c) if _WORD.fullmatch(chr(c)) else " " for c in range(128)})


def _phrases(words: list[str], n: int) -> tuple[str, ...]:
    """Each run of n words as " w1 ... wn ": in " " + " ".join(other words) + " " exactly when the run is."""
    return tuple(" " + " ".join(words[i:i + n]) + " " for i in range(len(words) - n + 1))


@lru_cache(maxsize=4096)
def _ticket(body: str) -> tuple[tuple[str, ...], tuple[str, ...] | None, tuple[str, ...]]:
    """What the injection check needs from one ticket body, worked out once per body.

    (its 6-word phrases, the payload it asks to include or None when it gives no
    instructions, the 4-word phrases of its instruction sentences).
    """
    body = straight(body)  # as the draft is read
    six = _phrases(_WORD.findall(body.lower()), 6)
    if not INJECTION_MARKERS.search(body):
        return six, None, ()
    payload = set(find_codes(body)) | set(URL.findall(body)) | set(PERCENT.findall(body))
    payload |= set(re.findall(r"[\"“]([^\"”]{3,})[\"”]", body))
    instruction_words = _WORD.findall(" ".join(
        s for s in re.split(r"(?<=[.!?])\s+", body) if INJECTION_MARKERS.search(s) or find_codes(s)).lower())
    return six, tuple(sorted(p for p in payload if p)), _phrases(instruction_words, 4)


def _injection(lowered: str, px: _PackIndex) -> list[str]:
    reasons = []
    draft_words = None
    for fid, value in px.customer_texts:
        if not value:
            continue
        six, payload, four = _ticket(str(value))
        if not six and payload is None:
            continue
        if draft_words is None:
            words = lowered.translate(_NOT_WORD).split() if lowered.isascii() else _WORD.findall(lowered)
            draft_words = " " + " ".join(words) + " "
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


@lru_cache(maxsize=256)  # a batch shares one as-of day and one freshness day
def _age_days(as_of: str, fresh_day: str) -> int:
    return (date.fromisoformat(as_of) - date.fromisoformat(fresh_day)).days


def _staleness(pack: ContextPack, brief: Brief) -> list[str]:
    if not pack.data_fresh_at:
        return []
    age = _age_days(pack.as_of, pack.data_fresh_at[:10])
    if age > brief.max_data_staleness_days:
        return [f"newest order data is {age} days old; the brief allows {brief.max_data_staleness_days}"]
    return []


def staleness_verdict(pack: ContextPack, brief: Brief) -> Verdict:
    """The one check that reads the run's day: judged again when a cached draft is reused on a later day."""
    reasons = _staleness(pack, brief)
    return Verdict("staleness", not reasons, reasons)


def check_draft(draft: Draft, pack: ContextPack, brief: Brief, voice: BrandVoice, catalog: Catalog) -> list[Verdict]:
    """Run every guardrail on one draft; a draft may go to review only when all pass."""
    cx = _catalog_index(catalog, voice)
    px = _PackIndex(pack, brief)
    t = Text(draft.text())
    grounding, rest = _grounding(t, px, cx)
    grounding += _unknown_names(rest, t.fast, pack, cx)
    results = {
        "grounding": grounding,
        "actions": _actions(t, px),
        "citations": _citations(draft, pack, cx),
        "offer_cta": _offer_cta(draft, t, pack, brief),
        "tone": _tone(draft, t, pack, voice, cx),
        "surveillance": _surveillance(t),
        "personal_data": _personal_data(draft, t, pack),
        "injection": _injection(t.lowered, px),
        "staleness": _staleness(pack, brief),
    }
    return [Verdict(name, not reasons, reasons) for name, reasons in results.items()]

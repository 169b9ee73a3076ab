"""How the guardrails read a draft: a fast route for plain text, word pre-checks, and the
scanners that find prices, dates, numbers, percentages, codes and links.

Nothing here judges a draft; `guardrails.py` decides what is grounded or forbidden. Every
fast route finds exactly what the plain regex finds (tests/messaging/test_text_scan.py and
the ASCII/non-ASCII test in test_guardrails.py hold them to it):

    Twin      a regex and an ASCII twin (re.ASCII, lower-cased text, \\b checked by hand)
    Text      one draft's text (curly apostrophes straightened) and what every check derives from it
    straight  the text with curly apostrophes as ', so "don’t" is read as "don't"
    Gated     a regex behind two pre-checks: a whole word, then a literal, every match holds
    scan_*    prices, dates and numbers with their values, and the text with them blanked

Pure functions over strings: no database, no Dagster.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Iterable, NamedTuple, Sequence

MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august",
          "september", "october", "november", "december"]
WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
MONTH_STEMS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTH_RE = r"(jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
_ORD = r"(?:st|nd|rd|th)?"

# Weekdays are matched separately (just before the date) so these regexes start on a month or a digit.
# Repeats are spelt \d\d* rather than \d+ (the same matches): a pattern that opens on a character
# class lets the engine jump from candidate to candidate instead of trying every position.
DATE_MONTH_DAY = re.compile(rf"\b{_MONTH_RE}\.?\s+(\d{{1,2}}){_ORD}\b(?:,?\s+(\d{{4}}))?", re.I)
DATE_DAY_MONTH = re.compile(rf"\b(\d\d?){_ORD}\s+(?:of\s+)?{_MONTH_RE}\b(?:,?\s+(\d{{4}}))?", re.I)
DATE_MONTH_YEAR = re.compile(rf"\b{_MONTH_RE}\s+(\d{{4}})\b", re.I)
WEEKDAY_BEFORE = re.compile(r"(monday|tuesday|wednesday|thursday|friday|saturday|sunday),?\s+$", re.I)
DATE_ISO = re.compile(r"\b(\d\d\d\d)-(\d{2})-(\d{2})\b")
DATE_SLASH = re.compile(r"\b(\d{1,2})/(\d{1,2})(?:/(\d{2,4}))?\b")
PERCENT = re.compile(r"(\d\d*(?:\.\d+)?)\s?(?:%|per ?cent\b)", re.I)
NUMBER = re.compile(r"(\d\d*(?:[.,]\d+)*)(?:st|nd|rd|th)?\b")
URL = re.compile(r"\b(?:https?://|www\.)\S+", re.I)
CODE_CANDIDATE = re.compile(r"\b[A-Za-z0-9][A-Za-z0-9]{4,}\b")
# "7am", "6:05 a.m.", "14:00": when a customer reads or orders is tracking, never a fact in the pack.
CLOCK_TIME = re.compile(r"\b\d\d?(?:(?::\d\d)?\s?[ap]\.?m|:\d\d)\b", re.I)
# How a price is written in words in the brand's currency: (words after the amount, its code before or after it).
# Not "pounds": that is a weight too.
CURRENCY_WORDS = {"$": (("dollars", "dollar", "bucks", "buck"), "usd"), "€": (("euros", "euro"), "eur"),
                  "£": (("quid",), "gbp")}

# Capitals to "A", other letters to "a", digits to "0", the rest to " ": one cheap pass tells whether a shout
# or a code can match.
_SHAPES = str.maketrans({**{chr(c): "a" if chr(c).isalpha() else " " for c in range(128)},
                         **{c: "A" for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"}, **{c: "0" for c in "0123456789"}})
# Plain text's bytes with digits as "0" and "p" as "a", ASCII whitespace (\s on `Text.fast` text) and "." dropped:
# every clock time without a ":" ("7am", "9 p.m.") then reads "0am".
_CLOCK_SHAPES, _CLOCK_DROPPED = bytes.maketrans(b"0123456789p", b"0000000000a"), b" .\t\n\r\x0b\x0c"
# Apostrophes typed as quotation marks (’ ‘ ‛ ʼ): one character each, so every position holds.
_STRAIGHT = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201b": "'", "\u02bc": "'"})
# Word characters (\w: letters, digits, _) kept, the rest to a space: split() then finds words as \b sees them.
# (These tables map all of ASCII: str.translate is several times faster with a full table.)
_SPACE_NON_WORDS = str.maketrans({chr(c): chr(c) if chr(c).isalnum() or chr(c) == "_" else " " for c in range(128)})


# --------------------------------------------------------------------------- the fast route


def _alternatives(pattern: str) -> list[str]:
    """The top-level alternatives of a regex source: split at `|` outside groups and [classes]."""
    parts, depth, start, i, in_class = [], 0, 0, 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            i += 1
        elif in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
            i += pattern.startswith("^", i + 1)
            i += pattern.startswith("]", i + 1)  # a ] first in a class is a literal
        elif c in "()":
            depth += 1 if c == "(" else -1
        elif c == "|" and not depth:
            parts.append(pattern[start:i])
            start = i + 1
        i += 1
    return parts + [pattern[start:]]


def _at_boundary(s: str, i: int) -> bool:
    """What \\b means at s[i]: a word character on exactly one side (word: alphanumeric or _)."""
    before = i > 0 and (s[i - 1].isalnum() or s[i - 1] == "_")
    return before != (i < len(s) and (s[i].isalnum() or s[i] == "_"))


class Twin:
    """A guardrail pattern and a faster twin that finds the same matches in plain ASCII text.

    The twin runs under re.ASCII (Unicode \\b and \\w cost most of a scan), lower-case on the
    lower-cased text instead of re.IGNORECASE, and without a leading \\b, which it checks itself:
    the engine can then jump to the pattern's first characters instead of trying every position.
    On ASCII text \\s is the one class that differs (Unicode adds \\x1c-\\x1f), hence `Text.fast`.
    """

    def __init__(self, pattern: re.Pattern):
        self.exact = pattern
        alternatives = _alternatives(pattern.pattern)
        self.boundary = all(a.startswith(r"\b") for a in alternatives)
        source = "|".join(a[2:] for a in alternatives) if self.boundary else pattern.pattern
        self.lower = bool(pattern.flags & re.I)
        literal = re.sub(r"\\.", "", source)
        if self.lower and literal != literal.lower():
            raise ValueError(f"{pattern.pattern!r}: a case-insensitive twin needs a lower-case pattern")
        self.fast = re.compile(source, (pattern.flags & ~(re.I | re.U)) | re.A)

    def search(self, text: str, fast: bool, lowered: str | None = None, pos: int = 0) -> re.Match | None:
        """`exact.search(text, pos)`; a fast match indexes `lowered` when the pattern ignores case."""
        if not fast:
            return self.exact.search(text, pos)
        s = (lowered if lowered is not None else text.lower()) if self.lower else text
        m = self.fast.search(s, pos)
        while m is not None and self.boundary and not _at_boundary(s, m.start()):
            m = self.fast.search(s, m.start() + 1)
        return m

    def finditer(self, text: str, fast: bool, lowered: str | None = None) -> list[re.Match]:
        """`list(exact.finditer(text))`, with the same spans and groups (from `lowered` if case-blind)."""
        if not fast:
            return list(self.exact.finditer(text))
        if self.lower and lowered is None:
            lowered = text.lower()
        if not self.boundary:
            return list(self.fast.finditer(lowered if self.lower else text))
        out, pos = [], 0
        while (m := self.search(text, True, lowered, pos)) is not None:
            out.append(m)
            pos = max(m.end(), m.start() + 1)  # no guardrail pattern matches the empty string
        return out


def straight(text: str) -> str:
    """`text` with curly apostrophes as ' (same length): the patterns spell "you've" one way."""
    return text if text.isascii() else text.translate(_STRAIGHT)


class Text:
    """One draft's text, its curly apostrophes straightened, and what every check derives from it, worked out once."""

    __slots__ = ("text", "lowered", "gate", "fast", "words", "shape")

    def __init__(self, text: str):
        text = self.text = straight(text)
        self.lowered = text.lower()
        ascii_ = text.isascii()
        self.gate = self.lowered if ascii_ else None  # literal pre-checks are exact for ASCII text only
        # The ASCII twins apply: ASCII text without the separators \x1c-\x1f.
        self.fast = ascii_ and not ("\x1c" in text or "\x1d" in text or "\x1e" in text or "\x1f" in text)
        # The words as \b sees them, for the word pre-checks (None: run every pattern).
        self.words = set(self.gate.translate(_SPACE_NON_WORDS).split()) if ascii_ else None
        # Capitals/letters/digits/other ("AAAA" for a shout; a letter touching a digit in any code), None if not ASCII.
        self.shape = text.translate(_SHAPES) if ascii_ else None


def shown(m: re.Match, text: str) -> str:
    """The matched span as the customer reads it (a twin may have matched the lower-cased text)."""
    return text[m.start():m.end()]


# --------------------------------------------------------------------------- word pre-checks


def seen(gate: str | None, literals: Iterable[str]) -> bool:
    """Whether any literal is in `gate` (the lower-cased ASCII text); always True without a gate.

    A pattern runs only when a literal every match of it contains is present. Lower-casing
    matches what re.I matches for ASCII only, so non-ASCII text (gate None) runs every pattern.
    """
    return gate is None or any(map(gate.__contains__, literals))


class Gated:
    """A pattern that runs only when the text holds one of `words` (a whole word, lower-cased: a set
    lookup) and then one of `literals`; every match of the pattern holds both (tests check every
    phrase a guardrail pattern can match). Literals are looked for in the lower-cased text when the
    pattern ignores case, else in the text as written."""

    __slots__ = ("words", "literals", "pattern", "case_blind")

    def __init__(self, words: Iterable[str], literals: Iterable[str], pattern: re.Pattern):
        self.words = frozenset(words)
        self.literals = tuple(literals)
        self.pattern = Twin(pattern)
        self.case_blind = self.pattern.lower

    def search(self, t: Text) -> re.Match | None:
        """The first match in the draft, or None (at once, when a pre-check rules it out)."""
        return search_each((self,), t)[0]


def search_each(phrases: Sequence[Gated], t: Text) -> list[re.Match | None]:
    """`phrase.search(t)` of each phrase, in one call: the checks run dozens on every draft."""
    words, gate, text = t.words, t.gate, t.text
    found: list[re.Match | None] = []
    for phrase in phrases:
        if words is not None and words.isdisjoint(phrase.words):
            found.append(None)
        elif seen(gate if phrase.case_blind else text, phrase.literals):
            found.append(phrase.pattern.search(text, t.fast, t.lowered))
        else:
            found.append(None)
    return found


# --------------------------------------------------------------------------- blanking


def blank(text: str, matches: list[re.Match]) -> str:
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


def blank_name(text: str, lowered: str, name: str) -> tuple[str, str]:
    """Both texts with every `name` in `lowered` blanked; on ASCII, lower-casing keeps every position."""
    pieces = lowered.split(name)
    kept, at = [], 0
    for piece in pieces:
        kept.append(text[at:at + len(piece)])
        at += len(piece) + len(name)
    return " ".join(kept), " ".join(pieces)


# --------------------------------------------------------------------------- prices


@lru_cache(maxsize=4096)  # prices repeat across a batch ("25.20" in every order of a subscription)
def price_cents(value) -> int:
    """A price ("1,025.2", 25.2, "25.20") in whole cents."""
    text = str(value).replace(",", "")
    whole, _, frac = text.partition(".")
    return int(whole or 0) * 100 + int((frac + "00")[:2])


class PricePattern(NamedTuple):
    """How a price is written in the brand's currency: with its symbol, and in words (None when the symbol has
    none in CURRENCY_WORDS), which run only when one of `literals` is in the text. Each alternative has one
    group: the amount."""

    symbol: re.Pattern
    words: re.Pattern | None
    literals: tuple[str, ...]


def price_pattern(currency_symbol: str) -> PricePattern:
    """A price in the brand's currency: "$25.20", "$ 1,025", "$9.9", and in words ("14 dollars", "USD 28"),
    as much a price as with the symbol."""
    amount = r"(\d{1,6}(?:,\d{3})*(?:\.\d{1,2})?)"
    symbol = re.compile(re.escape(currency_symbol) + r"\s?" + amount)
    if currency_symbol not in CURRENCY_WORDS:
        return PricePattern(symbol, None, ())
    after, code = CURRENCY_WORDS[currency_symbol]
    words = re.compile(rf"\b{amount}\s?(?:{'|'.join(after + (code,))})\b|\b{code}\s?{amount}", re.I)
    return PricePattern(symbol, words, after + (code,))


def scan_prices(text: str, pattern: PricePattern) -> tuple[list[tuple[int, str]], str]:
    """(cents, as written) of every price `pattern` finds, and the text with them blanked."""
    found: list[tuple[int, str]] = []

    def take(m: re.Match) -> str:
        found.append((price_cents(m.group(m.lastindex)), m.group(0)))
        return " "

    text = pattern.symbol.sub(take, text)
    if pattern.words is not None and seen(text.lower() if text.isascii() else None, pattern.literals):
        text = pattern.words.sub(take, text)
    return found, text


# --------------------------------------------------------------------------- dates


class DateMention(NamedTuple):
    """A date the copy names. `year` as written (None when not given); `day` None for "March 2026";
    `weekday` (0 = Monday) and `weekday_shown` when a weekday stands just before ("Thursday, March 12")."""

    month: int
    day: int | None
    year: str | None
    shown: str
    weekday: int | None = None
    weekday_shown: str = ""


_DATE_DAY_MONTH, _DATE_ISO = Twin(DATE_DAY_MONTH), Twin(DATE_ISO)
# Month-first dates are tried only where a month name starts (lower-case twins, with their \b).
_AT_MONTH = {pattern: re.compile(pattern.pattern, re.A) for pattern in (DATE_MONTH_DAY, DATE_MONTH_YEAR)}
# Dates with a month name, in the order they are scanned: (pattern, month group, day group, year group).
_MONTH_NAME_DATES = ((DATE_MONTH_DAY, 1, 2, 3), (DATE_DAY_MONTH, 2, 1, 3), (DATE_MONTH_YEAR, 1, None, 2))
_MONTH_NO = {stem: i + 1 for i, stem in enumerate(MONTH_STEMS)}
_DAY_ENDINGS = tuple("0123456789") + ("st", "nd", "rd", "th", "of")


def _month_no(name: str) -> int:
    # casefold, not lower: re.I also matches "ſeptember", and only casefold maps "ſ" to "s".
    return _MONTH_NO[name[:3].casefold()]


def _month_matches(pattern: re.Pattern, low: str, stems: list[str]) -> list[re.Match]:
    """`pattern.finditer` on plain lower-cased text, tried only where one of the month `stems` starts."""
    starts = []
    for stem in stems:
        i = low.find(stem)
        while i >= 0:
            starts.append(i)
            i = low.find(stem, i + 1)
    out, end, twin = [], 0, _AT_MONTH[pattern]
    for start in sorted(starts):
        if start >= end and (m := twin.match(low, start)):
            out.append(m)
            end = m.end()
    return out


def _day_before_month(low: str, stems: list[str]) -> bool:
    """Whether a month stem follows a day ("12th of March"): needed for DATE_DAY_MONTH to match at all."""
    for stem in stems:
        i = low.find(stem)
        while i >= 0:
            if low[:i].rstrip().endswith(_DAY_ENDINGS):
                return True
            i = low.find(stem, i + 1)
    return False


def _between_digits(text: str, mark: str) -> bool:
    """Whether some `mark` has a digit on both sides, as "-" in every ISO date and ":" in "14:00" (a cheap
    pre-check)."""
    i = text.find(mark)
    while i >= 0:
        if text[i - 1:i].isdigit() and text[i + 1:i + 2].isdigit():
            return True
        i = text.find(mark, i + 1)
    return False


def _mention(m: re.Match, source: str, month_group: int, day_group: int | None, year_group: int) -> DateMention:
    """The date a month-name match names, with the weekday written just before it in `source`."""
    weekday, weekday_shown = None, ""
    start = m.start()
    # Every weekday name ends in "day", and re.I matches d, a, y only as themselves or capitals.
    if day_group is not None and "day" in source[max(0, start - 12):start].lower():
        before = WEEKDAY_BEFORE.search(source, max(0, start - 12), start)
        if before:
            weekday, weekday_shown = WEEKDAYS.index(before.group(1).casefold()), before.group(0)
    day = None if day_group is None else int(m.group(day_group))
    return DateMention(_month_no(m.group(month_group)), day, m.group(year_group), shown(m, source),
                       weekday, weekday_shown)


def _month_name_dates(text: str, low: str, fast: bool, stems: list[str], found: list[DateMention]) -> str:
    """March 12, 12 March, March 2026: each pass over what the one before left; returns the text left.

    On plain text, `low` (lower-cased, same positions) and the month `stems` still in it say
    where a date can start, so most of the text is never scanned.
    """
    source = text
    for pattern, month, day, year in _MONTH_NAME_DATES:
        if not fast:
            matches = list(pattern.finditer(text))
        elif pattern is DATE_DAY_MONTH:
            matches = _DATE_DAY_MONTH.finditer(text, True, low) if _day_before_month(low, stems) else []
        else:
            matches = _month_matches(pattern, low, stems)
        found += [_mention(m, source, month, day, year) for m in matches]
        text = source = blank(text, matches)
        if fast and matches:
            low = blank(low, matches)
            stems = [stem for stem in stems if stem in low]
    return text


def scan_dates(text: str, fast: bool) -> tuple[list[DateMention], str]:
    """Every date in `text` and the text with them blanked: month names first, then ISO
    (2026-03-12), then slashes (3/12/26, month first), each pass reading what the ones before left.
    `fast`: the text is plain (`Text.fast`), so the twins apply."""
    found: list[DateMention] = []
    lowered = text.lower()
    if not text.isascii():
        text = _month_name_dates(text, lowered, False, [], found)
    else:  # a month name is needed for any of them, and lower-casing finds every one in ASCII
        stems = [stem for stem in MONTH_STEMS if stem in lowered]
        if stems:
            text = _month_name_dates(text, lowered, fast, stems, found)
    if "-" in text and (not fast or _between_digits(text, "-")):
        matches = _DATE_ISO.finditer(text, fast)
        found.extend(DateMention(int(m.group(2)), int(m.group(3)), m.group(1), m.group(0)) for m in matches)
        text = blank(text, matches)
    if "/" in text:
        matches = list(DATE_SLASH.finditer(text))
        for m in matches:
            year = m.group(3)
            year = "20" + year if year and len(year) == 2 else year
            found.append(DateMention(int(m.group(1)), int(m.group(2)), year, m.group(0)))
        text = blank(text, matches)
    return found, text


# --------------------------------------------------------------------------- numbers, percentages, codes, links

_PERCENT, _NUMBER, _URL, _CODE_CANDIDATE, _CLOCK_TIME = map(Twin, (PERCENT, NUMBER, URL, CODE_CANDIDATE, CLOCK_TIME))


def find_percents(text: str, fast: bool, lowered: str | None = None) -> list[re.Match]:
    """Every "15%", "15 percent" or "15 per cent" (group 1: the number); `lowered`: the text lower-cased, if at hand."""
    if lowered is None:
        lowered = text.lower()
    if "%" in text or "percent" in lowered or "per cent" in lowered or not text.isascii():
        return _PERCENT.finditer(text, fast, lowered)
    return []


def scan_numbers(text: str, fast: bool) -> tuple[list[tuple[float | None, str]], str]:
    """(value, as written) of every number standing alone (not inside a word or an id; None when it
    does not parse), after blanking percentages, which belong to the offer; and the text without them."""
    text = blank(text, find_percents(text, fast))
    found = []
    for m in _NUMBER.finditer(text, fast):
        start = m.start()
        if start and (text[start - 1].isalnum() or text[start - 1] in "._"):
            continue  # part of a word or an id, not a number
        try:
            value = float(m.group(1).replace(",", ""))
        except ValueError:
            value = None
        found.append((value, m.group(0)))
    return found, text


# Counts spelled out are checked like digits ("you've skipped three times"). "one" is left out: it is
# as often a pronoun ("this one", "one of our roasts") as a count.
NUMBER_WORDS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
                "ten": 10, "eleven": 11, "twelve": 12}
_NUMBER_WORD = re.compile(r"\b(" + "|".join(NUMBER_WORDS) + r")\b", re.I)


def scan_number_words(text: str, words: set | None) -> list[tuple[float, str]]:
    """(value, as written) of every count spelled out in `text`; `words` (`Text.words`) skips the scan
    when the draft has none of NUMBER_WORDS."""
    if words is not None and words.isdisjoint(NUMBER_WORDS):
        return []
    return [(float(NUMBER_WORDS[m.group(1).lower()]), m.group(0)) for m in _NUMBER_WORD.finditer(text)]


def find_codes(text: str, fast: bool = False, shape: str | None = None) -> list[str]:
    """Discount-code-like tokens: 5+ letters and digits, with at least one of each, in any case (BEANS20,
    beans20), except an amount with its unit or ordinal in lower case (250ml, 100th), which is no code.
    `shape` (`Text.shape`) skips the scan when no letter touches a digit, as in every code."""
    if shape is not None and "A0" not in shape and "0A" not in shape and "a0" not in shape and "0a" not in shape:
        return []
    tokens = (m.group(0) for m in _CODE_CANDIDATE.finditer(text, fast))
    return [t for t in tokens if not t.isdigit() and not t.isalpha()
            and not (t.islower() and t.lstrip("0123456789").isalpha())]


def find_clock_times(text: str, fast: bool, lowered: str) -> list[re.Match]:
    """Every clock time ("7am", "6:05 a.m.", "14:00"); `lowered` is the text lower-cased."""
    if not fast or _between_digits(text, ":"):
        return _CLOCK_TIME.finditer(text, fast, lowered)
    if b"0am" in lowered.encode("ascii").translate(_CLOCK_SHAPES, _CLOCK_DROPPED):
        return _CLOCK_TIME.finditer(text, fast, lowered)
    return []


def find_links(text: str, fast: bool, lowered: str) -> list[re.Match]:
    """Every http(s):// or www. link; `lowered` is the text lower-cased."""
    if "http" in lowered or "www." in lowered or not text.isascii():
        return _URL.finditer(text, fast, lowered)
    return []

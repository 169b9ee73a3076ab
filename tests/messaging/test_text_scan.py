"""The scanners the guardrails read drafts with: what they find, and that the fast route finds the same."""

from __future__ import annotations

import re

import pytest

from dagster_project.messaging.text_scan import (
    CLOCK_TIME, CODE_CANDIDATE, DATE_DAY_MONTH, DATE_ISO, NUMBER, PERCENT, URL, DateMention, Gated, Text, Twin,
    find_clock_times, find_codes, price_pattern, scan_dates, scan_numbers, scan_prices, straight,
)

TEXTS = [
    "Your next bag ships Thursday, March 12, 2026 (or 12th of March).",
    "x2026-03-14 and 2026-03-14_ and (2026-03-14).", "Codes: BEANS20, 12345, ABCDE, A1B2C3D4.",
    "15% off, 15 percent, 15percentage, 2.5 %, 15 per cent, 15 PERcent", "Visit WWW.Example.com/a or https://x.io.",
    "_12th 3rd 1,000.50", "At 7am, 6:05 A.M., 14:00 or 9 p.m.; not 2:1, 12 amazing or x7am.",
]


@pytest.mark.parametrize("pattern", [DATE_DAY_MONTH, DATE_ISO, NUMBER, PERCENT, URL, CODE_CANDIDATE, CLOCK_TIME],
                         ids=lambda p: p.pattern[:30])
def test_the_fast_twin_finds_exactly_what_the_regex_finds(pattern):
    twin = Twin(pattern)

    def found(matches):  # a case-blind twin reads the lower-cased text: same spans, groups lower-cased
        return [(m.span(), tuple(g and g.lower() for g in m.groups())) for m in matches]

    for text in TEXTS:
        t = Text(text)
        assert t.fast
        assert found(twin.finditer(text, True, t.lowered)) == found(pattern.finditer(text)), text


def test_only_plain_ascii_takes_the_fast_route():
    assert Text("March 12").fast and Text("March 12").words == {"march", "12"}
    assert not Text("März 12").fast and Text("März 12").words is None and Text("März 12").gate is None
    assert not Text("March\x1c12").fast  # ASCII, but \s means more in Unicode mode than in ASCII mode


def test_curly_apostrophes_are_read_as_straight_ones_in_place():
    t = Text("You’ve ‘skipped’, don’t")
    assert t.text == straight("You’ve ‘skipped’, don’t") == "You've 'skipped', don't"
    assert t.fast and "don't" in t.lowered and len(t.text) == len("You’ve ‘skipped’, don’t")


def test_dates_come_with_their_weekday_in_the_order_they_are_checked():
    dates, rest = scan_dates("Thursday, March 12, 2026, then 14 March, then March 2026, 2026-04-01 or 4/2/26.", True)
    assert dates == [
        DateMention(3, 12, "2026", "March 12, 2026", 3, "Thursday, "),
        DateMention(3, 14, None, "14 March"),
        DateMention(3, None, "2026", "March 2026"),
        DateMention(4, 1, "2026", "2026-04-01"),
        DateMention(4, 2, "2026", "4/2/26"),
    ]
    assert not re.search(r"\d", rest) and "Thursday" in rest
    # re.I reads "ſ" as "s": the weekday is still found, not a crash.
    assert scan_dates("ſunday, March 1", False)[0][0].weekday == 6


def test_prices_and_numbers_with_their_values():
    prices, rest = scan_prices("Now $25.20, was $ 1,025.5.", price_pattern("$"))
    assert prices == [(2520, "$25.20"), (102550, "$ 1,025.5")] and "$" not in rest
    prices, rest = scan_prices("Just 14 dollars, USD 28, 28 Bucks or 3 dollar; not O12 dollars.", price_pattern("$"))
    assert prices == [(1400, "14 dollars"), (2800, "USD 28"), (2800, "28 Bucks"), (300, "3 dollar")]
    assert "O12 dollars" in rest
    assert scan_prices("28 quid, 28 dollars, £5", price_pattern("£"))[0] == [(500, "£5"), (2800, "28 quid")]
    assert scan_prices("28 dollars, ¥5", price_pattern("¥"))[0] == [(500, "¥5")]  # no words known for ¥
    numbers, rest = scan_numbers("Your 12th bag, 1,000 beans, 15% off, order O123.", True)
    assert numbers == [(12.0, "12th"), (1000.0, "1,000")] and "15" not in rest  # O123 is an id


def test_a_gated_pattern_runs_only_when_its_word_and_literal_are_there():
    gated = Gated(("noticed",), ("we noticed",), re.compile(r"\bwe noticed you\b", re.I))
    assert gated.search(Text("WE NOTICED YOU")).group(0) == "we noticed you"  # lower-cased twin, same span
    assert gated.search(Text("we noticed nothing")) is None
    assert gated.search(Text("We noticed you, Zoë")).group(0) == "We noticed you"  # not ASCII: the full regex
    street = Gated(("street",), ("Street",), re.compile(r"\b\d+ [A-Z][a-z]+ Street\b"))
    assert street.search(Text("12 Baker Street")) and not street.search(Text("12 baker street"))


def test_codes_need_a_letter_and_a_digit_in_any_case():
    text = "Use BEANS20, A1B2C3, beans20 or Beans20, not ABCDE, 12345, a 250ml cup or your 100th bag."
    assert find_codes(text) == find_codes(text, True, Text(text).shape) == ["BEANS20", "A1B2C3", "beans20", "Beans20"]
    assert find_codes("NO CODES HERE", True, Text("NO CODES HERE").shape) == []
    assert find_codes("Or 2bEans.", True, Text("Or 2bEans.").shape) == find_codes("Or 2bEans.") == ["2bEans"]


def test_clock_times_and_their_pre_check_find_what_the_regex_finds():
    t = Text("Around 7am, at 6:05 A.M. or 14:00; not 2:1, 12 amazing deals or March 12.")
    assert [m.group(0) for m in find_clock_times(t.text, t.fast, t.lowered)] == ["7am", "6:05 a.m", "14:00"]
    for text in ("At 7\tam.", "9 P.M.", "7a.m", "12:30", "Sam, 1:1, 2 a m, 3 pmx", "Same team, 28 days", "x7am 7am_"):
        t = Text(text)
        assert [m.span() for m in find_clock_times(text, t.fast, t.lowered)] == [m.span() for m in CLOCK_TIME.finditer(text)]

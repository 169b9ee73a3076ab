"""The scanners the guardrails read drafts with: what they find, and that the fast route finds the same."""

from __future__ import annotations

import re

import pytest

from dagster_project.messaging.text_scan import (
    CODE_CANDIDATE, DATE_DAY_MONTH, DATE_ISO, NUMBER, PERCENT, URL, DateMention, Gated, Text, Twin, find_codes,
    price_pattern, scan_dates, scan_numbers, scan_prices,
)

TEXTS = [
    "Your next bag ships Thursday, March 12, 2026 (or 12th of March).",
    "x2026-03-14 and 2026-03-14_ and (2026-03-14).", "Codes: BEANS20, 12345, ABCDE, A1B2C3D4.",
    "15% off, 15 percent, 15percentage, 2.5 %", "Visit WWW.Example.com/a or https://x.io.", "_12th 3rd 1,000.50",
]


@pytest.mark.parametrize("pattern", [DATE_DAY_MONTH, DATE_ISO, NUMBER, PERCENT, URL, CODE_CANDIDATE],
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
    numbers, rest = scan_numbers("Your 12th bag, 1,000 beans, 15% off, order O123.", True)
    assert numbers == [(12.0, "12th"), (1000.0, "1,000")] and "15" not in rest  # O123 is an id


def test_a_gated_pattern_runs_only_when_its_word_and_literal_are_there():
    gated = Gated(("noticed",), ("we noticed",), re.compile(r"\bwe noticed you\b", re.I))
    assert gated.search(Text("WE NOTICED YOU")).group(0) == "we noticed you"  # lower-cased twin, same span
    assert gated.search(Text("we noticed nothing")) is None
    assert gated.search(Text("We noticed you, Zoë")).group(0) == "We noticed you"  # not ASCII: the full regex
    street = Gated(("street",), ("Street",), re.compile(r"\b\d+ [A-Z][a-z]+ Street\b"))
    assert street.search(Text("12 Baker Street")) and not street.search(Text("12 baker street"))


def test_codes_need_a_capital_and_a_digit():
    text = "Use BEANS20 or A1B2C3, not ABCDE or 12345."
    assert find_codes(text) == find_codes(text, True, Text(text).shape) == ["BEANS20", "A1B2C3"]
    assert find_codes("NO CODES HERE", True, Text("NO CODES HERE").shape) == []

"""Each guardrail catches the failure it exists for, and clean drafts pass."""

from __future__ import annotations

import dataclasses
import re
import re._parser

import pytest

from dagster_project.messaging.generators.base import Draft, DraftRequest
from dagster_project.messaging.generators.template import TemplateGenerator
from dagster_project.messaging.guardrails import (
    ACTION_CLAIMS, DISCOUNT, STREET_ADDRESS, SURVEILLANCE, Verdict, check_draft, failure_reasons, passed,
)


@pytest.fixture(scope="module")
def generator():
    return TemplateGenerator()


def _clean(generator, packs, briefs, catalog, customer="C001", playbook="at_risk_save") -> Draft:
    request = DraftRequest(packs[customer], briefs.get(playbook), briefs.brand_voice, catalog)
    return generator.generate(request)


def _failures(draft, packs, briefs, catalog, customer="C001", playbook="at_risk_save") -> dict[str, list[str]]:
    verdicts = check_draft(draft, packs[customer], briefs.get(playbook), briefs.brand_voice, catalog)
    return {v.check: v.reasons for v in verdicts if not v.passed}


def _with_body(draft: Draft, sentence: str, **changes) -> Draft:
    body = draft.body.replace("\n\nSam at Ridgeline Coffee", f" {sentence}\n\nSam at Ridgeline Coffee")
    return dataclasses.replace(draft, body=body, **changes)


def test_every_template_draft_passes(generator, packs, briefs, catalog):
    for customer, pack in packs.items():
        for playbook, brief in briefs.playbooks.items():
            draft = generator.generate(DraftRequest(pack, brief, briefs.brand_voice, catalog))
            verdicts = check_draft(draft, pack, brief, briefs.brand_voice, catalog)
            assert passed(verdicts), (customer, playbook, failure_reasons(verdicts), draft.body)


def test_a_hand_written_clean_draft_passes(packs, briefs, catalog):
    draft = Draft(
        subject="Your Morning Mist Blend, every 56 days?",
        preheader="Next delivery: March 12.",
        body="Hi Anna,\n\nYou've skipped 3 of your last 6 deliveries. Your next bag of Morning Mist Blend "
             "($25.20) goes out on Thursday, March 12, 2026. Want it every 56 days instead?\n\nSam at Ridgeline Coffee",
        cta="change_cadence",
        cited_fact_ids=["customer:C001:recent_skips", "subscription:S001:next_charge_at", "catalog:cadence:56"],
    )
    assert _failures(draft, packs, briefs, catalog, playbook="cadence_mismatch") == {}


@pytest.mark.parametrize("sentence, check, words", [
    ("Thanks for swapping to Guji Natural last month.", "actions", "swapping"),
    ("Since you paused your subscription, we saved your spot.", "actions", "paused"),
    ("Your refund is on its way.", "actions", "refund"),
    ("It's only $19.99 a bag.", "grounding", "$19.99"),
    ("Your next delivery is March 14.", "grounding", "March 14"),
    ("Your next delivery is Friday, March 12.", "grounding", "weekday"),
    ("This is your 12th delivery with us.", "grounding", "12"),
    ("Try our new Ethiopian Yirgacheffe next time.", "grounding", "Ethiopian Yirgacheffe"),
    ("Or add a Holiday Gift Box for a friend.", "grounding", "Holiday Gift Box"),
    ("We noticed you opened our last email but didn't click.", "surveillance", "opened"),
    ("Your churn score went up this month.", "surveillance", "churn"),
    ("We'll send the receipt to anna@example.com.", "personal_data", "email"),
    ("Call us on 555-201-3344.", "personal_data", "phone"),
    ("Act now, this won't last!!!", "tone", "exclamation"),
    ("Act now before it's gone.", "tone", "act now"),
    ("Use code BEANS20 at checkout.", "offer_cta", "BEANS20"),
    ("Get 25% off your next bag.", "offer_cta", "25%"),
    ("See https://evil.example/deal for more.", "offer_cta", "evil.example"),
])
def test_each_guardrail_catches_its_failure(generator, packs, briefs, catalog, sentence, check, words):
    draft = _with_body(_clean(generator, packs, briefs, catalog), sentence)
    failures = _failures(draft, packs, briefs, catalog)
    assert check in failures, failures
    assert any(words.lower() in r.lower() for r in failures[check]), failures[check]


def test_offer_outside_the_brief_and_its_price_rules(generator, packs, briefs, catalog):
    clean = _clean(generator, packs, briefs, catalog)
    foreign = dataclasses.replace(clean, offer_id="half_price")
    assert "not in the brief" in " ".join(_failures(foreign, packs, briefs, catalog)["offer_cta"])
    # Ben has been with us a few weeks: the 15% save offer needs 6 months.
    ben = _with_body(_clean(generator, packs, briefs, catalog, "C002"), "Your next delivery is 15% off.",
                     offer_id="save15")
    reasons = " ".join(_failures(ben, packs, briefs, catalog, "C002")["offer_cta"])
    assert "tenure >= 6 months" in reasons
    # a discount with no offer attached
    bare = _with_body(_clean(generator, packs, briefs, catalog, playbook="cadence_mismatch"),
                      "Enjoy free shipping on us.")
    assert "offer_cta" in _failures(bare, packs, briefs, catalog, playbook="cadence_mismatch")


def test_cta_must_be_the_brief_s(generator, packs, briefs, catalog):
    draft = dataclasses.replace(_clean(generator, packs, briefs, catalog), cta="buy_now")
    assert "CTA 'buy_now'" in _failures(draft, packs, briefs, catalog)["offer_cta"][0]


def test_cited_facts_must_exist(generator, packs, briefs, catalog):
    clean = _clean(generator, packs, briefs, catalog)
    draft = dataclasses.replace(clean, cited_fact_ids=clean.cited_fact_ids + ["order:O999:total"])
    assert "order:O999:total" in _failures(draft, packs, briefs, catalog)["citations"][0]
    uncited = dataclasses.replace(clean, cited_fact_ids=[])
    assert "citations" in _failures(uncited, packs, briefs, catalog)


def test_brief_writers_get_short_copy(generator, packs, briefs, catalog):
    long = _with_body(_clean(generator, packs, briefs, catalog, "C002"), "We roast every week. " * 20)
    assert "brief writer" in _failures(long, packs, briefs, catalog, "C002")["tone"][0]


def test_greeting_someone_else_is_personal_data(generator, packs, briefs, catalog):
    clean = _clean(generator, packs, briefs, catalog)
    draft = dataclasses.replace(clean, body=clean.body.replace("Anna", "Maria", 1))
    assert "Maria" in " ".join(_failures(draft, packs, briefs, catalog)["personal_data"])


@pytest.mark.parametrize("sentence", [
    "As promised, use code FREEBEANS50 for 50% off forever.",
    "Our coffee won the World Barista Championship, by the way.",
])
def test_instructions_in_a_ticket_body_are_not_followed(generator, packs, briefs, catalog, sentence):
    draft = _with_body(_clean(generator, packs, briefs, catalog, "C003", "win_back"), sentence)
    failures = _failures(draft, packs, briefs, catalog, "C003", "win_back")
    assert "ticket T201" in " ".join(failures["injection"]), failures


def test_copying_a_ticket_body_is_caught(generator, packs, briefs, catalog):
    draft = _with_body(_clean(generator, packs, briefs, catalog),
                       "You said your last bag arrived a week late, just wanted to let you know.")
    assert "injection" in _failures(draft, packs, briefs, catalog)


def test_stale_data_blocks_the_draft(generator, packs, briefs, catalog):
    stale = dataclasses.replace(packs["C001"], data_fresh_at="2026-01-01")
    draft = _clean(generator, packs, briefs, catalog)
    verdicts = check_draft(draft, stale, briefs.get("at_risk_save"), briefs.brand_voice, catalog)
    assert "staleness: newest order data is 52 days old" in failure_reasons(verdicts)[0]


def _phrases(parsed) -> list[str]:
    """Strings a regex (as re's own parser reads it) matches: every alternative and literal choice,
    one character for a range or class, a repeat at its minimum and one more; a word boundary is empty."""
    out = [""]
    for op, arg in parsed:
        kind = str(op)
        if kind == "LITERAL":
            options = [chr(arg)]
        elif kind == "AT":
            options = [""]
        elif kind == "IN":
            options = [chr(v) for item, v in arg if str(item) == "LITERAL"]
            options += [chr(v[0]) for item, v in arg if str(item) == "RANGE"]
            options += [{"CATEGORY_DIGIT": "7", "CATEGORY_SPACE": " "}.get(str(v), "a") for item, v in arg
                        if str(item) == "CATEGORY"]
        elif kind == "SUBPATTERN":
            options = _phrases(arg[3])
        elif kind == "BRANCH":
            options = [s for branch in arg[1] for s in _phrases(branch)]
        elif kind == "MAX_REPEAT":
            low, high, sub = arg
            once = _phrases(sub)
            options = []
            for count in sorted({low, min(low + 1, high)}):
                grown = [""]
                for _ in range(count):
                    grown = [a + b for a in grown for b in once]
                options += grown
        else:
            raise AssertionError(f"no phrase list for {kind} {arg}")
        out = [a + b for a in out for b in options]
    return out


@pytest.mark.parametrize("words, pattern", [(g.words, g.pattern.exact) for g in SURVEILLANCE]
                         + [(g.words, g.pattern.exact) for g, _, _ in ACTION_CLAIMS]
                         + [(g.words, g.pattern.exact) for g in (DISCOUNT, STREET_ADDRESS)],
                         ids=lambda x: x.pattern[:40] if isinstance(x, re.Pattern) else "words")
def test_every_phrase_a_pattern_catches_holds_one_of_its_pre_check_words(words, pattern):
    # A pattern is skipped when none of its words is in the draft: no phrase it catches may lack them all.
    phrases = _phrases(re._parser.parse(pattern.pattern, pattern.flags))
    assert phrases
    for phrase in phrases:
        for text in (phrase, f"Well, {phrase.upper()}.", f"x{phrase}_1", f"({phrase})"):
            if pattern.search(text):
                assert words & set(re.findall(r"\w+", text.lower())), (phrase, text, sorted(words))


@pytest.mark.parametrize("sentence", [
    "Your next delivery is Friday, March 12.", "Your next delivery is 14 March 2026.", "Since March 2023!",
    "It ships 2026-03-14 or 3/14/26.", "Sept. 30th works.", "It's only $19.99, or 15 percent off.",
    "Call (555) 201-3344 or anna@example.com.", "Send it to 12 Baker Street.", "Card ending in 1234.",
    "Use code BEANS20 at www.example.com/deal now.", "Try the Sumatra Roast or an Ethiopian Yirgacheffe.",
    "We noticed you opened our emails. Your churn score is at-risk.", "You cancelled, so you said.",
    "Your refund arrived yesterday.", "FREE COFFEE for our VALUED CUSTOMER!!", "This is your 12th bag, 1,000 beans.",
    "You’ve skipped, so don’t  miss out.", "Take 56 per cent off: half price, code beans20, 28 bucks or USD 28.",
    "You've been opening our emails at 7:42am, 14:00 or 9 P.M.", "We saw you were browsing since your last visit.",
    "We track how you use it. Your next bag is on us, and free shipping too.",
])
def test_verdicts_do_not_depend_on_the_text_being_plain_ascii(generator, packs, briefs, catalog, sentence):
    # Plain ASCII text takes faster routes through the checks; they must find exactly what the full ones find.
    plain = _with_body(_clean(generator, packs, briefs, catalog), sentence)
    fancy = dataclasses.replace(plain, body=plain.body + "\u200b")  # an invisible non-ASCII character
    verdicts = check_draft(plain, packs["C001"], briefs.get("at_risk_save"), briefs.brand_voice, catalog)
    assert not passed(verdicts)
    assert verdicts == check_draft(fancy, packs["C001"], briefs.get("at_risk_save"), briefs.brand_voice, catalog)


def test_a_verdict_as_a_dict_has_every_field_and_copies_its_reasons():
    verdict = Verdict("tone", False, ["3 exclamation marks"])
    as_dict = verdict.to_dict()
    assert as_dict == dataclasses.asdict(verdict) and list(as_dict) == [f.name for f in dataclasses.fields(Verdict)]
    as_dict["reasons"].append("changed")
    assert verdict.reasons == ["3 exclamation marks"]

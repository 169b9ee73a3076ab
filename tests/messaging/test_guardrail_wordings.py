"""The same failures in other words: curly apostrophes, spelt-out offers and prices, tracking talk,
clock times and greetings are caught, and the ordinary wordings good drafts use still pass."""

from __future__ import annotations

import dataclasses

import pytest

from dagster_project.messaging.context_pack import Fact
from dagster_project.messaging.generators.base import DraftRequest
from dagster_project.messaging.generators.template import TemplateGenerator
from dagster_project.messaging.guardrails import check_draft, failure_reasons, passed
from tests.messaging.test_guardrails import _clean, _failures, _with_body


@pytest.fixture(scope="module")
def generator():
    return TemplateGenerator()


def _caught(generator, packs, briefs, catalog, sentence, check, words, customer="C001", playbook="cadence_mismatch"):
    draft = _with_body(_clean(generator, packs, briefs, catalog, customer, playbook), sentence)
    failures = _failures(draft, packs, briefs, catalog, customer, playbook)
    assert check in failures, (sentence, failures)
    assert any(words.lower() in r.lower() for r in failures[check]), failures[check]


@pytest.mark.parametrize("customer, sentence, check, words", [
    ("C002", "You’ve skipped a few deliveries lately.", "actions", "skipped"),
    ("C002", "You’ve paused your subscription.", "actions", "paused"),
    ("C001", "You haven’t opened our emails in a while.", "surveillance", "opened"),
    ("C001", "Don’t miss out on our new roast.", "tone", "miss out"),
    ("C001", "Don't  miss out on our new roast.", "tone", "miss out"),
    ("C001", "Act\nnow, your coffee is waiting.", "tone", "act now"),
])
def test_curly_apostrophes_and_extra_spaces_hide_no_phrase(generator, packs, briefs, catalog, customer, sentence,
                                                             check, words):
    _caught(generator, packs, briefs, catalog, sentence, check, words, customer)


@pytest.mark.parametrize("sentence, words", [
    ("Take 56 per cent off your next delivery.", "56 per cent"),
    ("Your next delivery is half price.", "half price"),
    ("Your next delivery is free.", "is free"),
    ("Your next box ships free.", "ships free"),
    ("Get a free bag with your next delivery.", "free bag"),
    ("Your next delivery is on us.", "delivery is on us"),
    ("We'll knock 28 dollars off your next delivery.", "knock 28 dollars off"),
    ("Use code beans20 at checkout.", "beans20"),
    ("Use code Beans20 at checkout.", "Beans20"),
])
def test_offer_talk_in_other_words_needs_an_offer(generator, packs, briefs, catalog, sentence, words):
    _caught(generator, packs, briefs, catalog, sentence, "offer_cta", words)


@pytest.mark.parametrize("sentence", [
    "Feel free to reply with any questions.",
    "You're free to change your schedule in your account.",
    "You can track your next delivery from your account.",
    "If anything went wrong, that's on us, and we're on it.",
    "Reply any time, we read everything.",
    "Looking at your account, your Morning Mist Blend suits a longer cycle.",
    "Hi again from the roastery.",
])
def test_ordinary_wordings_pass(generator, packs, briefs, catalog, sentence):
    draft = _with_body(_clean(generator, packs, briefs, catalog, playbook="cadence_mismatch"), sentence)
    assert _failures(draft, packs, briefs, catalog, playbook="cadence_mismatch") == {}


@pytest.mark.parametrize("sentence, words", [
    ("You've opened every one of our emails this month.", "opened every one of our emails"),
    ("We noticed you've been opening our emails again.", "opening"),
    ("You've been reading our newsletters, so here's more.", "reading our newsletters"),
    ("We saw you were browsing our decaf range.", "browsing"),
    ("You clicked on the Gooseneck Kettle link twice.", "clicked"),
    ("You last logged in on February 20.", "logged in"),
    ("Since your last visit to our site, we have new coffee.", "last visit"),
    ("You've been looking at the Gooseneck Kettle a lot.", "looking at"),
    ("We track how you use your account.", "track"),
    ("We've been tracking your clicks.", "tracking your clicks"),
    ("You usually read our emails around 7am.", "7am"),
    ("Your last order came in at 6:05am on February 20.", "6:05am"),
    ("Your order went in at 14:00 on February 20.", "14:00"),
    ("You tend to order at 9 p.m. on Sundays.", "9 p.m"),
])
def test_tracking_talk_in_other_words_is_surveillance(generator, packs, briefs, catalog, sentence, words):
    _caught(generator, packs, briefs, catalog, sentence, "surveillance", words)


def _first_line(draft, line):
    return dataclasses.replace(draft, body=line + draft.body[draft.body.index("\n"):])


@pytest.mark.parametrize("greeting, who", [("Hi, Ben.", "Ben"), ("Hello again, Maria,", "Maria"),
                                           ("Dear Ben,", "Ben"), ("hi ben,", "ben"),
                                           ("Hi Annabel,", "Annabel"), ("Hi Anna-Marie,", "Anna-Marie")])
def test_greeting_someone_else_in_other_words_is_caught(generator, packs, briefs, catalog, greeting, who):
    draft = _first_line(_clean(generator, packs, briefs, catalog), greeting)
    assert f"greets {who!r}" in " ".join(_failures(draft, packs, briefs, catalog).get("personal_data", []))


@pytest.mark.parametrize("greeting", ["Hi again, Anna,", "Hi there,", "Hello Anna!", "Good morning, Anna.", "Hi Anna",
                                      "Hello from the roastery,", "Hello from Ridgeline Coffee,"])
def test_greeting_the_customer_in_other_words_passes(generator, packs, briefs, catalog, greeting):
    draft = _first_line(_clean(generator, packs, briefs, catalog), greeting)
    assert "personal_data" not in _failures(draft, packs, briefs, catalog)


@pytest.mark.parametrize("name", ["Mary Ann", "J.R.", "Anna ", "D’Arcy", "Name3"])  # a handle with a digit is no code
def test_every_template_draft_passes_whatever_the_first_name(generator, packs, briefs, catalog, name):
    pack = packs["C002"]
    fid = f"customer:{pack.customer_id}:first_name"
    pack = dataclasses.replace(pack, first_name=name, facts={**pack.facts, fid: Fact(fid, "text", name)})
    for playbook, brief in briefs.playbooks.items():
        draft = generator.generate(DraftRequest(pack, brief, briefs.brand_voice, catalog))
        verdicts = check_draft(draft, pack, brief, briefs.brand_voice, catalog)
        assert passed(verdicts), (name, playbook, failure_reasons(verdicts), draft.body)


@pytest.mark.parametrize("sentence, written", [
    ("Your Morning Mist Blend is now just 21 dollars a bag.", "21 dollars"),
    ("Your box is now USD 28.", "USD 28"),
    ("Your box is now only 28 bucks.", "28 bucks"),
    ("Add filters for 5 dollars.", "5 dollars"),
])
def test_prices_in_words_are_checked_as_prices(generator, packs, briefs, catalog, sentence, written):
    _caught(generator, packs, briefs, catalog, sentence, "grounding", f"price {written}")


def test_a_price_in_words_that_is_a_real_price_passes(generator, packs, briefs, catalog):
    draft = _with_body(_clean(generator, packs, briefs, catalog, playbook="cadence_mismatch"),
                       "Morning Mist Blend is 14 dollars a bag.")
    assert _failures(draft, packs, briefs, catalog, playbook="cadence_mismatch") == {}


@pytest.mark.parametrize("sentence, written", [
    ("You've skipped eleven deliveries this year.", "eleven"),
    ("Nine of your orders arrived late.", "Nine"),
    ("It has been Twelve weeks since your last order.", "Twelve"),
])
def test_counts_spelled_out_are_checked_like_digits(generator, packs, briefs, catalog, sentence, written):
    _caught(generator, packs, briefs, catalog, sentence, "grounding", f"number {written}")


@pytest.mark.parametrize("sentence", [
    "Your plan brings two bags every delivery.",  # C001's plan: 2 bags
    "That's five orders of Morning Mist Blend so far.",  # 5 fulfilled orders
    "This one is our favourite.",  # "one" is as often a pronoun as a count: not checked
])
def test_counts_spelled_out_that_are_facts_pass(generator, packs, briefs, catalog, sentence):
    draft = _with_body(_clean(generator, packs, briefs, catalog, playbook="cadence_mismatch"), sentence)
    assert _failures(draft, packs, briefs, catalog, playbook="cadence_mismatch") == {}


@pytest.mark.parametrize("sentence, words", [
    ("You've skipped 5 deliveries lately.", "skipped 5"),  # 5 is C001's order count, not its skips (3)
    ("You've skipped two of your last six deliveries.", "skipped two"),
    ("You've skipped 3 of your last 8 deliveries.", "your last 8 deliveries"),
    ("Those 4 skips add up.", "4 skips"),
])
def test_a_count_of_skips_must_be_the_customers_own(generator, packs, briefs, catalog, sentence, words):
    _caught(generator, packs, briefs, catalog, sentence, "actions", words)


@pytest.mark.parametrize("sentence", ["You've skipped three of your last six deliveries.", "Those 3 skips add up."])
def test_the_customers_own_count_of_skips_passes(generator, packs, briefs, catalog, sentence):
    draft = _with_body(_clean(generator, packs, briefs, catalog, playbook="cadence_mismatch"), sentence)
    assert _failures(draft, packs, briefs, catalog, playbook="cadence_mismatch") == {}

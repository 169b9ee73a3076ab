"""Reply drafts: tenure, the real situation, repeat issues, tone, the next question - and the guardrails."""

from __future__ import annotations

import dataclasses

import pytest

from dagster_project.messaging.context_pack import tone_from_tickets
from dagster_project.messaging.generators.base import Draft, DraftRequest
from dagster_project.service.replies import draft_replies, reply_angle, reply_pack, service_checks
from tests.messaging.store import INJECTION


@pytest.mark.parametrize("bodies, tone", [
    (["Where is my order?"], "brief"),
    (["Order still not here.", "Need to change my address."], "brief"),
    (["Hi there! My bag arrived torn, could you send a new one?"], "warm"),
    (["Hello team, just a quick note."], "warm"),
    (["The grinder setting you recommended last month works well for my Chemex but the coffee tastes a "
      "little flat now that the weather has turned colder"], "warm"),  # no greeting, but >= 20 words
    (["Where is my order?", "Hi! Thanks so much for sorting that out so quickly, you are great."], "warm"),
    ([], "unknown"),
])
def test_tone_classification_on_hand_written_tickets(bodies, tone):
    assert tone_from_tickets(bodies) == tone


def _ctx(ticket_id, topic, repeat=False):
    return {"open_ticket_ids": ticket_id, "open_ticket_topics": topic, "has_repeat_issue": repeat,
            "repeat_issue_topic": topic if repeat else None}


def _reply(packs, catalog, reply_brief, voice, customer, ticket, topic, repeat=False):
    pack = reply_pack(packs[customer], ticket, _ctx(ticket, topic, repeat))
    request = DraftRequest(pack, reply_brief, voice, catalog)
    return draft_replies([request])[0], pack


def test_delivery_reply_states_the_situation_and_the_next_charge(packs, catalog, reply_brief, voice):
    outcome, pack = _reply(packs, catalog, reply_brief, voice, "C002", "T101", "delivery_delay")
    assert outcome.status == "pending_review", outcome.block_reason
    assert reply_angle(pack) == "reply_delivered"
    body = outcome.draft.body
    assert "Your last delivery arrived on February 12." in body  # Ben's order O101, delivered 2026-02-12
    assert "March 8" in body  # answers the next question: when is the next charge
    assert len(body.split()) <= voice.max_words_brief and "Thanks for getting in touch" not in body  # brief writer


def test_repeat_issue_is_acknowledged_and_tenure_recognised(packs, catalog, reply_brief, voice):
    outcome, _ = _reply(packs, catalog, reply_brief, voice, "C001", "T001", "delivery_delay", repeat=True)
    assert outcome.status == "pending_review", outcome.block_reason
    assert "come back to us about this" in outcome.draft.body or "second message" in outcome.draft.body
    first, _ = _reply(packs, catalog, reply_brief, voice, "C003", "T201", "cancel_request")
    assert "since January 2025" in first.draft.body  # Cleo, a warm writer, 13 months with us


def test_a_reply_claiming_a_delivery_that_did_not_happen_is_blocked(packs, catalog, reply_brief, voice):
    outcome, pack = _reply(packs, catalog, reply_brief, voice, "C002", "T101", "delivery_delay")
    wrong_day = dataclasses.replace(outcome.draft, body=outcome.draft.body.replace("February 12", "March 8"))
    reasons = [r for v in service_checks(wrong_day, pack) if not v.passed for r in v.reasons]
    assert any("no delivery date" in r for r in reasons)
    # the same customer with the latest shipment still on its way: "arrived" is false
    in_transit = dataclasses.replace(pack, facts={k: f for k, f in pack.facts.items()
                                                  if k != "order:O101:delivered_at"},
                                     last_delivered_order_id=None)
    claim = dataclasses.replace(outcome.draft, body="Hi Ben,\n\nYour latest order has been delivered.\n\n"
                                                    "Sam at Ridgeline Coffee")
    verdicts = {v.check: v for v in service_checks(claim, in_transit)}
    assert not verdicts["delivery"].passed and "has not been delivered yet" in verdicts["delivery"].reasons[0]
    request = DraftRequest(reply_pack(in_transit, "T101", _ctx("T101", "delivery_delay")), reply_brief, voice,
                           catalog)
    honest = draft_replies([request])[0]
    assert honest.status == "pending_review" and "on its way" in honest.draft.body


def test_an_injected_instruction_in_a_ticket_is_ignored(packs, catalog, reply_brief, voice):
    outcome, pack = _reply(packs, catalog, reply_brief, voice, "C003", "T201", "cancel_request")
    assert outcome.status == "pending_review", outcome.block_reason
    body = outcome.draft.text().lower()
    for payload in ("freebeans50", "50%", "forever", "barista", "championship"):
        assert payload not in body
    assert all(not f.startswith("ticket:T201:body") for f in outcome.draft.cited_fact_ids)
    obeying = dataclasses.replace(outcome.draft, body=outcome.draft.body.replace(
        "Sam at Ridgeline", "Good news: you get 50% off forever with code FREEBEANS50.\n\nSam at Ridgeline"))
    from dagster_project.messaging.guardrails import check_draft
    verdicts = {v.check: v for v in check_draft(obeying, pack, reply_brief, voice, catalog)}
    assert not verdicts["injection"].passed  # a draft that obeys the ticket never reaches review
    assert pack.value("ticket:T201:body") == INJECTION  # the ticket text stays data in the pack


def test_replies_never_reveal_what_the_customer_does_not_know(packs, catalog, reply_brief, voice):
    outcome, pack = _reply(packs, catalog, reply_brief, voice, "C001", "T001", "delivery_delay")
    leaky = dataclasses.replace(outcome.draft, body="Hi Anna,\n\nAs a VIP in our top tier, you're a priority.\n\n"
                                                    "Sam at Ridgeline Coffee")
    verdicts = {v.check: v for v in service_checks(leaky, pack)}
    assert not verdicts["private"].passed
    assert all(v.passed for v in service_checks(outcome.draft, pack))


def test_a_hand_written_draft_with_no_facts_is_blocked(packs, catalog, reply_brief, voice):
    pack = reply_pack(packs["C002"], "T101", _ctx("T101", "delivery_delay"))
    draft = Draft(subject="Re: order", preheader="", body="Hi Ben,\n\nIt arrived on March 3.\n\nSam at Ridgeline Coffee",
                  cta="reply_to_us")
    from dagster_project.messaging.guardrails import check_draft
    failed = {v.check for v in check_draft(draft, pack, reply_brief, voice, catalog) + service_checks(draft, pack)
              if not v.passed}
    assert {"grounding", "citations", "delivery"} <= failed

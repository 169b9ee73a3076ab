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


def test_a_december_delivery_stated_in_january_is_not_blocked(tmp_path, catalog, reply_brief, voice):
    """Early in a year the last delivery was in the previous one: "arrived on December 30" is that day,
    not a December still to come, so the true reply reaches review."""
    import duckdb

    from dagster_project.messaging.context_pack import load_context_packs
    from tests.messaging.store import write_store

    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        write_store(con)
        anna = load_context_packs(con, ["C001"], as_of="2026-01-02")["C001"]  # O003 delivered 2025-12-30
    anna = dataclasses.replace(anna, data_fresh_at="2026-01-02")  # a warehouse loaded that day
    pack = reply_pack(anna, "T001", _ctx("T001", "delivery_delay"))
    outcome = draft_replies([DraftRequest(pack, reply_brief, voice, catalog)])[0]
    assert "arrived on December 30" in outcome.draft.body
    assert outcome.status == "pending_review", outcome.block_reason
    # a day that is no delivery is still caught, whichever year it falls in
    wrong = dataclasses.replace(outcome.draft, body=outcome.draft.body.replace("December 30", "December 29"))
    assert not {v.check: v for v in service_checks(wrong, pack)}["delivery"].passed


def test_a_reply_to_a_customer_already_cancelled_does_not_offer_to_cancel_or_state_a_live_plan(
        packs, catalog, reply_brief, voice):
    """Cleo's subscription was cancelled on January 20: a cancellation reply says so (no "I can take care of
    the cancellation", no pause to suggest), and a billing reply does not call it her plan."""
    cancel, _ = _reply(packs, catalog, reply_brief, voice, "C003", "T201", "cancel_request")
    assert cancel.status == "pending_review", cancel.block_reason
    assert "already cancelled on January 20" in cancel.draft.body
    assert "take care of the cancellation" not in cancel.draft.body and "pause" not in cancel.draft.body
    billing, _ = _reply(packs, catalog, reply_brief, voice, "C003", "T201", "billing")
    assert billing.status == "pending_review", billing.block_reason
    assert "Your plan is" not in billing.draft.body and "cancelled on January 20" in billing.draft.body
    # a live subscription still gets the offer to cancel, with pausing as the alternative
    live, _ = _reply(packs, catalog, reply_brief, voice, "C001", "T001", "cancel_request")
    assert "take care of the cancellation" in live.draft.body and "cancelled on" not in live.draft.body


def test_the_next_charge_in_a_reply_is_the_agent_views_as_of_the_day(packs, catalog, reply_brief, voice):
    """Raw subscriptions hold the store's latest load: a next charge already past (a retried payment) is no
    next charge on the as_of day. The reply says what the agent view says then."""
    from datetime import date

    from dagster_project.messaging.context_pack import Fact

    stale = dataclasses.replace(packs["C001"], facts={**packs["C001"].facts, "subscription:S001:next_charge_at": Fact(
        "subscription:S001:next_charge_at", "date", "2026-02-10")})  # before as_of 2026-02-22
    ctx = {**_ctx("T9", "billing"), "subscription_id": "S001", "next_charge_date": date(2026, 3, 20)}
    outcome = draft_replies([DraftRequest(reply_pack(stale, "T9", ctx), reply_brief, voice, catalog)])[0]
    assert outcome.status == "pending_review", outcome.block_reason
    assert "next charge is on March 20" in outcome.draft.body and "February 10" not in outcome.draft.body
    # the agent view has no next charge (not active on the day): the reply names none
    ctx = {**ctx, "next_charge_date": None}
    none = draft_replies([DraftRequest(reply_pack(stale, "T9", ctx), reply_brief, voice, catalog)])[0]
    assert "next charge" not in none.draft.body.lower() and "February 10" not in none.draft.body
    # a next charge still ahead is the store's own schedule (a rescheduled one too): it stands
    ahead = reply_pack(packs["C001"], "T9", {**ctx, "next_charge_date": date(2026, 3, 5)})
    assert ahead.value("subscription:S001:next_charge_at") == "2026-03-12"
    # another subscription than the pack's current one: the pack's own day stands
    other = reply_pack(packs["C001"], "T9", {**ctx, "subscription_id": "S999", "next_charge_date": date(2026, 3, 20)})
    assert other.value("subscription:S001:next_charge_at") == "2026-03-12"

"""Reply drafts say what the customer's data says: the newest order's real state, the damage they wrote
about, and an apology for a repeat contact only when the ticket is one."""

from __future__ import annotations

import dataclasses

from dagster_project.messaging.context_pack import TICKET_TOPICS, Fact
from dagster_project.messaging.generators.base import DraftRequest
from dagster_project.service.replies import draft_replies, reply_pack

APOLOGIES = ("come back to us about this", "second message")


def _with(pack, *facts: tuple[str, str, object], drop: str = ""):
    """The pack with these facts added (id, kind, value) and those whose id starts with `drop` left out."""
    kept = {k: f for k, f in pack.facts.items() if not (drop and k.startswith(drop))}
    return dataclasses.replace(pack, facts={**kept, **{i: Fact(i, kind, value) for i, kind, value in facts}})


def _ticket(tid, topic, created, resolved=None):
    facts = [(f"ticket:{tid}:topic", "text", TICKET_TOPICS[topic]), (f"ticket:{tid}:created_at", "date", created),
             (f"ticket:{tid}:channel", "text", "email"), (f"ticket:{tid}:status", "text",
                                                         "solved" if resolved else "open")]
    return facts + ([(f"ticket:{tid}:resolved_at", "date", resolved)] if resolved else [])


def _reply(pack, ticket, topic, reply_brief, voice, catalog, repeat_flag=False):
    """Draft the reply to `ticket`, with the agent view's row as the mart writes it."""
    ctx = {"open_ticket_ids": ticket, "open_ticket_topics": topic, "has_repeat_issue": repeat_flag,
           "repeat_issue_topic": topic if repeat_flag else None}
    outcome = draft_replies([DraftRequest(reply_pack(pack, ticket, ctx), reply_brief, voice, catalog)])[0]
    assert outcome.status == "pending_review", outcome.block_reason
    return outcome.draft


def test_a_newest_order_not_shipped_yet_is_what_a_where_is_my_order_reply_says(packs, catalog, reply_brief, voice):
    """Ben's O101 arrived on February 12; his newest order, placed February 21, has not shipped. The reply
    says so, and never gives the old delivery as the latest news."""
    ben = _with(packs["C002"], ("order:O102:ordered_at", "date", "2026-02-21"),
                ("order:O102:status", "text", "fulfilled"), ("order:O102:total", "money", "14.40"))
    body = _reply(ben, "T101", "delivery_delay", reply_brief, voice, catalog).body
    assert "February 21" in body and "not shipped yet" in body
    assert "arrived on" not in body and "on its way" not in body


def test_a_newest_order_whose_payment_failed_is_not_hidden(packs, catalog, reply_brief, voice):
    """Ben's newest order failed on payment: the reply says the payment did not go through, not that his
    last delivery arrived on February 12."""
    ben = _with(packs["C002"], ("order:O102:ordered_at", "date", "2026-02-21"),
                ("order:O102:status", "text", "failed"), ("order:O102:total", "money", "14.40"))
    draft = _reply(ben, "T101", "delivery_delay", reply_brief, voice, catalog)
    assert "February 21" in draft.body and "payment" in draft.body and "didn't go through" in draft.body
    assert "arrived on" not in draft.body
    assert "order:O102:status" in draft.cited_fact_ids


def test_a_damaged_package_reply_acknowledges_the_damage_and_promises_only_a_follow_up(
        packs, catalog, reply_brief, voice):
    ben = _with(packs["C002"], *_ticket("T102", "damaged_package", "2026-02-21"))
    draft = _reply(ben, "T102", "damaged_package", reply_brief, voice, catalog)
    text = draft.text().lower()
    assert "damaged" in draft.body and "follow up" in text
    # the reply brief allows no refund, replacement or credit: the reply promises none
    for promise in ("refund", "replacement", "replace", "credit", "free"):
        assert promise not in text


def test_an_old_same_topic_ticket_is_no_repeat_contact_but_a_recent_or_open_one_is(packs, catalog, reply_brief, voice):
    """Like C00000486: delivery tickets on January 5 and 12 (a repeat then, so the agent view flags a repeat
    issue on the topic) and a new one on February 20, five weeks later: no apology for coming back."""
    anna = packs["C001"]
    old = _with(anna, *_ticket("T010", "delivery_delay", "2026-01-05", "2026-01-06"),
                *_ticket("T011", "delivery_delay", "2026-01-12", "2026-01-13"),
                *_ticket("T012", "delivery_delay", "2026-02-20"), drop="ticket:")
    body = _reply(old, "T012", "delivery_delay", reply_brief, voice, catalog, repeat_flag=True).body
    assert not any(a in body for a in APOLOGIES), body
    # the same topic eight days earlier is a repeat contact, whatever the agent view's flag says
    recent = _with(anna, *_ticket("T011", "delivery_delay", "2026-02-12", "2026-02-13"),
                   *_ticket("T012", "delivery_delay", "2026-02-20"), drop="ticket:")
    body = _reply(recent, "T012", "delivery_delay", reply_brief, voice, catalog, repeat_flag=False).body
    assert any(a in body for a in APOLOGIES), body
    # an earlier ticket on the topic still open when they wrote again, however long ago, is one too
    still_open = _with(anna, *_ticket("T011", "delivery_delay", "2026-01-02"),
                       *_ticket("T012", "delivery_delay", "2026-02-20"), drop="ticket:")
    body = _reply(still_open, "T012", "delivery_delay", reply_brief, voice, catalog).body
    assert any(a in body for a in APOLOGIES), body
    # another topic recently is no repeat of this one
    other = _with(anna, *_ticket("T011", "billing", "2026-02-18"), *_ticket("T012", "delivery_delay", "2026-02-20"),
                  drop="ticket:")
    body = _reply(other, "T012", "delivery_delay", reply_brief, voice, catalog, repeat_flag=True).body
    assert not any(a in body for a in APOLOGIES), body


def test_a_question_about_our_coffee_is_not_about_a_question_about(packs, catalog, reply_brief, voice):
    ben = _with(packs["C002"], *_ticket("T102", "product_question", "2026-02-21"))
    draft = _reply(ben, "T102", "product_question", reply_brief, voice, catalog)
    assert "about a question about" not in draft.text().lower()
    assert "question about our coffee" in draft.subject and "question about our coffee" in draft.body

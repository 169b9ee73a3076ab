"""Drafts state what the customer could see on the day they are written, in words a customer reads naturally."""

from __future__ import annotations

import dataclasses
from datetime import datetime

import pytest

from dagster_project.messaging.context_pack import CustomerRows, build_context_pack
from dagster_project.messaging.generators.base import DraftRequest
from dagster_project.messaging.generators.template import TemplateGenerator
from dagster_project.messaging.guardrails import check_draft, passed
from tests.messaging.store import AS_OF

GEN = TemplateGenerator()


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _subscription(status="active", started="2026-02-01", cancelled=None, reason=None) -> dict:
    return {"subscription_id": "S9", "product_id": "P001", "product_name": "Ridge Espresso", "plan": "single_bag",
            "status": status, "cadence_days": 14, "price": 14.40, "started_at": _ts(started),
            "cancelled_at": _ts(cancelled) if cancelled else None, "cancel_reason": reason,
            "next_charge_at": _ts("2026-03-01") if status == "active" else None, "is_gift": False}


def _order(oid: str, ordered: str, status="fulfilled", delivered: str | None = None) -> dict:
    shipped = _ts(ordered).replace(hour=18) if delivered else None
    return {"order_id": oid, "ordered_at": _ts(ordered), "status": status, "total": 14.40 if delivered else 0,
            "shipped_at": shipped, "delivered_at": _ts(delivered) if delivered else None}


def _pack(created: str, subscription: dict, orders=(), tickets=(), skips=0, window=0, customer="C900"):
    """Dana's pack as of the tiny store's day, from plain rows (orders newest first)."""
    rows = CustomerRows(customer={"customer_id": customer, "first_name": "Dana", "created_at": _ts(created)},
                        subscriptions=[subscription], orders=list(orders), tickets=list(tickets),
                        fulfilled_orders=sum(o["status"] == "fulfilled" for o in orders),
                        skips_in_window=skips, orders_in_window=window)
    return build_context_pack(rows, AS_OF, AS_OF)


def _draft(pack, briefs, catalog, playbook, tone="warm"):
    pack = dataclasses.replace(pack, tone=tone)
    request = DraftRequest(pack, briefs.get(playbook), briefs.brand_voice, catalog)
    draft = GEN.generate(request)
    verdicts = check_draft(draft, pack, request.brief, briefs.brand_voice, catalog)
    assert passed(verdicts), [v for v in verdicts if not v.passed]
    return draft


def test_a_delivery_dated_after_the_pack_s_day_is_not_a_fact_yet(packs, briefs, catalog):
    anna = packs["C001"]  # her latest order (Feb 20) is dated delivered Feb 24, after the store's Feb 22
    assert "order:O001:delivered_at" not in anna.facts and "order:O001:shipped_at" in anna.facts
    assert anna.last_delivered_order_id == "O003" and anna.value("order:O003:delivered_at") == "2025-12-30"
    draft = _draft(anna, briefs, catalog, "re_engagement")
    assert "February 24" not in draft.text() and "last delivery arrived on December 30" in draft.body


def test_resolved_and_cancelled_dates_after_the_pack_s_day_are_left_out():
    ticket = {"ticket_id": "T9", "created_at": _ts("2026-02-20 09:00"), "channel": "email", "topic": "billing",
              "status": "solved", "resolved_at": _ts("2026-02-23 09:00"), "body": "Charged twice?"}
    pack = _pack("2025-01-01", _subscription(status="cancelled", started="2025-01-01", cancelled="2026-02-25"),
                 tickets=[ticket])
    assert "ticket:T9:resolved_at" not in pack.facts and "subscription:S9:cancelled_at" not in pack.facts
    assert pack.value("ticket:T9:created_at") == "2026-02-20"


def test_a_next_charge_dated_before_the_pack_s_day_is_not_announced(briefs, catalog):
    # The latest load still holds a charge already past (a payment being retried): no "next charge" then.
    stale = {**_subscription(), "next_charge_at": _ts("2026-02-10")}  # AS_OF is 2026-02-22
    pack = _pack("2025-06-01", stale, orders=[_order("O9", "2026-02-01", delivered="2026-02-04")])
    assert "subscription:S9:next_charge_at" not in pack.facts
    assert "February 10" not in _draft(pack, briefs, catalog, "at_risk_save").text()
    ahead = _pack("2025-06-01", _subscription(), orders=[_order("O9", "2026-02-01", delivered="2026-02-04")])
    assert ahead.value("subscription:S9:next_charge_at") == "2026-03-01"


def test_the_last_delivery_is_the_latest_to_arrive_not_the_latest_ordered(briefs, catalog):
    # The newer order was held up: the older one arrived last.
    orders = [_order("O2", "2026-02-10", delivered="2026-02-12"), _order("O1", "2026-02-08", delivered="2026-02-18")]
    pack = _pack("2025-06-01", _subscription(), orders=orders)
    assert pack.last_delivered_order_id == "O1"


@pytest.mark.parametrize("tone", ["brief", "warm"])
def test_a_new_customer_without_a_subscription_is_welcomed_on_their_first_order(briefs, catalog, tone):
    # A one-time buyer in their first month is in onboarding too: no schedule to skip, and a draft
    # that cited nothing was blocked.
    rows = CustomerRows(customer={"customer_id": "C901", "first_name": None, "created_at": _ts("2026-02-10")},
                        subscriptions=[], orders=[_order("O9", "2026-02-10", delivered="2026-02-14")], tickets=[],
                        fulfilled_orders=1, skips_in_window=0, orders_in_window=0)
    draft = _draft(build_context_pack(rows, AS_OF, AS_OF), briefs, catalog, "onboarding", tone=tone)
    assert "February 14" in draft.body and "skip a delivery" not in draft.body and "Skip, swap" not in draft.body


def test_one_skip_of_one_delivery_reads_naturally(briefs, catalog):
    def pack(customer="C900", skips=1, window=1):
        return _pack("2026-01-20", _subscription(started="2026-01-20"), [_order("OA", "2026-02-10", "skipped")],
                     skips=skips, window=window, customer=customer)

    for playbook in ("cadence_mismatch", "at_risk_save"):
        for customer in ("C900", "C901", "C902", "C903"):  # other customers, other wordings
            text = _draft(pack(customer), briefs, catalog, playbook).body
            assert "1 of your last 1" not in text and "1 deliveries" not in text
    assert "You've skipped your last delivery." in _draft(pack(), briefs, catalog, "cadence_mismatch", "brief").body
    assert "skipped both of your last 2 deliveries." in _draft(pack(skips=2, window=2), briefs, catalog,
                                                                 "cadence_mismatch", "brief").body


def test_a_new_customer_s_first_bag_is_their_earliest_delivery(briefs, catalog):
    orders = [_order("O2", "2026-02-15", delivered="2026-02-18"), _order("O1", "2026-02-01", delivered="2026-02-04")]
    pack = _pack("2026-02-01", _subscription(), orders)
    draft = _draft(pack, briefs, catalog, "onboarding")
    assert "first bag arrived on February 4" in draft.body and "February 18" not in draft.body
    assert "order:O1:delivered_at" in draft.cited_fact_ids


def test_a_bundle_product_is_named_without_an_indefinite_article(briefs, catalog):
    seen = set()
    for n in range(40):
        pack = _pack("2024-01-01", _subscription(started="2024-01-01"), customer=f"C9{n:02d}")
        for tone in ("warm", "brief"):
            draft = _draft(pack, briefs, catalog, "expansion", tone)
            for product in (p.name for p in catalog.products):
                for article in ("a", "an", "A", "An"):
                    assert f"{article} {product}" not in draft.text()
            seen.add(draft.subject)
    assert len(seen) >= 3  # every subject wording was tried


def test_a_cancellation_long_ago_is_dated_with_its_year(briefs, catalog):
    old = _pack("2023-01-01", _subscription(status="cancelled", started="2023-01-01", cancelled="2024-01-20",
                                            reason="price"))
    assert "January 20, 2024" in _draft(old, briefs, catalog, "win_back").body
    recent = _pack("2025-01-01", _subscription(status="cancelled", started="2025-01-01", cancelled="2025-12-20",
                                               reason="price"))
    body = _draft(recent, briefs, catalog, "win_back").body
    assert "December 20" in body and "December 20, 2025" not in body

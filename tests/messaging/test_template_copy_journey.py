"""Template drafts say what is true of the customer's plan and the shelf today: a retired coffee is not
offered as still there, a new customer is not thanked for years, a customer who never skipped is not told
about skips, and a paused plan is not said to be delivering."""

from __future__ import annotations

import dataclasses
from datetime import datetime

import pytest

from dagster_project.messaging.context_pack import Catalog, CatalogProduct, CustomerRows, build_context_pack
from dagster_project.messaging.generators.base import DraftRequest
from dagster_project.messaging.generators.template import TemplateGenerator
from dagster_project.messaging.guardrails import check_draft, failure_reasons, passed
from dagster_project.service.save_offers import swap_candidate
from tests.messaging.store import AS_OF

GEN = TemplateGenerator()
CUSTOMERS = [f"C7{n:02d}" for n in range(24)]  # other customers, other wordings
HOUSE_ESPRESSO = CatalogProduct("P009", "House Espresso", "coffee", "15.00", active=False,
                                subscription_eligible=True)


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.fixture(scope="module")
def shelf(catalog):
    """The tiny store's catalog plus House Espresso, which the store no longer sells."""
    return Catalog(catalog.products + (HOUSE_ESPRESSO,), catalog.cadence_options)


def _pack(customer: str, created: str, status: str, product=("P001", "Ridge Espresso"), cadence=28, reason=None,
          delivered=3, skips=0, window=0):
    """A subscriber's pack as of the tiny store's day: `delivered` fulfilled orders of one coffee, the newest
    on February 1, 2026."""
    pid, name = product
    subscription = {"subscription_id": "S7", "product_id": pid, "product_name": name, "plan": "single_bag",
                    "status": status, "cadence_days": cadence, "price": 14.40, "started_at": _ts(created),
                    "cancelled_at": _ts("2026-02-01") if status == "cancelled" else None, "cancel_reason": reason,
                    # A paused plan may still carry a charge day in the source: it must not be announced.
                    "next_charge_at": None if status == "cancelled" else _ts("2026-03-15"), "is_gift": False}
    orders = [{"order_id": f"O7{n}", "ordered_at": _ts(f"2026-0{2 if n == 0 else 1}-0{n + 1}"), "status": "fulfilled",
               "total": 14.40, "shipped_at": None, "delivered_at": None} for n in range(delivered)]
    rows = CustomerRows(customer={"customer_id": customer, "first_name": "Dana", "created_at": _ts(created)},
                        subscriptions=[subscription], orders=orders,
                        product_counts=[{"product_id": pid, "name": name, "price": 14.40, "times_ordered": delivered}],
                        fulfilled_orders=delivered, skips_in_window=skips, orders_in_window=window)
    return build_context_pack(rows, AS_OF, AS_OF)


def _draft(pack, brief, briefs, catalog, tone="warm"):
    """The template draft for `pack`, which must pass every guardrail."""
    pack = dataclasses.replace(pack, tone=tone)
    draft = GEN.generate(DraftRequest(pack, brief, briefs.brand_voice, catalog))
    verdicts = check_draft(draft, pack, brief, briefs.brand_voice, catalog)
    assert passed(verdicts), (failure_reasons(verdicts), draft.text())
    return draft


def _one_angle(briefs, playbook, angle):
    brief = briefs.get(playbook)
    return brief.model_copy(update={"angles": [a for a in brief.angles if a.id == angle]})


# --------------------------------------------------------------------------- 1. win-back and a retired coffee


@pytest.mark.parametrize("tone", ["warm", "brief"])
def test_win_back_never_offers_a_coffee_the_store_no_longer_sells(briefs, shelf, tone):
    suggested = set()
    for customer in CUSTOMERS:
        pack = _pack(customer, "2025-01-01", "cancelled", product=("P009", "House Espresso"), reason="taste",
                     delivered=5)
        draft = _draft(pack, briefs.get("win_back"), briefs, shelf, tone)
        text = draft.text()
        assert "still here" not in text and "still on the shelf" not in text, text
        assert "House Espresso" not in draft.subject and "House Espresso again" not in text
        assert draft.offer_id == "welcome_back10"  # the restart offer is still made
        suggested |= {p.name for p in shelf.products if p.active and p.name in text}
    assert suggested == {"Ridge Espresso"}  # an active coffee they never had, closest in price to theirs


def test_win_back_names_a_retired_coffee_only_as_what_they_had(briefs, shelf):
    for customer in CUSTOMERS[:8]:
        for reason in ("price", "too_much_coffee"):
            pack = _pack(customer, "2025-01-01", "cancelled", product=("P009", "House Espresso"), reason=reason,
                         delivered=5)
            body = _draft(pack, briefs.get("win_back"), briefs, shelf).body
            assert "You had House Espresso for 5 deliveries, and it's no longer on our shelf." in body
            assert "Ridge Espresso" in body


def test_win_back_still_welcomes_back_a_coffee_that_is_on_the_shelf(briefs, catalog):
    pack = _pack("C700", "2025-01-01", "cancelled", reason="price", delivered=5)
    body = _draft(pack, briefs.get("win_back"), briefs, catalog).body
    assert "You had Ridge Espresso for 5 deliveries, and it's still on the shelf whenever you want it." in body


@pytest.mark.parametrize("subject, sentence", [
    ("Your House Espresso is still here", "You had House Espresso for 5 deliveries."),
    ("An easy way back", "House Espresso is still on the shelf whenever you want it."),
    ("An easy way back", "If you'd like House Espresso again, restarting takes one click."),
    ("Would you like your House Espresso back?", "Restarting takes one click."),
])
def test_grounding_fails_a_draft_offering_a_retired_coffee(briefs, shelf, subject, sentence):
    pack = _pack("C700", "2025-01-01", "cancelled", product=("P009", "House Espresso"), reason="taste", delivered=5)
    brief = briefs.get("win_back")
    clean = _draft(pack, brief, briefs, shelf)
    offered = dataclasses.replace(clean, subject=subject, body=f"Hi Dana,\n\n{sentence}\n\nSam at Ridgeline Coffee")
    verdicts = {v.check: v for v in check_draft(offered, pack, brief, briefs.brand_voice, shelf)}
    assert not verdicts["grounding"].passed
    assert any("House Espresso" in r and "no longer in the live catalog" in r for r in verdicts["grounding"].reasons)
    # Named as history, or as gone, it is grounded.
    for history in ("You had House Espresso for 5 deliveries.",
                    "We no longer roast House Espresso, but Ridge Espresso is on the shelf whenever you want it."):
        told = dataclasses.replace(clean, subject="An easy way back",
                                   body=f"Hi Dana,\n\n{history}\n\nSam at Ridgeline Coffee")
        assert passed(check_draft(told, pack, brief, briefs.brand_voice, shelf)), history


def test_a_coffee_the_catalog_does_not_list_gets_the_swap_the_save_offer_makes(briefs, catalog):
    """A subscription to a coffee the catalog has never listed: every customer's draft suggests the one
    coffee an agent's save offer would (the same rule), not one of its own choosing."""
    suggested = set()
    for customer in CUSTOMERS:
        pack = _pack(customer, "2025-01-01", "cancelled", product=("P042", "Mystery Roast"), reason="taste")
        text = _draft(pack, briefs.get("win_back"), briefs, catalog).text()
        suggested |= {p.product_id for p in catalog.products if p.subscription_eligible and p.name in text}
    agent = swap_candidate({"subscription_product_id": "P042", "products_tried": "P042"}, catalog)
    assert suggested == {agent.product_id}


# --------------------------------------------------------------------------- 2. at-risk save and tenure


def test_a_newer_customer_s_save_offer_does_not_thank_them_for_years(briefs, catalog):
    brief = _one_angle(briefs, "at_risk_save", "favourite_product")
    for customer in CUSTOMERS:
        pack = _pack(customer, "2025-06-01", "active", delivered=6)  # 8 months: new, yet past save15's 6
        body = _draft(pack, brief, briefs, catalog).body
        assert "15% off" in body
        assert "a while" not in body and "sticking with us" not in body, body
    loyal = _draft(_pack("C700", "2024-01-01", "active", delivered=6), brief, briefs, catalog).body
    assert "15% off" in loyal and "fairly new" not in loyal and "giving us a try" not in loyal


# --------------------------------------------------------------------------- 3. cadence and skips


@pytest.mark.parametrize("tone", ["warm", "brief"])
def test_a_customer_who_never_skipped_hears_nothing_about_skips(briefs, catalog, tone):
    subjects = set()
    for customer in CUSTOMERS:
        pack = _pack(customer, "2025-01-01", "active", cadence=14, delivered=6, skips=0, window=6)
        draft = _draft(pack, briefs.get("cadence_mismatch"), briefs, catalog, tone)
        assert "skip" not in draft.text().lower(), draft.text()
        subjects.add(draft.subject)
    assert "A schedule that fits how fast you drink" in subjects or "A cycle that keeps pace with your coffee" in subjects
    skipped = {_draft(_pack(c, "2025-01-01", "active", cadence=14, delivered=6, skips=3, window=6),
                      briefs.get("cadence_mismatch"), briefs, catalog, tone).subject for c in CUSTOMERS}
    assert "Fewer skips, same coffee" in skipped


# --------------------------------------------------------------------------- 4. a paused plan

DELIVERING = ("You're getting", "arrives", "ride along", "rides along", "next delivery", "Next delivery",
              "next box", "March 15", "carries on")


@pytest.mark.parametrize("playbook, angle", [("re_engagement", "check_in"), ("cadence_mismatch", "longer_cycle"),
                                             ("expansion", "curated_bundle"), ("at_risk_save", "favourite_product"),
                                             ("at_risk_save", "flexible_schedule")])
@pytest.mark.parametrize("tone", ["warm", "brief"])
def test_a_paused_plan_is_talked_about_as_paused(briefs, catalog, playbook, angle, tone):
    for customer in CUSTOMERS[:12]:
        pack = _pack(customer, "2025-01-01", "paused", delivered=4, skips=2, window=6)
        draft = _draft(pack, _one_angle(briefs, playbook, angle), briefs, catalog, tone)
        text = draft.text()
        assert not [words for words in DELIVERING if words in text], text
        assert "paused" in draft.body and "restart" in text, text
        assert "subscription:S7:status" in draft.cited_fact_ids


@pytest.mark.parametrize("tone", ["warm", "brief"])
def test_a_paused_loyal_customer_s_thank_you_waits_for_the_restart(briefs, catalog, tone):
    pack = _pack("C700", "2024-01-01", "paused", delivered=4)
    draft = _draft(pack, briefs.get("high_ltv_recovery"), briefs, catalog, tone)
    assert "next delivery" not in draft.text().lower() and "first delivery back, when you restart, is 15% off" in draft.body


def test_an_active_plan_still_hears_about_its_next_delivery(briefs, catalog):
    pack = _pack("C700", "2025-01-01", "active", delivered=4)
    assert "You're getting one bag of Ridge Espresso every 28 days" in _draft(
        pack, briefs.get("re_engagement"), briefs, catalog).body
    assert "ride along with your delivery on March 15" in _draft(pack, briefs.get("expansion"), briefs, catalog).text()


# --------------------------------------------------------------------------- 5. an angle without a template


@pytest.mark.parametrize("status", ["active", "paused"])
def test_an_angle_without_a_template_still_carries_the_briefs_offer(briefs, catalog, status):
    """A marketer's new angle is drafted with the generic template: it used to drop the offer."""
    brief = briefs.get("high_ltv_recovery")
    new = brief.angles[0].model_copy(update={"id": "loyal_thanks_new"})
    brief = brief.model_copy(update={"angles": [new]})
    assert GEN.generic_angles(type(briefs)(folder=briefs.folder, brand_voice=briefs.brand_voice,
                                           playbooks={"high_ltv_recovery": brief})) == ["high_ltv_recovery.loyal_thanks_new"]
    for customer in CUSTOMERS[:6]:
        draft = _draft(_pack(customer, "2024-01-01", status, delivered=9), brief, briefs, catalog)
        assert draft.offer_id is not None and "% off" in draft.text(), draft.text()
        if status == "paused":
            assert "You're getting" not in draft.text() and "when you restart" in draft.text().lower()

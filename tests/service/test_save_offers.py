"""Save offers: the pattern picks the offer, value picks how generous, price rules always hold."""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb
import pytest

from dagster_project.service import save_offers
from dagster_project.service.save_offers import CancelTrigger, recommend

NOW = datetime(2026, 2, 22, 10)


def ctx(**kw) -> dict:
    """A customer_service_context row: an active Ridge Espresso subscriber, 2 years, 20 orders."""
    base = {"customer_id": "C9", "tenure_months": 24, "lifetime_fulfilled_orders": 20, "lifetime_value_tier": "mid",
            "high_ltv": False, "subscription_status": "active", "cadence_days": 14, "recent_cycles": 6,
            "recent_cycle_skips": 0, "consecutive_skips": 0, "subscription_product_id": "P001",
            "subscription_product_name": "Ridge Espresso", "products_tried": "P001,P002", "last_cancel_reason": None}
    return {**base, **kw}


def trigger(reason=None, tid="portal:E1", customer="C9", at=NOW) -> CancelTrigger:
    return CancelTrigger(tid, "portal_cancel_attempt", customer, at, reason)


def test_cadence_mismatch_gets_a_longer_cycle(save_brief, catalog):
    rec = recommend(trigger(), ctx(recent_cycle_skips=3), save_brief, catalog)
    assert rec.pattern == "cadence_mismatch" and rec.option.id == "longer_cycle"
    assert rec.option.to_cadence_days == 28  # took 3 of 6 deliveries on 14 days
    assert rec.option.cta == "change_cadence" and "skipped 3 of the last 6" in rec.reason
    stated = recommend(trigger("too_much_coffee"), ctx(), save_brief, catalog)
    assert stated.option.id == "longer_cycle" and "said 'too much coffee'" in stated.reason


def test_price_sensitive_gets_a_discount_within_price_rules(save_brief, catalog):
    rec = recommend(trigger("price"), ctx(), save_brief, catalog)
    assert rec.option.id == "save10" and rec.option.percent_off == 10
    offer = save_brief.offer(rec.option.offer_id)
    assert rec.option.percent_off <= offer.rules.max_percent_off
    # one order: below save10's min_orders, so no discount at all - a pause instead
    new = recommend(trigger("price"), ctx(tenure_months=1, lifetime_fulfilled_orders=1), save_brief, catalog)
    assert new.option.id == "pause_instead" and not any(o.percent_off for o in new.allowed)
    rule = save_brief.offer("save10").rules  # the agent reads why there is no discount
    assert (f"no discount allowed yet (save10 needs {rule.min_orders} orders and {rule.min_tenure_months} months"
            in new.reason and "they have 1 and 1)" in new.reason)


def test_high_ltv_gets_the_more_generous_resolution(save_brief, catalog):
    rec = recommend(trigger("price"), ctx(high_ltv=True, lifetime_value_tier="high"), save_brief, catalog)
    assert rec.option.id == "loyal_save20" and "high" in rec.reason
    no_reason = recommend(trigger(), ctx(high_ltv=True, lifetime_value_tier="high"), save_brief, catalog)
    assert no_reason.option.id == "loyal_save20"
    # generous offers need the tenure and orders of their price rules, even for high-LTV
    young = recommend(trigger("price"), ctx(high_ltv=True, tenure_months=5), save_brief, catalog)
    assert young.option.id == "save10"
    assert recommend(trigger(), ctx(), save_brief, catalog).option.id == "pause_instead"


def test_product_fatigue_swaps_to_a_coffee_not_tried(save_brief, catalog):
    rec = recommend(trigger("taste"), ctx(), save_brief, catalog)
    assert rec.pattern == "product_fatigue" and rec.option.id == "product_swap"
    assert rec.option.product_id == "P003"  # the only active coffee not yet had (P001, P002 tried)
    shown = recommend(trigger(), ctx(products_tried="P001"), save_brief, catalog)
    assert shown.pattern == "product_fatigue" and "over 20 deliveries" in shown.reason
    generous = recommend(trigger("taste"), ctx(high_ltv=True), save_brief, catalog)
    assert generous.option.id == "product_swap_free_bag" and generous.option.product_id == "P003"
    tried_all = recommend(trigger("taste"), ctx(products_tried="P001,P002,P003"), save_brief, catalog)
    assert tried_all.option.id == "pause_instead"


def test_agent_may_only_pick_allowed_options(save_brief, catalog):
    rec = recommend(trigger("price"), ctx(), save_brief, catalog)
    allowed = [o.id for o in rec.allowed]
    assert save_offers.check_agent_choice(allowed, "pause_instead") is None
    assert "loyal_save20" not in allowed  # not high-LTV
    assert "not allowed" in save_offers.check_agent_choice(allowed, "loyal_save20")


def test_holdout_is_random_stable_and_sticky(save_brief):
    arms = [save_offers.assign_arm(f"portal:E{i}", 0.1) for i in range(4000)]
    assert 0.08 < arms.count("holdout") / len(arms) < 0.12
    assert save_offers.assign_arm("portal:E7", 0.1) == arms[7]
    # a second attempt within the window keeps the first arm and adds no assignment
    first = recommend(trigger(tid="portal:A"), ctx(), save_brief, catalog=_catalog())
    again = recommend(trigger(tid="portal:B", at=NOW + timedelta(days=3)), ctx(), save_brief, catalog=_catalog())
    rows = save_offers.assign_arms([again, first], {}, save_brief)
    assert len(rows) == 1 and again.arm == first.arm and again.assignment_id == first.assignment_id
    assert rows[0]["playbook_id"] == "save_offer" and rows[0]["campaign_id"] == "pb-save_offer-2026-02-22"


def _catalog():
    from dagster_project.messaging.context_pack import Catalog, CatalogProduct
    return Catalog((CatalogProduct("P001", "Ridge Espresso", "coffee", "16.00", True, True),))


def test_recorded_append_only_with_assignments_and_choices(save_brief, catalog, tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    recs = [recommend(trigger("price", tid=f"portal:E{i}", customer=f"C{i}"), ctx(customer_id=f"C{i}"),
                      save_brief, catalog) for i in range(40)]
    counts = save_offers.record_recommendations(con, recs, save_brief, "2026-02-22", NOW)
    assert counts["recommended"] == 40 and counts["new_assignments"] == 40
    again = save_offers.record_recommendations(con, recs, save_brief, "2026-02-22", NOW)
    assert again["recommended"] == 0 and again["already_recorded"] == 40
    assert con.execute("select count(*) from nextbest.assignments where playbook_id = 'save_offer'").fetchone()[0] == 40
    treated = next(r for r in recs if r.arm == "treatment")
    choice = save_offers.record_agent_choice(con, treated.recommendation_id, "pause_instead", "maria", "asked for it")
    assert choice["recommended_option_id"] == "save10"
    with pytest.raises(ValueError, match="not allowed"):
        save_offers.record_agent_choice(con, treated.recommendation_id, "loyal_save20", "maria")
    assert con.execute("select count(*) from nextbest.save_offer_choices").fetchone()[0] == 1


def test_product_fatigue_counts_coffees_not_add_ons(save_brief, catalog):
    """Twenty deliveries of one coffee and a pack of filters once is still one coffee: tired of it, offer a swap."""
    rec = recommend(trigger(), ctx(products_tried="P001,P006"), save_brief, catalog)  # P006: Paper Filters
    assert rec.pattern == "product_fatigue" and rec.option.id == "product_swap", rec.reason
    assert "has had only Ridge Espresso over 20 deliveries" in rec.reason
    # two coffees are not fatigue, whatever else they bought
    assert recommend(trigger(), ctx(products_tried="P001,P002,P006"), save_brief, catalog).pattern == "no_pattern"


def test_a_save_brief_in_the_briefs_folder_that_lacks_an_offer_is_named_in_the_error(tmp_path):
    """A marketer's own save_offer.yaml without the generous offers: the error names their file, not ours."""
    import shutil

    from dagster_project.messaging.briefs import BRIEFS_DIR, BriefError

    folder = tmp_path / "briefs"
    shutil.copytree(BRIEFS_DIR, folder)
    text = save_offers.SAVE_BRIEF_FILE.read_text()
    (folder / "save_offer.yaml").write_text(text[:text.index("  - id: free_bag")])
    with pytest.raises(BriefError) as error:
        save_offers.load_save_brief(folder)
    assert str(folder / "save_offer.yaml") in str(error.value) and "free_bag" in str(error.value)
    assert str(save_offers.SAVE_BRIEF_FILE) not in str(error.value)


def test_a_paused_subscriber_is_offered_to_stay_paused_not_to_pause(save_brief, catalog):
    rec = recommend(trigger(), ctx(subscription_status="paused"), save_brief, catalog)
    assert rec.option.id == "pause_instead" and rec.option.label == "Keep it paused instead of cancelling"
    assert recommend(trigger(), ctx(), save_brief, catalog).option.label == "Pause instead of cancelling"


@pytest.mark.parametrize("status", ["cancelled", None])
def test_a_customer_without_a_live_subscription_gets_no_save_offer(save_brief, catalog, status):
    """Already cancelled, or a one-time buyer who never subscribed: nothing to save, no offer, no holdout."""
    gone = ctx(subscription_status=status, subscription_product_id=None if status is None else "P001")
    assert not save_offers.has_live_subscription(gone)
    with pytest.raises(ValueError, match="has no live subscription"):
        recommend(trigger("price"), gone, save_brief, catalog)

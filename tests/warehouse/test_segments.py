"""Segments, tags and context of hand-built customers whose answers are known."""

from __future__ import annotations

from datetime import timedelta

import duckdb

from tests.warehouse import handbuilt

D1 = handbuilt.ANCHOR


def test_every_handbuilt_customer_lands_in_exactly_its_segments(handbuilt_warehouse):
    assert handbuilt_warehouse.segments() == handbuilt.SEGMENTS_AT_ANCHOR


def test_segment_reasons_are_plain_words(handbuilt_warehouse):
    reasons = {
        r["customer_id"]: r["reason"]
        for r in handbuilt_warehouse.rows("select customer_id, reason from analytics.customer_segments")
    }
    assert reasons["HB-CADENCE"] == "Skipped 3 of the last 6 deliveries on a 14-day cycle"
    assert reasons["HB-EXPAND"] == f"Added a one-time item on {D1 - timedelta(days=5)}"
    assert reasons["HB-NEW"] == "Joined 7 days ago"
    assert reasons["HB-WINBACK"].startswith(f"Cancelled on {D1 - timedelta(days=20)} (price)")
    assert "fell to 0 in the last 30 days" in reasons["HB-FADING"]


def test_tags(handbuilt_warehouse):
    wh = handbuilt_warehouse
    advocate, gift, fading, brief = (
        wh.tags(f"HB-{c}") for c in ("ADVOCATE", "GIFT", "FADING", "BRIEF")
    )
    assert advocate["brand_advocate"] and advocate["high_ltv"]
    assert gift["gift_recipient"] and not gift["brand_advocate"]  # 100 days is not long
    assert fading["at_risk"] and not fading["brand_advocate"]
    assert not any(brief[t] for t in ("high_ltv", "gift_recipient", "at_risk", "brand_advocate"))
    high = wh.rows("select customer_id from analytics.customer_tags where high_ltv")
    assert [r["customer_id"] for r in high] == ["HB-ADVOCATE"]  # top 10% of 10 customers


def test_tone_is_learned_from_the_customers_own_tickets(handbuilt_warehouse):
    wh = handbuilt_warehouse
    assert wh.context("HB-ADVOCATE")["tone_preference"] == "warm"
    assert wh.context("HB-BRIEF")["tone_preference"] == "brief"
    assert wh.context("HB-NEW")["tone_preference"] == "unknown"


def test_repeat_issue_open_ticket_and_payment_failure(handbuilt_warehouse):
    brief = handbuilt_warehouse.context("HB-BRIEF")
    assert brief["has_repeat_issue"] and brief["repeat_issue_topic"] == "delivery_delay"
    assert brief["tickets_total"] == 2 and brief["open_tickets"] == 1
    assert brief["failed_payments_last_90d"] == 1
    assert brief["last_payment_failure_reason"] == "card_declined"
    assert brief["payment_health"] == "recovered"
    advocate = handbuilt_warehouse.context("HB-ADVOCATE")
    assert not advocate["has_repeat_issue"] and advocate["avg_csat"] == 5.0


def test_context_facts_a_message_would_cite(handbuilt_warehouse):
    wh = handbuilt_warehouse
    cadence = wh.context("HB-CADENCE")
    assert cadence["subscription_status"] == "active"
    assert cadence["plan"] == "single_bag" and cadence["cadence_days"] == 14
    assert cadence["favourite_product_name"] == "House Blend"
    assert cadence["tenure_days"] == 400 and cadence["tenure_months"] == 13
    assert cadence["recent_cycles"] == 6 and cadence["recent_cycle_skips"] == 3
    # the cycle charged on D1 is the latest; the next one is a cadence later
    assert cadence["last_order_date"] == D1 and cadence["next_charge_date"] == D1 + timedelta(days=14)

    advocate = wh.context("HB-ADVOCATE")
    assert advocate["favourite_product_name"] == "Ethiopia Yirgacheffe"
    # 29 fulfilled deliveries at 36.00 plus one gift order of 20 x 50.00
    assert advocate["lifetime_value"] == 29 * 36 + 1000
    assert advocate["last_delivery_status"] == "delivered"

    expand = wh.context("HB-EXPAND")
    assert expand["one_time_addons_last_30d"] == 1
    assert expand["last_one_time_addon_date"] == D1 - timedelta(days=5)

    fading = wh.context("HB-FADING")
    assert fading["engagement_last_30d"] == 0 and fading["engagement_prior_90d"] >= 50
    assert fading["engagement_trend"] == "falling"

    winback = wh.context("HB-WINBACK")
    assert winback["subscription_status"] == "cancelled" and not winback["is_subscriber"]
    assert winback["last_cancel_reason"] == "price" and winback["next_charge_date"] is None

    dormant = wh.context("HB-DORMANT")
    assert dormant["subscription_status"] == "paused" and dormant["days_since_last_activity"] == 150

    assert wh.context("HB-GIFT")["is_gift"]


def test_marts_live_in_the_analytics_schema(handbuilt_warehouse):
    tables = {
        (r["table_schema"], r["table_name"])
        for r in handbuilt_warehouse.rows(
            "select table_schema, table_name from information_schema.tables"
        )
    }
    for name in ("customer_context", "customer_segments", "customer_segment_history", "customer_tags"):
        assert ("analytics", name) in tables
    assert ("staging", "stg_raw__customers") in tables
    assert ("intermediate", "int_orders_per_cycle") in tables


def test_the_cadence_mismatch_recount_catches_a_member_who_did_not_skip(handbuilt_warehouse, tmp_path_factory):
    # It passed in the fixture's build (HB-CADENCE skipped 3 of 6).
    wh = handbuilt_warehouse.copy(tmp_path_factory, "recount")
    with duckdb.connect(str(wh.path)) as con:  # HB-ADVOCATE never skips: put them in the segment anyway
        con.execute("insert into analytics.customer_segments select * replace ('HB-ADVOCATE' as customer_id) "
                    "from analytics.customer_segments where customer_id = 'HB-CADENCE' and segment = 'cadence_mismatch'")
    failed = wh.dbt("test", "--select", "assert_cadence_mismatch_skipped_enough", as_of=D1)
    assert failed.returncode != 0 and "Got 1 result" in failed.stdout, failed.stdout[-3000:]


def test_segments_built_alone_at_another_as_of_than_the_context_stop(handbuilt_warehouse, tmp_path_factory):
    """`--select customer_segments+` at another day applied that day's rules to the context of the day
    it was built at; now the build says so and leaves the segments and their history as they were."""
    wh = handbuilt_warehouse.copy(tmp_path_factory, "other_day")
    before = wh.rows("select count(*) as n from analytics.customer_segment_history")
    later = D1 + timedelta(days=30)
    result = wh.dbt("build", "--select", "customer_segments+", as_of=later)
    assert result.returncode != 0
    assert f"customer_context is for {D1.isoformat()} but this build's as_of is {later.isoformat()}" in result.stdout
    assert wh.rows("select count(*) as n from analytics.customer_segment_history") == before
    assert wh.dbt("run", "--select", "customer_segments", as_of=D1).returncode == 0  # its own day: fine

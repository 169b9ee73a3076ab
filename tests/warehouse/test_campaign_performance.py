"""campaign_performance: a planted effect is measured and covered by its 95% interval, the
global holdout appears only where assigned, and a store without campaigns builds empty."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import duckdb
import numpy as np
import pandas as pd
import pytest

from dagster_project.ingest import contract
from tests.warehouse.dbt_warehouse import new_warehouse

AS_OF = date(2026, 7, 1)
EXPANSION = "pb-expansion-2026-03-02"
SAVE = "pb-at_risk_save-2026-04-01"
RECENT = "pb-re_engagement-2026-06-20"


def insert(con, table: str, rows: list[dict]) -> None:
    if not rows:
        return
    con.register("_rows", pd.DataFrame(rows))
    con.execute(f"insert into {table} by name select * from _rows")
    con.unregister("_rows")


def planted_store(con) -> None:
    """Three campaigns with known outcomes.

    expansion (goal: add-on within 30 days): treated 300/1000, holdout 50/500, global holdout
    20/200; every add-on is a 20.00 order. Add-ons outside the window do not count.
    at_risk_save (goal: no cancellation in 60 days): treated 180/200 kept, holdout 70/100;
    an upgrade is not a cancellation. re_engagement (login in 30 days) started 11 days
    before as_of: its window is not over.
    """
    contract.create_raw_schema(con)
    con.execute("create schema if not exists nextbest")
    con.execute("""create table nextbest.assignments (assignment_id varchar, campaign_id varchar,
                   playbook_id varchar, customer_id varchar, assigned_at timestamp, arm varchar, message_id varchar)""")
    assignments, orders, items, subs, portal, email = [], [], [], [], [], []

    def assign(campaign, playbook, customer, arm, at):
        message = f"M-{campaign}-{customer}" if arm == "treatment" else None
        assignments.append({"assignment_id": f"A-{campaign}-{customer}", "campaign_id": campaign,
                            "playbook_id": playbook, "customer_id": customer, "assigned_at": at, "arm": arm,
                            "message_id": message})
        if message:
            for n, kind in enumerate(("sent", "delivered")):
                email.append({"event_id": f"E-{message}-{kind}", "customer_id": customer, "campaign_id": campaign,
                              "message_id": message, "event_type": kind, "occurred_at": at + timedelta(minutes=n)})

    def addon(customer, at):
        order = f"O-{customer}-{at:%Y%m%d%H}"
        orders.append({"order_id": order, "customer_id": customer, "subscription_id": None, "ordered_at": at,
                       "status": "fulfilled", "total": 20.0})
        items.append({"order_id": order, "product_id": "P020", "quantity": 1, "unit_price": 20.0, "is_one_time": True})

    start = datetime(2026, 3, 2, 9)
    for arm, prefix, n, converted in (("treatment", "T", 1000, 300), ("holdout", "H", 500, 50),
                                      ("global_holdout", "G", 200, 20)):
        for i in range(n):
            customer = f"{prefix}{i}"
            assign(EXPANSION, "expansion", customer, arm, start)
            if i < converted:
                addon(customer, start + timedelta(days=5))
    addon("T999", start + timedelta(days=40))  # after the window
    addon("H499", start - timedelta(hours=1))  # before the assignment
    for i in range(400):  # opens of the treated message
        email.append({"event_id": f"E-open-{i}", "customer_id": f"T{i}", "campaign_id": EXPANSION,
                      "message_id": f"M-{EXPANSION}-T{i}", "event_type": "open",
                      "occurred_at": start + timedelta(hours=2)})

    save = datetime(2026, 4, 1, 9)
    for arm, prefix, n, lost in (("treatment", "S", 200, 20), ("holdout", "K", 100, 30)):
        for i in range(n):
            customer = f"{prefix}{i}"
            assign(SAVE, "at_risk_save", customer, arm, save)
            cancelled = save + timedelta(days=10) if i < lost else None
            subs.append({"subscription_id": f"SUB-{customer}", "customer_id": customer, "product_id": "P001",
                         "plan": "single_bag", "status": "cancelled" if cancelled else "active", "cadence_days": 28,
                         "price": 18.0, "started_at": datetime(2025, 1, 1), "cancelled_at": cancelled,
                         "cancel_reason": "price" if cancelled else None, "is_gift": False})
    subs.append({"subscription_id": "SUB-S199-old", "customer_id": "S199", "product_id": "P001", "plan": "single_bag",
                 "status": "cancelled", "cadence_days": 28, "price": 18.0, "started_at": datetime(2024, 1, 1),
                 "cancelled_at": save + timedelta(days=3), "cancel_reason": "upgraded", "is_gift": False})

    recent = datetime(2026, 6, 20, 9)
    for arm, prefix, n, logged_in in (("treatment", "R", 100, 40), ("holdout", "Q", 25, 5)):
        for i in range(n):
            customer = f"{prefix}{i}"
            assign(RECENT, "re_engagement", customer, arm, recent)
            if i < logged_in:
                portal.append({"event_id": f"PE-{customer}", "customer_id": customer, "event_type": "login",
                               "occurred_at": recent + timedelta(days=3), "properties": "{}"})

    insert(con, "nextbest.assignments", assignments)
    insert(con, "raw.orders", orders)
    insert(con, "raw.order_items", items)
    insert(con, "raw.subscriptions", subs)
    insert(con, "raw.portal_events", portal)
    insert(con, "raw.email_events", email)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    wh = new_warehouse(tmp_path_factory, "campaigns")
    with duckdb.connect(str(wh.path)) as con:
        planted_store(con)
    wh.build(AS_OF, "--select", "+campaign_performance", "--indirect-selection", "cautious")
    return wh


def row(wh, campaign: str, control_arm: str = "holdout") -> dict:
    (found,) = wh.rows("select * from analytics.campaign_performance where campaign_id = ? and control_arm = ?",
                       campaign, control_arm)
    return found


def test_planted_lift_is_measured_and_inside_its_confidence_interval(planted):
    r = row(planted, EXPANSION)
    assert (r["treated_customers"], r["treated_conversions"]) == (1000, 300)
    assert (r["control_customers"], r["control_conversions"]) == (500, 50)
    assert r["goal"] == "addon_30d" and r["window_complete"]
    assert r["conversion_lift"] == pytest.approx(0.20)
    assert r["conversion_lift_ci_low"] < 0.20 < r["conversion_lift_ci_high"]
    assert r["conversion_lift_ci_low"] > 0.15 and r["conversion_lift_ci_high"] < 0.25  # about +-0.04
    assert r["is_significant"]
    assert r["conversion_relative_lift"] == pytest.approx(2.0)  # 30% vs 10%
    assert r["conversion_relative_lift_ci_low"] < 2.0 < r["conversion_relative_lift_ci_high"]
    # revenue: 20.00 per converted customer in the window
    assert float(r["treated_revenue"]) == 6000.0 and float(r["control_revenue"]) == 1000.0
    assert r["revenue_lift_per_customer"] == pytest.approx(4.0)
    assert r["revenue_lift_ci_low"] < 4.0 < r["revenue_lift_ci_high"]
    # the funnel: every treated customer got the message, nobody in the holdout did
    assert (r["treated_sends"], r["treated_delivered"], r["treated_opens"]) == (1000, 1000, 400)
    assert (r["control_sends"], r["control_opens"]) == (0, 0)


def test_retention_goal_counts_cancellations_but_not_upgrades(planted):
    r = row(planted, SAVE)
    assert r["goal"] == "retained_60d"
    assert (r["treated_conversions"], r["control_conversions"]) == (180, 70)
    assert r["conversion_lift"] == pytest.approx(0.20)
    assert r["conversion_lift_ci_low"] < 0.20 < r["conversion_lift_ci_high"]


def test_global_holdout_row_only_where_the_campaign_has_one(planted):
    arms = {(x["campaign_id"], x["control_arm"]) for x in planted.rows(
        "select campaign_id, control_arm from analytics.campaign_performance")}
    assert arms == {(EXPANSION, "holdout"), (EXPANSION, "global_holdout"), (SAVE, "holdout"), (RECENT, "holdout")}
    g = row(planted, EXPANSION, "global_holdout")
    assert (g["control_customers"], g["control_conversions"]) == (200, 20)
    assert g["conversion_lift"] == pytest.approx(0.20)


def test_a_campaign_still_in_its_goal_window_is_marked_provisional(planted):
    r = row(planted, RECENT)
    assert r["goal"] == "login_30d" and not r["window_complete"]
    assert (r["treated_conversions"], r["control_conversions"]) == (40, 5)


def test_a_store_without_campaigns_builds_an_empty_mart(tmp_path_factory):
    wh = new_warehouse(tmp_path_factory, "no_campaigns")
    with duckdb.connect(str(wh.path)) as con:
        contract.create_raw_schema(con)  # no nextbest.assignments at all
    wh.build(AS_OF, "--select", "+campaign_performance", "--indirect-selection", "cautious")
    assert wh.rows("select count(*) as n from analytics.campaign_performance") == [{"n": 0}]


simulator = pytest.importorskip("dagster_project.ingest.simulator")


def test_simulated_campaign_effects_are_recovered(tmp_path_factory):
    """On the simulator's past campaigns, the 95% intervals cover the planted uplift (read from
    sim_truth, which only tests may read) for most campaigns, and the effects show as significant."""
    wh = new_warehouse(tmp_path_factory, "simulated_campaigns")
    end = date(2026, 6, 30)
    with duckdb.connect(str(wh.path)) as con:
        simulator.simulate(con, customers=3000, months=12, seed=11, end_date=end)
    wh.build(end, "--select", "+campaign_performance", "--indirect-selection", "cautious")
    rows = wh.rows("""
        with truth as (
            select a.campaign_id, avg(u.true_uplift) as planted_lift
            from nextbest.assignments a
            join sim_truth.uplift u on a.customer_id = u.customer_id and a.playbook_id = u.playbook_id
            group by a.campaign_id)
        select p.playbook_id, p.campaign_id, p.treated_customers, p.control_customers, p.treated_conversions,
               p.control_conversions, p.conversion_lift_ci_low, p.conversion_lift_ci_high, t.planted_lift
        from analytics.campaign_performance p join truth t using (campaign_id)
        where p.window_complete and p.control_arm = 'holdout' and p.control_customers > 0""")
    assert len(rows) >= 40
    covered = [r["conversion_lift_ci_low"] <= r["planted_lift"] <= r["conversion_lift_ci_high"] for r in rows]
    assert sum(covered) / len(rows) >= 0.85, f"95% intervals covered the planted lift in {sum(covered)}/{len(rows)}"
    # pooled per playbook, the measured lift recovers the planted one (some playbooks help only
    # some customers and hurt others, so the pooled effect can be small): within 3 standard errors
    frame = pd.DataFrame(rows)
    frame["planted_conversions"] = frame["planted_lift"] * frame["treated_customers"]
    pooled = frame.groupby("playbook_id")[["treated_customers", "treated_conversions", "control_customers",
                                           "control_conversions", "planted_conversions"]].sum()
    treated = pooled["treated_conversions"] / pooled["treated_customers"]
    control = pooled["control_conversions"] / pooled["control_customers"]
    planted = pooled["planted_conversions"] / pooled["treated_customers"]
    se = np.sqrt(treated * (1 - treated) / pooled["treated_customers"]
                 + control * (1 - control) / pooled["control_customers"])
    off = ((treated - control) - planted).abs() / se
    assert len(pooled) >= 5 and (off <= 3).all(), pd.DataFrame({"measured": treated - control, "planted": planted,
                                                                  "standard_errors_off": off}).to_dict()

"""`uplift_models` + `routing_decisions` on a small simulated store (segments hand-made, no dbt)."""

from __future__ import annotations

from datetime import date

import dagster as dg
import pytest

from dagster_project.decisioning import assets as decisioning_assets
from dagster_project.decisioning.assets import DECISIONS_TABLE, decide, write_decisions
from dagster_project.decisioning.routing import RoutingPolicy
from dagster_project.ingest.simulator import simulate
from dagster_project.models import uplift_assets
from dagster_project.models.uplift_assets import train_and_register
from dagster_project.models.uplift_data import assignment_rows, point_in_time_features
from dagster_project.resources.warehouse import connect_duckdb

END = date(2026, 6, 1)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("routing") / "store.duckdb"
    con = connect_duckdb(path)
    simulate(con, customers=600, months=8, seed=5, end_date=END)
    # Stand-ins for the dbt marts: everyone with a live subscription is in every segment.
    con.execute("create schema analytics")
    con.execute("""create table analytics.customer_segments as
        select distinct customer_id, unnest(['at_risk', 'cadence_mismatch', 'expansion', 'onboarding', 'dormant',
            'win_back']) as segment, 'test' as reason, date '2026-06-01' as as_of_date
        from raw.subscriptions where status = 'active'""")
    con.execute("""create table analytics.customer_tags as select customer_id, true as high_ltv, false as gift_recipient,
        false as at_risk, false as brand_advocate from raw.customers""")
    yield con
    con.close()


def test_features_ignore_everything_after_the_anchor(store):
    anchors = store.execute("select customer_id, assigned_at as anchor_at from nextbest.assignments limit 50").df()
    before = point_in_time_features(store, anchors)
    store.execute("begin")
    store.execute("""delete from raw.email_events e using nextbest.assignments a
                     where e.customer_id = a.customer_id and e.occurred_at >= a.assigned_at""")
    store.execute("""delete from raw.portal_events e using nextbest.assignments a
                     where e.customer_id = a.customer_id and e.occurred_at >= a.assigned_at""")
    after = point_in_time_features(store, anchors)
    store.execute("rollback")
    key = ["customer_id", "anchor_at"]
    assert before.sort_values(key).reset_index(drop=True).equals(after.sort_values(key).reset_index(drop=True))


def test_train_route_and_append(store):
    rows = assignment_rows(store, END)
    assert set(rows["treated"]) == {0, 1} and rows["outcome"].between(0, 1).all()
    summary = train_and_register(store, END)
    assert summary and all(s["version"].startswith("uplift_") for s in summary.values())
    decisions = decide(store, END, RoutingPolicy())
    assert len(decisions) and set(decisions["decision"]) <= {"send", "holdout", "global_holdout", "suppressed",
                                                              "capped", "none"}
    sends = decisions[decisions["decision"] == "send"]
    assert sends["send_hour_of_week"].between(0, 167).all() and sends["model_version"].notna().all()
    assert write_decisions(store, decisions, END) == len(decisions)
    assert write_decisions(store, decisions, END) == 0  # same run date: nothing appended twice
    new = store.execute(f"""select a.arm, d.decision from nextbest.assignments a
        join {DECISIONS_TABLE} d using (assignment_id)""").fetchall()
    assert len(new) == decisions["arm"].notna().sum()
    assert all((arm == "treatment") == (decision == "send") for arm, decision in new)
    assert all((arm == "global_holdout") == (decision == "global_holdout") for arm, decision in new)


def test_global_holdout_is_assigned_to_the_campaign_it_would_have_joined(store):
    run_date = date(2026, 6, 2)  # a date of its own: test_train_route_and_append wrote END
    train_and_register(store, END)
    decisions = decide(store, run_date, RoutingPolicy(global_holdout_share=0.2))
    write_decisions(store, decisions, run_date)
    arms = store.execute("""select campaign_id, playbook_id, arm, count(*) as n from nextbest.assignments
                            where assigned_at = ? group by all""", [run_date]).df()
    held = arms[arms["arm"] == "global_holdout"]
    assert len(held) and (held["campaign_id"] == "pb-" + held["playbook_id"] + "-2026-06-02").all()
    treated = set(arms.loc[arms["arm"] == "treatment", "campaign_id"])
    assert set(held["campaign_id"]) & treated  # campaign_performance pairs them: treated vs global holdout
    rows = store.execute(f"""select send_at, assignment_id from {DECISIONS_TABLE}
                             where run_date = ? and arm = 'global_holdout'""", [run_date]).fetchall()
    assert rows and all(send_at is None and assignment for send_at, assignment in rows)


def test_retention_goals_are_valued_at_predicted_clv(store):
    train_and_register(store, END)
    without = decide(store, END, RoutingPolicy())
    retention = without["goal"].isin(["retained_60d", "reactivated_60d"])
    assert retention.any() and (without.loc[retention, "goal_value"] == 30.0).all()
    scored = without.loc[retention, "customer_id"].iloc[0]
    store.execute("create table nextbest.customer_predictions (customer_id varchar, predicted_clv_12m double)")
    try:
        store.execute("insert into nextbest.customer_predictions values (?, 512.5)", [scored])
        decisions = decide(store, END, RoutingPolicy()).set_index("customer_id")
    finally:
        store.execute("drop table nextbest.customer_predictions")
    assert decisions.at[scored, "goal_value"] == 512.5
    assert "goal worth 512.50 (predicted 12-month CLV)" in decisions.at[scored, "reason"]
    others = decisions.drop(index=scored)
    assert (others.loc[others["goal"].isin(["retained_60d", "reactivated_60d"]), "goal_value"] == 30.0).all()


def test_definitions_load():
    defs = dg.Definitions(
        assets=[*uplift_assets.assets, *decisioning_assets.assets],
        asset_checks=[*uplift_assets.asset_checks, *decisioning_assets.asset_checks],
        jobs=[*uplift_assets.jobs, *decisioning_assets.jobs],
        schedules=[*uplift_assets.schedules, *decisioning_assets.schedules],
        resources={"warehouse": decisioning_assets.DuckDBWarehouse(path="/tmp/unused.duckdb")})
    assert defs.resolve_job_def("daily_routing") is not None
    deps = defs.resolve_asset_graph().get(dg.AssetKey("routing_decisions")).parent_keys
    assert dg.AssetKey("customer_predictions") in deps

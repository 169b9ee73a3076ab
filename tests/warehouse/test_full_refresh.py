"""`full_refresh` run config (and the `warehouse_full_refresh` job) rebuilds the incremental history."""

from __future__ import annotations

from datetime import datetime, timezone

import dagster as dg
import duckdb

from dagster_project.definitions import defs
from dagster_project.ingest.simulator import simulate
from dagster_project.resources import build_dbt_resource, build_warehouse
from dagster_project.warehouse.assets import nextbest_dbt_models

TODAY = datetime.now(timezone.utc).date()


def _build(config: dict | None = None, raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
    return dg.materialize([nextbest_dbt_models], resources={"warehouse": build_warehouse(), "dbt": build_dbt_resource()},
                          run_config={"ops": {"nextbest_dbt_models": {"config": config or {}}}},
                          instance=dg.DagsterInstance.ephemeral(), raise_on_error=raise_on_error)


def test_full_refresh_rebuilds_settled_feature_rows(duckdb_file, monkeypatch):
    monkeypatch.setenv("NEXTBEST_AS_OF", TODAY.isoformat())
    with duckdb.connect(str(duckdb_file)) as con:
        simulate(con, customers=60, months=3, seed=3, end_date=TODAY)
    assert _build().success
    oldest = "(select min(as_of_date) from analytics.customer_features)"
    with duckdb.connect(str(duckdb_file)) as con:
        expected = con.execute(f"select sum(orders_lifetime) from analytics.customer_features "
                               f"where as_of_date = {oldest}").fetchone()[0]
        # What a backfill of old events leaves behind: a settled week an incremental run never recomputes.
        con.execute(f"update analytics.customer_features set orders_lifetime = -1 where as_of_date = {oldest}")

    result = _build({"full_refresh": True})

    assert result.success
    with duckdb.connect(str(duckdb_file)) as con:
        rebuilt = con.execute(f"select sum(orders_lifetime), min(orders_lifetime) from analytics.customer_features "
                              f"where as_of_date = {oldest}").fetchone()
    assert rebuilt[0] == expected and rebuilt[1] >= 0


def test_a_first_build_tests_every_row_and_a_daily_build_the_recent_ones(duckdb_file, monkeypatch):
    monkeypatch.setenv("NEXTBEST_AS_OF", TODAY.isoformat())
    # An event type the contract does not know, `days` old.
    bad_event = ("insert into raw.email_events select ?, customer_id, null, null, 'teleport', "
                 "cast(? as timestamp) - to_days(cast(? as integer)) from raw.customers limit 1")
    with duckdb.connect(str(duckdb_file)) as con:
        simulate(con, customers=60, months=3, seed=3, end_date=TODAY)
        con.execute(bad_event, ["E-old-bad", TODAY, 60])  # older than a daily run's test window

    first = _build(raise_on_error=False)
    assert not first.success  # a first build's tests read every row, the old one included
    assert "FAIL 1 accepted_values_stg_raw__email_events_event_type" in \
        str(first.get_step_failure_events()[0].event_specific_data.error)
    with duckdb.connect(str(duckdb_file)) as con:
        con.execute("delete from raw.email_events where event_id = 'E-old-bad'")
    # Staged history older than the lookback changes only on a full refresh (as after any backfill).
    assert _build({"full_refresh": True}).success

    with duckdb.connect(str(duckdb_file)) as con:  # an old row gone bad in the staged history
        con.execute("update staging.stg_raw__email_events set event_type = 'teleport' where email_event_id = "
                    "(select min(email_event_id) from staging.stg_raw__email_events "
                    " where occurred_at < cast(? as timestamp) - interval 30 day)", [TODAY])
    assert _build().success  # a daily build tests the last daily_test_days days only

    with duckdb.connect(str(duckdb_file)) as con:
        con.execute(bad_event, ["E-new-bad", TODAY, 1])
    daily = _build(raise_on_error=False)
    assert not daily.success  # a bad row from yesterday is caught on a daily build
    assert "FAIL 1 accepted_values_stg_raw__email_events_event_type" in \
        str(daily.get_step_failure_events()[0].event_specific_data.error)


def test_the_full_refresh_job_runs_every_dbt_model_with_full_refresh():
    job = defs.resolve_job_def("warehouse_full_refresh")
    defaults = job.config_mapping.config_schema.as_field().default_value["ops"]
    assert defaults["nextbest_dbt_models"]["config"]["full_refresh"] is True
    assert defaults["nextbest_dbt_scored_models"]["config"]["full_refresh"] is True
    selected = {key.to_user_string() for key in job.asset_layer.executable_asset_keys}
    assert {"customer_features", "customer_segments", "customer_context"} <= selected
    assert not {"customer_scores", "routing_decisions"} & selected

"""The Dagster definitions load, and the daily job materializes end to end on a small store."""

from __future__ import annotations

import duckdb
import dagster as dg

from dagster_project.definitions import defs
from dagster_project.ingest import contract

GROUPS = {"ingest", "warehouse"}


def _asset_graph():
    return defs.resolve_asset_graph()


def test_definitions_load_with_groups_job_and_schedule():
    graph = _asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    for table in contract.LOAD_ORDER:
        assert f"raw/{table}" in keys
    for mart in ("customer_context", "customer_segments", "customer_segment_history", "customer_tags"):
        assert mart in keys
    groups = {graph.get(key).group_name for key in graph.get_all_asset_keys()}
    assert groups <= GROUPS | {"models", "decisioning", "messaging", "delivery", "measurement"}
    assert GROUPS <= groups
    assert defs.resolve_job_def("daily_personalization") is not None
    schedule = defs.resolve_schedule_def("daily_personalization_schedule")
    assert schedule.cron_schedule == "0 5 * * *"


def test_marts_depend_on_raw_sources():
    graph = _asset_graph()
    upstream = graph.get(dg.AssetKey("customer_context")).parent_keys
    seen, frontier = set(), set(upstream)
    while frontier:  # walk to the roots
        key = frontier.pop()
        seen.add(key)
        frontier |= set(graph.get(key).parent_keys) - seen
    assert dg.AssetKey(["raw", "orders"]) in seen
    assert dg.AssetKey(["raw", "customers"]) in seen


def test_daily_job_materializes_end_to_end(duckdb_file, monkeypatch):
    monkeypatch.setenv("NEXTBEST_AS_OF", "2026-06-30")
    result = defs.resolve_job_def("daily_personalization").execute_in_process(
        run_config={"ops": {"raw_sources": {"config": {
            "mode": "simulate", "customers": 400, "months": 8, "seed": 7, "end_date": "2026-06-30",
        }}}},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert {"raw/customers", "customer_context", "customer_segments", "customer_tags"} <= materialized

    con = duckdb.connect(str(duckdb_file), read_only=True)
    customers = con.execute("select count(*) from raw.customers").fetchone()[0]
    context_rows = con.execute("select count(*) from analytics.customer_context").fetchone()[0]
    segments = dict(con.execute("select segment, count(*) from analytics.customer_segments group by 1").fetchall())
    con.close()
    assert customers >= 400
    assert context_rows == customers  # one row per customer
    assert segments, "a simulated store has customers in segments"
    # dbt tests and the other blocking checks ran as asset checks and passed
    checks = result.get_asset_check_evaluations()
    blocking = [c for c in checks if c.severity == dg.AssetCheckSeverity.ERROR]
    assert blocking and all(c.passed for c in blocking), [c.check_name for c in blocking if not c.passed]
    # The data-quality summary reported the raw and customer_context suites as their checks in this
    # run validated them, instead of validating them again.
    [summary] = [e.materialization.metadata for e in result.get_asset_materialization_events()
                 if e.asset_key == dg.AssetKey("data_quality_summary")]
    assert summary["suites_from_this_runs_checks"].value == 10


def test_dbt_target_follows_the_engine_build_warehouse_picks(monkeypatch):
    # build_warehouse() reads NEXTBEST_WAREHOUSE case- and blank-insensitively; dbt's target must name
    # the same profile output (`duckdb` or `snowflake`), or dbt fails with "no target named 'Snowflake'".
    from dagster_project.project import dbt_target

    monkeypatch.delenv("NEXTBEST_DBT_TARGET", raising=False)
    for value, target in (("Snowflake", "snowflake"), (" snowflake ", "snowflake"), ("", "duckdb"),
                          ("DuckDB", "duckdb")):
        monkeypatch.setenv("NEXTBEST_WAREHOUSE", value)
        assert dbt_target() == target, value
    monkeypatch.delenv("NEXTBEST_WAREHOUSE")
    assert dbt_target() == "duckdb"
    monkeypatch.setenv("NEXTBEST_DBT_TARGET", "snowflake")
    assert dbt_target() == "snowflake"


def test_runs_that_write_the_duckdb_warehouse_go_one_at_a_time(tmp_path):
    # DuckDB lets one process write the file: every job is tagged, and the instance settings `dagster dev`
    # reads at the repository root queue a second tagged run behind the first.
    from dagster._core.instance.ref import InstanceRef

    from dagster_project.definitions import defs
    from dagster_project.project import REPO_ROOT, WAREHOUSE_RUN_TAG

    jobs = [job for job in defs.resolve_all_job_defs() if not job.name.startswith("__")]
    assert len(jobs) >= 7
    assert {job.name: job.tags.get(WAREHOUSE_RUN_TAG) for job in jobs} == {job.name: "duckdb" for job in jobs}
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(tmp_path), config_dir=str(REPO_ROOT))) as instance:
        limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
    assert [{"key": WAREHOUSE_RUN_TAG, "value": "duckdb", "limit": 1}] == limits

"""In a Dagster run, a failing blocking check on a raw table stops the dbt models from materializing,
and the check's metadata says what failed, what to do and shows example rows."""

from __future__ import annotations

import duckdb
import dagster as dg

from dagster_project.ingest.assets import raw_sources
from dagster_project.quality.checks import asset_checks, freshness_checks, raw_suite_checks
from dagster_project.resources import build_dbt_resource, build_warehouse
from dagster_project.warehouse.assets import nextbest_dbt_models


def _run(selection):
    return dg.materialize(
        selection, resources={"warehouse": build_warehouse(), "dbt": build_dbt_resource()},
        run_config={"ops": {"raw_sources": {"config": {"mode": "existing"}}}},
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
    )


def test_blocking_check_stops_dbt_models(store):
    con = duckdb.connect(str(store))
    con.execute("insert into raw.orders select * from raw.orders order by order_id limit 1")  # a duplicate id
    con.close()

    result = _run([raw_sources, nextbest_dbt_models, *raw_suite_checks])

    assert not result.success
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "raw/orders" in materialized
    assert not {"customer_context", "customer_segments", "stg_raw__orders"} & materialized
    failed = [c for c in result.get_asset_check_evaluations() if not c.passed]
    assert [(c.asset_key.to_user_string(), c.check_name) for c in failed] == [("raw/orders", "blocking_expectations")]
    evaluation = failed[0]
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert "order_id_unique" in evaluation.description and "share their order_id" in evaluation.description
    summary = evaluation.metadata["summary"].value
    assert "❌" in summary and "dedupe in the loader" in summary and "Example rows" in summary
    [failing] = evaluation.metadata["failing_checks"].value
    assert failing["name"] == "order_id_unique" and failing["examples"][0]["order_id"]


def test_good_store_passes_raw_checks_and_freshness(store):
    raw_keys = {key for spec in raw_sources.specs for key in [spec.key]}
    checks = [c for c in asset_checks if {k.asset_key for k in c.check_keys} <= raw_keys]
    assert any(c in checks for c in freshness_checks)
    result = _run([raw_sources, *checks])
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) >= 2 * 9 and all(c.passed for c in evaluations), \
        [(c.asset_key.to_user_string(), c.check_name, c.description) for c in evaluations if not c.passed]

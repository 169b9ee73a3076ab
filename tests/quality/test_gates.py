"""Bad data stops personalisation in a Dagster run: a stale source means no drafts, and a failing
blocking check on the drafts means nothing is exported (issue 6, item 6)."""

from __future__ import annotations

import json

import dagster as dg
import duckdb
import pytest

from dagster_project.delivery import approvals
from dagster_project.delivery.assets import esp_export
from dagster_project.delivery.esp import FileEsp
from dagster_project.messaging.assets import message_drafts
from dagster_project.resources.warehouse import DuckDBWarehouse
from tests.delivery.test_export_asset import afternoon_zone
from tests.quality.conftest import TODAY

BATCH = f"at_risk_save-{TODAY.isoformat()}"


@dg.asset_check(asset=message_drafts, blocking=True, description="Stands in for a blocking suite on the drafts.")
def drafts_fail_review() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.ERROR,
                               description="planted blocking failure")


@pytest.fixture
def pipeline(store):
    """The simulated store with live subscribers in `at_risk` (no dbt), sendable this afternoon."""
    con = duckdb.connect(str(store))
    con.execute("create schema if not exists analytics")
    con.execute("""create or replace table analytics.customer_segments as
        select distinct customer_id, 'at_risk' as segment from raw.subscriptions where status = 'active'""")
    con.execute("update raw.customers set timezone = ?", [afternoon_zone()])
    con.close()
    return store


def run(path, tmp_path, *selection):
    config = {"ops": {"esp_export": {"config": {"batch": BATCH, "max_wait_seconds": 2.0}}}} \
        if esp_export in selection else {}
    return dg.materialize(
        list(selection), run_config=config, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
        resources={"warehouse": DuckDBWarehouse(path=str(path)), "esp": FileEsp(path=str(tmp_path / "out.jsonl"))})


def materialized(result) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


def sent(tmp_path) -> list[dict]:
    path = tmp_path / "out.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_stale_source_means_no_drafts_and_no_export(pipeline, tmp_path):
    con = duckdb.connect(str(pipeline))
    con.execute("delete from raw.portal_events where occurred_at >= ?::date - 5", [TODAY])
    con.close()

    result = run(pipeline, tmp_path, message_drafts, esp_export)

    assert not result.success
    assert materialized(result) == set()
    failure = next(e for e in result.all_events if e.is_step_failure).event_specific_data.error.message
    assert "Playbook at_risk_save" in failure and "raw.portal_events is 5 days" in failure
    con = duckdb.connect(str(pipeline), read_only=True)
    assert not con.execute("select count(*) from information_schema.tables where table_name = 'message_drafts'"
                           ).fetchone()[0]
    con.close()
    assert sent(tmp_path) == []


def test_blocking_check_failure_means_no_export(pipeline, tmp_path):
    first = run(pipeline, tmp_path, message_drafts)
    assert first.success
    approvals.record_decision(DuckDBWarehouse(path=str(pipeline)), BATCH, "approve", "ana")

    blocked = run(pipeline, tmp_path, message_drafts, esp_export, drafts_fail_review)

    assert not blocked.success
    assert materialized(blocked) == {"message_drafts"}
    [check] = blocked.get_asset_check_evaluations()
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert sent(tmp_path) == []

    # The same run without the failing check exports the approved batch.
    passing = run(pipeline, tmp_path, message_drafts, esp_export)
    assert passing.success and "esp_export" in materialized(passing)
    assert sent(tmp_path) and {line["batch_id"] for line in sent(tmp_path)} == {BATCH}

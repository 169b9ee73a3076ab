"""`data_quality_summary` materializes with every check and its status as markdown, and never fails."""

from __future__ import annotations

import dagster as dg
import duckdb

from dagster_project.quality.checks import assets, data_quality_summary
from dagster_project.quality.runner import validate_suite
from dagster_project.quality.suites import suite_for
from dagster_project.quality.summary import collect_outcomes
from dagster_project.resources import DuckDBWarehouse, build_warehouse


def _materialize(warehouse=None):
    result = dg.materialize([data_quality_summary], resources={"warehouse": warehouse or build_warehouse()},
                            instance=dg.DagsterInstance.ephemeral())
    assert result.success
    [event] = result.get_asset_materialization_events()
    return event.materialization.metadata


def test_summary_lists_every_check_with_its_status(store):
    con = duckdb.connect(str(store))
    con.execute("insert into raw.orders select * from raw.orders order by order_id limit 1")  # a duplicate id
    expected = collect_outcomes(con)
    con.close()

    metadata = _materialize()
    markdown = metadata["summary"].value

    assert data_quality_summary in assets
    assert markdown.startswith("### Data quality of this run")
    rows = [line for line in markdown.splitlines() if line.startswith("| ") and "`" in line]
    assert len(rows) == len(expected) == metadata["checks_evaluated"].value
    for o in expected:
        assert f"`{o.target}` | `{o.name}` |" in markdown
    assert "| ❌ | ERROR | `raw.orders` | `order_id_unique` |" in markdown  # with what to do
    assert "✅" in markdown and "⏭️" in markdown
    assert metadata["blocking_failures"].value >= 1
    assert "blocking failure(s)" in metadata["headline"].value


def test_summary_of_an_empty_warehouse_names_the_missing_tables(duckdb_file):
    metadata = _materialize()
    markdown = metadata["summary"].value
    assert "| ❌ | ERROR | `raw.customers` | `table_exists` | raw.customers does not exist." in markdown
    assert "Run the loader for this source (or `nextbest demo`)" in markdown
    assert metadata["blocking_failures"].value >= 1


def test_summary_of_an_unreachable_warehouse_still_materializes(tmp_path):
    unreachable = DuckDBWarehouse(path=str(tmp_path))  # a folder, not a DuckDB file
    markdown = _materialize(unreachable)["summary"].value
    assert "❌" in markdown and "the check could not run" in markdown


def test_a_rule_that_cannot_run_leaves_the_other_checks_alone(duckdb_file):
    """raw.orders alone: its references cannot be checked, and say why, in one transaction on DuckDB."""
    warehouse = DuckDBWarehouse(path=str(duckdb_file))
    warehouse.execute("create schema raw")
    warehouse.execute("create table raw.orders (order_id varchar, customer_id varchar, subscription_id varchar, "
                      "ordered_at timestamp, status varchar, total decimal(12,2), discount_code varchar, "
                      "shipped_at timestamp, delivered_at timestamp)")
    outcomes = {o.name: o for o in validate_suite(warehouse, suite_for("raw.orders")).outcomes}
    for name, missing in (("customer_id_references_customers", "raw.customers"),
                          ("subscription_id_references_subscriptions", "raw.subscriptions")):
        assert outcomes[name].blocking and outcomes[name].message.endswith(f"{missing} does not exist")
    assert not [o.message for o in outcomes.values() if "aborted" in o.message.lower()]


def test_summary_reports_the_suites_this_runs_checks_validated_without_validating_them_again(store, monkeypatch):
    """In one run (in-process), each raw suite is validated once, by its asset check; the summary
    reports those results, and validates the suites no check of the run had (customer_context)."""
    from dagster_project.ingest.assets import raw_sources
    from dagster_project.quality import checks, runner
    from dagster_project.quality.checks import raw_suite_checks

    con = duckdb.connect(str(store))
    expected = [(o.target, o.name, o.status) for o in collect_outcomes(con)]
    con.close()
    validated: list[str] = []
    real = runner.validate_suite

    def counting(source, suite, now=None):
        validated.append(suite.name)
        return real(source, suite, now)

    monkeypatch.setattr(runner, "validate_suite", counting)  # the summary's
    monkeypatch.setattr(checks, "validate_suite", counting)  # the checks'
    result = dg.materialize([raw_sources, data_quality_summary, *raw_suite_checks],
                            resources={"warehouse": build_warehouse()},
                            run_config={"ops": {"raw_sources": {"config": {"mode": "existing"}}}},
                            instance=dg.DagsterInstance.ephemeral())
    assert result.success
    [event] = [e for e in result.get_asset_materialization_events()
               if e.asset_key == dg.AssetKey("data_quality_summary")]
    metadata = event.materialization.metadata
    raw_suites = [s.name for s in checks.suites_for(["raw"])]
    assert sorted(validated) == sorted([*raw_suites, "analytics.customer_context",
                                        *[s.name for s in checks.load_suites()
                                          if s not in checks.SUMMARY_AFTER_SUITES]])
    assert metadata["suites_from_this_runs_checks"].value == len(raw_suites) == 9
    markdown = metadata["summary"].value
    assert metadata["checks_evaluated"].value == len(expected)
    for target, name, _ in expected:
        assert f"`{target}` | `{name}` |" in markdown


def test_a_later_run_validates_again(store):
    """Results are kept for the run that made them only."""
    from dagster_project.quality import checks
    from dagster_project.quality.runner import validate_suite as validate

    suite = checks.suites_for(["raw"])[0]
    warehouse = DuckDBWarehouse(path=str(store))
    checks.remember_validated("run-1", validate(warehouse, suite))
    assert list(checks.validated_in_run("run-1", [suite])) == [suite.path]
    assert checks.validated_in_run("run-2", [suite]) == {}
    checks.remember_validated("run-2", validate(warehouse, suite))
    assert checks.validated_in_run("run-1", [suite]) == {}

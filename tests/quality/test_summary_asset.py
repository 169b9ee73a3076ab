"""`data_quality_summary` materializes with every check and its status as markdown, and never fails."""

from __future__ import annotations

import dagster as dg
import duckdb

from dagster_project.quality.checks import assets, data_quality_summary
from dagster_project.quality.summary import collect_outcomes
from dagster_project.resources import build_warehouse


def _materialize():
    result = dg.materialize([data_quality_summary], resources={"warehouse": build_warehouse()},
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


def test_summary_without_a_warehouse_still_materializes(duckdb_file):
    markdown = _materialize()["summary"].value
    assert "❌" in markdown and "the check could not run" in markdown and "No warehouse at" in markdown

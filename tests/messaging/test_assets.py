"""The `message_drafts` asset materializes in process on the tiny store."""

from __future__ import annotations

import json

import dagster as dg
import duckdb

from dagster_project.messaging.assets import message_drafts
from dagster_project.resources.warehouse import DuckDBWarehouse
from tests.messaging.store import AS_OF, write_store


def test_message_drafts_writes_checked_drafts_and_reuses_them(tmp_path, monkeypatch):
    path = tmp_path / "w.duckdb"
    con = duckdb.connect(str(path))
    write_store(con)
    con.execute("create schema analytics")
    con.execute("create table analytics.customer_segments (customer_id varchar, segment varchar)")
    con.execute("insert into analytics.customer_segments values ('C001','cadence_mismatch'), ('C001','at_risk'),"
                " ('C002','onboarding'), ('C003','win_back')")
    con.close()
    monkeypatch.setenv("NEXTBEST_AS_OF", AS_OF)
    resources = {"warehouse": DuckDBWarehouse(path=str(path))}

    result = dg.materialize([message_drafts], resources=resources)
    assert result.success
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert meta["by_status"].value == {"pending_review": 3}
    assert meta["by_generator"].value == {"template": 3}
    assert "Hi Anna" in meta["sample"].value

    con = duckdb.connect(str(path), read_only=True)
    rows = con.execute("select customer_id, playbook_id, batch_id, status, cited_fact_ids, verdicts "
                       "from nextbest.message_drafts order by 1").fetchall()
    con.close()
    assert [(r[0], r[1]) for r in rows] == [("C001", "at_risk_save"), ("C002", "onboarding"), ("C003", "win_back")]
    assert rows[0][2] == f"at_risk_save-{AS_OF}" and rows[0][3] == "pending_review"
    assert json.loads(rows[0][4]) and all(v["passed"] for v in json.loads(rows[0][5]))

    again = dg.materialize([message_drafts], resources=resources)
    meta = again.get_asset_materialization_events()[0].materialization.metadata
    assert meta["cache_hits"].value == 3
    con = duckdb.connect(str(path), read_only=True)
    assert con.execute("select count(*) from nextbest.message_drafts").fetchone()[0] == 3
    con.close()

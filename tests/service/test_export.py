"""Tags and context fields leave through the outbox exactly once, and again only when they change."""

from __future__ import annotations

import json
from datetime import date

import duckdb
import pandas as pd

from dagster_project.delivery.esp import FileEsp
from dagster_project.delivery.outbox import enqueue_batch, state_counts
from dagster_project.resources.warehouse import DuckDBWarehouse
from dagster_project.service.export import HELPDESK_PLAYBOOK, PROFILE_PLAYBOOK, export_service_context
from tests.messaging.store import write_store


def _row(cid, **kw):
    base = {"customer_id": cid, "high_ltv": False, "gift_recipient": False, "at_risk": True, "brand_advocate": False,
            "tenure_tier": "loyal", "tenure_months": 25, "lifetime_value_tier": "mid", "subscription_status": "active",
            "plan": "double_bag", "cadence_days": 28, "next_charge_date": date(2026, 3, 12),
            "payment_health": "healthy", "tone_preference": "warm", "open_tickets": 0, "has_repeat_issue": False}
    return {**base, **kw}


def store(tmp_path) -> tuple[duckdb.DuckDBPyConnection, DuckDBWarehouse]:
    """The tiny store, a connection for test SQL, and the warehouse resource the export takes (same file)."""
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    write_store(con)
    return con, DuckDBWarehouse(path=str(tmp_path / "w.duckdb"))


def test_exported_once_then_only_on_change(tmp_path):
    _, warehouse = store(tmp_path)
    sinks = {PROFILE_PLAYBOOK: FileEsp(path=str(tmp_path / "esp.jsonl")),
             HELPDESK_PLAYBOOK: FileEsp(path=str(tmp_path / "helpdesk.jsonl"))}
    rows = [_row("C001"), _row("C002")]
    first = export_service_context(warehouse, rows, "2026-02-22", sinks, max_wait_seconds=0)
    assert first[HELPDESK_PLAYBOOK]["sent"] == 2 and first[PROFILE_PLAYBOOK]["sent"] == 2
    again = export_service_context(warehouse, rows, "2026-02-22", sinks, max_wait_seconds=0)
    assert again[HELPDESK_PLAYBOOK]["queued"] == 0 and again[HELPDESK_PLAYBOOK]["sent"] == 0
    changed = export_service_context(warehouse, [_row("C001", open_tickets=1), _row("C002")], "2026-02-23", sinks,
                                     max_wait_seconds=0)
    assert changed[HELPDESK_PLAYBOOK]["sent"] == 1
    lines = [json.loads(x) for x in (tmp_path / "helpdesk.jsonl").read_text().splitlines()]
    assert len(lines) == 3 and len({x["send_id"] for x in lines}) == 3
    assert {x["kind"] for x in lines} == {"properties"}
    props = lines[-1]["properties"]
    assert lines[-1]["customer_id"] == "C001" and props["nextbest_open_tickets"] == 1
    assert props["nextbest_tags"] == ["at_risk"] and props["nextbest_next_charge_date"] == "2026-03-12"


def test_profile_export_leaves_marketing_alone_and_reaches_opted_out_customers(tmp_path):
    con, warehouse = store(tmp_path)
    con.execute("update raw.customers set marketing_opt_in = false where customer_id = 'C002'")
    con.execute("insert into raw.email_events values ('e9', 'C002', 'x', 'm9', 'unsubscribe', '2026-02-20 10:00')")
    enqueue_batch(warehouse, "at_risk_save-2026-02-22", pd.DataFrame({
        "batch_id": "at_risk_save-2026-02-22", "customer_id": ["C001"], "playbook_id": "at_risk_save",
        "subject": "Hi", "body": "A message waiting for its approval run", "cta": None}))
    sinks = {PROFILE_PLAYBOOK: FileEsp(path=str(tmp_path / "esp.jsonl")),
             HELPDESK_PLAYBOOK: FileEsp(path=str(tmp_path / "helpdesk.jsonl"))}
    result = export_service_context(warehouse, [_row("C001"), _row("C002")], "2026-02-22", sinks,
                                    max_wait_seconds=0)
    assert result[PROFILE_PLAYBOOK]["sent"] == 2 and result[PROFILE_PLAYBOOK]["suppressed"] == 0
    assert state_counts(warehouse, "at_risk_save-2026-02-22")["queued"] == 1  # the message was not sent
    lines = [json.loads(x) for x in (tmp_path / "esp.jsonl").read_text().splitlines()]
    assert sorted(x["customer_id"] for x in lines) == ["C001", "C002"] and {x["kind"] for x in lines} == {"properties"}
    kinds = dict(con.execute("select destination, count(*) from nextbest.outbox where kind = 'properties' "
                             "group by 1").fetchall())
    assert kinds == {"esp": 2, "helpdesk": 2}

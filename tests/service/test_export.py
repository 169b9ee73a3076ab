"""Tags and context fields leave through the outbox exactly once, and again only when they change."""

from __future__ import annotations

import json
from datetime import date

import duckdb

from dagster_project.delivery.esp import FileEsp
from dagster_project.service.export import HELPDESK_PLAYBOOK, PROFILE_PLAYBOOK, export_service_context
from tests.messaging.store import write_store


def _row(cid, **kw):
    base = {"customer_id": cid, "high_ltv": False, "gift_recipient": False, "at_risk": True, "brand_advocate": False,
            "tenure_tier": "loyal", "tenure_months": 25, "lifetime_value_tier": "mid", "subscription_status": "active",
            "plan": "double_bag", "cadence_days": 28, "next_charge_date": date(2026, 3, 12),
            "payment_health": "healthy", "tone_preference": "warm", "open_tickets": 0, "has_repeat_issue": False}
    return {**base, **kw}


def test_exported_once_then_only_on_change(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    write_store(con)
    sinks = {PROFILE_PLAYBOOK: FileEsp(path=str(tmp_path / "esp.jsonl")),
             HELPDESK_PLAYBOOK: FileEsp(path=str(tmp_path / "helpdesk.jsonl"))}
    rows = [_row("C001"), _row("C002")]
    first = export_service_context(con, rows, "2026-02-22", sinks, max_wait_seconds=0)
    assert first[HELPDESK_PLAYBOOK]["sent"] == 2 and first[PROFILE_PLAYBOOK]["sent"] == 2
    again = export_service_context(con, rows, "2026-02-22", sinks, max_wait_seconds=0)
    assert again[HELPDESK_PLAYBOOK]["queued"] == 0 and again[HELPDESK_PLAYBOOK]["sent"] == 0
    changed = export_service_context(con, [_row("C001", open_tickets=1), _row("C002")], "2026-02-23", sinks,
                                     max_wait_seconds=0)
    assert changed[HELPDESK_PLAYBOOK]["sent"] == 1
    lines = [json.loads(x) for x in (tmp_path / "helpdesk.jsonl").read_text().splitlines()]
    assert len(lines) == 3 and len({x["send_id"] for x in lines}) == 3
    props = json.loads(lines[-1]["body"])
    assert lines[-1]["customer_id"] == "C001" and props["nextbest_open_tickets"] == 1
    assert props["nextbest_tags"] == ["at_risk"] and props["nextbest_next_charge_date"] == "2026-03-12"

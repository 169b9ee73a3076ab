"""approved_batches_sensor: one run per approval (run key = batch id), nothing for stale or
rejected approvals, and a skipped tick while another process holds the warehouse."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from datetime import timedelta

from pathlib import Path

import dagster as dg
import pytest

from dagster_project.delivery import approvals
from dagster_project.delivery.outbox import utcnow
from dagster_project.delivery.sensors import approved_batches_sensor
from dagster_project.resources.warehouse import DuckDBWarehouse
from tests.delivery.test_approvals import BATCH, RUN_DAY, write_drafts


@pytest.fixture
def db(warehouse):
    """The warehouse file with one batch of 10 drafts (the resource leaves it closed for the sensor)."""
    write_drafts(warehouse, BATCH, [f"c{i}" for i in range(10)])
    return Path(warehouse.path)


def _decide(db, *args, **kwargs):
    return approvals.record_decision(DuckDBWarehouse(path=str(db)), *args, **kwargs)


def tick(db, cursor=None):
    context = dg.build_sensor_context(cursor=cursor, resources={"warehouse": DuckDBWarehouse(path=str(db))})
    result = approved_batches_sensor(context)
    if isinstance(result, dg.SkipReason):
        return [], cursor, result.skip_message
    skip = result.skip_reason.skip_message if result.skip_reason else None
    return list(result.run_requests or []), result.cursor, skip


def test_one_approval_requests_one_run_keyed_by_the_batch(db):
    _decide(db, BATCH, "approve", "ana")
    requests, cursor, _ = tick(db)
    assert len(requests) == 1
    (request,) = requests
    assert request.run_key == BATCH
    assert request.run_config == {"ops": {"esp_export": {"config": {"batch": BATCH}}}}
    assert request.tags["nextbest/batch"] == BATCH

    # the next tick sees no new approval: no second run for the same batch
    again, cursor_after, skip = tick(db, cursor)
    assert again == [] and cursor_after == cursor and skip == "no new approvals"


def test_reapproval_after_changed_drafts_gets_its_own_run_key(db):
    _decide(db, BATCH, "approve", "ana")
    _, cursor, _ = tick(db)
    import duckdb

    with duckdb.connect(str(db)) as con:
        con.execute("update nextbest.message_drafts set body = 'New copy' where customer_id = 'c1'")
    # nothing new recorded: still no run (the export asset would refuse the changed drafts anyway)
    assert tick(db, cursor)[0] == []
    _decide(db, BATCH, "approve", "ana", "re-checked the new copy")
    requests, _, _ = tick(db, cursor)
    assert [r.run_key for r in requests] == [f"{BATCH}#approval-2"]


def test_rejected_expired_or_changed_approvals_request_nothing(db):
    _decide(db, BATCH, "approve", "ana")
    _decide(db, BATCH, "reject", "ben", "wrong offer")  # same tick: the rejection is the latest
    requests, cursor, skip = tick(db)
    assert requests == [] and cursor == "2" and "rejected by ben" in skip

    write_drafts(DuckDBWarehouse(path=str(db)), f"win_back-{RUN_DAY}", ["c20", "c21"], playbook_id="win_back")
    _decide(db, f"win_back-{RUN_DAY}", "approve", "ana", now=utcnow() - timedelta(hours=80))
    requests, _, skip = tick(db, cursor)
    assert requests == [] and "expired" in skip


def test_a_locked_warehouse_skips_the_tick_without_losing_approvals(db):
    _decide(db, BATCH, "approve", "ana")
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import duckdb, sys, time
        con = duckdb.connect({str(db)!r})
        print("locked", flush=True)
        sys.stdin.readline()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        requests, cursor, skip = tick(db)
        assert time.monotonic() - started < 5  # no waiting on the lock
        assert requests == [] and cursor is None and "busy" in skip
    finally:
        holder.stdin.write("\n")
        holder.stdin.close()
        holder.wait(timeout=30)
    requests, cursor, _ = tick(db)
    assert [r.run_key for r in requests] == [BATCH] and cursor == "1"


def test_no_warehouse_yet_is_a_skip(tmp_path):
    requests, _, skip = tick(tmp_path / "missing.duckdb")
    assert requests == [] and "no warehouse" in skip

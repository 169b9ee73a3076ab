"""Approvals and the outbox on the Snowflake resource, against fakesnow: a batch goes out once.

Run by `test_snowflake.py` in the fakesnow virtualenv, like `fakesnow_suite.py`. A marketer
approves a batch, it is queued twice (the second time adds nothing), sent through the file
ESP and settled; a re-run sends nothing. An export killed between claim and settle is
reconciled on the next run: nothing lost, nothing sent twice.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import fakesnow
import pandas as pd
import pytest
from fakesnow.cursor import FakeSnowflakeCursor

from dagster_project.delivery import approvals
from dagster_project.delivery.esp import FileEsp
from dagster_project.delivery.outbox import enqueue_batch, send_id_for, state_counts
from dagster_project.delivery.sender import run_export
from dagster_project.ingest.contract import create_raw_schema
from dagster_project.messaging.assets import DRAFTS_DDL
from dagster_project.resources.snowflake import STAGE_PREFIX, SnowflakeWarehouse
from dagster_project.resources.warehouse import build_warehouse
from tests.delivery.fake_esp import CrashAfter, SimulatedCrash
from tests.resources.fakesnow_suite import ENV, _fetch_arrow_batches

BATCH = "at_risk_save-2026-03-10"
CUSTOMERS = [f"c{i}" for i in range(12)]
BLOCKED = {"c4"}
NOON = datetime(2026, 3, 10, 12, 0, tzinfo=timezone.utc)  # outside quiet hours for UTC customers


@pytest.fixture
def wh(monkeypatch) -> SnowflakeWarehouse:
    """The Snowflake resource on fakesnow, with the raw tables and twelve opted-in UTC customers."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(FakeSnowflakeCursor, "fetch_arrow_batches", _fetch_arrow_batches, raising=False)
    with fakesnow.patch():
        resource = build_warehouse().process_config_and_initialize()
        create_raw_schema(resource)
        resource.write_df("raw", "customers", pd.DataFrame({
            "customer_id": CUSTOMERS, "email": [f"{c}@example.com" for c in CUSTOMERS],
            "first_name": [f"Name{c}" for c in CUSTOMERS], "created_at": pd.Timestamp("2025-01-01"),
            "country": "US", "timezone": "UTC", "marketing_opt_in": True, "channel_preference": "email"}))
        yield resource


def write_drafts(wh: SnowflakeWarehouse, batch_id: str, customer_ids, blocked=()) -> None:
    """A batch in nextbest.message_drafts, as the message_drafts asset writes it."""
    wh.execute("create schema if not exists nextbest")
    wh.execute(DRAFTS_DDL)
    wh.write_df("nextbest", "message_drafts", pd.DataFrame([{
        "draft_id": f"{batch_id}:{c}", "batch_id": batch_id, "customer_id": c, "playbook_id": "at_risk_save",
        "subject": "We saved your roast", "preheader": "Your next bag is on us",
        "body": f"Hi {c}, your favourite roast is back.", "cta": "keep_subscription", "offer_id": "SAVE15",
        "status": "blocked" if c in blocked else "pending_review",
        # A Timestamp, not a date: fakesnow's write_pandas would store a date object as text.
        "as_of": pd.Timestamp(batch_id[-10:]), "created_at": pd.Timestamp("2026-03-10 06:00"),
    } for c in customer_ids]))


def sent_lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def leftovers(wh: SnowflakeWarehouse) -> int:
    """Transient staging tables still there (every transaction drops the ones it uploaded)."""
    return int(wh.read_df("select count(*) as n from information_schema.tables where upper(table_name) like ?",
                          [STAGE_PREFIX + "%"]).iloc[0, 0])


def test_an_approved_batch_is_queued_once_sent_once_and_not_again(wh, tmp_path):
    write_drafts(wh, BATCH, CUSTOMERS, blocked=BLOCKED)
    with pytest.raises(approvals.ApprovalError, match="needs a reason"):
        approvals.record_decision(wh, BATCH, "reject", "ben", " ", now=NOON - timedelta(hours=3))
    approvals.record_decision(wh, BATCH, "reject", "ben", "wrong tone", now=NOON - timedelta(hours=3))
    approval = approvals.record_decision(wh, BATCH, "approve", "ana", "re-checked", now=NOON - timedelta(hours=2))
    assert (approval.seq, approval.drafts_total, approval.drafts_sendable) == (2, 12, 11)
    with wh.transaction() as tx:
        check = approvals.check_approval(tx, BATCH, now=NOON)
        assert check.ok and "approved by ana" in check.reason
        assert [(d.seq, d.decision) for d in approvals.decisions(tx, BATCH)] == [(1, "rejected"), (2, "approved")]
        sendable = approvals.sendable_drafts(tx, BATCH)
    assert sorted(sendable["customer_id"]) == sorted(set(CUSTOMERS) - BLOCKED)

    first = enqueue_batch(wh, BATCH, sendable, now=NOON - timedelta(hours=1))
    again = enqueue_batch(wh, BATCH, sendable, now=NOON - timedelta(hours=1))
    assert (first.queued, again.queued, again.already_in_outbox) == (11, 0, 11)
    assert state_counts(wh)["queued"] == 11

    out = tmp_path / "out.jsonl"
    summary = run_export(wh, FileEsp(path=str(out)), clock=lambda: NOON, max_wait_seconds=0)
    assert summary.sent == 11 and summary.remaining["sent"] == 11
    lines = sent_lines(out)
    assert sorted(line["send_id"] for line in lines) == sorted(
        send_id_for(BATCH, c, "at_risk_save") for c in set(CUSTOMERS) - BLOCKED)
    settled = wh.read_df("select state, attempts, idempotency_key, sent_at from nextbest.outbox")
    assert set(settled["state"]) == {"sent"} and set(settled["attempts"]) == {1}
    assert settled["idempotency_key"].notna().all() and settled["sent_at"].notna().all()

    rerun = run_export(wh, FileEsp(path=str(out)), clock=lambda: NOON, max_wait_seconds=0)
    assert (rerun.sent, rerun.duplicates, rerun.reconciled) == (0, 0, 0)
    assert len(sent_lines(out)) == 11
    attempts = wh.read_df("select outcome, count(*) as n from nextbest.outbox_attempts group by outcome")
    assert attempts.to_dict("records") == [{"outcome": "sent", "n": 11}]
    assert leftovers(wh) == 0


def test_rows_claimed_but_never_settled_are_reconciled_on_the_next_run(wh, tmp_path):
    customers = CUSTOMERS[:10]
    write_drafts(wh, BATCH, customers)
    approvals.record_decision(wh, BATCH, "approve", "ana", now=NOON - timedelta(hours=2))
    with wh.transaction() as tx:
        sendable = approvals.sendable_drafts(tx, BATCH)
    enqueue_batch(wh, BATCH, sendable, now=NOON - timedelta(hours=1))
    out = tmp_path / "out.jsonl"
    with pytest.raises(SimulatedCrash):
        # One worker: the first chunk of six is claimed, four reach the file, then the process "dies".
        run_export(wh, CrashAfter(FileEsp(path=str(out)), k=4), workers=1, chunk_size=6, clock=lambda: NOON)
    assert state_counts(wh)["sending"] == 6  # the claim was committed before the first send

    summary = run_export(wh, FileEsp(path=str(out)), clock=lambda: NOON, max_wait_seconds=0)
    assert (summary.reconciled, summary.requeued_after_crash) == (4, 2)  # in the file already / never sent
    sent = [line["send_id"] for line in sent_lines(out)]
    assert len(sent) == len(set(sent)) == 10, "a message was lost or written twice"
    assert state_counts(wh)["sent"] == 10
    outcomes = wh.read_df("select outcome, count(*) as n from nextbest.outbox_attempts group by outcome")
    assert dict(zip(outcomes["outcome"], outcomes["n"])) == {"reconciled": 4, "requeued": 2, "sent": 6}
    assert leftovers(wh) == 0


def test_a_newer_profile_update_supersedes_one_still_waiting(wh):
    def update(batch_id: str, plan: str) -> pd.DataFrame:
        return pd.DataFrame({"batch_id": batch_id, "customer_id": ["c1"], "playbook_id": "service_profile",
                             "body": json.dumps({"nextbest_plan": plan})})

    enqueue_batch(wh, "p1", update("p1", "single"), now=NOON, kind="properties")
    newer = enqueue_batch(wh, "p2", update("p2", "double"), now=NOON, kind="properties")
    assert (newer.queued, newer.superseded) == (1, 1)
    rows = wh.read_df("select batch_id, state, last_error from nextbest.outbox order by batch_id")
    assert rows["state"].tolist() == ["superseded", "queued"]
    newer_id = send_id_for("p2", "c1", "service_profile", update("p2", "double")["body"][0])
    assert rows["last_error"].iloc[0] == f"superseded by {newer_id}"
    assert leftovers(wh) == 0


def test_rows_another_export_claimed_first_are_left_to_it(wh, tmp_path, monkeypatch):
    # Two exports read the same due rows; this one's claim comes second for three of them.
    from dagster_project.delivery import outbox

    write_drafts(wh, BATCH, CUSTOMERS)
    approvals.record_decision(wh, BATCH, "approve", "ana", now=NOON - timedelta(hours=2))
    with wh.transaction() as tx:
        sendable = approvals.sendable_drafts(tx, BATCH)
    enqueue_batch(wh, BATCH, sendable, now=NOON - timedelta(hours=1))
    taken = {send_id_for(BATCH, c, "at_risk_save") for c in ("c1", "c5", "c9")}
    claim = outbox.claim

    def the_other_export_first(tx, send_ids, run_token, now, esp):
        with wh.transaction() as other:
            claim(other, [s for s in send_ids if s in taken], "other-run", now, esp)
        claim(tx, send_ids, run_token, now, esp)

    monkeypatch.setattr(outbox, "claim", the_other_export_first)
    out = tmp_path / "out.jsonl"
    summary = run_export(wh, FileEsp(path=str(out)), clock=lambda: NOON, max_wait_seconds=0)
    sent = {line["send_id"] for line in sent_lines(out)}
    assert len(sent) == len(CUSTOMERS) - 3 and not sent & taken
    assert summary.claimed_elsewhere == 3
    held = wh.read_df("select send_id, claim_token from nextbest.outbox where state = 'sending'")
    assert set(held["send_id"]) == taken and set(held["claim_token"]) == {"other-run"}

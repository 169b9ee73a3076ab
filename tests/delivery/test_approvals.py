"""Approvals: approve, reject, expiry and changed drafts, from the CLI and the Dagster job."""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta, timezone

import dagster as dg
import duckdb
import pandas as pd
import pytest

from dagster_project.delivery import approval_commands, approvals
from dagster_project.delivery.assets import approve_batch
from dagster_project.messaging.assets import DRAFTS_DDL
from tests.delivery.conftest import noon_utc

# Drafted today: a batch is approved and sent within its brief's max_data_staleness_days of its run date.
RUN_DAY = datetime.now(timezone.utc).date()
BATCH = f"at_risk_save-{RUN_DAY}"


def write_drafts(warehouse, batch_id: str, customer_ids, blocked=(),
                 body: str = "Hi {c}, your favourite roast is back.", playbook_id: str = "at_risk_save") -> None:
    """Replace a batch in nextbest.message_drafts, as the message_drafts asset does."""
    warehouse.execute("create schema if not exists nextbest")
    warehouse.execute(DRAFTS_DDL)
    rows = pd.DataFrame([{
        "draft_id": f"{batch_id}:{c}", "batch_id": batch_id, "customer_id": c, "playbook_id": playbook_id,
        "angle": "favourite_product", "generator": "template", "subject": "We saved your roast",
        "preheader": "Your next bag is on us", "body": body.format(c=c), "cta": "keep_subscription",
        "offer_id": "SAVE15", "status": "blocked" if c in blocked else "pending_review",
        "block_reason": "grounding: price 12.00 not in the context pack" if c in blocked else None,
        "as_of": batch_id[-10:], "created_at": datetime.now(),
    } for c in customer_ids])
    with warehouse.transaction() as tx:
        tx.execute("delete from nextbest.message_drafts where batch_id = ?", [batch_id])
        tx.write_df("nextbest", "message_drafts", rows)


def check(store, batch_id: str, **kwargs) -> approvals.ApprovalCheck:
    with store.transaction() as tx:
        return approvals.check_approval(tx, batch_id, **kwargs)


def decisions(store, batch_id: str | None = None) -> list[approvals.Approval]:
    with store.transaction() as tx:
        return approvals.decisions(tx, batch_id)


@pytest.fixture
def store(warehouse):
    """The delivery warehouse (50 customers) with one batch: 10 drafts, 2 of them blocked."""
    write_drafts(warehouse, BATCH, [f"c{i}" for i in range(10)], blocked={"c3", "c7"})
    return warehouse


def test_approval_is_appended_with_the_drafts_hash_and_holds(store):
    approval = approvals.record_decision(store, BATCH, "approve", "ana", "offers checked", now=noon_utc())
    assert approval.drafts_total == 10 and approval.drafts_sendable == 8
    row = store.read_df("select batch_id, decision, decided_by, note, drafts_hash, run_date, playbook_id "
                        "from nextbest.approvals")
    assert list(row.itertuples(index=False, name=None)) == [
        (BATCH, "approved", "ana", "offers checked", approval.drafts_hash, pd.Timestamp(RUN_DAY), "at_risk_save")]
    holds = check(store, BATCH, now=noon_utc() + timedelta(hours=1))
    assert holds.ok and "approved by ana" in holds.reason
    with store.transaction() as tx:
        sendable = approvals.sendable_drafts(tx, BATCH)
    assert list(sendable["customer_id"]) == [
        c for c in (f"c{i}" for i in range(10)) if c not in {"c3", "c7"}]


def test_rejection_needs_a_reason_and_wins_until_approved_again(store):
    approvals.record_decision(store, BATCH, "approve", "ana", now=noon_utc())
    with pytest.raises(approvals.ApprovalError, match="needs a reason"):
        approvals.record_decision(store, BATCH, "reject", "ben", "  ", now=noon_utc())
    approvals.record_decision(store, BATCH, "reject", "ben", "discount too deep", now=noon_utc() + timedelta(minutes=5))
    rejected = check(store, BATCH, now=noon_utc() + timedelta(minutes=6))
    assert not rejected.ok and "rejected by ben" in rejected.reason and "discount too deep" in rejected.reason
    approvals.record_decision(store, BATCH, "approve", "ana", now=noon_utc() + timedelta(minutes=10))
    assert check(store, BATCH, now=noon_utc() + timedelta(minutes=11)).ok
    # append-only: every decision is kept, in order
    assert [d.decision for d in decisions(store, BATCH)] == ["approved", "rejected", "approved"]
    assert [d.seq for d in decisions(store)] == [1, 2, 3]



def test_a_rejection_stops_the_batch_s_messages_still_waiting_in_the_outbox(store, tmp_path):
    from dagster_project.delivery.esp import FileEsp
    from dagster_project.delivery.outbox import enqueue_batch
    from dagster_project.delivery.sender import run_export

    approvals.record_decision(store, BATCH, "approve", "ana", now=noon_utc())
    with store.transaction() as tx:
        sendable = approvals.sendable_drafts(tx, BATCH)
    enqueue_batch(store, BATCH, sendable, now=noon_utc())
    store.execute("update nextbest.outbox set state = 'sent' where customer_id = 'c0'")  # went out before
    approvals.record_decision(store, BATCH, "reject", "ben", "wrong offer", now=noon_utc() + timedelta(hours=1))
    states = store.read_df("select customer_id, state, last_error from nextbest.outbox order by customer_id")
    waiting = states[states["customer_id"] != "c0"]
    assert set(waiting["state"]) == {"suppressed"} and len(waiting) == 7
    assert waiting["last_error"].str.startswith("batch rejected by ben at ").all()
    assert waiting["last_error"].str.endswith(": wrong offer").all()
    assert states.set_index("customer_id").loc["c0", "state"] == "sent"
    path = tmp_path / "out.jsonl"
    summary = run_export(store, FileEsp(path=str(path)), clock=lambda: noon_utc() + timedelta(hours=2))
    assert summary.sent == 0 and not path.exists()

def test_approval_expires_after_the_configured_time(store, monkeypatch):
    approvals.record_decision(store, BATCH, "approve", "ana", now=noon_utc())
    assert check(store, BATCH, now=noon_utc() + timedelta(hours=71)).ok
    expired = check(store, BATCH, now=noon_utc() + timedelta(hours=73))
    assert not expired.ok
    assert "expired at 2026-03-13 12:00 UTC" in expired.reason and "approve it again" in expired.reason
    monkeypatch.setenv("NEXTBEST_APPROVAL_TTL_HOURS", "100")
    assert check(store, BATCH, now=noon_utc() + timedelta(hours=73)).ok
    monkeypatch.setenv("NEXTBEST_APPROVAL_TTL_HOURS", "soon")
    with pytest.raises(approvals.ApprovalError, match="NEXTBEST_APPROVAL_TTL_HOURS"):
        check(store, BATCH, now=noon_utc())


def test_changed_drafts_need_a_new_approval_but_identical_regeneration_does_not(store):
    customers = [f"c{i}" for i in range(10)]
    approvals.record_decision(store, BATCH, "approve", "ana", now=noon_utc())
    # the daily job regenerates the same drafts (new created_at, same content): still approved
    write_drafts(store, BATCH, customers, blocked={"c3", "c7"})
    assert check(store, BATCH, now=noon_utc()).ok
    # one body changes: the approval no longer covers what would be sent
    store.execute("update nextbest.message_drafts set body = body || ' Now 30% off!' where customer_id = 'c1'")
    changed = check(store, BATCH, now=noon_utc())
    assert not changed.ok and "changed after ana approved them" in changed.reason
    # unblocking a draft changes what is sent too
    approvals.record_decision(store, BATCH, "approve", "ana", now=noon_utc())
    store.execute("update nextbest.message_drafts set status = 'pending_review' where customer_id = 'c3'")
    unblocked = check(store, BATCH, now=noon_utc())
    assert not unblocked.ok and "8 sendable then; 10 drafts, 9 sendable now" in unblocked.reason


def test_decisions_that_cannot_be_recorded_say_why(store):
    write_drafts(store, f"win_back-{RUN_DAY}", ["c20", "c21"], blocked={"c20", "c21"}, playbook_id="win_back")
    with pytest.raises(approvals.ApprovalError, match=f"Known batches: {BATCH}"):
        approvals.record_decision(store, "at_risk_save-2026-03-11", "approve", "ana")
    with pytest.raises(approvals.ApprovalError, match="nothing to send: all 2 drafts are blocked"):
        approvals.record_decision(store, f"win_back-{RUN_DAY}", "approve", "ana")
    with pytest.raises(approvals.ApprovalError, match="--by NAME"):
        approvals.record_decision(store, BATCH, "approve", " ")
    not_yet = check(store, BATCH)
    assert not not_yet.ok and f"nextbest approve {BATCH} --by NAME" in not_yet.reason


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="nextbest")
    approval_commands.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_cli_review_approve_reject(store, capsys):
    db = store.path  # the CLI opens the file itself

    assert _cli("review", "--db", db) == 0
    listing = capsys.readouterr().out
    assert BATCH in listing and "awaiting approval" in listing

    assert _cli("review", BATCH, "--sample", "3", "--seed", "1", "--db", db) == 0
    review = capsys.readouterr().out
    assert "drafts 10: blocked 2, pending_review 8" in review
    assert "c3: grounding: price 12.00 not in the context pack" in review
    assert review.count("Subject: We saved your roast") == 3

    assert _cli("approve", BATCH, "--by", "ana", "--note", "looks right", "--db", db) == 0
    assert "8 drafts will be sent (2 blocked stay unsent)" in capsys.readouterr().out
    assert _cli("reject", BATCH, "--by", "ben", "--reason", "wrong tone", "--db", db) == 0
    rejected = capsys.readouterr().out
    assert "Rejected" in rejected and "Replaces the approval by ana at " in rejected and "looks right" in rejected
    assert _cli("approve", BATCH, "--by", "cy", "--db", db) == 0
    assert "Replaces the rejection by ben at " in capsys.readouterr().out  # overruled, and says whom
    assert _cli("approve", "no_such-2026-01-01", "--by", "ana", "--db", db) == 2
    assert "has no drafts" in capsys.readouterr().err  # errors go to stderr

    with duckdb.connect(db, read_only=True) as con:
        rows = con.execute("select decision, decided_by, note, source from nextbest.approvals order by seq").fetchall()
    assert rows == [("approved", "ana", "looks right", "cli"), ("rejected", "ben", "wrong tone", "cli"),
                    ("approved", "cy", None, "cli")]


def test_review_shows_a_draft_without_an_offer_as_dash(store, capsys):
    with duckdb.connect(store.path) as con:
        con.execute("update nextbest.message_drafts set offer_id = null where customer_id = 'c1'")
    assert _cli("review", BATCH, "--sample", "8", "--db", store.path) == 0
    review = capsys.readouterr().out
    assert "--- c1 · favourite_product · offer - ·" in review and "offer nan" not in review


def test_cli_db_wins_over_a_snowflake_environment(store, capsys, monkeypatch, tmp_path):
    # No SNOWFLAKE_* settings at all: opening Snowflake would fail, so a pass means --db was used.
    monkeypatch.setenv("NEXTBEST_WAREHOUSE", "snowflake")
    for name in ("SNOWFLAKE_ACCOUNT", "SNOWFLAKE_USER", "SNOWFLAKE_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    assert _cli("review", "--db", store.path) == 0
    assert BATCH in capsys.readouterr().out

    assert _cli("review", "--db", str(tmp_path / "nextbest.duckdb")) == 2
    assert "same as a NextBest schema" in capsys.readouterr().err


def test_approve_batch_job_records_the_decision_from_run_config(store):
    db = store.path
    resources = {"warehouse": store}

    def run(**config):
        return approve_batch.execute_in_process(
            run_config={"ops": {"record_approval": {"config": config}}}, resources=resources,
            instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)

    assert run(batch=BATCH, by="ana", note="from the UI").success
    failed = run(batch=BATCH, by="ben", decision="reject")
    assert not failed.success
    failure = next(e for e in failed.all_events if e.is_step_failure)
    assert "needs a reason" in failure.event_specific_data.error.message
    with duckdb.connect(db, read_only=True) as con:
        assert con.execute("select decision, decided_by, note, source from nextbest.approvals").fetchall() == [
            ("approved", "ana", "from the UI", "dagster")]
    assert check(store, BATCH).ok


def test_a_batch_older_than_its_briefs_data_window_is_neither_approved_nor_sent(store):
    """Drafts say what held on their run date (a next delivery, skips): approved or sent days later, that may
    no longer be true. win_back allows 7 days, at_risk_save 3 (their briefs' max_data_staleness_days)."""
    old = f"win_back-{RUN_DAY - timedelta(days=8)}"
    write_drafts(store, old, ["c40"], playbook_id="win_back")
    with pytest.raises(approvals.ApprovalError, match=r"too old to approve: its drafts were written from the data "
                                                      r"of .*, 8 days ago, longer than win_back's max_data_staleness"):
        approvals.record_decision(store, old, "approve", "ana")
    approvals.record_decision(store, old, "reject", "ana", "stale")  # a rejection is always recorded

    recent = f"at_risk_save-{RUN_DAY - timedelta(days=3)}"
    write_drafts(store, recent, ["c41"])
    approvals.record_decision(store, recent, "approve", "ana")  # 3 days: still inside at_risk_save's window
    with store.transaction() as tx:
        assert approvals.check_approval(tx, recent).ok
        later = approvals.check_approval(tx, recent, now=datetime.now(timezone.utc) + timedelta(days=1))
    assert not later.ok and "too old to send" in later.reason and "4 days ago" in later.reason

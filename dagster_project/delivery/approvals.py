"""`nextbest.approvals`: a marketer's decision on a batch of drafts, and whether it still holds.

A batch is one playbook's drafts of one run date (`batch_id` in
`nextbest.message_drafts`, e.g. `at_risk_save-2026-06-30`). Decisions are
appended, never updated: the latest one for a batch counts. An approval stores
a content hash of the batch's drafts, so it covers exactly what the marketer
saw. It stops holding when

- a later decision rejected the batch (its messages still waiting in the outbox, deferred by quiet
  hours or retrying, are then suppressed: they are not sent later either),
- it is older than `NEXTBEST_APPROVAL_TTL_HOURS` (default 72), or
- the drafts changed since (regenerated, blocked or unblocked): the hash differs.

Only a batch whose approval holds is exported (`check_approval`, called by the
sensor and again by the `esp_export` asset right before enqueueing).

Everything here works through the warehouse resource (DuckDB or Snowflake):
readers take a `WarehouseSession` (one transaction, so a check sees one state of
the drafts and decisions); `record_decision` takes the warehouse, as it creates
the table and commits the decision.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import pandas as pd

from dagster_project.delivery.outbox import DRAFT_COLUMNS, MESSAGE_EXTRAS, OUTBOX, naive_utc, utcnow
from dagster_project.ingest.contract import NEXTBEST_SCHEMA
from dagster_project.resources.warehouse import WarehouseInterface, WarehouseSession, table_exists

APPROVALS = f"{NEXTBEST_SCHEMA}.approvals"
DRAFTS = f"{NEXTBEST_SCHEMA}.message_drafts"  # written by messaging/assets.py
APPROVAL_COLUMNS = ("approval_id", "seq", "batch_id", "playbook_id", "run_date", "decision", "decided_by", "note",
                    "drafts_hash", "drafts_total", "drafts_sendable", "decided_at", "source")
DECISIONS = ("approved", "rejected")
TTL_ENV = "NEXTBEST_APPROVAL_TTL_HOURS"
DEFAULT_TTL_HOURS = 72.0
# What a reviewer sees of a draft; a change to any of these needs a new approval.
HASHED_COLUMNS = ("draft_id", "customer_id", "playbook_id", "status", "subject", "preheader", "body", "cta",
                  "offer_id")
SENDABLE_STATUS = "pending_review"

APPROVALS_DDL = f"""
create table if not exists {APPROVALS} (
  approval_id varchar not null,
  seq bigint not null,
  batch_id varchar not null,
  playbook_id varchar,
  run_date date,
  decision varchar not null,
  decided_by varchar not null,
  note varchar,
  drafts_hash varchar not null,
  drafts_total integer not null,
  drafts_sendable integer not null,
  decided_at timestamp not null,
  source varchar not null
)
"""


class ApprovalError(ValueError):
    """A decision that cannot be recorded; the message says what to do instead."""


@dataclass(frozen=True)
class Approval:
    """One row of `nextbest.approvals`."""

    approval_id: str
    seq: int
    batch_id: str
    playbook_id: str | None
    run_date: date | None
    decision: str
    decided_by: str
    note: str | None
    drafts_hash: str
    drafts_total: int
    drafts_sendable: int
    decided_at: datetime
    source: str


@dataclass(frozen=True)
class BatchSummary:
    """A batch's drafts as they are now."""

    batch_id: str
    playbook_id: str | None
    run_date: date | None
    total: int
    sendable: int
    blocked: int
    drafts_hash: str


@dataclass(frozen=True)
class ApprovalCheck:
    """Whether a batch may be exported now, and why (or why not) in words a marketer can act on."""

    batch_id: str
    ok: bool
    reason: str
    approval: Approval | None = None
    expires_at: datetime | None = None


def approval_ttl() -> timedelta:
    """How long an approval holds: `NEXTBEST_APPROVAL_TTL_HOURS` (default 72)."""
    text = os.environ.get(TTL_ENV, "").strip()
    if not text:
        return timedelta(hours=DEFAULT_TTL_HOURS)
    try:
        hours = float(text)
    except ValueError:
        raise ApprovalError(f"{TTL_ENV}={text!r} is not a number of hours (e.g. 72)") from None
    if hours <= 0:
        raise ApprovalError(f"{TTL_ENV}={text!r} must be more than 0 hours")
    return timedelta(hours=hours)


def ensure_approvals(warehouse: WarehouseInterface) -> None:
    """Create `nextbest.approvals` if missing."""
    warehouse.execute(f"create schema if not exists {NEXTBEST_SCHEMA}")
    warehouse.execute(APPROVALS_DDL)


def drafts_hash(drafts: pd.DataFrame) -> str:
    """A content hash of a batch's drafts: the same drafts in any row order give the same hash."""
    present = [c for c in HASHED_COLUMNS if c in drafts.columns]
    rows = drafts[present].astype(object).where(drafts[present].notna(), None)
    canonical = sorted(json.dumps([str(v) if v is not None else None for v in row], ensure_ascii=False)
                       for row in rows.itertuples(index=False, name=None))
    digest = hashlib.sha256()
    for line in canonical:
        digest.update(line.encode())
        digest.update(b"\n")
    return digest.hexdigest()


def batch_drafts(tx: WarehouseSession, batch_id: str) -> pd.DataFrame:
    """Every draft of one batch (sendable and blocked), by customer."""
    if not table_exists(tx, DRAFTS):
        return pd.DataFrame(columns=[*HASHED_COLUMNS, "batch_id", "block_reason", "as_of"])
    return tx.read_df(f"select * from {DRAFTS} where batch_id = ? order by customer_id", [batch_id])


def summarize_drafts(batch_id: str, drafts: pd.DataFrame) -> BatchSummary | None:
    """Counts and hash of a batch's drafts; None when the batch has none."""
    if drafts.empty:
        return None
    sendable = int((drafts["status"] == SENDABLE_STATUS).sum())
    run_date = pd.to_datetime(drafts["as_of"].iloc[0]).date() if "as_of" in drafts and pd.notna(
        drafts["as_of"].iloc[0]) else None
    return BatchSummary(batch_id, str(drafts["playbook_id"].iloc[0]), run_date, len(drafts), sendable,
                        int((drafts["status"] == "blocked").sum()), drafts_hash(drafts))


def known_batches(tx: WarehouseSession, limit: int = 200) -> pd.DataFrame:
    """Batches in `nextbest.message_drafts`, newest run date first, with draft counts per status."""
    if not table_exists(tx, DRAFTS):
        return pd.DataFrame(columns=["batch_id", "playbook_id", "run_date", "total", "sendable", "blocked"])
    # The limit is spliced in as a number: Snowflake takes no bind variable there.
    return tx.read_df(f"""
        select batch_id, any_value(playbook_id) as playbook_id, cast(max(as_of) as date) as run_date,
               cast(count(*) as integer) as total,
               cast(count_if(status = '{SENDABLE_STATUS}') as integer) as sendable,
               cast(count_if(status = 'blocked') as integer) as blocked
        from {DRAFTS} group by batch_id order by run_date desc, batch_id limit {int(limit)}""")


def _approval(row: dict) -> Approval:
    run_date = row["run_date"]
    return Approval(
        approval_id=row["approval_id"], seq=int(row["seq"]), batch_id=row["batch_id"],
        playbook_id=row["playbook_id"], run_date=None if pd.isna(run_date) else pd.Timestamp(run_date).date(),
        decision=row["decision"], decided_by=row["decided_by"], note=None if pd.isna(row["note"]) else row["note"],
        drafts_hash=row["drafts_hash"], drafts_total=int(row["drafts_total"]),
        drafts_sendable=int(row["drafts_sendable"]), decided_at=pd.Timestamp(row["decided_at"]).to_pydatetime(),
        source=row["source"])


def decisions(tx: WarehouseSession, batch_id: str | None = None, after_seq: int = 0) -> list[Approval]:
    """Recorded decisions in the order they were made (one batch, or all), after `after_seq`."""
    if not table_exists(tx, APPROVALS):
        return []
    where, params = "where seq > ?", [int(after_seq)]
    if batch_id is not None:
        where, params = where + " and batch_id = ?", params + [batch_id]
    rows = tx.read_df(f"select {', '.join(APPROVAL_COLUMNS)} from {APPROVALS} {where} order by seq", params)
    return [_approval(r) for r in rows.to_dict("records")]


def latest_decision(tx: WarehouseSession, batch_id: str) -> Approval | None:
    """The decision that counts for a batch: the last one recorded."""
    found = decisions(tx, batch_id)
    return found[-1] if found else None


# Routing writes these (decisioning/assets.py): a routed campaign's batch is `<playbook>-<run date>`.
ROUTING_DECISIONS = f"{NEXTBEST_SCHEMA}.routing_decisions"


def routed_batches(tx: WarehouseSession, since: date | None = None,
                   until: date | None = None) -> dict[str, tuple[str, str, date]]:
    """campaign id -> (batch id, playbook, run date) of every campaign routing assigned on run dates from
    `since` to before `until`."""
    if not table_exists(tx, ROUTING_DECISIONS):
        return {}
    where = ["campaign_id is not null"]
    params: list = []
    if since is not None:
        where.append("run_date >= cast(? as date)")
        params.append(since)
    if until is not None:
        where.append("run_date < cast(? as date)")
        params.append(until)
    rows = tx.read_df(f"select distinct campaign_id, playbook_id, run_date from {ROUTING_DECISIONS} "
                      f"where {' and '.join(where)}", params)
    days = [pd.Timestamp(d).date() for d in rows["run_date"]]
    return {str(c): (f"{p}-{d.isoformat()}", str(p), d)
            for c, p, d in zip(rows["campaign_id"], rows["playbook_id"], days)}


def unsent_campaigns(tx: WarehouseSession, since: date, until: date, briefs=None) -> frozenset[str]:
    """Routed campaigns (run dates from `since` to before `until`) that will never be sent: their batch's
    latest decision is a rejection, no draft of it was ever written (drafting failed or skipped it), or it
    was never decided on and is now too old to approve (`outdated_reason` on `until`). Nobody in them got a
    message, so their assignments take no room in a frequency cap."""
    from dagster_project.messaging.briefs import BriefError, load_briefs

    routed = routed_batches(tx, since, until)
    if not routed:
        return frozenset()
    try:
        briefs = briefs or load_briefs()
    except BriefError:
        briefs = None  # routing reports the briefs' problem; without them no batch counts as too old
    day = datetime.combine(until, datetime.min.time())
    latest: dict[str, Approval] = {}
    for decision in decisions(tx):
        latest[decision.batch_id] = decision
    drafted: set[str] = set()
    if table_exists(tx, DRAFTS):
        drafted = set(tx.read_df(f"select distinct batch_id from {DRAFTS} where as_of >= cast(? as date)",
                                 [since])["batch_id"].astype(str))
    return frozenset(c for c, (batch, playbook, run_date) in routed.items()
                     if batch not in drafted or (batch in latest and latest[batch].decision == "rejected")
                     or (batch not in latest and briefs is not None
                         and outdated_reason(playbook, run_date, day, briefs) is not None))


def never_exported_campaigns(tx: WarehouseSession) -> frozenset[str]:
    """Routed campaigns none of whose messages reached the outbox (never approved, rejected, never drafted):
    their treated customers got nothing, so they measure no lift."""
    routed = routed_batches(tx)
    if not routed:
        return frozenset()
    exported: set[str] = set()
    if table_exists(tx, OUTBOX):
        exported = set(tx.read_df(f"select distinct batch_id from {OUTBOX} where kind = 'message'")["batch_id"]
                       .astype(str))
    return frozenset(c for c, (batch, _, _) in routed.items() if batch not in exported)


def record_decision(warehouse: WarehouseInterface, batch_id: str, decision: str, by: str, note: str | None = None,
                    *, now: datetime | None = None, source: str = "cli") -> Approval:
    """Append an approval or rejection of a batch, with the hash of its drafts as they are now.

    Raises `ApprovalError` naming the problem: unknown batch (with the known ones),
    nothing sendable to approve, no reviewer name, or a rejection without a reason.
    """
    decision = {"approve": "approved", "reject": "rejected"}.get(decision, decision)
    if decision not in DECISIONS:
        raise ApprovalError(f"decision must be approve or reject, got {decision!r}")
    by = (by or "").strip()
    if not by:
        raise ApprovalError("say who decides: --by NAME (recorded in nextbest.approvals)")
    note = (note or "").strip() or None
    if decision == "rejected" and not note:
        raise ApprovalError(f"a rejection needs a reason: --reason '...' "
                            f"(tell the author what to change in {batch_id})")
    with warehouse.transaction() as tx:
        summary = summarize_drafts(batch_id, batch_drafts(tx, batch_id))
        recent = known_batches(tx, limit=10)["batch_id"].tolist() if summary is None else []
    if summary is None:
        hint = f" Known batches: {', '.join(recent)}." if recent else " There are no drafts yet (run message_drafts)."
        raise ApprovalError(f"batch {batch_id!r} has no drafts in {DRAFTS}.{hint}")
    outdated = outdated_reason(summary.playbook_id, summary.run_date, now) if decision == "approved" else None
    if outdated:
        raise ApprovalError(f"batch {batch_id!r} is too old to approve: {outdated}")
    if decision == "approved" and summary.sendable == 0:
        raise ApprovalError(f"batch {batch_id!r} has nothing to send: all {summary.total} drafts are blocked "
                            f"(see `nextbest review {batch_id}`)")
    ensure_approvals(warehouse)
    moment = naive_utc(now or utcnow())
    approval_id = uuid.uuid4().hex
    values = [approval_id, batch_id, summary.playbook_id, summary.run_date, decision, by, note,
              summary.drafts_hash, summary.total, summary.sendable, moment, source]
    with warehouse.transaction() as tx:
        # The next seq is taken in the insert itself: no gap between reading it and using it.
        tx.execute(f"""insert into {APPROVALS} ({', '.join(APPROVAL_COLUMNS)})
                       select ?, coalesce(max(seq), 0) + 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?
                       from {APPROVALS}""", values)
        if decision == "rejected" and tx.exists(NEXTBEST_SCHEMA, "outbox"):
            # Messages of the batch still waiting (quiet hours, a retry) go no further: not sent later.
            tx.execute(f"""update {OUTBOX} set state = 'suppressed', last_error = ?
                           where batch_id = ? and kind = 'message' and state in ('queued', 'failed')""",
                       [f"batch rejected by {by} at {_when(moment)}: {note}", batch_id])
    with warehouse.transaction() as tx:  # Snowflake applies the insert at commit: read the seq after
        seq = tx.read_df(f"select seq from {APPROVALS} where approval_id = ?", [approval_id]).iloc[0, 0]
    return Approval(approval_id, int(seq), batch_id, summary.playbook_id, summary.run_date, decision, by, note,
                    summary.drafts_hash, summary.total, summary.sendable, moment, source)


def _when(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def outdated_reason(playbook_id: str, run_date: date | None, now: datetime | None = None,
                    briefs=None) -> str | None:
    """Why a batch's drafts are too old to send, or None: written from the data of their run date, they may
    say only what held then (a next delivery, skips, an offer), for the brief's `max_data_staleness_days`.
    "Now" is `NEXTBEST_AS_OF` when set (as freshness judges it), else `now` or the clock. `briefs`: a loaded
    `BriefSet` (default: `load_briefs()`)."""
    from dagster_project.messaging.briefs import BriefError, load_briefs
    from dagster_project.quality.freshness import reference_time

    if run_date is None:
        return None
    try:
        brief = (briefs or load_briefs()).playbooks.get(playbook_id)
    except BriefError:
        return None  # the export's freshness check reports the briefs' problem
    if brief is None:
        return None
    today = (reference_time() if os.environ.get("NEXTBEST_AS_OF") else naive_utc(now or utcnow())).date()
    age = (today - run_date).days
    if age <= brief.max_data_staleness_days:
        return None
    return (f"its drafts were written from the data of {run_date}, {age} days ago, longer than {playbook_id}'s "
            f"max_data_staleness_days ({brief.max_data_staleness_days}): what they say (a next delivery, skips, "
            f"an offer) may no longer hold. Review a newer batch of {playbook_id} instead (`nextbest review`)")


def check_approval(tx: WarehouseSession, batch_id: str, now: datetime | None = None, ttl: timedelta | None = None,
                   drafts: pd.DataFrame | None = None) -> ApprovalCheck:
    """May `batch_id` be exported now? Checks the latest decision, its age and the drafts' hash."""
    ttl = ttl or approval_ttl()
    moment = naive_utc(now or utcnow())
    latest = latest_decision(tx, batch_id)
    if latest is None:
        if summarize_drafts(batch_id, batch_drafts(tx, batch_id) if drafts is None else drafts) is None:
            return ApprovalCheck(batch_id, False, (
                f"there is no batch {batch_id} (no drafts in {DRAFTS}): `nextbest review` lists the batches"))
        return ApprovalCheck(batch_id, False, (
            f"batch {batch_id} has not been approved: run `nextbest review {batch_id}`, then "
            f"`nextbest approve {batch_id} --by NAME` (or launch the approve_batch job)"))
    if latest.decision == "rejected":
        return ApprovalCheck(batch_id, False, (
            f"batch {batch_id} was rejected by {latest.decided_by} at {_when(latest.decided_at)}: {latest.note}. "
            "Fix the drafts, then approve the batch again"), latest)
    expires_at = latest.decided_at + ttl
    if moment >= expires_at:
        return ApprovalCheck(batch_id, False, (
            f"the approval of {batch_id} by {latest.decided_by} at {_when(latest.decided_at)} expired at "
            f"{_when(expires_at)} ({TTL_ENV}={ttl.total_seconds() / 3600:g}); review the batch and approve it again"),
            latest, expires_at)
    summary = summarize_drafts(batch_id, batch_drafts(tx, batch_id) if drafts is None else drafts)
    outdated = outdated_reason(summary.playbook_id, summary.run_date, now) if summary is not None else None
    if outdated:
        return ApprovalCheck(batch_id, False, f"batch {batch_id} is too old to send: {outdated}", latest, expires_at)
    if summary is None:
        return ApprovalCheck(batch_id, False, (
            f"batch {batch_id} was approved by {latest.decided_by} at {_when(latest.decided_at)} but has no "
            f"drafts in {DRAFTS} any more"), latest, expires_at)
    if summary.drafts_hash != latest.drafts_hash:
        return ApprovalCheck(batch_id, False, (
            f"the drafts of {batch_id} changed after {latest.decided_by} approved them at "
            f"{_when(latest.decided_at)} ({latest.drafts_total} drafts, {latest.drafts_sendable} sendable then; "
            f"{summary.total} drafts, {summary.sendable} sendable now): run `nextbest review {batch_id}` and "
            "approve it again"), latest, expires_at)
    return ApprovalCheck(batch_id, True, (
        f"approved by {latest.decided_by} at {_when(latest.decided_at)}, valid until {_when(expires_at)}"),
        latest, expires_at)


def sendable_drafts(tx: WarehouseSession, batch_id: str) -> pd.DataFrame:
    """The drafts of a batch the outbox sends (not blocked), in `enqueue_batch`'s columns."""
    drafts = batch_drafts(tx, batch_id)
    return drafts.loc[drafts["status"] == SENDABLE_STATUS, [*DRAFT_COLUMNS, *MESSAGE_EXTRAS]].reset_index(drop=True)


@dataclass(frozen=True)
class Review:
    """What `nextbest review BATCH` shows: counts, every blocked draft, a random sample, the approval state."""

    summary: BatchSummary
    by_status: dict[str, int]
    blocked: pd.DataFrame
    sample: pd.DataFrame
    check: ApprovalCheck


def review_batch(tx: WarehouseSession, batch_id: str, sample_size: int = 5, seed: int | None = None,
                 now: datetime | None = None) -> Review | None:
    """The review of one batch; None when it has no drafts."""
    drafts = batch_drafts(tx, batch_id)
    summary = summarize_drafts(batch_id, drafts)
    if summary is None:
        return None
    by_status = drafts["status"].value_counts().sort_index().to_dict()
    blocked = drafts[drafts["status"] == "blocked"]
    sendable = drafts[drafts["status"] == SENDABLE_STATUS]
    picks = random.Random(seed).sample(range(len(sendable)), min(sample_size, len(sendable)))
    return Review(summary, {str(k): int(v) for k, v in by_status.items()}, blocked,
                  sendable.iloc[sorted(picks)], check_approval(tx, batch_id, now, drafts=drafts))

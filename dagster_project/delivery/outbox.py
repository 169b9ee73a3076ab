"""`nextbest.outbox`: one row per message, a deterministic send id, and the states it moves through.

    queued ──claim──▶ sending ──▶ sent
      ▲                  │  └───▶ failed ──(backoff, Retry-After)──▶ claimed again
      │ quiet hours       │  └───▶ dead     (permanent error, or N attempts)
      └── deferred        └─ crash: reconciled on the next run (see sender.py)
    queued ──▶ suppressed   (unsubscribed / bounced / complained / capped at send time)

The send id is a hash of (batch, customer, playbook), so enqueueing the same
approved batch twice adds nothing, and the id doubles as the ESP idempotency
key. Every attempt is also appended to `nextbest.outbox_attempts`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone

import pandas as pd

from dagster_project.ingest.contract import NEXTBEST_SCHEMA, create_raw_schema

OUTBOX = f"{NEXTBEST_SCHEMA}.outbox"
ATTEMPTS = f"{NEXTBEST_SCHEMA}.outbox_attempts"
STATES = ("queued", "sending", "sent", "failed", "dead", "suppressed")
DRAFT_COLUMNS = ("batch_id", "customer_id", "playbook_id", "subject", "body", "cta")

OUTBOX_DDL = f"""
create table if not exists {OUTBOX} (
  send_id varchar primary key,
  batch_id varchar not null,
  customer_id varchar not null,
  playbook_id varchar not null,
  subject varchar not null,
  body varchar not null,
  cta varchar,
  state varchar not null,
  attempts integer not null,
  last_error varchar,
  next_attempt_at timestamp,
  enqueued_at timestamp not null,
  claim_token varchar,
  claimed_at timestamp,
  sent_at timestamp,
  esp varchar,
  idempotency_key varchar,
  esp_message_id varchar
)
"""

ATTEMPTS_DDL = f"""
create table if not exists {ATTEMPTS} (
  send_id varchar not null,
  attempt integer,
  run_token varchar,
  esp varchar,
  outcome varchar not null,
  detail varchar,
  recorded_at timestamp not null
)
"""


def utcnow() -> datetime:
    """Now, timezone-aware UTC."""
    return datetime.now(timezone.utc)


def naive_utc(moment: datetime) -> datetime:
    """The warehouse stores UTC timestamps without a zone."""
    return moment.astimezone(timezone.utc).replace(tzinfo=None) if moment.tzinfo else moment


def send_id_for(batch_id: str, customer_id: str, playbook_id: str) -> str:
    """The deterministic send id of one message: the same inputs always give the same id."""
    key = "\x1f".join((str(batch_id), str(customer_id), str(playbook_id)))
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def ensure_outbox(con) -> None:
    """Create `nextbest.outbox`, `nextbest.outbox_attempts` (and the raw tables they read) if missing."""
    create_raw_schema(con)
    con.execute(f"create schema if not exists {NEXTBEST_SCHEMA}")
    con.execute(OUTBOX_DDL)
    con.execute(ATTEMPTS_DDL)


class DraftError(ValueError):
    """Drafts that cannot be enqueued; the message names every bad row and field."""


def validate_drafts(batch_id: str, drafts: pd.DataFrame) -> list[str]:
    """Problems with an approved batch of drafts, each naming the row and field (empty if fine)."""
    missing = [c for c in DRAFT_COLUMNS if c not in drafts.columns]
    if missing:
        return [f"drafts for batch {batch_id!r} lack column(s) {', '.join(missing)}"]
    problems = []
    for position, row in enumerate(drafts.itertuples(index=False)):
        where = f"draft row {position} (customer_id={getattr(row, 'customer_id', None)!r})"
        if str(row.batch_id) != str(batch_id):
            problems.append(f"{where}: batch_id is {row.batch_id!r}, expected {batch_id!r}")
        for field in ("customer_id", "playbook_id", "subject", "body"):
            value = getattr(row, field)
            if value is None or (isinstance(value, float) and pd.isna(value)) or str(value).strip() == "":
                problems.append(f"{where}: {field} is empty")
    return problems


@dataclass(frozen=True)
class EnqueueSummary:
    batch_id: str
    queued: int
    already_in_outbox: int


def enqueue_batch(con, batch_id: str, drafts_df: pd.DataFrame, now: datetime | None = None) -> EnqueueSummary:
    """Queue an approved batch of drafts (batch_id, customer_id, playbook_id, subject, body, cta).

    Idempotent: a message already in the outbox (same send id) is left as it is.
    Raises `DraftError` naming each bad row and field, and queues nothing then.
    """
    problems = validate_drafts(batch_id, drafts_df)
    if problems:
        raise DraftError("; ".join(problems[:20]) + (f" (and {len(problems) - 20} more)" if len(problems) > 20 else ""))
    ensure_outbox(con)
    moment = naive_utc(now or utcnow())
    rows = pd.DataFrame({
        "send_id": [send_id_for(batch_id, c, p) for c, p in zip(drafts_df["customer_id"], drafts_df["playbook_id"])],
        "batch_id": str(batch_id),
        "customer_id": drafts_df["customer_id"].astype(str).to_numpy(),
        "playbook_id": drafts_df["playbook_id"].astype(str).to_numpy(),
        "subject": drafts_df["subject"].astype(str).to_numpy(),
        "body": drafts_df["body"].astype(str).to_numpy(),
        "cta": [None if pd.isna(v) else str(v) for v in drafts_df["cta"]],
    }).drop_duplicates("send_id")
    con.register("nextbest_drafts_to_enqueue", rows)
    try:
        before = con.execute(f"select count(*) from {OUTBOX}").fetchall()[0][0]
        con.execute(
            f"""insert into {OUTBOX} (send_id, batch_id, customer_id, playbook_id, subject, body, cta,
                                      state, attempts, next_attempt_at, enqueued_at)
                select d.send_id, d.batch_id, d.customer_id, d.playbook_id, d.subject, d.body, d.cta,
                       'queued', 0, ?, ?
                from nextbest_drafts_to_enqueue d
                where d.send_id not in (select send_id from {OUTBOX})""",
            [moment, moment],
        )
        after = con.execute(f"select count(*) from {OUTBOX}").fetchall()[0][0]
    finally:
        con.unregister("nextbest_drafts_to_enqueue")
    return EnqueueSummary(str(batch_id), after - before, len(rows) - (after - before))


def state_counts(con, batch_id: str | None = None) -> dict[str, int]:
    """Messages per outbox state (all batches, or one)."""
    where, params = ("where batch_id = ?", [batch_id]) if batch_id else ("", [])
    rows = con.execute(f"select state, count(*) from {OUTBOX} {where} group by 1", params).fetchall()
    return {state: 0 for state in STATES} | dict(rows)


def due_messages(con, now: datetime, limit: int, cap_since: datetime, batch_id: str | None = None) -> pd.DataFrame:
    """Up to `limit` messages due now, at most one per customer, with the send-time facts the
    policy needs: the customer's email, time zone, opt-in, last suppressing event, recent sends."""
    batch_filter = "and o.batch_id = ?" if batch_id else ""
    params: list = [naive_utc(now)] + ([batch_id] if batch_id else []) + [limit, naive_utc(cap_since)]
    return con.execute(
        f"""
        with due as (
            select o.*, row_number() over (partition by o.customer_id order by o.next_attempt_at, o.send_id) as rn
            from {OUTBOX} o
            where o.state in ('queued', 'failed') and o.next_attempt_at <= ? {batch_filter}
        ),
        picked as (
            select * from due where rn = 1 order by next_attempt_at, send_id limit ?
        ),
        suppressing as (
            select customer_id, arg_max(event_type, occurred_at) as event_type, max(occurred_at) as occurred_at
            from raw.email_events
            where event_type in ('unsubscribe', 'bounce', 'complaint')
              and customer_id in (select customer_id from picked)
            group by customer_id
        ),
        recent as (
            select customer_id, count(*) as n
            from {OUTBOX}
            where state in ('sent', 'sending') and coalesce(sent_at, claimed_at) >= ?
              and customer_id in (select customer_id from picked)
            group by customer_id
        ),
        customers as (
            select customer_id, any_value(email) as email, any_value(first_name) as first_name,
                   any_value(timezone) as timezone, bool_and(marketing_opt_in) as marketing_opt_in
            from raw.customers where customer_id in (select customer_id from picked)
            group by customer_id
        )
        select p.send_id, p.batch_id, p.customer_id, p.playbook_id, p.subject, p.body, p.cta, p.attempts,
               p.state, c.customer_id is not null as customer_found, c.email, c.first_name, c.timezone,
               c.marketing_opt_in, s.event_type as suppress_event, s.occurred_at as suppress_at,
               coalesce(r.n, 0) as recent_sends
        from picked p
        left join customers c using (customer_id)
        left join suppressing s using (customer_id)
        left join recent r using (customer_id)
        order by p.next_attempt_at, p.send_id
        """,
        params,
    ).df()


def in_flight(con, run_token: str) -> pd.DataFrame:
    """Messages a previous run claimed and never settled (it crashed or was killed mid-send)."""
    return con.execute(
        f"""select o.send_id, o.batch_id, o.customer_id, o.playbook_id, o.subject, o.body, o.cta, o.attempts,
                   c.email, c.first_name
            from {OUTBOX} o left join raw.customers c using (customer_id)
            where o.state = 'sending' and coalesce(o.claim_token, '') <> ?""",
        [run_token],
    ).df()


def claim(con, send_ids: list[str], run_token: str, now: datetime, esp: str) -> None:
    """Mark messages in flight (state `sending`, attempts + 1) before any of them is sent."""
    if not send_ids:
        return
    con.execute(
        f"""update {OUTBOX} set state = 'sending', claim_token = ?, claimed_at = ?, attempts = attempts + 1, esp = ?
            where send_id in (select unnest(?::varchar[])) and state in ('queued', 'failed')""",
        [run_token, naive_utc(now), esp, send_ids],
    )


def settle(con, outcomes: pd.DataFrame, run_token: str | None, now: datetime) -> None:
    """Write outcomes (send_id, state, last_error, next_attempt_at, sent_at, idempotency_key,
    esp_message_id, outcome, detail, esp, attempt) and append them to `outbox_attempts`.

    With a run token only rows this run still holds are touched, so a stale process cannot
    overwrite a newer outcome.
    """
    if outcomes.empty:
        return
    frame = outcomes.copy()
    for column in ("next_attempt_at", "sent_at"):
        frame[column] = pd.to_datetime(frame[column]).astype("datetime64[us]")
    con.register("nextbest_outbox_outcomes", frame)
    try:
        guard = "and o.claim_token = ?" if run_token else ""
        con.execute(
            f"""update {OUTBOX} o set
                    state = r.state,
                    last_error = coalesce(r.last_error, o.last_error),
                    next_attempt_at = coalesce(r.next_attempt_at, o.next_attempt_at),
                    sent_at = coalesce(r.sent_at, o.sent_at),
                    idempotency_key = coalesce(r.idempotency_key, o.idempotency_key),
                    esp_message_id = coalesce(r.esp_message_id, o.esp_message_id)
                from nextbest_outbox_outcomes r
                where o.send_id = r.send_id {guard}""",
            [run_token] if run_token else [],
        )
        con.execute(
            f"""insert into {ATTEMPTS}
                select send_id, attempt, ?, esp, outcome, detail, ? from nextbest_outbox_outcomes""",
            [run_token, naive_utc(now)],
        )
    finally:
        con.unregister("nextbest_outbox_outcomes")

"""`nextbest.outbox`: one row per message or profile update, a deterministic send id, and its states.

    queued ──claim──▶ sending ──▶ sent
      ▲                  │  └───▶ failed ──(backoff, Retry-After)──▶ claimed again
      │ quiet hours       │  └───▶ dead     (permanent error, or N attempts)
      └── deferred        └─ crash: reconciled on the next run (see sender.py)
    queued ──▶ suppressed   (unsubscribed / bounced / complained / capped at send time)
    queued ──▶ superseded   (properties only: a newer update for the same customer was queued)

`kind` tells the two apart: a `message` is a marketing send (frequency caps,
opt-in and suppression, quiet hours apply); `properties` is a profile update
(JSON object in `body`) that the adapter's `update_profile` writes, with none of
those rules: it emails nobody. `destination` names where a row goes: `esp` (the
configured ESP; messages and ESP profile properties) or another sink such as
`helpdesk`, so an export only ever hands a row to the adapter it was meant for.

The send id is a hash of (batch, customer, playbook), plus the properties for a
profile update, so enqueueing the same batch twice adds nothing, and the id
doubles as the ESP idempotency key. Every attempt is also appended to
`nextbest.outbox_attempts`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone

import pandas as pd

from dagster_project.ingest.contract import NEXTBEST_SCHEMA, create_raw_schema

OUTBOX = f"{NEXTBEST_SCHEMA}.outbox"
ATTEMPTS = f"{NEXTBEST_SCHEMA}.outbox_attempts"
STATES = ("queued", "sending", "sent", "failed", "dead", "suppressed", "superseded")
DRAFT_COLUMNS = ("batch_id", "customer_id", "playbook_id", "subject", "body", "cta")
# A profile update: `body` is the properties as a JSON object; subject and cta are not used.
PROPERTY_COLUMNS = ("batch_id", "customer_id", "playbook_id", "body")
KINDS = ("message", "properties")
ESP_DESTINATION = "esp"

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
  esp_message_id varchar,
  kind varchar not null default 'message',
  destination varchar not null default 'esp'
)
"""

# Tables created before `kind` / `destination` existed: every row in them is a message to the ESP.
# (DuckDB cannot add a NOT NULL column with IF NOT EXISTS; the default fills existing rows.)
OUTBOX_MIGRATIONS = (
    f"alter table {OUTBOX} add column if not exists kind varchar default 'message'",
    f"alter table {OUTBOX} add column if not exists destination varchar default '{ESP_DESTINATION}'",
)

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


def send_id_for(batch_id: str, customer_id: str, playbook_id: str, content: str | None = None) -> str:
    """The deterministic send id of one row: the same inputs always give the same id.

    `content` (a profile update's properties) makes a changed update a new row, even within one batch.
    """
    parts = (str(batch_id), str(customer_id), str(playbook_id)) + ((str(content),) if content is not None else ())
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def ensure_outbox(con) -> None:
    """Create `nextbest.outbox`, `nextbest.outbox_attempts` (and the raw tables they read) if missing."""
    create_raw_schema(con)
    con.execute(f"create schema if not exists {NEXTBEST_SCHEMA}")
    con.execute(OUTBOX_DDL)
    for statement in OUTBOX_MIGRATIONS:
        con.execute(statement)
    con.execute(ATTEMPTS_DDL)


class DraftError(ValueError):
    """Rows that cannot be enqueued; the message names every bad row and field."""


def _empty(value) -> bool:
    return value is None or (isinstance(value, float) and pd.isna(value)) or str(value).strip() == ""


def validate_drafts(batch_id: str, drafts: pd.DataFrame, kind: str = "message",
                    destination: str = ESP_DESTINATION) -> list[str]:
    """Problems with a batch of drafts (or profile updates), each naming the row and field (empty if fine)."""
    if kind not in KINDS:
        return [f"kind {kind!r} is not one of {', '.join(KINDS)}"]
    if kind == "message" and destination != ESP_DESTINATION:
        return [f"messages go to destination {ESP_DESTINATION!r}, not {destination!r}"]
    columns = DRAFT_COLUMNS if kind == "message" else PROPERTY_COLUMNS
    missing = [c for c in columns if c not in drafts.columns]
    if missing:
        return [f"{kind} rows for batch {batch_id!r} lack column(s) {', '.join(missing)}"]
    required = ("customer_id", "playbook_id", "subject", "body") if kind == "message" else columns[1:]
    problems = []
    for position, row in enumerate(drafts.itertuples(index=False)):
        where = f"{'draft' if kind == 'message' else 'properties'} row {position} " \
                f"(customer_id={getattr(row, 'customer_id', None)!r})"
        if str(row.batch_id) != str(batch_id):
            problems.append(f"{where}: batch_id is {row.batch_id!r}, expected {batch_id!r}")
        for field in required:
            if _empty(getattr(row, field)):
                problems.append(f"{where}: {field} is empty")
        if kind == "properties" and not _empty(row.body) and not _is_json_object(row.body):
            problems.append(f"{where}: body is not a JSON object of properties")
    return problems


def _is_json_object(text) -> bool:
    try:
        return isinstance(json.loads(str(text)), dict)
    except ValueError:
        return False


@dataclass(frozen=True)
class EnqueueSummary:
    batch_id: str
    queued: int
    already_in_outbox: int
    superseded: int = 0  # older pending profile updates the new ones replace


def enqueue_batch(con, batch_id: str, drafts_df: pd.DataFrame, now: datetime | None = None, *,
                  kind: str = "message", destination: str = ESP_DESTINATION) -> EnqueueSummary:
    """Queue a batch: approved drafts (batch_id, customer_id, playbook_id, subject, body, cta), or with
    `kind="properties"` profile updates (batch_id, customer_id, playbook_id, body = JSON object).

    Idempotent: a row already in the outbox (same send id) is left as it is. A profile update is a
    state, not an event, so a new one supersedes the same customer's older queued or failed update to
    that playbook and destination (an older retry could otherwise overwrite newer values).
    Raises `DraftError` naming each bad row and field, and queues nothing then.
    """
    problems = validate_drafts(batch_id, drafts_df, kind, destination)
    if problems:
        raise DraftError("; ".join(problems[:20]) + (f" (and {len(problems) - 20} more)" if len(problems) > 20 else ""))
    ensure_outbox(con)
    moment = naive_utc(now or utcnow())
    properties = kind == "properties"
    customers = drafts_df["customer_id"].astype(str).to_numpy()
    playbooks = drafts_df["playbook_id"].astype(str).to_numpy()
    bodies = drafts_df["body"].astype(str).to_numpy()
    rows = pd.DataFrame({
        "send_id": [send_id_for(batch_id, c, p, b if properties else None)
                    for c, p, b in zip(customers, playbooks, bodies)],
        "batch_id": str(batch_id),
        "customer_id": customers,
        "playbook_id": playbooks,
        "subject": "" if properties else drafts_df["subject"].astype(str).to_numpy(),
        "body": bodies,
        "cta": None if properties else [None if pd.isna(v) else str(v) for v in drafts_df["cta"]],
    })
    # One pending update per customer and playbook: the last one given wins.
    rows = rows.drop_duplicates(["customer_id", "playbook_id"] if properties else "send_id", keep="last")
    rows = rows.drop_duplicates("send_id")
    con.register("nextbest_drafts_to_enqueue", rows)
    try:
        new = con.execute(f"""select send_id, customer_id, playbook_id from nextbest_drafts_to_enqueue
                              where send_id not in (select send_id from {OUTBOX})""").df()
        con.execute(
            f"""insert into {OUTBOX} (send_id, batch_id, customer_id, playbook_id, subject, body, cta,
                                      state, attempts, next_attempt_at, enqueued_at, kind, destination)
                select d.send_id, d.batch_id, d.customer_id, d.playbook_id, d.subject, d.body, d.cta,
                       'queued', 0, ?, ?, ?, ?
                from nextbest_drafts_to_enqueue d
                where d.send_id not in (select send_id from {OUTBOX})""",
            [moment, moment, kind, destination],
        )
    finally:
        con.unregister("nextbest_drafts_to_enqueue")
    superseded = _supersede(con, new, destination) if properties and len(new) else 0
    return EnqueueSummary(str(batch_id), len(new), len(rows) - len(new), superseded)


def _supersede(con, new: pd.DataFrame, destination: str) -> int:
    """Retire pending profile updates that the just-queued ones (`new`) replace; returns how many."""
    con.register("nextbest_new_updates", new)
    try:
        before = con.execute(f"select count(*) from {OUTBOX} where state = 'superseded'").fetchall()[0][0]
        con.execute(
            f"""update {OUTBOX} o set state = 'superseded', last_error = 'superseded by ' || n.send_id
                from nextbest_new_updates n
                where o.kind = 'properties' and o.destination = ? and o.state in ('queued', 'failed')
                  and o.customer_id = n.customer_id and o.playbook_id = n.playbook_id
                  and o.send_id <> n.send_id""",
            [destination],
        )
        after = con.execute(f"select count(*) from {OUTBOX} where state = 'superseded'").fetchall()[0][0]
    finally:
        con.unregister("nextbest_new_updates")
    return after - before


def scope(batch_id: str | None = None, kind: str | None = None, destination: str | None = None,
          alias: str = "") -> tuple[str, list]:
    """SQL conditions (each starting with `and`) and their parameters for a slice of the outbox."""
    prefix = f"{alias}." if alias else ""
    sql, params = [], []
    for column, value in (("batch_id", batch_id), ("kind", kind), ("destination", destination)):
        if value is not None:
            sql.append(f"and {prefix}{column} = ?")
            params.append(value)
    return " ".join(sql), params


def state_counts(con, batch_id: str | None = None, kind: str | None = None,
                 destination: str | None = None) -> dict[str, int]:
    """Rows per outbox state (all, or one batch / kind / destination)."""
    where, params = scope(batch_id, kind, destination)
    rows = con.execute(f"select state, count(*) from {OUTBOX} where true {where} group by 1", params).fetchall()
    return {state: 0 for state in STATES} | dict(rows)


def due_messages(con, now: datetime, limit: int, cap_since: datetime, batch_id: str | None = None,
                 kind: str | None = None, destination: str = ESP_DESTINATION) -> pd.DataFrame:
    """Up to `limit` rows due now for `destination` (optionally one batch or kind), at most one per
    customer, with the send-time facts the policy needs: the customer's email, time zone, opt-in,
    last suppressing event, and recent marketing sends (profile updates do not count towards caps)."""
    where, scoped = scope(batch_id, kind, destination, alias="o")
    params: list = [naive_utc(now), *scoped, 2 * limit, limit, naive_utc(cap_since)]
    return con.execute(
        f"""
        with earliest as (
            -- the earliest due rows first (a top-N, not a sort of the whole outbox); twice the
            -- limit leaves room for customers with several rows due
            select o.*
            from {OUTBOX} o
            where o.state in ('queued', 'failed') and o.next_attempt_at <= ? {where}
            order by o.next_attempt_at, o.send_id
            limit ?
        ),
        due as (
            select *, row_number() over (partition by customer_id order by next_attempt_at, send_id) as rn
            from earliest
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
            where state in ('sent', 'sending') and coalesce(sent_at, claimed_at) >= ? and kind = 'message'
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
               p.state, p.kind, c.customer_id is not null as customer_found, c.email, c.first_name, c.timezone,
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


def in_flight(con, run_token: str, kind: str | None = None, destination: str = ESP_DESTINATION) -> pd.DataFrame:
    """Rows for `destination` (optionally one kind) that a previous run claimed and never settled
    (it crashed or was killed mid-send)."""
    where, params = scope(None, kind, destination, alias="o")
    return con.execute(
        f"""select o.send_id, o.batch_id, o.customer_id, o.playbook_id, o.subject, o.body, o.cta, o.attempts,
                   o.kind, c.email, c.first_name
            from {OUTBOX} o left join raw.customers c using (customer_id)
            where o.state = 'sending' and coalesce(o.claim_token, '') <> ? {where}""",
        [run_token, *params],
    ).df()


def claim(con, send_ids: list[str], run_token: str, now: datetime, esp: str) -> None:
    """Mark rows in flight (state `sending`, attempts + 1) before any of them is sent."""
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

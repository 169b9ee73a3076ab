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

All of it goes through the warehouse resource, in SQL DuckDB and Snowflake both
speak: readers take the warehouse or a session, `claim` and `settle` write in the
caller's transaction (the sender chooses the commit points), and `enqueue_batch`
is one transaction of its own. A claim takes only rows still queued or failed, and
the sender then sends only the rows its claim holds (`held_by_run`): two exports
that overlap on Snowflake never send a row twice. DataFrames reach SQL as staged relations
(`stage_df`), never as engine-specific views.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson
import pandas as pd

from dagster_project.ingest.contract import NEXTBEST_SCHEMA, create_raw_schema
from dagster_project.resources.warehouse import IN_CHUNK, WarehouseInterface, WarehouseSession, in_values

OUTBOX = f"{NEXTBEST_SCHEMA}.outbox"
ATTEMPTS = f"{NEXTBEST_SCHEMA}.outbox_attempts"
STATES = ("queued", "sending", "sent", "failed", "dead", "suppressed", "superseded")
DRAFT_COLUMNS = ("batch_id", "customer_id", "playbook_id", "subject", "body", "cta")
# What else of a draft the ESP gets when the drafts have it: the preheader, and the offer the body words
# (its id, so the ESP template can apply the code). Optional: callers queuing their own rows may leave them out.
MESSAGE_EXTRAS = ("preheader", "offer_id")
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
  preheader varchar,
  offer_id varchar,
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
    f"alter table {OUTBOX} add column if not exists preheader varchar",
    f"alter table {OUTBOX} add column if not exists offer_id varchar",
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


# The tables the outbox writes and reads, and the outbox columns added since it first shipped.
NEEDED_TABLES = {("nextbest", "outbox"), ("nextbest", "outbox_attempts"), ("raw", "customers"),
                 ("raw", "email_events")}
LATER_COLUMNS = {"kind", "destination", *MESSAGE_EXTRAS}


def ensure_outbox(warehouse: WarehouseInterface) -> None:
    """Create `nextbest.outbox`, `nextbest.outbox_attempts` (and the raw tables they read) if missing.

    One query when all is in place: every DDL statement is a round trip of its own (on DuckDB a
    reopened file), and the sender calls this on every run.
    """
    found = warehouse.read_df(
        "select lower(table_schema) as schema_name, lower(table_name) as table_name, "
        "lower(column_name) as column_name from information_schema.columns "
        "where lower(table_schema) in ('raw', 'nextbest') "
        "and lower(table_name) in ('outbox', 'outbox_attempts', 'customers', 'email_events')")
    tables = set(zip(found["schema_name"], found["table_name"]))
    outbox_columns = set(found.loc[found["table_name"] == "outbox", "column_name"])
    if NEEDED_TABLES <= tables and LATER_COLUMNS <= outbox_columns:
        return
    create_raw_schema(warehouse)
    warehouse.execute(f"create schema if not exists {NEXTBEST_SCHEMA}")
    warehouse.execute(OUTBOX_DDL)
    for statement in OUTBOX_MIGRATIONS:
        warehouse.execute(statement)
    warehouse.execute(ATTEMPTS_DDL)


def _stage(tx: WarehouseSession, frame: pd.DataFrame) -> str:
    """`frame` staged for SQL in `tx`, its columns prefixed `new_`: statements that update the outbox
    from it then name the outbox's own columns unqualified, which reads the same on both engines."""
    return tx.stage_df(NEXTBEST_SCHEMA, frame.rename(columns=lambda c: f"new_{c}"))


class DraftError(ValueError):
    """Rows that cannot be enqueued; the message names every bad row and field."""


def _blank(column: pd.Series) -> pd.Series:
    """Which values of `column` are missing or only whitespace."""
    return column.isna() | (column.astype(str).str.strip() == "")


def _not_json_objects(bodies: pd.Series) -> pd.Series:
    """Which bodies are not a JSON object. A text that does not start with `{` and end with `}` is
    not one, without parsing; the rest are parsed, a row at a time (the one step that cannot be vectorised)."""
    text = bodies.astype(str).str.strip()
    braced = text.str.startswith("{") & text.str.endswith("}")
    bad = ~braced
    bad[braced] = [not _is_json_object(t) for t in text[braced]]
    return bad


def validate_drafts(batch_id: str, drafts: pd.DataFrame, kind: str = "message",
                    destination: str = ESP_DESTINATION) -> list[str]:
    """Problems with a batch of drafts (or profile updates), each naming the row and field (empty if fine).

    Checked a column at a time; only the rows with a problem are visited one by one, to name them.
    """
    if kind not in KINDS:
        return [f"kind {kind!r} is not one of {', '.join(KINDS)}"]
    if kind == "message" and destination != ESP_DESTINATION:
        return [f"messages go to destination {ESP_DESTINATION!r}, not {destination!r}"]
    columns = DRAFT_COLUMNS if kind == "message" else PROPERTY_COLUMNS
    missing = [c for c in columns if c not in drafts.columns]
    if missing:
        return [f"{kind} rows for batch {batch_id!r} lack column(s) {', '.join(missing)}"]
    required = ("customer_id", "playbook_id", "subject", "body") if kind == "message" else columns[1:]
    frame = drafts.reset_index(drop=True)
    other_batch = frame["batch_id"].astype(str) != str(batch_id)
    empty = {field: _blank(frame[field]) for field in required}
    not_object = (_not_json_objects(frame["body"]) & ~empty["body"] if kind == "properties"
                  else pd.Series(False, index=frame.index))
    flagged = other_batch | not_object
    for column in empty.values():
        flagged |= column
    problems = []
    for position in flagged[flagged].index:
        where = f"{'draft' if kind == 'message' else 'properties'} row {position} " \
                f"(customer_id={frame.at[position, 'customer_id']!r})"
        if other_batch[position]:
            problems.append(f"{where}: batch_id is {frame.at[position, 'batch_id']!r}, expected {batch_id!r}")
        problems.extend(f"{where}: {field} is empty" for field in required if empty[field][position])
        if not_object[position]:
            problems.append(f"{where}: body is not a JSON object of properties")
    return problems


def parse_json(text: str | bytes) -> Any:
    """`json.loads`, through orjson first: a profile export checks (and the file sink reads back) a
    JSON text per customer, 2M at 1M customers, and orjson parses one several times faster. What
    orjson refuses and Python's parser takes (NaN, lone surrogates) falls back to the latter.
    For a text's shape and its strings: orjson reads integers past 64 bits as floats."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _is_json_object(text) -> bool:
    try:
        return isinstance(parse_json(str(text)), dict)
    except ValueError:
        return False


@dataclass(frozen=True)
class EnqueueSummary:
    batch_id: str
    queued: int
    already_in_outbox: int
    superseded: int = 0  # older pending profile updates the new ones replace


def enqueue_batch(warehouse: WarehouseInterface, batch_id: str, drafts_df: pd.DataFrame,
                  now: datetime | None = None, *, kind: str = "message",
                  destination: str = ESP_DESTINATION) -> EnqueueSummary:
    """Queue a batch: approved drafts (batch_id, customer_id, playbook_id, subject, body, cta), or with
    `kind="properties"` profile updates (batch_id, customer_id, playbook_id, body = JSON object).

    Idempotent: a row already in the outbox (same send id) is left as it is. A profile update is a
    state, not an event, so a new one supersedes the same customer's older queued or failed update to
    that playbook and destination (an older retry could otherwise overwrite newer values).
    Raises `DraftError` naming each bad row and field, and queues nothing then. One transaction.
    """
    problems = validate_drafts(batch_id, drafts_df, kind, destination)
    if problems:
        raise DraftError("; ".join(problems[:20]) + (f" (and {len(problems) - 20} more)" if len(problems) > 20 else ""))
    ensure_outbox(warehouse)
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
        **{extra: None if properties or extra not in drafts_df else
           [None if pd.isna(v) or v == "" else str(v) for v in drafts_df[extra]] for extra in MESSAGE_EXTRAS},
    })
    # One pending update per customer and playbook: the last one given wins.
    rows = rows.drop_duplicates(["customer_id", "playbook_id"] if properties else "send_id", keep="last")
    rows = rows.drop_duplicates("send_id")
    if rows.empty:
        return EnqueueSummary(str(batch_id), 0, 0)
    with warehouse.transaction() as tx:
        # A send id hashes its batch and customer ids, so the batch's rows for these customers are all it
        # can already be among (a batch queued a range of customers at a time never reads the whole batch).
        bounds = [str(batch_id), rows["customer_id"].min(), rows["customer_id"].max()]
        known = tx.read_df(f"select send_id from {OUTBOX} where batch_id = ? and {IN_CHUNK}", bounds)["send_id"]
        if properties:
            rows = _returning_values(tx, rows, bounds, destination, known)
        new = rows[~in_values(rows["send_id"], known)].astype("string").assign(
            state="queued", attempts=0, next_attempt_at=pd.Timestamp(moment).as_unit("us"),
            enqueued_at=pd.Timestamp(moment).as_unit("us"), kind=kind, destination=destination)
        if new.empty:
            return EnqueueSummary(str(batch_id), 0, len(rows))
        staged = _stage(tx, new)
        superseded = _supersede(tx, staged, destination) if properties else 0
        columns = ", ".join(new.columns)
        tx.execute(f"""insert into {OUTBOX} ({columns})
                       select {", ".join(f"new_{c}" for c in new.columns)} from {staged} n
                       where not exists (select 1 from {OUTBOX} o where o.send_id = n.new_send_id)""")
    return EnqueueSummary(str(batch_id), len(new), len(rows) - len(new), superseded)


def _returning_values(tx: WarehouseSession, rows: pd.DataFrame, bounds: list, destination: str,
                      known: pd.Series) -> pd.DataFrame:
    """Profile updates whose send id the batch already holds, though a later update of the same customer
    and playbook came between (A, then B, then A again in one batch): a new send id (A's with the count of
    updates before it), so A is queued and replaces B at the destination. Queuing the latest update again
    is still a no-op. `bounds`: the batch id and the rows' first and last customer id."""
    again = in_values(rows["send_id"], known)
    if not again.any():
        return rows
    latest = tx.read_df(f"""select customer_id, playbook_id, count(*) as n, max_by(body, enqueued_at) as body
                             from {OUTBOX} where batch_id = ? and {IN_CHUNK} and kind = 'properties'
                               and destination = ? group by customer_id, playbook_id""", [*bounds, destination])
    latest = {(c, p): (int(n), b) for c, p, n, b in latest.itertuples(index=False, name=None)}
    rows = rows.copy()
    for index, customer, playbook, body in rows.loc[again, ["customer_id", "playbook_id", "body"]].itertuples(name=None):
        count, latest_body = latest.get((customer, playbook), (0, body))
        if latest_body != body:
            rows.at[index, "send_id"] = send_id_for(bounds[0], customer, playbook, f"{body}\x1e{count}")
    return rows


def _supersede(tx: WarehouseSession, staged: str, destination: str) -> int:
    """Retire pending profile updates that the staged new ones replace; returns how many."""
    replaced = """kind = 'properties' and destination = ? and state in ('queued', 'failed')
                   and customer_id = n.new_customer_id and playbook_id = n.new_playbook_id
                   and send_id <> n.new_send_id"""
    # Counted before the update: Snowflake applies a transaction's writes at commit.
    count = tx.read_df(f"select count(distinct send_id) as n from {OUTBOX}, {staged} n where {replaced}",
                       [destination])
    tx.execute(f"update {OUTBOX} set state = 'superseded', last_error = 'superseded by ' || n.new_send_id "
               f"from {staged} n where {replaced}", [destination])
    return int(count.iloc[0, 0])


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


def state_counts(db: WarehouseInterface | WarehouseSession, batch_id: str | None = None, kind: str | None = None,
                 destination: str | None = None) -> dict[str, int]:
    """Rows per outbox state (all, or one batch / kind / destination)."""
    where, params = scope(batch_id, kind, destination)
    rows = db.read_df(f"select state, count(*) as n from {OUTBOX} where 1 = 1 {where} group by state", params)
    return {state: 0 for state in STATES} | {str(state): int(n) for state, n in zip(rows["state"], rows["n"])}


# The order rows are sent in: due time, then customer (the order a batch was queued in, so a round's
# rows lie together in storage), then send id.
SEND_ORDER = ("next_attempt_at", "customer_id", "send_id")
ROUND_END = ("round_end_at", "round_end_customer", "round_end_send_id")


def due_rounds(db: WarehouseInterface | WarehouseSession, now: datetime, rows: int, round_rows: int,
               batch_id: str | None = None, kind: str | None = None,
               destination: str = ESP_DESTINATION) -> pd.DataFrame:
    """Where the rounds of the next `rows` rows due for `destination` end: the send order key
    (`ROUND_END` columns) of every `round_rows`-th of them and of the last one, in send order.

    One top-N of three narrow columns, not a sort of whole rows, for many rounds; each round then
    reads its own rows with `due_messages(after=<the previous end>, last=<its end>)`. Only the ends
    come back, so memory holds a key per round.
    """
    where, scoped = scope(batch_id, kind, destination, alias="o")
    keys = ", ".join(SEND_ORDER)
    ends = ", ".join(f"{column} as {end}" for column, end in zip(SEND_ORDER, ROUND_END))
    return db.read_df(f"""
        select {ends} from (
            select {keys}, row_number() over (order by {keys}) as position, count(*) over () as due_rows
            from (select {", ".join(f"o.{c}" for c in SEND_ORDER)} from {OUTBOX} o
                  where o.state in ('queued', 'failed') and o.next_attempt_at <= ? {where}
                  order by {", ".join(f"o.{c}" for c in SEND_ORDER)} limit {int(rows)}) due
        ) numbered
        where mod(position, {int(round_rows)}) = 0 or position = due_rows
        order by position""", [naive_utc(now), *scoped])


def _send_key(key) -> tuple[datetime, str, str]:
    at, customer, send_id = key
    return naive_utc(pd.Timestamp(at).to_pydatetime()), str(customer), str(send_id)


def _between(after: tuple | None, last: tuple) -> tuple[str, list]:
    """SQL (and parameters) for rows whose send order key is above `after` (when given) and at most `last`.

    The plain range on the due time (and on the customer, when both ends share a due time) lets either
    engine skip storage blocks by their min/max; the nested comparisons then cut the exact ends.
    """
    t2, c2, s2 = _send_key(last)
    sql = ["o.next_attempt_at <= ?",
           "(o.next_attempt_at < ? or (o.next_attempt_at = ? and (o.customer_id < ? "
           "or (o.customer_id = ? and o.send_id <= ?))))"]
    params: list = [t2, t2, t2, c2, c2, s2]
    if after is not None:
        t1, c1, s1 = _send_key(after)
        sql += ["o.next_attempt_at >= ?",
                "(o.next_attempt_at > ? or (o.next_attempt_at = ? and (o.customer_id > ? "
                "or (o.customer_id = ? and o.send_id > ?))))"]
        params += [t1, t1, t1, c1, c1, s1]
        if t1 == t2:
            sql.append("o.customer_id >= ? and o.customer_id <= ?")
            params += [c1, c2]
    return " ".join(f"and {part}" for part in sql), params


def due_messages(db: WarehouseInterface | WarehouseSession, now: datetime, after: tuple | None, last: tuple,
                 limit: int, cap_since: datetime, batch_id: str | None = None, kind: str | None = None,
                 destination: str = ESP_DESTINATION) -> pd.DataFrame:
    """One round: up to `limit` rows for `destination` (optionally one batch or kind) whose send order
    key is above `after` (the previous round's end, None for the first) and at most `last` (this
    round's end, from `due_rounds`) and that are still queued or failed and due, at most one per
    customer, with the send-time facts the policy needs: the customer's email, time zone, opt-in, last
    suppressing event, and recent marketing sends (profile updates do not count towards caps).

    Reading between two keys, not the earliest due rows, makes a round cost what its own rows cost.
    """
    where, scoped = scope(batch_id, kind, destination, alias="o")
    within, bounds = _between(after, last)
    params: list = [naive_utc(now), *scoped, *bounds, naive_utc(cap_since)]
    # Profile updates ignore suppression and caps (policy.py): a properties-only read skips both scans.
    marketing = "and 1 = 0" if kind == "properties" else ""
    order = ", ".join(SEND_ORDER)
    # Limits are spliced in as numbers: Snowflake takes no bind variable there.
    return db.read_df(
        f"""
        with in_round as (
            select o.send_id, o.batch_id, o.customer_id, o.playbook_id, o.subject, o.body, o.cta,
                   o.preheader, o.offer_id, o.attempts,
                   o.state, o.kind, o.next_attempt_at,
                   row_number() over (partition by o.customer_id order by o.next_attempt_at, o.send_id) as rn
            from {OUTBOX} o
            where o.state in ('queued', 'failed') and o.next_attempt_at <= ? {where} {within}
        ),
        picked as (
            -- rows queued between the round's ends since `due_rounds` read them can add a few: the
            -- limit keeps the round its size, and the rest wait for a later round
            select * from in_round where rn = 1 order by {order} limit {int(limit)}
        ),
        suppressing as (
            select customer_id, max_by(event_type, occurred_at) as event_type, max(occurred_at) as occurred_at
            from raw.email_events
            where event_type in ('unsubscribe', 'bounce', 'complaint') {marketing}
              and customer_id in (select customer_id from picked)
            group by customer_id
        ),
        recent as (
            select customer_id, count(*) as n
            from {OUTBOX}
            where state in ('sent', 'sending') and coalesce(sent_at, claimed_at) >= ? and kind = 'message'
              {marketing} and customer_id in (select customer_id from picked)
            group by customer_id
        ),
        customers as (
            -- opted in when every row of the customer says so (bool_and, spelled for both engines);
            -- a blank on any row is consent not recorded (null), never taken as a yes
            select customer_id, any_value(email) as email, any_value(first_name) as first_name,
                   any_value(timezone) as timezone,
                   case min(case when marketing_opt_in then 1 when not marketing_opt_in then 0 else -1 end)
                       when 1 then true when 0 then false end as marketing_opt_in
            from raw.customers where customer_id in (select customer_id from picked)
            group by customer_id
        )
        select p.send_id, p.batch_id, p.customer_id, p.playbook_id, p.subject, p.body, p.cta,
                   p.preheader, p.offer_id, p.attempts,
               p.state, p.kind, c.customer_id is not null as customer_found, c.email, c.first_name, c.timezone,
               c.marketing_opt_in, s.event_type as suppress_event, s.occurred_at as suppress_at,
               coalesce(r.n, 0) as recent_sends
        from picked p
        left join customers c on c.customer_id = p.customer_id
        left join suppressing s on s.customer_id = p.customer_id
        left join recent r on r.customer_id = p.customer_id
        order by {", ".join(f"p.{c}" for c in SEND_ORDER)}
        """,
        params,
    )


def next_due_at(db: WarehouseInterface | WarehouseSession, batch_id: str | None = None, kind: str | None = None,
                destination: str = ESP_DESTINATION) -> datetime | None:
    """When the next queued or failed row for `destination` comes due (UTC, no zone); None when none waits."""
    where, params = scope(batch_id, kind, destination)
    found = db.read_df(f"select min(next_attempt_at) as next_at from {OUTBOX} "
                       f"where state in ('queued', 'failed') {where}", params).iloc[0, 0]
    return None if pd.isna(found) else pd.Timestamp(found).to_pydatetime()


def in_flight(db: WarehouseInterface | WarehouseSession, run_token: str, kind: str | None = None,
              destination: str = ESP_DESTINATION) -> pd.DataFrame:
    """Rows for `destination` (optionally one kind) that a previous run claimed and never settled
    (it crashed or was killed mid-send)."""
    where, params = scope(None, kind, destination, alias="o")
    return db.read_df(
        f"""select o.send_id, o.batch_id, o.customer_id, o.playbook_id, o.subject, o.body, o.cta,
                   o.preheader, o.offer_id, o.attempts,
                   o.kind, c.email, c.first_name
            from {OUTBOX} o left join raw.customers c on c.customer_id = o.customer_id
            where o.state = 'sending' and coalesce(o.claim_token, '') <> ? {where}""",
        [run_token, *params],
    )


def replaced_since(db: WarehouseInterface, send_ids: list[str]) -> set[str]:
    """Of these profile updates, those a newer update of the same customer, playbook and destination has
    replaced (queued, retrying, in flight or sent). `_supersede` leaves an update that is in flight alone
    (it may be at the ESP already); once a dead run's update proves never to have arrived, it is retired
    rather than sent after the newer one, whose values it would overwrite."""
    if not send_ids:
        return set()
    with db.transaction() as tx:
        staged = _stage(tx, pd.DataFrame({"send_id": pd.Series(send_ids, dtype="string")}))
        found = tx.read_df(f"""
            select s.send_id from {OUTBOX} s
            where s.send_id in (select new_send_id from {staged}) and s.kind = 'properties'
              and exists (select 1 from {OUTBOX} o
                          where o.kind = 'properties' and o.customer_id = s.customer_id
                            and o.playbook_id = s.playbook_id and o.destination = s.destination
                            and o.enqueued_at > s.enqueued_at and o.send_id <> s.send_id
                            and o.state in ('queued', 'failed', 'sending', 'sent'))""")
    return set(found["send_id"].astype(str))


def claim(tx: WarehouseSession, send_ids: list[str], run_token: str, now: datetime, esp: str) -> None:
    """Mark rows in flight (state `sending`, attempts + 1) before any of them is sent.

    In flight once `tx` commits: the sender commits the claim before it sends anything.
    """
    if not send_ids:
        return
    staged = _stage(tx, pd.DataFrame({"send_id": pd.Series(send_ids, dtype="string")}))
    tx.execute(
        f"""update {OUTBOX} set state = 'sending', claim_token = ?, claimed_at = ?, attempts = attempts + 1, esp = ?
            where send_id in (select new_send_id from {staged}) and state in ('queued', 'failed')""",
        [run_token, naive_utc(now), esp],
    )


def held_by_run(warehouse: WarehouseInterface, run_token: str, send_ids: pd.Series) -> pd.Series:
    """Which of `send_ids` (just claimed and committed) this run holds: state `sending` under its token.

    On Snowflake another export may have claimed some of them between our read and our claim (the
    claim only takes rows still `queued` or `failed`); those are the other run's to send. Counted
    first, as every row is ours unless exports overlap (on DuckDB they cannot: one writer per file).
    """
    mine = f"from {OUTBOX} where state = 'sending' and claim_token = ?"
    count = int(warehouse.read_df(f"select count(*) as n {mine}", [run_token])["n"].iloc[0])
    if count == len(send_ids):
        return pd.Series(True, index=send_ids.index, dtype=bool)
    held = warehouse.read_df(f"select send_id {mine}", [run_token])["send_id"].astype(str)
    return send_ids.astype(str).isin(set(held))


OUTCOME_TEXT = ("send_id", "state", "last_error", "idempotency_key", "esp_message_id", "outcome", "detail", "esp")


def settle(tx: WarehouseSession, outcomes: pd.DataFrame, run_token: str | None, now: datetime) -> None:
    """Write outcomes (send_id, state, last_error, next_attempt_at, sent_at, idempotency_key,
    esp_message_id, outcome, detail, esp, attempt) and append them to `outbox_attempts`, in `tx`.

    With a run token only rows this run still holds are touched, so a stale process cannot
    overwrite a newer outcome.
    """
    if outcomes.empty:
        return
    frame = outcomes[[*OUTCOME_TEXT, "next_attempt_at", "sent_at", "attempt"]].copy()
    # Typed columns, so an all-empty one still stages as text, a timestamp or a number on both engines.
    frame[list(OUTCOME_TEXT)] = frame[list(OUTCOME_TEXT)].astype("string")
    for column in ("next_attempt_at", "sent_at"):
        frame[column] = pd.to_datetime(frame[column]).astype("datetime64[us]")
    frame["attempt"] = frame["attempt"].astype("Int64")
    frame["run_token"] = pd.Series(run_token, index=frame.index, dtype="string")
    frame["recorded_at"] = pd.Series(naive_utc(now), index=frame.index).astype("datetime64[us]")
    staged = _stage(tx, frame)
    # The token is compared with a staged column, not a bound parameter: with `claim_token = ?` DuckDB
    # took 50 s to settle a 50,000-row round that this form settles in 0.2 s.
    guard = "and claim_token = r.new_run_token" if run_token else ""
    tx.execute(
        f"""update {OUTBOX} set
                state = r.new_state,
                last_error = coalesce(r.new_last_error, last_error),
                next_attempt_at = coalesce(r.new_next_attempt_at, next_attempt_at),
                sent_at = coalesce(r.new_sent_at, sent_at),
                idempotency_key = coalesce(r.new_idempotency_key, idempotency_key),
                esp_message_id = coalesce(r.new_esp_message_id, esp_message_id)
            from {staged} r
            where send_id = r.new_send_id {guard}""")
    tx.execute(
        f"""insert into {ATTEMPTS} (send_id, attempt, run_token, esp, outcome, detail, recorded_at)
            select new_send_id, new_attempt, new_run_token, new_esp, new_outcome, new_detail, new_recorded_at
            from {staged}""")

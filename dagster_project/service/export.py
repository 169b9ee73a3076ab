"""Tags and agent-view fields out to the ESP's profile properties and a helpdesk sink, through the outbox.

Each customer's properties become one outbox row of kind `properties` per destination
(playbook `service_profile` to the ESP, `service_helpdesk` to the helpdesk sink; the
properties as JSON in `body`), so the outbox's deterministic send id, claim/settle loop
and idempotent adapters deliver them exactly once, through each adapter's
`update_profile`. Profile updates are not marketing sends: no frequency cap, opt-in,
suppression or quiet hours hold them, and they never count towards a customer's cap,
so this export can run every day beside the campaigns without touching them. Only
customers whose properties changed since their last export are queued; a newer update
replaces an older one still waiting. The helpdesk sink is helpdesk-neutral: a signed webhook
(`NEXTBEST_HELPDESK_WEBHOOK_URL`, `NEXTBEST_HELPDESK_WEBHOOK_SECRET`) or a JSONL file
(`NEXTBEST_HELPDESK_FILE`, default helpdesk.jsonl beside the DuckDB file).

Only customers whose fields may have changed are read at all. `nextbest.service_export_state`
keeps, per destination playbook and customer, an md5 of the exported fields as the warehouse
cast them to text (`fields_md5_sql`) when they were last looked at, and the batch of the
update that carries them. The warehouse picks the customers whose md5 differs, who have no
state yet, or whose update never arrived (dead, suppressed, superseded), into a scratch table
(`due_sql`); the state is a cache of the comparison below, so losing it costs time, not sends.
Those customers are read a customer-id range at a time (`NEXTBEST_BATCH_ROWS` customers):
their properties are turned into JSON column by column, compared with what was last queued
for them, and the changed ones queued; then each destination is sent in rounds of at most that
many rows. Memory follows the chunk, not the customer count. At 1M customers a day in which
4% changed reads 38k rows, not 1M.
"""

from __future__ import annotations

import json
import os
from datetime import date, datetime
from decimal import Decimal
from functools import partial
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd

from dagster_project.delivery import outbox
from dagster_project.delivery.esp import EspResource, FileEsp, WebhookEsp
from dagster_project.delivery.sender import ExportSummary, default_chunk_size, run_export
from dagster_project.ingest.contract import NEXTBEST_SCHEMA
from dagster_project.resources.warehouse import IN_CHUNK, KeyRange, WarehouseInterface, in_values
from dagster_project.service.context import SERVICE_CONTEXT, context_columns, read_context_chunk, require_service_context

PROFILE_PLAYBOOK = "service_profile"
HELPDESK_PLAYBOOK = "service_helpdesk"
# The outbox destination of each playbook: the configured ESP's profiles, or the helpdesk sink.
OUTBOX_DESTINATIONS = {PROFILE_PLAYBOOK: outbox.ESP_DESTINATION, HELPDESK_PLAYBOOK: "helpdesk"}
# Agent-view fields exported as properties (tags first); as_of_date is left out so an
# unchanged customer is not re-sent every day.
PROPERTY_FIELDS = (
    "high_ltv", "gift_recipient", "at_risk", "brand_advocate", "tenure_tier", "tenure_months",
    "lifetime_value_tier", "subscription_status", "plan", "cadence_days", "next_charge_date",
    "last_delivery_status", "last_delivery_date", "payment_health", "channel_preference",
    "tone_preference", "open_tickets", "has_repeat_issue", "repeat_issue_topic",
)
TAG_FIELDS = ("high_ltv", "gift_recipient", "at_risk", "brand_advocate")
# Whole numbers: an integer column with blanks reads as floats (28.0), which must still say 28,
# or every such customer would look changed.
WHOLE_FIELDS = ("tenure_months", "cadence_days", "open_tickets")
_dumps = partial(json.dumps, separators=(",", ":"))

EXPORT_STATE_TABLE = "service_export_state"
EXPORT_STATE = f"{NEXTBEST_SCHEMA}.{EXPORT_STATE_TABLE}"
EXPORT_STATE_DDL = f"""
create table if not exists {EXPORT_STATE} (
  playbook_id varchar not null,
  customer_id varchar not null,
  fields_md5 varchar not null,
  batch_id varchar not null
)
"""
FIELDS_MD5 = "fields_md5"
# Outbox states of an update that never reached its destination: its customer is looked at again.
NOT_ARRIVED = ("dead", "suppressed", "superseded")


def _plain(value: Any, whole: bool = False) -> Any:
    if value is None or (not isinstance(value, (str, bytes, list)) and pd.isna(value)):
        return None
    if isinstance(value, (datetime, date)):
        return value.isoformat()[:10]
    if isinstance(value, Decimal):
        value = float(value)
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    if whole and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def profile_properties(row: dict) -> dict[str, Any]:
    """The properties sent for one customer (`nextbest_` prefixed, JSON-ready)."""
    props = {f"nextbest_{k}": _plain(row.get(k), k in WHOLE_FIELDS) for k in PROPERTY_FIELDS}
    props["nextbest_tags"] = [t for t in TAG_FIELDS if _plain(row.get(t))]
    return props


def profile_body(row: dict) -> str:
    """One customer's properties as the outbox `body` (sorted keys, no spaces)."""
    return _dumps(profile_properties(row), sort_keys=True)


def _json_values(column: pd.Series, whole: bool) -> np.ndarray:
    """Each value of `column` as JSON text, encoding each distinct value once (blanks are null)."""
    codes, uniques = pd.factorize(column)
    texts = [_dumps(_plain(u, whole)) for u in uniques] + ["null"]  # code -1 (a blank) picks the last
    return np.asarray(texts, dtype=object)[codes]


def property_bodies(frame: pd.DataFrame) -> pd.Series:
    """`profile_body` of every row, built a column at a time (one Python step per row, not one per field)."""
    blank = pd.Series(None, index=frame.index, dtype=object)
    values = {f"nextbest_{k}": _json_values(frame[k] if k in frame else blank, k in WHOLE_FIELDS)
              for k in PROPERTY_FIELDS}
    tags = np.zeros(len(frame), dtype=np.int64)
    for bit, field in enumerate(TAG_FIELDS):
        codes, uniques = pd.factorize(frame[field] if field in frame else blank)
        truthy = np.asarray([bool(_plain(u)) for u in uniques] + [False])[codes]
        tags |= truthy.astype(np.int64) << bit
    tag_texts = np.asarray([_dumps([t for bit, t in enumerate(TAG_FIELDS) if combo >> bit & 1])
                            for combo in range(2 ** len(TAG_FIELDS))], dtype=object)
    values["nextbest_tags"] = tag_texts[tags]
    keys = sorted(values)
    # Field names hold no `%`, and values substituted into the template are not read again.
    template = "{" + ",".join(f"{_dumps(k)}:%s" for k in keys) + "}"
    return pd.Series([template % row for row in zip(*(values[k] for k in keys))], index=frame.index,
                     dtype=object)


def export_frame(frame: pd.DataFrame, playbook_id: str, batch_id: str, previous: dict[str, str],
                 bodies: pd.Series | None = None) -> pd.DataFrame:
    """Outbox profile updates (batch_id, customer_id, playbook_id, body) for changed customers only.

    `frame`: customer_service_context rows; `bodies`: their `property_bodies`, when already built.
    """
    bodies = property_bodies(frame) if bodies is None else bodies
    customers = frame["customer_id"].astype(str)
    changed = (customers.map(previous) != bodies).to_numpy()
    return pd.DataFrame({"batch_id": batch_id, "customer_id": customers[changed].to_numpy(),
                         "playbook_id": playbook_id, "body": bodies[changed].to_numpy()},
                        columns=list(outbox.PROPERTY_COLUMNS))


def last_exported(warehouse: WarehouseInterface, playbook_id: str, chunk: KeyRange | None = None,
                  within: str | None = None) -> pd.DataFrame:
    """customer_id, body, batch_id: the properties last queued for each customer to this destination
    and still on their way or delivered (dead, suppressed and superseded updates never arrived, so
    they do not count), and that update's batch; the customers of `chunk` only, when given, and
    of the relation `within` (a `customer_id` column), when given."""
    outbox.ensure_outbox(warehouse)
    in_chunk, params = (f"and {IN_CHUNK}", chunk.bounds) if chunk else ("", [])
    if within:
        in_chunk += f" and customer_id in (select customer_id from {within})"
    return warehouse.read_df(f"select customer_id, max_by(body, enqueued_at) as body, "
                             f"max_by(batch_id, enqueued_at) as batch_id from {outbox.OUTBOX} "
                             "where playbook_id = ? and kind = 'properties' "
                             f"and state in ('queued', 'failed', 'sending', 'sent') {in_chunk} group by customer_id",
                             [playbook_id, *params])


def fields_md5_sql(columns: Sequence[str], alias: str = "") -> str:
    """SQL (both engines) of an md5 over the exported `columns` of the mart as text: which columns,
    then each value (a blank apart from any text), so any change to what is exported changes it."""
    prefix = f"{alias}." if alias else ""
    parts = [f"'{','.join(columns)}'"] + [f"coalesce(cast({prefix}{c} as varchar), chr(30))" for c in columns]
    return f"md5(concat_ws(chr(31), {', '.join(parts)}))"


def ensure_export_state(warehouse: WarehouseInterface) -> None:
    """Create `nextbest.service_export_state` when missing."""
    if not warehouse.table_exists(NEXTBEST_SCHEMA, EXPORT_STATE_TABLE):
        warehouse.execute(f"create schema if not exists {NEXTBEST_SCHEMA}")
        warehouse.execute(EXPORT_STATE_DDL)


def check_playbooks(playbook_ids: Iterable[str]) -> None:
    """Raise a ValueError for a playbook id that is not one of the export's destinations (the ids are
    also spliced into SQL as literals)."""
    for playbook_id in playbook_ids:
        if playbook_id not in OUTBOX_DESTINATIONS:
            raise ValueError(f"service export: unknown destination playbook {playbook_id!r}; "
                             f"expected one of {', '.join(OUTBOX_DESTINATIONS)}")


def due_sql(columns: Sequence[str], playbook_ids: Sequence[str]) -> str:
    """The customers of the mart to look at for any of `playbook_ids`: their fields' md5 differs from
    the one recorded for that playbook, none is recorded, or an update of the batch recorded never
    arrived (a superseded one too: at worst a customer is compared again for nothing)."""
    check_playbooks(playbook_ids)
    not_arrived = ", ".join(f"'{state}'" for state in NOT_ARRIVED)
    checks = " or ".join(f"""not exists (
            select 1 from {EXPORT_STATE} s
            where s.playbook_id = '{playbook_id}' and s.customer_id = c.customer_id and s.fields_md5 = c.{FIELDS_MD5}
              and not exists (select 1 from {outbox.OUTBOX} o
                              where o.kind = 'properties' and o.playbook_id = s.playbook_id
                                and o.customer_id = s.customer_id and o.batch_id = s.batch_id
                                and o.state in ({not_arrived})))""" for playbook_id in playbook_ids)
    return (f"select c.customer_id from (select customer_id, {fields_md5_sql(columns)} as {FIELDS_MD5} "
            f"from {SERVICE_CONTEXT}) as c where {checks}")


def service_context_chunks(warehouse: WarehouseInterface, batch_rows: int,
                           playbook_ids: Sequence[str] = tuple(OUTBOX_DESTINATIONS)) -> Iterator[pd.DataFrame]:
    """The exported columns of `customer_service_context` and their `fields_md5`, `batch_rows`
    customers at a time, for the customers due a look for any of `playbook_ids` (`due_sql`).

    Each frame's `attrs["due"]` names the scratch table of those customers (dropped when the
    generator ends), so `queue_changed` reads only their last updates. Their state is deleted
    first and recorded again chunk by chunk (`state_rows`): a run cut short leaves the rest due.
    """
    require_service_context(warehouse)
    outbox.ensure_outbox(warehouse)
    ensure_export_state(warehouse)
    columns = context_columns(warehouse, PROPERTY_FIELDS)
    exported = columns[1:]
    with warehouse.scratch_table(NEXTBEST_SCHEMA, "export_due", f"as {due_sql(exported, playbook_ids)}") as due:
        warehouse.execute(f"delete from {EXPORT_STATE} where customer_id in (select customer_id from {due})")
        for chunk in warehouse.key_ranges(f"select customer_id from {due} order by customer_id", batch_rows):
            frame = read_context_chunk(warehouse, chunk, [*columns, f"{fields_md5_sql(exported)} as {FIELDS_MD5}"],
                                       where=f"customer_id in (select customer_id from {due})")
            frame.attrs["due"] = due
            yield frame


def helpdesk_sink_from_env() -> EspResource:
    """The helpdesk sink: signed webhook when `NEXTBEST_HELPDESK_WEBHOOK_URL` is set, else a JSONL file."""
    url = os.environ.get("NEXTBEST_HELPDESK_WEBHOOK_URL")
    if url:
        secret = os.environ.get("NEXTBEST_HELPDESK_WEBHOOK_SECRET")
        if not secret:
            raise ValueError("NEXTBEST_HELPDESK_WEBHOOK_URL is set but NEXTBEST_HELPDESK_WEBHOOK_SECRET is not")
        return WebhookEsp(base_url=url, secret=secret)
    from dagster_project.project import sink_file_default

    return FileEsp(path=os.environ.get("NEXTBEST_HELPDESK_FILE") or str(sink_file_default("helpdesk.jsonl")))


def queue_changed(warehouse: WarehouseInterface, frame: pd.DataFrame, as_of: str,
                  playbook_ids: Sequence[str]) -> dict[str, outbox.EnqueueSummary | None]:
    """Queue one chunk's changed customers for each destination playbook (None where none changed)."""
    bodies = property_bodies(frame)
    chunk = KeyRange(frame["customer_id"].min(), frame["customer_id"].max(), len(frame))
    queued: dict[str, outbox.EnqueueSummary | None] = {}
    states = []
    for playbook_id in playbook_ids:
        batch_id = f"{playbook_id}-{as_of}"
        last = last_exported(warehouse, playbook_id, chunk, frame.attrs.get("due"))
        changed = export_frame(frame, playbook_id, batch_id, dict(zip(last["customer_id"].tolist(),
                                                                       last["body"].tolist())), bodies)
        queued[playbook_id] = (outbox.enqueue_batch(warehouse, batch_id, changed, kind="properties",
                                                    destination=OUTBOX_DESTINATIONS[playbook_id])
                               if len(changed) else None)
        if FIELDS_MD5 in frame:
            states.append(state_rows(frame, playbook_id, last, changed))
    if states:
        warehouse.write_df(NEXTBEST_SCHEMA, EXPORT_STATE_TABLE, pd.concat(states, ignore_index=True))
    return queued


def state_rows(frame: pd.DataFrame, playbook_id: str, last: pd.DataFrame, changed: pd.DataFrame) -> pd.DataFrame:
    """`nextbest.service_export_state` rows of a chunk just queued: each customer's `fields_md5` and the
    batch of the update that now carries their properties (today's when one was queued, else that
    of the last one on its way or delivered)."""
    customers = frame["customer_id"].astype(str)
    carrier = pd.Series(last["batch_id"].astype(str).to_numpy(), index=last["customer_id"].astype(str).to_numpy())
    batch = customers.map(carrier).astype(object)
    queued = in_values(customers, changed["customer_id"])
    batch[queued] = changed["batch_id"].iloc[0] if len(changed) else None
    state = pd.DataFrame({"playbook_id": playbook_id, "customer_id": customers.to_numpy(),
                          FIELDS_MD5: frame[FIELDS_MD5].astype(str).to_numpy(), "batch_id": batch.to_numpy()})
    return state.dropna(subset=["batch_id"])


def export_service_context(warehouse: WarehouseInterface, chunks: Iterable[pd.DataFrame] | Sequence[dict],
                           as_of: str, destinations: dict[str, EspResource], batch_rows: int | None = None,
                           log: Callable[[str], None] | None = None, **export_kw) -> dict[str, dict]:
    """Queue changed customers per destination (playbook id -> adapter), a chunk of context rows at a
    time, then send every profile update due there (today's, and earlier ones still retrying) in
    rounds of at most `batch_rows`. Messages in the outbox are left alone.

    `chunks`: DataFrames of `customer_service_context` rows, each a range of customer ids
    (`service_context_chunks`: the customers due a look, and each one's `fields_md5`, which is
    then recorded in `nextbest.service_export_state`), or a few rows as dicts. Re-running is safe:
    queued rows keep their send id, sent ones are not sent again. `looked_at` counts the customers
    whose properties were compared.
    """
    check_playbooks(destinations)
    if isinstance(chunks, Sequence) and chunks and isinstance(chunks[0], dict):
        chunks = [pd.DataFrame(list(chunks))]
    counts = {p: {"looked_at": 0, "queued": 0, "superseded": 0} for p in destinations}
    result = {}
    with warehouse.kept_open():  # many small transactions: keep what opening costs
        for i, frame in enumerate(chunks):
            if frame.empty:
                continue
            for playbook_id in destinations:
                counts[playbook_id]["looked_at"] += len(frame)
            for playbook_id, queued in queue_changed(warehouse, frame, as_of, list(destinations)).items():
                counts[playbook_id]["queued"] += queued.queued if queued else 0
                counts[playbook_id]["superseded"] += queued.superseded if queued else 0
            if log:
                log(f"chunk {i}: {len(frame)} customers; queued so far {counts}")
        for playbook_id, esp in destinations.items():
            # The sender's own round size, and never more than a chunk of rows in memory.
            rounds = default_chunk_size(esp, "properties")
            rounds = min(rounds, batch_rows) if batch_rows else rounds
            summary: ExportSummary = run_export(warehouse, esp, kind="properties",
                                                destination=OUTBOX_DESTINATIONS[playbook_id], chunk_size=rounds,
                                                log=log, **export_kw)
            result[playbook_id] = {**counts[playbook_id], "sent": summary.sent, "duplicates": summary.duplicates,
                                   "suppressed": summary.suppressed, "dead": summary.dead,
                                   "remaining": summary.remaining}
    return result

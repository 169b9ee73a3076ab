"""ESP events back into `raw.email_events`: from a file, or from signed webhooks.

Both paths normalise each event to the contract (event_id, customer_id,
campaign_id, message_id, event_type, occurred_at), insert only event ids not
already stored, and quarantine rows that cannot be read in `raw.raw_quarantine`
with a reason naming the row and field. They write through the warehouse resource
(DuckDB or Snowflake) in one transaction, as `insert ... select ... where not exists`
from staged rows: an ESP re-delivering an event, or a whole file loaded twice,
adds nothing, neither to the events nor to the quarantine. Neither engine enforces a
unique event id, so two processes storing the same new event at the same instant could
both insert it; one receiver (`serve-webhooks`) serialises its own requests. Besides NextBest's own shape, Customer.io
reporting-webhook events (`metric`, `timestamp`, `data`), HubSpot email events (`id`, `type`,
`recipient`, `created`) and Klaviyo system-webhook items (`external_id`, `topic`, `payload`) are
understood; the latter two name a recipient by email, matched to raw.customers.email.
"""

from __future__ import annotations

import csv
import json
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import pandas as pd

from dagster_project.delivery.signing import (DEFAULT_TOLERANCE_SECONDS, SignatureError, verify, verify_customerio,
                                               verify_hubspot, verify_klaviyo)
from dagster_project.ingest.contract import (EMAIL_EVENT_TYPES, NEXTBEST_SCHEMA, QUARANTINE_TABLE, RAW_SCHEMA,
                                             create_raw_schema)
from dagster_project.resources.warehouse import WarehouseInterface, WarehouseSession, session_on

FIELDS = ("event_id", "customer_id", "campaign_id", "message_id", "event_type", "occurred_at")
EVENTS = f"{RAW_SCHEMA}.email_events"
QUARANTINE = f"{RAW_SCHEMA}.{QUARANTINE_TABLE}"
QUARANTINE_COLUMNS = ("source_table", "source_file", "row_number", "reason", "row_json", "quarantined_at")
# What ESPs call the contract's event types.
EVENT_TYPE_ALIASES = {
    "opened": "open", "clicked": "click", "converted": "conversion", "unsubscribed": "unsubscribe",
    "bounced": "bounce", "hard_bounce": "bounce", "dropped": "bounce", "spammed": "complaint",
    "complained": "complaint", "spam_report": "complaint", "marked_as_spam": "complaint",
    # HubSpot email event `type`s (lower-cased); SENT/DELIVERED/OPEN/CLICK/BOUNCE/DROPPED map as they are.
    "spamreport": "complaint",
    # Klaviyo topics after `event:klaviyo.` (metric names in snake case, both word orders seen in docs).
    "sent_email": "sent", "email_sent": "sent", "received_email": "delivered", "email_delivered": "delivered",
    "opened_email": "open", "email_opened": "open", "clicked_email": "click", "email_clicked": "click",
    "bounced_email": "bounce", "email_bounced": "bounce", "dropped_email": "bounce",
    "marked_email_as_spam": "complaint", "unsubscribed_from_email_marketing": "unsubscribe",
    "unsubscribed_from_list": "unsubscribe",
}


class EventError(ValueError):
    """An event that cannot be stored; the message names the field."""


@dataclass(frozen=True)
class IngestSummary:
    read: int
    inserted: int
    duplicates: int
    quarantined: int


def _timestamp(value: Any) -> datetime:
    if isinstance(value, (int, float)) or (isinstance(value, str) and value.strip().isdigit()):
        return datetime.fromtimestamp(float(value), tz=timezone.utc).replace(tzinfo=None)
    parsed = pd.Timestamp(str(value))
    if parsed.tzinfo is not None:
        parsed = parsed.tz_convert("UTC").tz_localize(None)
    return parsed.to_pydatetime()


def _first(*values: Any) -> Any:
    return next((v for v in values if v not in (None, "")), None)


def _hubspot_record(record: dict[str, Any]) -> dict[str, Any]:
    """A HubSpot email event (Email Events API shape): `created` is unix milliseconds."""
    created = record.get("created")
    return {
        "event_id": record.get("id"), "email": record.get("recipient"),
        "campaign_id": record.get("emailCampaignId"),
        "message_id": _first((record.get("sentBy") or {}).get("id"), record.get("id")),
        "event_type": record.get("type"),
        "occurred_at": created / 1000 if isinstance(created, (int, float)) else created,
    }


def _klaviyo_record(record: dict[str, Any]) -> dict[str, Any]:
    """A Klaviyo webhook item; `payload` has the shape of a Get Event response.

    The profile's `external_id` is NextBest's customer id (the Klaviyo adapter sets it);
    without it the profile's email is matched. Campaign and message ids fall back to
    Klaviyo's own (`$flow`, `$message`) when the flow did not pass NextBest's through.
    """
    payload = record.get("payload") or {}
    data = payload.get("data") if isinstance(payload.get("data"), dict) else payload
    attributes = data.get("attributes") or {}
    props = attributes.get("event_properties") or attributes.get("properties") or {}
    profiles = [i.get("attributes") or {} for i in payload.get("included") or [] if i.get("type") == "profile"]
    embedded = ((attributes.get("profile") or {}).get("data") or {}).get("attributes") or {}
    profile = profiles[0] if profiles else embedded
    return {
        "event_id": _first(record.get("external_id"), data.get("id")),
        "customer_id": profile.get("external_id"),
        "email": _first(profile.get("email"), props.get("$email"), props.get("email")),
        "campaign_id": _first(props.get("campaign_id"), props.get("batch_id"), props.get("$flow"),
                              props.get("Campaign Name")),
        "message_id": _first(props.get("message_id"), props.get("$message"), data.get("id")),
        "event_type": str(record.get("topic") or "").rsplit(".", 1)[-1],
        "occurred_at": _first(attributes.get("datetime"), attributes.get("timestamp")),
    }


def contract_shape(record: dict[str, Any]) -> dict[str, Any]:
    """An ESP's event in the contract's field names (HubSpot, Klaviyo, Customer.io or NextBest's own);
    the recipient may still be an `email` rather than a `customer_id`."""
    if "recipient" in record and "type" in record:  # HubSpot email event
        return _hubspot_record(record)
    if "topic" in record and "payload" in record:  # Klaviyo system webhook item
        return _klaviyo_record(record)
    if "metric" in record and isinstance(record.get("data"), dict):  # Customer.io reporting webhook
        data = record["data"]
        return {
            "event_id": record.get("event_id"), "customer_id": data.get("customer_id"),
            "campaign_id": data.get("campaign_id") or data.get("broadcast_id") or data.get("newsletter_id"),
            "message_id": data.get("delivery_id"), "event_type": record.get("metric"),
            "occurred_at": record.get("timestamp"),
        }
    return record


def _email_key(email: Any) -> str:
    return str(email).strip().lower()


def normalize_event(record: dict[str, Any], emails: Mapping[str, str] | None = None) -> dict[str, Any]:
    """One ESP event in the contract's shape; raises `EventError` naming the bad field.

    `emails` maps lower-cased raw.customers.email to customer_id, for ESPs that name the
    recipient by email rather than by NextBest's customer id.
    """
    record = contract_shape(record)
    if not record.get("customer_id") and record.get("email"):
        email = _email_key(record["email"])
        if email not in (emails or {}):
            raise EventError(f"email {record['email']!r} is not in raw.customers")
        record = {**record, "customer_id": emails[email]}
    event = {}
    for field in FIELDS:
        value = record.get(field)
        if value is None or (isinstance(value, float) and pd.isna(value)) or str(value).strip() == "":
            raise EventError(f"{field} is missing")
        event[field] = value if field == "occurred_at" else str(value).strip()
    kind = event["event_type"].lower()
    event["event_type"] = EVENT_TYPE_ALIASES.get(kind, kind)
    if event["event_type"] not in EMAIL_EVENT_TYPES:
        raise EventError(f"event_type {record.get('event_type')!r} is not one of {', '.join(EMAIL_EVENT_TYPES)}")
    try:
        event["occurred_at"] = _timestamp(event["occurred_at"])
    except (ValueError, TypeError, OverflowError):
        raise EventError(f"occurred_at {event['occurred_at']!r} is not a timestamp (ISO 8601 or unix seconds)") from None
    return event


def read_events_file(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(row number, record) pairs from a .jsonl/.ndjson/.json or .csv file; row numbers are 1-based."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as handle:
            return [(number, dict(row)) for number, row in enumerate(csv.DictReader(handle), start=2)]
    if suffix in (".jsonl", ".ndjson", ".json"):
        text = path.read_text(encoding="utf-8")
        if suffix == ".json" or text.lstrip().startswith("["):
            data = json.loads(text)
            return list(enumerate(payload_events(data), start=1))
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    rows.append((number, json.loads(line)))
                except json.JSONDecodeError as error:
                    rows.append((number, {"__unreadable__": f"not JSON ({error.msg})"}))
        return rows
    raise ValueError(f"{path}: expected a .jsonl, .ndjson, .json or .csv file of ESP events")


def store_events(warehouse, records: Iterable[tuple[int, dict[str, Any]]], source: str) -> IngestSummary:
    """Insert new events (by event id) into raw.email_events; quarantine unreadable ones, each once.

    `warehouse`: a warehouse resource (DuckDB or Snowflake), a session of one or a DuckDB
    connection. `records` are (row number, record) pairs; `source` names the file or webhook.
    """
    records = list(records)
    _ensure_tables(warehouse)
    unreadable = [_unreadable(record) for _, record in records]
    shaped = [(number, record, why, None if why else contract_shape(record))
              for (number, record), why in zip(records, unreadable)]
    good, bad, seen = [], [], set()
    with session_on(warehouse) as tx:
        known, emails = _recipients(tx, [shape for *_, shape in shaped if shape is not None])
        for number, record, why, shape in shaped:
            try:
                if why:
                    raise EventError(why)
                event = normalize_event(shape, emails)
                if event["customer_id"] not in known:
                    raise EventError(f"customer_id {event['customer_id']!r} is not in raw.customers")
            except EventError as error:
                bad.append({"row_number": number, "reason": f"{source} row {number}: {error}",
                            "row_json": json.dumps(record, default=str)})
                continue
            if event["event_id"] not in seen:
                seen.add(event["event_id"])
                good.append(event)
        inserted = _insert_new_events(tx, good)
        _quarantine(tx, bad, source)
    return IngestSummary(read=len(records), inserted=inserted,
                         duplicates=len(records) - len(bad) - inserted, quarantined=len(bad))


def _unreadable(record: Any) -> str | None:
    """Why a record cannot be an event before its fields are looked at (a line that is not JSON, or
    JSON that is not an object: `null`, a number, a list), else None."""
    if not isinstance(record, dict):
        kind = {list: "an array", str: "a string", bool: "true or false", type(None): "null"}.get(type(record), "a number")
        return f"not a JSON object ({kind})"
    return record.get("__unreadable__")


def _ensure_tables(warehouse) -> None:
    """The raw contract tables, created when raw.email_events or the quarantine is missing.

    Before the writing session: Snowflake commits an open transaction before any DDL.
    """
    with session_on(warehouse) as tx:
        present = tx.exists(RAW_SCHEMA, "email_events") and tx.exists(RAW_SCHEMA, QUARANTINE_TABLE)
    if not present:
        create_raw_schema(warehouse)


def _recipients(tx: WarehouseSession, shapes: list[dict[str, Any]]) -> tuple[set[str], dict[str, str]]:
    """The customer ids these events name that raw.customers holds, and lower-cased email -> customer_id
    for the emails they name; only those customers are read, not the whole table."""
    wanted = {str(s["customer_id"]).strip() for s in shapes if s.get("customer_id") not in (None, "")}
    wanted |= {_email_key(s["email"]) for s in shapes if not s.get("customer_id") and s.get("email")}
    if not wanted:
        return set(), {}
    staged = tx.stage_df(NEXTBEST_SCHEMA, pd.DataFrame({"recipient": sorted(wanted)}))
    found = tx.read_df(
        f"select c.customer_id, lower(trim(c.email)) as email from {RAW_SCHEMA}.customers c "
        f"where c.customer_id in (select recipient from {staged}) "
        f"or lower(trim(c.email)) in (select recipient from {staged})")
    known = {str(c) for c in found["customer_id"]}  # named by id or by email: in raw.customers either way
    emails = {e: str(c) for c, e in found.itertuples(index=False) if isinstance(e, str) and e in wanted}
    return known, emails


def _insert_new_events(tx: WarehouseSession, events: list[dict[str, Any]]) -> int:
    """Insert the events whose id raw.email_events lacks; return how many (counted before, in `tx`)."""
    if not events:
        return 0
    frame = pd.DataFrame(events, columns=list(FIELDS)).astype({"occurred_at": "datetime64[us]"})
    # Staged beside NextBest's tables, not in raw: on Snowflake raw belongs to the customer's loaders.
    staged = tx.stage_df(NEXTBEST_SCHEMA, frame)
    new = f"from {staged} i where not exists (select 1 from {EVENTS} e where e.event_id = i.event_id)"
    # Read before the insert: a Snowflake session reads nothing after its first write.
    inserted = int(tx.read_df(f"select count(*) as n {new}").iloc[0, 0])
    columns = ", ".join(FIELDS)
    tx.execute(f"insert into {EVENTS} ({columns}) select {', '.join(f'i.{c}' for c in FIELDS)} {new}")
    return inserted


def _quarantine(tx: WarehouseSession, bad: list[dict[str, Any]], source: str) -> None:
    """Add the unreadable rows to raw.raw_quarantine, except those already there (the same row of
    the same source, with the same reason and content: an ESP re-delivering it)."""
    if not bad:
        return
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    frame = pd.DataFrame(bad).assign(source_table="email_events", source_file=source,
                                     quarantined_at=pd.Timestamp(now).as_unit("us"))
    staged = tx.stage_df(NEXTBEST_SCHEMA, frame[list(QUARANTINE_COLUMNS)].astype({"row_number": "int64"}))
    same = " and ".join(f"q.{c} = n.{c}" for c in QUARANTINE_COLUMNS[:-1])
    columns = ", ".join(QUARANTINE_COLUMNS)
    tx.execute(f"insert into {QUARANTINE} ({columns}) select {', '.join(f'n.{c}' for c in QUARANTINE_COLUMNS)} "
               f"from {staged} n where not exists (select 1 from {QUARANTINE} q where {same})")


def ingest_events_file(warehouse, path: str | Path) -> IngestSummary:
    """`nextbest ingest-events FILE`: load a JSONL/CSV export of ESP events, deduplicated by event id.

    `warehouse`: a warehouse resource (DuckDB or Snowflake), a session of one or a DuckDB connection.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is not a file")
    return store_events(warehouse, read_events_file(path), str(path))


# -- webhook receiver --------------------------------------------------------------------------

VERIFIERS: dict[str, Callable[..., str]] = {"nextbest": verify, "customerio": verify_customerio,
                                             "hubspot": verify_hubspot, "klaviyo": verify_klaviyo}
URI_SIGNED = {"hubspot"}  # sources whose signature covers the method and the full URL


def payload_events(payload: Any, source: str = "") -> list[Any]:
    """The events in one JSON body, of a file or a webhook: an array of them (HubSpot's webhooks),
    `{"events": [...]}`, one event, Klaviyo's webhooks' `{"data": [...], "meta": ...}`; anything else
    is one record, which `store_events` quarantines as no JSON object."""
    if isinstance(payload, list):
        return payload
    if not isinstance(payload, dict):
        return [payload]
    if source == "klaviyo" and isinstance(payload.get("data"), list):
        return payload["data"]
    return payload.get("events", [payload])


class ReplayGuard:
    """Remembers signatures seen within the tolerance window; a repeat is a replay."""

    def __init__(self, tolerance: float):
        self.tolerance, self._seen, self._lock = tolerance, {}, threading.Lock()

    def first_time(self, signature: str, now: float) -> bool:
        with self._lock:
            # Older than the window: the timestamp check refuses those already.
            self._seen = {s: t for s, t in self._seen.items() if now - t <= 2 * self.tolerance}
            if signature in self._seen:
                return False
            self._seen[signature] = now
            return True

    def forget(self, signature: str) -> None:
        """Take back a signature whose request was not stored, so its retry is taken."""
        with self._lock:
            self._seen.pop(signature, None)


def make_webhook_server(warehouse: WarehouseInterface, secrets: dict[str, str], host: str = "127.0.0.1",
                        port: int = 8787, tolerance: float = DEFAULT_TOLERANCE_SECONDS,
                        public_url: str | None = None) -> ThreadingHTTPServer:
    """An HTTP server taking `POST /webhooks/<source>` for each source with a secret.

    HubSpot signs the URL it called: behind a proxy, pass `public_url` (e.g.
    `https://hooks.example.com`) or forward `X-Forwarded-Proto`/`X-Forwarded-Host`.

    Each request's events are stored in one transaction of `warehouse` (DuckDB or Snowflake),
    so the receiver never holds the DuckDB file between requests. Unsigned, badly signed, old or
    repeated requests get 401/409 and store nothing.
    """
    guard, write_lock = ReplayGuard(tolerance), threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _answer(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _public_uri(self) -> str:
            if public_url:
                return public_url.rstrip("/") + self.path
            scheme = self.headers.get("X-Forwarded-Proto") or "http"
            return f"{scheme}://{self.headers.get('X-Forwarded-Host') or self.headers.get('Host')}{self.path}"

        def do_POST(self):
            source = self.path.rstrip("/").rsplit("/", 1)[-1]
            if not self.path.startswith("/webhooks/") or source not in VERIFIERS or not secrets.get(source):
                return self._answer(404, {"error": f"no webhook source {self.path!r} is configured"})
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            now = time.time()
            extra = {"method": self.command, "uri": self._public_uri()} if source in URI_SIGNED else {}
            try:
                signature = VERIFIERS[source](secrets[source], dict(self.headers.items()), body, now, tolerance,
                                              **extra)
            except SignatureError as error:
                return self._answer(401, {"error": str(error)})
            if not guard.first_time(signature, now):
                return self._answer(409, {"error": "this signed request was already received (replay)"})
            try:
                payload = json.loads(body)
            except json.JSONDecodeError as error:
                return self._answer(400, {"error": f"body is not JSON: {error.msg}"})
            events = payload_events(payload, source)
            try:
                with write_lock:  # one request at a time: its "not yet stored" check holds until it commits
                    summary = store_events(warehouse, list(enumerate(events, start=1)), f"webhook:{source}")
            except Exception as error:  # noqa: BLE001 - answered, so the ESP retries the same request
                # Nothing was stored: the ESP's retry of this signed request must not be refused as a replay.
                guard.forget(signature)
                return self._answer(503, {"error": f"events not stored, retry later: {type(error).__name__}"})
            return self._answer(200, summary.__dict__)

    return ThreadingHTTPServer((host, port), Handler)

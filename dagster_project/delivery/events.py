"""ESP events back into `raw.email_events`: from a file, or from signed webhooks.

Both paths normalise each event to the contract (event_id, customer_id,
campaign_id, message_id, event_type, occurred_at), insert only event ids not
already stored, and quarantine rows that cannot be read in `raw.raw_quarantine`
with a reason naming the row and field. Besides NextBest's own shape, Customer.io
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
from dagster_project.ingest.contract import EMAIL_EVENT_TYPES, QUARANTINE_TABLE, RAW_SCHEMA, create_raw_schema

FIELDS = ("event_id", "customer_id", "campaign_id", "message_id", "event_type", "occurred_at")
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


def normalize_event(record: dict[str, Any], emails: Mapping[str, str] | None = None) -> dict[str, Any]:
    """One ESP event in the contract's shape; raises `EventError` naming the bad field.

    `emails` maps lower-cased raw.customers.email to customer_id, for ESPs that name the
    recipient by email rather than by NextBest's customer id.
    """
    if "recipient" in record and "type" in record:  # HubSpot email event
        record = _hubspot_record(record)
    elif "topic" in record and "payload" in record:  # Klaviyo system webhook item
        record = _klaviyo_record(record)
    if not record.get("customer_id") and record.get("email"):
        email = str(record["email"]).strip().lower()
        if email not in (emails or {}):
            raise EventError(f"email {record['email']!r} is not in raw.customers")
        record = {**record, "customer_id": emails[email]}
    if "metric" in record and isinstance(record.get("data"), dict):  # Customer.io reporting webhook
        data = record["data"]
        record = {
            "event_id": record.get("event_id"), "customer_id": data.get("customer_id"),
            "campaign_id": data.get("campaign_id") or data.get("broadcast_id") or data.get("newsletter_id"),
            "message_id": data.get("delivery_id"), "event_type": record.get("metric"),
            "occurred_at": record.get("timestamp"),
        }
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
            return list(enumerate(data if isinstance(data, list) else data.get("events", [data]), start=1))
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    rows.append((number, json.loads(line)))
                except json.JSONDecodeError as error:
                    rows.append((number, {"__unreadable__": f"not JSON ({error.msg})"}))
        return rows
    raise ValueError(f"{path}: expected a .jsonl, .ndjson, .json or .csv file of ESP events")


def store_events(con, records: Iterable[tuple[int, dict[str, Any]]], source: str) -> IngestSummary:
    """Insert new events (by event id) into raw.email_events; quarantine unreadable ones."""
    create_raw_schema(con)
    good, bad, seen = [], [], set()
    customers = con.execute(f"select customer_id, email from {RAW_SCHEMA}.customers").fetchall()
    known = {customer_id for customer_id, _ in customers}
    emails = {email.strip().lower(): customer_id for customer_id, email in customers if email}
    records = list(records)
    for number, record in records:
        try:
            if "__unreadable__" in record:
                raise EventError(record["__unreadable__"])
            event = normalize_event(record, emails)
            if event["customer_id"] not in known:
                raise EventError(f"customer_id {event['customer_id']!r} is not in raw.customers")
        except EventError as error:
            bad.append((number, f"{source} row {number}: {error}", json.dumps(record, default=str)))
            continue
        if event["event_id"] not in seen:
            seen.add(event["event_id"])
            good.append(event)
    inserted = 0
    if good:
        frame = pd.DataFrame(good, columns=list(FIELDS)).astype({"occurred_at": "datetime64[us]"})
        con.register("incoming_email_events", frame)
        try:
            before = con.execute(f"select count(*) from {RAW_SCHEMA}.email_events").fetchall()[0][0]
            con.execute(f"""insert into {RAW_SCHEMA}.email_events
                            select * from incoming_email_events i
                            where i.event_id not in (select event_id from {RAW_SCHEMA}.email_events)""")
            inserted = con.execute(f"select count(*) from {RAW_SCHEMA}.email_events").fetchall()[0][0] - before
        finally:
            con.unregister("incoming_email_events")
    if bad:
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        con.executemany(f"insert into {RAW_SCHEMA}.{QUARANTINE_TABLE} values ('email_events', ?, ?, ?, ?, ?)",
                        [(source, number, reason, row_json, now) for number, reason, row_json in bad])
    return IngestSummary(read=len(records), inserted=inserted,
                         duplicates=len(records) - len(bad) - inserted, quarantined=len(bad))


def ingest_events_file(con, path: str | Path) -> IngestSummary:
    """`nextbest ingest-events FILE`: load a JSONL/CSV export of ESP events, deduplicated by event id."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is not a file")
    return store_events(con, read_events_file(path), str(path))


# -- webhook receiver --------------------------------------------------------------------------

VERIFIERS: dict[str, Callable[..., str]] = {"nextbest": verify, "customerio": verify_customerio,
                                             "hubspot": verify_hubspot, "klaviyo": verify_klaviyo}
URI_SIGNED = {"hubspot"}  # sources whose signature covers the method and the full URL


def webhook_events(source: str, payload: Any) -> list[Any]:
    """The events in one webhook body: HubSpot posts a JSON array, Klaviyo `{"data": [...], "meta": ...}`."""
    if isinstance(payload, list):
        return payload
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


def make_webhook_server(connect: Callable[[], Any], secrets: dict[str, str], host: str = "127.0.0.1",
                        port: int = 8787, tolerance: float = DEFAULT_TOLERANCE_SECONDS,
                        public_url: str | None = None) -> ThreadingHTTPServer:
    """An HTTP server taking `POST /webhooks/<source>` for each source with a secret.

    HubSpot signs the URL it called: behind a proxy, pass `public_url` (e.g.
    `https://hooks.example.com`) or forward `X-Forwarded-Proto`/`X-Forwarded-Host`.

    `connect()` opens a warehouse connection per request (closed after), so the receiver
    never holds the DuckDB file between requests. Unsigned, badly signed, old or repeated
    requests get 401/409 and store nothing.
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
            events = webhook_events(source, payload)
            with write_lock:
                con = connect()
                try:
                    summary = store_events(con, list(enumerate(events, start=1)), f"webhook:{source}")
                finally:
                    con.close()
            return self._answer(200, summary.__dict__)

    return ThreadingHTTPServer((host, port), Handler)

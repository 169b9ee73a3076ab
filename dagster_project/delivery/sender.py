"""The export loop: claim due rows, check them, send them at the ESP's pace, settle them.

A row is a message (`esp.send`) or a profile update (`esp.update_profile`, outbox
kind `properties`); the send-time rules in policy.py tell the two apart. An export
serves one destination (default `esp`), so a helpdesk row never reaches the ESP.

Exactly once, across crashes:
1. Claim before sending: a chunk is marked `sending` (and its attempt counted)
   in one committed transaction before any of it goes out.
2. Settle after sending: outcomes are written per chunk, each chunk's in one transaction.
3. On start, rows still `sending` belong to a run that died. The adapter is asked
   whether the ESP got them (`reconcile`); those it cannot vouch for are queued
   again and re-sent with the *same* idempotency key, which the ESP deduplicates
   (Klaviyo `unique_id`, Customer.io event `id`, HubSpot `sendId`, the webhook's
   `Idempotency-Key`, the file sink's own check). So nothing is lost, and nothing
   is delivered twice. A re-sent profile upsert sets the same values again (the
   webhook and file sink deduplicate it on the key too).
One export runs at a time per warehouse: DuckDB's file lock serialises processes.
The outbox is reached through the warehouse resource (DuckDB or Snowflake), a
transaction per step, so each commit point above is a `transaction()` block here.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

import pandas as pd

from dagster_project.delivery import outbox
from dagster_project.delivery.esp.base import EspError, EspResource, OutboundMessage, SendResult, classify_exception
from dagster_project.delivery.policy import (
    RetryPolicy, SendPolicy, after_failure, next_send_time, suppression_reason,
)
from dagster_project.delivery.ratelimit import RateLimiter
from dagster_project.resources.warehouse import WarehouseInterface


@dataclass
class ExportSummary:
    """What one export run did, and what is left in the outbox."""

    sent: int = 0
    duplicates: int = 0  # the ESP already had the idempotency key (a re-send after a crash)
    retried: int = 0
    dead: int = 0
    suppressed: int = 0
    deferred: int = 0
    reconciled: int = 0
    requeued_after_crash: int = 0
    seconds: float = 0.0
    remaining: dict[str, int] = field(default_factory=dict)

    @property
    def sends_per_second(self) -> float:
        return (self.sent + self.duplicates) / self.seconds if self.seconds else 0.0


def _text(value) -> str | None:
    return None if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)


def _message(row) -> OutboundMessage:
    return OutboundMessage(
        send_id=row.send_id, batch_id=row.batch_id, customer_id=row.customer_id, playbook_id=row.playbook_id,
        email=_text(row.email) or "", first_name=_text(row.first_name), subject=row.subject, body=row.body,
        cta=_text(row.cta),
    )


def _is_profile_update(row) -> bool:
    return getattr(row, "kind", "message") == "properties"


def _outcome(send_id, state, *, attempt=None, esp=None, outcome=None, detail=None, last_error=None,
             next_attempt_at=None, sent_at=None, idempotency_key=None, esp_message_id=None) -> dict:
    return {"send_id": send_id, "state": state, "last_error": last_error, "next_attempt_at": next_attempt_at,
            "sent_at": sent_at, "idempotency_key": idempotency_key, "esp_message_id": esp_message_id,
            "outcome": outcome or state, "detail": detail, "esp": esp, "attempt": attempt}


def _frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(_outcome("", "").keys()))
    return frame.astype({"attempt": "Int64"})


def _send_one(esp: EspResource, limiter: RateLimiter, row) -> SendResult | EspError:
    """Deliver one outbox row by its kind: a message, or a profile update."""
    kind = "properties" if _is_profile_update(row) else "message"
    limiter.acquire_send(kind)
    try:
        if kind == "properties":
            return esp.update_profile(row.customer_id, _text(row.email), json.loads(row.body),
                                      esp.idempotency_key(row.send_id))
        return esp.send(_message(row))
    except Exception as exc:  # noqa: BLE001 - classified; a BaseException (kill, Ctrl-C) still ends the run
        return classify_exception(esp.esp_name, exc)


def reconcile_in_flight(warehouse: WarehouseInterface, esp: EspResource, run_token: str, now: datetime,
                        summary: ExportSummary, kind: str | None = None,
                        destination: str = outbox.ESP_DESTINATION) -> None:
    """Settle rows a dead run left `sending`: sent if the ESP confirms it, else queued again."""
    stale = outbox.in_flight(warehouse, run_token, kind, destination)
    rows = []
    for row in stale.itertuples(index=False):
        message = _message(row)
        confirmed = esp.reconcile(message)
        if confirmed:
            summary.reconciled += 1
            rows.append(_outcome(row.send_id, "sent", attempt=row.attempts, esp=esp.esp_name, outcome="reconciled",
                                 detail="the ESP already had it", sent_at=outbox.naive_utc(now)))
        else:
            summary.requeued_after_crash += 1
            rows.append(_outcome(row.send_id, "queued", attempt=row.attempts, esp=esp.esp_name,
                                 outcome="requeued", next_attempt_at=outbox.naive_utc(now),
                                 detail="interrupted mid-send; re-sent with the same idempotency key"))
    _settle(warehouse, rows, None, now)


def _settle(warehouse: WarehouseInterface, rows: list[dict], run_token: str | None, now: datetime) -> None:
    """Record outcomes in one transaction of their own (none when there are no outcomes)."""
    if rows:
        with warehouse.transaction() as tx:
            outbox.settle(tx, _frame(rows), run_token, now)


def apply_send_policy(due: pd.DataFrame, now: datetime, policy: SendPolicy) -> tuple[list, list[dict]]:
    """Split due rows into those to send now and outcomes for the rest (suppressed or deferred).
    Profile updates are only held for an unknown customer (see policy.py)."""
    sendable, held = [], []
    for row in due.itertuples(index=False):
        facts = row._asdict()
        facts["marketing_opt_in"] = None if pd.isna(facts["marketing_opt_in"]) else bool(facts["marketing_opt_in"])
        facts["suppress_event"] = None if pd.isna(facts["suppress_event"]) else facts["suppress_event"]
        reason = suppression_reason(facts, policy)
        if reason:
            held.append(_outcome(row.send_id, "suppressed", attempt=row.attempts, outcome="suppressed",
                                 detail=reason, last_error=reason))
            continue
        tz = None if pd.isna(row.timezone) else row.timezone
        resume = next_send_time(now, tz, policy, facts.get("kind") or "message")
        if resume > now:
            held.append(_outcome(row.send_id, row.state, attempt=row.attempts, outcome="deferred",
                                 detail=f"quiet hours in {tz or policy.default_timezone} until {resume:%Y-%m-%d %H:%M} UTC",
                                 next_attempt_at=outbox.naive_utc(resume)))
            continue
        sendable.append(row)
    return sendable, held


def default_chunk_size(esp: EspResource, kind: str | None) -> int:
    """Rows claimed per round: about two seconds of sending at the ESP's tightest limit, between
    100 and 5,000. Each round queries the outbox once, so tiny rounds at a fast sink (the file
    ESP has no limit) would spend their time in that query."""
    limits = esp.profile_update_limits() if kind == "properties" else esp.rate_limits()
    rate = min((limit.per_second / max(limit.cost_per_send, 1) for limit in limits), default=float("inf"))
    return int(min(max(rate * 2, 100), 5_000))


def _send_all(pool: ThreadPoolExecutor, workers: int, esp: EspResource, limiter: RateLimiter,
              rows: list) -> list[SendResult | EspError]:
    """Send `rows` on the pool, a few consecutive rows per task (a task per row cost more than a
    file sink's whole write); results in the rows' order."""
    size = max(1, len(rows) // (max(1, workers) * 4))
    tasks = [rows[i:i + size] for i in range(0, len(rows), size)]
    return [result for done in pool.map(lambda task: [_send_one(esp, limiter, r) for r in task], tasks)
            for result in done]


def run_export(
    warehouse: WarehouseInterface,
    esp: EspResource,
    *,
    batch_id: str | None = None,
    kind: str | None = None,
    destination: str = outbox.ESP_DESTINATION,
    policy: SendPolicy = SendPolicy(),
    retry: RetryPolicy = RetryPolicy(),
    workers: int = 8,
    chunk_size: int | None = None,
    max_wait_seconds: float = 30.0,
    clock: Callable[[], datetime] = outbox.utcnow,
    log: Callable[[str], None] | None = None,
    rng: random.Random | None = None,
) -> ExportSummary:
    """Send every due row for `destination` (or one batch, or one kind) and settle each one:
    messages through `esp.send`, profile updates (kind `properties`) through `esp.update_profile`.

    Retries due within `max_wait_seconds` are waited for in this run; later ones
    (long backoffs, quiet hours) stay queued for the next run. Returns a summary.
    """
    started = time.monotonic()
    with warehouse.kept_open():  # claim and settle per chunk: keep what opening costs
        outbox.ensure_outbox(warehouse)
        run_token = uuid.uuid4().hex
        summary = ExportSummary()
        reconcile_in_flight(warehouse, esp, run_token, clock(), summary, kind, destination)
        limiter = RateLimiter(esp.rate_limits(), esp.profile_update_limits())
        chunk_size = chunk_size or default_chunk_size(esp, kind)
        rng = rng or random.Random()
        idle_since: float | None = None  # wall time, so a frozen test clock cannot wait forever
        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="nextbest-send") as pool:
            while True:
                now = clock()
                due = outbox.due_messages(warehouse, now, chunk_size, now - policy.cap_window, batch_id, kind,
                                          destination)
                if due.empty:
                    wait = _seconds_until_next_due(warehouse, now, batch_id, kind, destination)
                    idle_since = idle_since or time.monotonic()
                    if wait is None or wait > max_wait_seconds or time.monotonic() - idle_since > max_wait_seconds:
                        break
                    time.sleep(min(max(wait, 0.01), 1.0))
                    continue
                idle_since = None
                sendable, held = apply_send_policy(due, now, policy)
                summary.suppressed += sum(1 for h in held if h["outcome"] == "suppressed")
                summary.deferred += sum(1 for h in held if h["outcome"] == "deferred")
                _settle(warehouse, held, None, now)
                if not sendable:
                    continue
                with warehouse.transaction() as tx:  # committed before the first send
                    outbox.claim(tx, [row.send_id for row in sendable], run_token, now, esp.esp_name)
                results = _send_all(pool, workers, esp, limiter, sendable)
                esp.sync()  # durable before the outbox says sent; if this raises, the rows stay `sending`
                settled_at = clock()
                outcomes = []
                for row, result in zip(sendable, results):
                    attempt = int(row.attempts) + 1
                    key = esp.idempotency_key(row.send_id)
                    if isinstance(result, SendResult):
                        summary.duplicates += result.duplicate
                        summary.sent += not result.duplicate
                        outcomes.append(_outcome(row.send_id, "sent", attempt=attempt, esp=esp.esp_name,
                                                 outcome="duplicate" if result.duplicate else "sent",
                                                 sent_at=outbox.naive_utc(settled_at), idempotency_key=key,
                                                 esp_message_id=result.esp_message_id))
                        continue
                    state, retry_at, detail = after_failure(attempt, result, retry, settled_at, rng)
                    summary.dead += state == "dead"
                    summary.retried += state == "failed"
                    outcomes.append(_outcome(row.send_id, state, attempt=attempt, esp=esp.esp_name,
                                             outcome="dead" if state == "dead" else "retry", detail=detail,
                                             last_error=detail, idempotency_key=key,
                                             next_attempt_at=outbox.naive_utc(retry_at) if retry_at else None))
                _settle(warehouse, outcomes, run_token, settled_at)
                if log:
                    log(f"sent {summary.sent}, retrying {summary.retried}, dead {summary.dead}, "
                        f"suppressed {summary.suppressed}, deferred {summary.deferred}")
        summary.remaining = outbox.state_counts(warehouse, batch_id, kind, destination)
    summary.seconds = time.monotonic() - started
    return summary


def _seconds_until_next_due(warehouse: WarehouseInterface, now: datetime, batch_id: str | None, kind: str | None,
                            destination: str) -> float | None:
    nxt = outbox.next_due_at(warehouse, batch_id, kind, destination)
    return None if nxt is None else (nxt - outbox.naive_utc(now)).total_seconds()

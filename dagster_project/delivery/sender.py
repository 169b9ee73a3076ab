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
Rounds: `outbox.due_rounds` reads where the next rounds end from three narrow columns, and each
round reads only the rows between its ends (`outbox.due_messages`), so a round costs what its own
rows cost however full the outbox is; a row that changed since (sent, superseded) is skipped.
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
from dagster_project.delivery.esp.base import (
    EspError, EspResource, OutboundMessage, ProfileUpdate, SendResult, classify_exception,
)
from dagster_project.delivery.policy import (
    RetryPolicy, SendPolicy, after_failure, next_send_times, suppression_reasons,
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
    claimed_elsewhere: int = 0  # due rows an overlapping export claimed first (Snowflake): it sends them
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
        cta=_text(row.cta), preheader=_text(row.preheader), offer_id=_text(row.offer_id),
    )


def _is_profile_update(row) -> bool:
    return getattr(row, "kind", "message") == "properties"


OUTCOME_COLUMNS = ("send_id", "state", "last_error", "next_attempt_at", "sent_at", "idempotency_key",
                   "esp_message_id", "outcome", "detail", "esp", "attempt")


def _outcomes(send_ids, state, **columns) -> pd.DataFrame:
    """Outcome rows for `outbox.settle`, a column at a time: each of `state` and `columns` is one
    value for every row or a sequence with a value per row; `outcome` defaults to the state."""
    send_ids = list(send_ids)
    frame = pd.DataFrame({column: pd.Series([None] * len(send_ids), dtype=object) for column in OUTCOME_COLUMNS})
    frame["send_id"] = send_ids
    for column, value in {"state": state, "outcome": state, **columns}.items():
        frame[column] = list(value) if isinstance(value, (list, tuple, pd.Series, pd.Index)) else value
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
        error = classify_exception(esp.esp_name, exc)
        if error.retryable and error.retry_after:
            limiter.pause(error.retry_after)  # the ESP said when: every sender waits, not just this one
        return error


def reconcile_in_flight(warehouse: WarehouseInterface, esp: EspResource, run_token: str, now: datetime,
                        summary: ExportSummary, kind: str | None = None,
                        destination: str = outbox.ESP_DESTINATION) -> None:
    """Settle rows a dead run left `sending`: sent if the ESP confirms it, else queued again."""
    stale = outbox.in_flight(warehouse, run_token, kind, destination)
    if stale.empty:
        return
    confirmed = pd.Series([bool(esp.reconcile(_message(row))) for row in stale.itertuples(index=False)],
                          index=stale.index)
    replaced = outbox.replaced_since(warehouse, stale.send_id[~confirmed].astype(str).tolist())
    retired = ~confirmed & stale.send_id.astype(str).isin(replaced)
    requeued = ~confirmed & ~retired
    summary.reconciled += int(confirmed.sum())
    summary.requeued_after_crash += int(requeued.sum())
    moment = outbox.naive_utc(now)
    _settle(warehouse, [
        _outcomes(stale.send_id[confirmed], "sent", attempt=stale.attempts[confirmed], esp=esp.esp_name,
                  outcome="reconciled", detail="the ESP already had it", sent_at=moment),
        _outcomes(stale.send_id[retired], "superseded", attempt=stale.attempts[retired], esp=esp.esp_name,
                  last_error="superseded by a newer profile update while in flight",
                  detail="interrupted mid-send, never arrived, and a newer update replaces it"),
        _outcomes(stale.send_id[requeued], "queued", attempt=stale.attempts[requeued], esp=esp.esp_name,
                  outcome="requeued", next_attempt_at=moment,
                  detail="interrupted mid-send; re-sent with the same idempotency key"),
    ], None, now)


def _settle(warehouse: WarehouseInterface, frames: list[pd.DataFrame], run_token: str | None, now: datetime) -> None:
    """Record outcomes in one transaction of their own (none when there are no outcomes)."""
    frames = [frame for frame in frames if not frame.empty]
    if frames:
        with warehouse.transaction() as tx:
            outbox.settle(tx, pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0],
                          run_token, now)


def apply_send_policy(due: pd.DataFrame, now: datetime, policy: SendPolicy) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split due rows into those to send now and outcomes for the rest (suppressed or deferred), a
    column at a time. Profile updates are only held for an unknown customer (see policy.py)."""
    reasons = suppression_reasons(due, policy)
    suppressed = reasons.notna()
    zones = due["timezone"].where(due["timezone"].notna(), None)
    resume = next_send_times(now, zones, due["kind"], policy)
    deferred = ~suppressed & (resume > now)
    later = resume[deferred]
    where = zones[deferred].fillna(policy.default_timezone)
    held = [
        _outcomes(due.send_id[suppressed], "suppressed", attempt=due.attempts[suppressed],
                  detail=reasons[suppressed], last_error=reasons[suppressed]),
        _outcomes(due.send_id[deferred], due.state[deferred], attempt=due.attempts[deferred], outcome="deferred",
                  detail=[f"quiet hours in {zone} until {at:%Y-%m-%d %H:%M} UTC" for zone, at in zip(where, later)],
                  next_attempt_at=[outbox.naive_utc(at) for at in later]),
    ]
    return due[~suppressed & ~deferred], pd.concat(held, ignore_index=True)


# Rows per round: about this many seconds of sending at the ESP's tightest limit. Each round costs a
# read, a claim and a settle whatever its size (on Snowflake each a query and an upload of its own),
# and the bucket refills only a burst's worth meanwhile, so longer rounds keep the sender nearer the limit.
ROUND_SECONDS = 10
MIN_ROUND, MAX_ROUND = 100, 50_000
# Due rows `outbox.due_rounds` plans rounds for at a time (memory holds a key per round, not per row).
KEY_WINDOW = 200_000


def default_chunk_size(esp: EspResource, kind: str | None) -> int:
    """Rows claimed per round: about `ROUND_SECONDS` of sending at the ESP's tightest limit, between
    100 and 50,000 (a sink with no limit, like the file ESP, gets the most)."""
    limits = esp.profile_update_limits() if kind == "properties" else esp.rate_limits()
    rate = min((limit.per_second / max(limit.cost_per_send, 1) for limit in limits), default=float("inf"))
    return int(min(max(rate * ROUND_SECONDS, MIN_ROUND), MAX_ROUND))


def _send_all(pool: ThreadPoolExecutor, workers: int, esp: EspResource, limiter: RateLimiter,
              sendable: pd.DataFrame) -> list[SendResult | EspError]:
    """Send the round's rows on the pool, a few consecutive rows per task (a task per row cost more
    than a file sink's whole write); results in the rows' order. Profile updates to a sink with no
    rate limits that sends from one thread go in one `update_profiles` call (the file sink's one
    write), made from the four columns it reads."""
    if (not esp.parallel_sends and not esp.profile_update_limits()
            and "kind" in sendable and (sendable["kind"] == "properties").all()):
        columns = [sendable[c].astype(object).tolist() for c in ("customer_id", "email", "body", "send_id")]
        try:
            return esp.update_profiles([ProfileUpdate(customer, _text(email), body, esp.idempotency_key(send_id))
                                        for customer, email, body, send_id in zip(*columns)])
        except Exception as exc:  # noqa: BLE001 - as `_send_one`: the rows are settled as failed
            return [classify_exception(esp.esp_name, exc)] * len(sendable)
    # Plain Python values first: iterating Arrow-backed text a value at a time costs ~1 us each.
    rows = list(sendable.astype(object).itertuples(index=False))
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
        # At the steady rate from the first send, not after a full burst: exports run back to back
        # (the sensor starts one per approved batch), and each starting full would add a burst.
        limiter = RateLimiter(esp.rate_limits(), esp.profile_update_limits(), start_full=False)
        chunk_size = chunk_size or default_chunk_size(esp, kind)
        rng = rng or random.Random()
        idle_since: float | None = None  # wall time, so a frozen test clock cannot wait forever
        ends, taken, after = pd.DataFrame(), 0, None  # where the coming rounds end, how many ran, the last end
        workers = max(1, workers) if esp.parallel_sends else 1
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nextbest-send") as pool:
            while True:
                now = clock()
                if taken >= len(ends):
                    # Read anew once these rounds are done: retries come due and new rows arrive meanwhile.
                    ends, taken, after = outbox.due_rounds(warehouse, now, max(KEY_WINDOW, chunk_size), chunk_size,
                                                           batch_id, kind, destination), 0, None
                if ends.empty:
                    wait = _seconds_until_next_due(warehouse, now, batch_id, kind, destination)
                    idle_since = idle_since or time.monotonic()
                    if wait is None or wait > max_wait_seconds or time.monotonic() - idle_since > max_wait_seconds:
                        break
                    time.sleep(min(max(wait, 0.01), 1.0))
                    continue
                idle_since = None
                last = tuple(ends.iloc[taken])
                due = outbox.due_messages(warehouse, now, after, last, chunk_size, now - policy.cap_window,
                                          batch_id, kind, destination)
                taken, after = taken + 1, last
                if due.empty:
                    continue  # the round's rows were sent, superseded or rescheduled since `due_rounds` read it
                sendable, held = apply_send_policy(due, now, policy)
                summary.suppressed += int((held["outcome"] == "suppressed").sum())
                summary.deferred += int((held["outcome"] == "deferred").sum())
                _settle(warehouse, [held], None, now)
                if sendable.empty:
                    continue
                with warehouse.transaction() as tx:  # committed before the first send
                    outbox.claim(tx, sendable["send_id"].tolist(), run_token, now, esp.esp_name)
                held = outbox.held_by_run(warehouse, run_token, sendable["send_id"])
                if not held.all():  # an overlapping export claimed these first: they are its to send
                    summary.claimed_elsewhere += int((~held).sum())
                    sendable = sendable[held]
                    if sendable.empty:
                        continue
                results = _send_all(pool, workers, esp, limiter, sendable)
                esp.sync()  # durable before the outbox says sent; if this raises, the rows stay `sending`
                settled_at = clock()
                _settle(warehouse, [_round_outcomes(sendable, results, esp, retry, settled_at, rng, summary)],
                        run_token, settled_at)
                if log:
                    log(f"sent {summary.sent}, retrying {summary.retried}, dead {summary.dead}, "
                        f"suppressed {summary.suppressed}, deferred {summary.deferred}")
        summary.remaining = outbox.state_counts(warehouse, batch_id, kind, destination)
    summary.seconds = time.monotonic() - started
    return summary


def _round_outcomes(sendable: pd.DataFrame, results: list[SendResult | EspError], esp: EspResource,
                    retry: RetryPolicy, settled_at: datetime, rng: random.Random,
                    summary: ExportSummary) -> pd.DataFrame:
    """Outcomes of a round's sends (in `sendable`'s order), counted into `summary`: sent or a
    duplicate the ESP already had, and for the failures a retry time or dead."""
    ok = pd.Series([isinstance(result, SendResult) for result in results], index=sendable.index, dtype=bool)
    duplicate = pd.Series([bool(r.duplicate) if isinstance(r, SendResult) else False for r in results],
                          index=sendable.index, dtype=bool)
    attempts = sendable["attempts"].astype(int) + 1
    keys = [esp.idempotency_key(send_id) for send_id in sendable["send_id"]]
    frame = _outcomes(sendable["send_id"], "sent", attempt=attempts, esp=esp.esp_name, idempotency_key=keys,
                      sent_at=outbox.naive_utc(settled_at),
                      esp_message_id=[getattr(result, "esp_message_id", None) for result in results])
    frame.loc[duplicate.to_numpy(), "outcome"] = "duplicate"
    summary.duplicates += int(duplicate.sum())
    summary.sent += int((ok & ~duplicate).sum())
    for position in (~ok).to_numpy().nonzero()[0]:  # failures: few, each its own backoff
        attempt = int(attempts.iloc[position])
        state, retry_at, detail = after_failure(attempt, results[position], retry, settled_at, rng)
        summary.dead += state == "dead"
        summary.retried += state == "failed"
        frame.loc[position, ["state", "outcome", "detail", "last_error", "sent_at", "esp_message_id",
                             "next_attempt_at"]] = [
            state, "dead" if state == "dead" else "retry", detail, detail, None, None,
            outbox.naive_utc(retry_at) if retry_at else None]
    return frame


def _seconds_until_next_due(warehouse: WarehouseInterface, now: datetime, batch_id: str | None, kind: str | None,
                            destination: str) -> float | None:
    nxt = outbox.next_due_at(warehouse, batch_id, kind, destination)
    return None if nxt is None else (nxt - outbox.naive_utc(now)).total_seconds()

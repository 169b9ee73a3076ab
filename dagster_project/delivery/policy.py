"""Send-time rules, as plain functions: suppression, frequency caps, quiet hours, retry backoff.

Drafts can sit for days between generation and approval, so the outbox checks
these again for every message right before it goes out. Nothing here touches
the database or the network; `sender.py` feeds it rows and applies its answers.

The rules are for marketing sends (outbox kind `message`). A profile update
(kind `properties`: tags and context written to ESP profile properties or a
helpdesk) emails nobody, so no cap, opt-in, suppressing event or quiet hours
holds it back, and it does not count towards the cap. Unsubscribed, bounced
and complained customers still get updates: the helpdesk needs their context
most, and the ESP keeps enforcing its own suppression on any later email.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from typing import Any, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd

from dagster_project.delivery.esp.base import EspError
from dagster_project.delivery.ratelimit import backoff

# Email events after which a customer must not be emailed again.
SUPPRESSING_EVENTS = ("unsubscribe", "bounce", "complaint")


@dataclass(frozen=True)
class SendPolicy:
    """What may go out and when.

    quiet_start_hour / quiet_end_hour: local hours (customer's time zone) with no
    sends, e.g. 21 → 8 means nothing between 9 pm and 8 am; equal values disable
    quiet hours. max_sends_per_customer within cap_window: the frequency cap across
    all playbooks and batches (a message over the cap is suppressed, not queued up).
    """

    quiet_start_hour: int = 21
    quiet_end_hour: int = 8
    default_timezone: str = "UTC"
    max_sends_per_customer: int = 2
    cap_window: timedelta = timedelta(days=7)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter on retryable errors, then dead-letter.

    Attempt n waits a random time in [delay/2, delay] with delay = base * 2**(n-1)
    capped at max_delay, and never less than the ESP's Retry-After (`ratelimit.backoff`).
    """

    max_attempts: int = 6
    base_delay: timedelta = timedelta(seconds=30)
    max_delay: timedelta = timedelta(hours=1)


def customer_zone(name: str | None, default: str = "UTC") -> ZoneInfo:
    """The customer's time zone; the default when missing or not a known IANA name."""
    for candidate in (name, default, "UTC"):
        if candidate:
            try:
                return ZoneInfo(str(candidate))
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def in_quiet_hours(local_hour: int, start: int, end: int) -> bool:
    """Whether a local hour falls in [start, end), a window that may wrap midnight."""
    if start == end:
        return False
    if start < end:
        return start <= local_hour < end
    return local_hour >= start or local_hour < end


def next_send_time(now: datetime, tz_name: str | None, policy: SendPolicy, kind: str = "message") -> datetime:
    """`now` if it is outside the customer's quiet hours (or a profile update, which has none), else the
    UTC time they end (deferred, not dropped)."""
    if kind == "properties":
        return now
    zone = customer_zone(tz_name, policy.default_timezone)
    local = now.astimezone(zone)
    if not in_quiet_hours(local.hour, policy.quiet_start_hour, policy.quiet_end_hour):
        return now
    end_day = local.date() if local.hour < policy.quiet_end_hour else local.date() + timedelta(days=1)
    resume = datetime.combine(end_day, time(policy.quiet_end_hour), tzinfo=zone)
    return resume.astimezone(timezone.utc)


def suppression_reason(row: Mapping[str, Any], policy: SendPolicy) -> str | None:
    """Why this row must not go out now, or None. `row` holds the send-time facts:
    kind, customer_found, email, marketing_opt_in, suppress_event, suppress_at, recent_sends.
    A profile update (kind `properties`) is held back only for a customer unknown to raw.customers."""
    reason = suppression_reasons(pd.DataFrame([dict(row)]), policy).iloc[0]
    return reason if isinstance(reason, str) else None


def suppression_reasons(facts: pd.DataFrame, policy: SendPolicy) -> pd.Series:
    """`suppression_reason` of every row of `facts`, a column at a time (missing where a row may go)."""
    def column(name: str, default: Any = None) -> pd.Series:
        return facts[name] if name in facts else pd.Series(default, index=facts.index, dtype=object)

    found = column("customer_found", False).fillna(False).astype(bool)
    marketing = found & (column("kind", "message").fillna("message") != "properties")
    email = column("email")
    opt_in = column("marketing_opt_in")
    event = column("suppress_event")
    recent = pd.to_numeric(column("recent_sends", 0), errors="coerce").fillna(0).astype(int)
    days = policy.cap_window.total_seconds() / 86400
    reasons = pd.Series([None] * len(facts), index=facts.index, dtype=object)
    # The first rule that holds gives the reason: set them last rule first, so earlier ones overwrite.
    capped = marketing & (recent >= policy.max_sends_per_customer)
    reasons[capped] = [f"frequency cap: {n} sent in the last {days:g} days (max {policy.max_sends_per_customer})"
                       for n in recent[capped]]
    suppressed = marketing & event.notna() & (event.astype(str) != "")
    reasons[suppressed] = [f"{e} recorded in raw.email_events at {at}"
                           for e, at in zip(event[suppressed], column("suppress_at")[suppressed])]
    reasons[marketing & opt_in.notna() & ~opt_in.fillna(True).astype(bool)] = \
        "raw.customers.marketing_opt_in is false"
    # Consent not recorded is no consent: a blank never lets marketing through.
    reasons[marketing & opt_in.isna()] = "raw.customers.marketing_opt_in is empty (no consent recorded)"
    reasons[marketing & (email.isna() | (email.astype(str) == ""))] = "raw.customers.email is empty"
    reasons[~found] = "customer not found in raw.customers"
    return reasons


def next_send_times(now: datetime, zones: pd.Series, kinds: pd.Series, policy: SendPolicy) -> pd.Series:
    """`next_send_time` of every row (its customer's time zone and its kind), worked out once per zone."""
    resume = pd.Series(now, index=zones.index, dtype=object)
    marketing = (kinds.fillna("message") != "properties").to_numpy()
    codes, names = pd.factorize(zones[marketing])  # a missing zone (code -1) picks the last entry
    per_zone = [next_send_time(now, name, policy) for name in names] + [next_send_time(now, None, policy)]
    resume[marketing] = [per_zone[code] for code in codes]
    return resume


def retry_delay(attempts: int, policy: RetryPolicy, retry_after: float | None = None,
                rng: random.Random | None = None) -> timedelta:
    """How long to wait after failed attempt number `attempts` (1-based): `ratelimit.backoff`."""
    return timedelta(seconds=backoff(attempts, policy.base_delay.total_seconds(),
                                             policy.max_delay.total_seconds(), retry_after, rng))


def after_failure(attempts: int, error: EspError, policy: RetryPolicy, now: datetime,
                  rng: random.Random | None = None) -> tuple[str, datetime | None, str]:
    """The outbox state after a failed attempt: ("failed", retry at, error) or ("dead", None, reason)."""
    if not error.retryable:
        return "dead", None, f"permanent error: {error}"
    if attempts >= policy.max_attempts:
        return "dead", None, f"gave up after {attempts} attempts; last error: {error}"
    return "failed", now + retry_delay(attempts, policy, error.retry_after, rng), str(error)

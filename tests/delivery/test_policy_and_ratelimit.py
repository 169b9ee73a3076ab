"""Send-time rules, pacing and backoff as plain functions: no database, no network."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

from dagster_project.delivery.esp.base import RetryableEspError, PermanentEspError
import pandas as pd

from dagster_project.delivery.policy import (
    RetryPolicy, SendPolicy, after_failure, in_quiet_hours, next_send_time, next_send_times, retry_delay,
    suppression_reason, suppression_reasons,
)
from dagster_project.delivery.ratelimit import RateLimit, RateLimiter, TokenBucket, backoff


def test_quiet_hours_wrap_midnight_and_follow_the_customers_zone():
    assert in_quiet_hours(22, 21, 8) and in_quiet_hours(3, 21, 8) and not in_quiet_hours(12, 21, 8)
    now = datetime(2026, 7, 1, 3, 0, tzinfo=timezone.utc)  # 23:00 in New York (EDT)
    resume = next_send_time(now, "America/New_York", SendPolicy())
    assert resume == datetime(2026, 7, 1, 12, 0, tzinfo=timezone.utc)  # 08:00 EDT
    assert next_send_time(now, "Europe/Berlin", SendPolicy()) == datetime(2026, 7, 1, 6, 0, tzinfo=timezone.utc)
    assert next_send_time(now, "Australia/Sydney", SendPolicy()) == now  # 13:00 there: send now

def test_profile_updates_have_no_quiet_hours_caps_or_opt_out():
    now = datetime(2026, 7, 1, 3, 0, tzinfo=timezone.utc)  # 23:00 in New York
    assert next_send_time(now, "America/New_York", SendPolicy(), kind="properties") == now
    held = {"customer_found": True, "email": "", "marketing_opt_in": False, "suppress_event": "complaint",
            "suppress_at": "2026-06-30", "recent_sends": 99}
    assert suppression_reason(held, SendPolicy()) == "raw.customers.email is empty"
    assert suppression_reason({**held, "kind": "properties"}, SendPolicy()) is None
    assert suppression_reason({"kind": "properties", "customer_found": False}, SendPolicy()).startswith(
        "customer not found")


def test_a_round_is_checked_a_column_at_a_time_with_the_first_rule_that_holds_for_each_row():
    ok = {"kind": "message", "customer_found": True, "email": "a@example.com", "marketing_opt_in": True,
          "suppress_event": None, "suppress_at": None, "recent_sends": 0}
    rows = pd.DataFrame([
        ok,
        {**ok, "customer_found": False, "email": None},
        {**ok, "email": None, "marketing_opt_in": False},
        {**ok, "marketing_opt_in": False, "suppress_event": "bounce"},
        {**ok, "marketing_opt_in": None, "suppress_event": "bounce", "suppress_at": pd.Timestamp("2026-06-30 08:00"),
         "recent_sends": 5},
        {**ok, "suppress_event": "bounce", "suppress_at": pd.Timestamp("2026-06-30 08:00"), "recent_sends": 5},
        {**ok, "recent_sends": 2},
        {**ok, "kind": "properties", "email": "", "marketing_opt_in": False, "suppress_event": "complaint",
         "recent_sends": 9},
    ])
    reasons = suppression_reasons(rows, SendPolicy())
    assert [r if isinstance(r, str) else None for r in reasons] == [
        None, "customer not found in raw.customers", "raw.customers.email is empty",
        "raw.customers.marketing_opt_in is false", "raw.customers.marketing_opt_in is empty (no consent recorded)",
        "bounce recorded in raw.email_events at 2026-06-30 08:00:00", "frequency cap: 2 sent in the last 7 days (max 2)", None]
    assert [suppression_reason(row, SendPolicy()) for row in rows.to_dict("records")] == [
        r if isinstance(r, str) else None for r in reasons]

    now = datetime(2026, 7, 1, 3, 0, tzinfo=timezone.utc)  # 23:00 in New York, 05:00 in Berlin
    zones = pd.Series(["America/New_York", None, "Europe/Berlin", "Mars/Olympus", "America/New_York"])
    kinds = pd.Series(["message", "message", "message", "message", "properties"])
    assert list(next_send_times(now, zones, kinds, SendPolicy())) == [
        next_send_time(now, zone, SendPolicy(), kind) for zone, kind in zip(zones, kinds)]
    assert next_send_times(now, zones, kinds, SendPolicy()).iloc[4] == now  # a profile update has no quiet hours


def test_unknown_time_zones_fall_back_to_the_default():
    now = datetime(2026, 7, 1, 23, 0, tzinfo=timezone.utc)
    assert next_send_time(now, "Mars/Olympus", SendPolicy()) == datetime(2026, 7, 2, 8, 0, tzinfo=timezone.utc)


def test_backoff_grows_with_jitter_and_honours_retry_after():
    policy = RetryPolicy(base_delay=timedelta(seconds=10), max_delay=timedelta(seconds=60))
    rng = random.Random(1)
    delays = [retry_delay(n, policy, rng=rng).total_seconds() for n in (1, 2, 3, 4, 5)]
    assert 5 <= delays[0] <= 10 and 10 <= delays[1] <= 20 and 30 <= delays[4] <= 60
    assert retry_delay(1, policy, retry_after=120).total_seconds() == 120


def test_after_failure_dead_letters_with_the_reason():
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    policy = RetryPolicy(max_attempts=3)
    state, at, _ = after_failure(1, RetryableEspError("x: HTTP 503"), policy, now)
    assert state == "failed" and at > now
    assert after_failure(3, RetryableEspError("x: HTTP 503"), policy, now)[2].startswith("gave up after 3 attempts")
    assert after_failure(1, PermanentEspError("x: HTTP 400"), policy, now)[0] == "dead"


class FakeTime:
    def __init__(self):
        self.now = 0.0

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_token_bucket_allows_the_burst_then_the_steady_rate():
    fake = FakeTime()
    bucket = TokenBucket(per_second=10, burst=5, clock=fake.clock, sleep=fake.sleep)
    for _ in range(5):
        assert bucket.acquire() == 0
    for _ in range(20):
        bucket.acquire()
    assert abs(fake.now - 2.0) < 1e-9  # 20 more at 10/s


def test_limiter_paces_by_the_tightest_limit_and_cost_per_send():
    fake = FakeTime()
    limiter = RateLimiter([RateLimit("api", 100, 1, cost_per_send=1), RateLimit("track", 100, 2, cost_per_send=2)],
                          clock=fake.clock, sleep=fake.sleep)
    for _ in range(101):
        limiter.acquire_send()
    assert abs(fake.now - 2.0) < 0.05 and limiter.sends_per_second == 50


def test_messages_and_profile_updates_share_a_bucket_of_the_same_name():
    fake = FakeTime()
    limiter = RateLimiter([RateLimit("events", 100, 1), RateLimit("profiles", 10, 1)],
                          [RateLimit("profiles", 10, 1)], clock=fake.clock, sleep=fake.sleep)
    for _ in range(5):
        limiter.acquire_send()
        limiter.acquire_send("properties")
    assert abs(fake.now - 0.9) < 1e-6  # 10 calls on the 10/s profiles endpoint, burst 1


def test_a_pause_holds_every_caller_and_an_llm_limiter_starts_at_its_steady_rate():
    fake = FakeTime()
    limiter = RateLimiter([RateLimit.per_minute("requests", 600), RateLimit.per_minute("tokens", 60_000)],
                          clock=fake.clock, sleep=fake.sleep, start_full=False)
    for _ in range(3):  # 10 requests/s from one in the bucket: no opening burst
        limiter.acquire([("requests", 1), ("tokens", 1)])
    assert abs(fake.now - 0.2) < 1e-9
    limiter.acquire([("tokens", 2_000)])  # more than a second's worth: waits for a full bucket, then owes
    assert abs(limiter.acquire([("tokens", 1)]) - 1.001) < 1e-6
    limiter.pause(2.0)  # a 429 with Retry-After: 2
    assert abs(limiter.acquire([("requests", 1)]) - 2.0) < 1e-9
    limiter.give_back("tokens", 250)  # the replies used fewer tokens than estimated


def test_the_async_limiter_paces_like_the_threaded_one():
    import asyncio
    import time

    limiter = RateLimiter([RateLimit.per_minute("requests", 1200)], start_full=False)

    async def burst():
        await asyncio.gather(*(limiter.aacquire([("requests", 1)]) for _ in range(6)))

    started = time.monotonic()
    asyncio.run(burst())
    assert 0.2 <= time.monotonic() - started < 1.0  # 20/s: the sixth waits ~0.25 s


def test_backoff_is_capped_and_jittered_below_the_cap():
    rng = random.Random(3)
    delays = [backoff(n, 0.5, 30, rng=rng) for n in range(1, 12)]
    assert 0.25 <= delays[0] <= 0.5 and all(15 <= d <= 30 for d in delays[7:])
    assert backoff(1, 0.5, 30, retry_after=4.0) == 4.0

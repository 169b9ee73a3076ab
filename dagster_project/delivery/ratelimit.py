"""Pacing for the outside APIs NextBest calls: token buckets, and the backoff after a refusal.

One limiter serves the ESP sends (`sender.py`, worker threads) and the LLM requests
(`messaging/generators/openai_chat.py`, asyncio). An API states its limits as at most n
requests in a window of T seconds (sometimes two windows, a burst and a steady one); a token
bucket whose capacity plus T seconds of refill stays within each window models them
(`RateLimit.windows`). A caller reserves what it needs from every
bucket at once and then waits outside any lock, so many callers share the buckets,
are served in turn, and the total rate never exceeds the limit. A 429 with
Retry-After pauses every caller (`pause`), not just the one that saw it.

`backoff` is the one retry delay: exponential with jitter, capped, never
shorter than the server's Retry-After (the outbox's `RetryPolicy` and the LLM's
retries both use it); `parse_retry_after` reads that header for both.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Callable, Iterable, Sequence


@dataclass(frozen=True)
class RateLimit:
    """One limit an API documents: `per_second` steady rate, `burst` capacity.

    `cost_per_send` is how many requests under this limit one message takes
    (Customer.io: identify + track = 2 calls on the Track API).
    """

    name: str
    per_second: float
    burst: float
    cost_per_send: float = 1.0

    def __post_init__(self) -> None:
        if self.per_second <= 0:
            raise ValueError(f"rate limit {self.name!r}: per_second must be > 0, got {self.per_second}")
        if self.burst < self.cost_per_send:
            raise ValueError(
                f"rate limit {self.name!r}: burst {self.burst} is smaller than the cost of one send "
                f"({self.cost_per_send}); no send could ever go out"
            )

    @classmethod
    def windows(cls, name: str, documented: Sequence[tuple[float, float]], burst: float,
                cost_per_send: float = 1.0) -> "RateLimit":
        """A limit an API documents as at most n requests in any window of T seconds, for each (n, T).

        A full bucket plus T seconds of refill is what can go out in T seconds: burst + rate x T.
        The rate is the fastest that keeps that within every documented window (a bucket of
        capacity n refilling at n / T would let 2n through in the first window).
        """
        rate = min((requests - burst) / seconds for requests, seconds in documented)
        if rate <= 0:
            raise ValueError(f"rate limit {name!r}: a burst of {burst} leaves no steady rate within {documented}")
        return cls(name, rate, burst, cost_per_send)

    @classmethod
    def per_minute(cls, name: str, rate_per_minute: float) -> "RateLimit":
        """A limit stated per minute (an LLM's RPM or TPM), with a second's worth as its burst."""
        if rate_per_minute <= 0:
            raise ValueError(f"rate limit {name!r}: rate_per_minute must be > 0, got {rate_per_minute}")
        return cls(name, rate_per_minute / 60.0, max(rate_per_minute / 60.0, 1.0))


class TokenBucket:
    """A thread-safe token bucket: `reserve(n)` takes n now and says how long to wait before using them.

    Starts full unless `tokens` says otherwise. A request larger than the burst waits for a
    full bucket and leaves the bucket in debt, which the callers after it wait off.
    """

    def __init__(
        self,
        per_second: float,
        burst: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        tokens: float | None = None,
    ) -> None:
        if per_second <= 0:
            raise ValueError(f"per_second must be > 0, got {per_second}")
        self.per_second = float(per_second)
        self.burst = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst if tokens is None else min(float(tokens), self.burst)
        self._updated = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.per_second)
        self._updated = now

    def reserve(self, tokens: float = 1.0) -> float:
        """Take `tokens` now (possibly going into debt) and return how long to wait before using them."""
        with self._lock:
            self._refill()
            need = min(tokens, self.burst)
            wait = 0.0 if self._tokens >= need else (need - self._tokens) / self.per_second
            # Reserving first keeps callers in order: the next one waits off this one's debt.
            self._tokens -= tokens
            return wait

    def give_back(self, tokens: float) -> None:
        """Return an over-estimate (or take more, when `tokens` is negative) once the real cost is known."""
        with self._lock:
            self._refill()
            self._tokens = min(self.burst, self._tokens + tokens)

    def acquire(self, tokens: float = 1.0) -> float:
        """Block until `tokens` may be spent; returns the seconds waited."""
        wait = self.reserve(tokens)
        if wait > 0:
            self._sleep(wait)
        return wait


class RateLimiter:
    """All of one API's limits at once: a call waits for every bucket it draws on, and for any pause.

    `profile_limits` are what one ESP profile update draws on (default: the same as a message).
    Buckets are shared by name, so messages and profile updates hitting the same endpoint
    tier (Klaviyo's profiles API) stay under its limit together. `start_full=False` starts
    every bucket with one unit, so a batch runs at the steady rate from its first second
    (an LLM counts a minute's allowance; spending it at once would only stall the rest).
    """

    def __init__(self, limits: Iterable[RateLimit], profile_limits: Iterable[RateLimit] | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 start_full: bool = True) -> None:
        self.limits = list(limits)
        self.profile_limits = self.limits if profile_limits is None else list(profile_limits)
        self._clock = clock
        self._sleep = sleep
        self._buckets: dict[str, TokenBucket] = {}
        for limit in self.limits + self.profile_limits:
            if limit.name not in self._buckets:
                self._buckets[limit.name] = TokenBucket(limit.per_second, limit.burst, clock, sleep,
                                                        tokens=None if start_full else 1.0)
        self.paused_until = 0.0
        self._lock = threading.Lock()

    def pause(self, seconds: float) -> None:
        """Hold every caller for `seconds` (the server said Retry-After)."""
        with self._lock:
            self.paused_until = max(self.paused_until, self._clock() + seconds)

    def _paused_for(self) -> float:
        return self.paused_until - self._clock()

    def reserve(self, draws: Iterable[tuple[str, float]]) -> float:
        """Take each (bucket name, amount) now; returns how long to wait before the call may go."""
        waits = [self._buckets[name].reserve(amount) for name, amount in draws]
        return max([self._paused_for(), *waits])

    def acquire(self, draws: Iterable[tuple[str, float]]) -> float:
        """Block (sleeping this thread) until the call may go; returns the seconds waited."""
        waited, wait = 0.0, self.reserve(draws)
        while wait > 0:  # a pause that begins while we wait holds us too
            self._sleep(wait)
            waited += wait
            wait = self._paused_for()
        return waited

    async def aacquire(self, draws: Iterable[tuple[str, float]]) -> None:
        """`acquire` for asyncio: waits without blocking the event loop."""
        wait = self.reserve(draws)
        while wait > 0:
            await asyncio.sleep(wait)
            wait = self._paused_for()

    def give_back(self, name: str, amount: float) -> None:
        """Correct a bucket once the real cost is known (estimated minus actual)."""
        self._buckets[name].give_back(amount)

    def acquire_send(self, kind: str = "message") -> float:
        """Block until one more message (or, with kind `properties`, profile update) may go out;
        returns the seconds waited."""
        limits = self.profile_limits if kind == "properties" else self.limits
        return self.acquire((limit.name, limit.cost_per_send) for limit in limits)

    @property
    def sends_per_second(self) -> float:
        """The steady send rate these limits allow (the tightest one)."""
        return min((lim.per_second / lim.cost_per_send for lim in self.limits), default=float("inf"))


def backoff(attempt: int, base_seconds: float, cap_seconds: float, retry_after: float | None = None,
                    rng: random.Random | None = None) -> float:
    """How long to wait after failed attempt number `attempt` (1-based).

    A random time in [delay/2, delay] with delay = base * 2**(attempt-1) capped at `cap_seconds`
    (the jitter spreads retries so they do not arrive together), and never less than Retry-After.
    """
    ceiling = min(cap_seconds, base_seconds * 2 ** max(0, attempt - 1))
    delay = (rng or random).uniform(ceiling / 2, ceiling)
    return max(delay, retry_after or 0.0)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None if absent or bad."""
    if value is None or str(value).strip() == "":
        return None
    text = str(value).strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return max(0.0, (when - now).total_seconds())

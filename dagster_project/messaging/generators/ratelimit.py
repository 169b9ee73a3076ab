"""Token buckets that keep LLM calls within requests-per-minute and tokens-per-minute limits.

Buckets start nearly empty, refill continuously and hold at most a second's
worth, so a batch runs at the configured rate from its first second instead of
spending a minute's allowance at once and then stalling. A 429 with
Retry-After pauses every caller, not just the one that saw it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable


class TokenBucket:
    """`rate_per_minute` units per minute, at most `burst` banked (default: one second's worth)."""

    def __init__(self, rate_per_minute: float, burst: float | None = None,
                 clock: Callable[[], float] = time.monotonic):
        if rate_per_minute <= 0:
            raise ValueError(f"rate_per_minute must be > 0, got {rate_per_minute}")
        self.rate = rate_per_minute / 60.0
        self.capacity = max(burst if burst is not None else self.rate, 1.0)
        # Start with one unit, not a full bucket: a batch never opens faster than the configured rate.
        self.tokens = min(1.0, self.capacity)
        self.clock = clock
        self.updated = clock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def wait_time(self, amount: float) -> float:
        """Seconds until `amount` can be taken (a request larger than the burst waits for a full bucket)."""
        self._refill()
        need = min(amount, self.capacity)
        return 0.0 if self.tokens >= need else (need - self.tokens) / self.rate

    def take(self, amount: float) -> None:
        """Take `amount` (may go negative for requests larger than the burst; later callers wait it off)."""
        self._refill()
        self.tokens -= amount

    def give_back(self, amount: float) -> None:
        """Return an over-estimate (or take more, when `amount` is negative) once the real cost is known."""
        self._refill()
        self.tokens = min(self.capacity, self.tokens + amount)


class RateLimiter:
    """Requests-per-minute and tokens-per-minute buckets shared by every call of a batch."""

    def __init__(self, requests_per_minute: float, tokens_per_minute: float,
                 clock: Callable[[], float] = time.monotonic):
        self.requests = TokenBucket(requests_per_minute, clock=clock)
        self.tokens = TokenBucket(tokens_per_minute, burst=max(tokens_per_minute / 60.0, 1.0), clock=clock)
        self.clock = clock
        self.paused_until = 0.0
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def pause(self, seconds: float) -> None:
        """Hold every caller for `seconds` (the server said Retry-After)."""
        self.paused_until = max(self.paused_until, self.clock() + seconds)

    async def acquire(self, estimated_tokens: float) -> None:
        """Wait for one request slot and `estimated_tokens` tokens; callers are served in turn."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # one lock per event loop (each batch may run its own loop)
            self._lock, self._loop = asyncio.Lock(), loop
        async with self._lock:
            while True:
                wait = max(self.paused_until - self.clock(),
                           self.requests.wait_time(1), self.tokens.wait_time(estimated_tokens))
                if wait <= 0:
                    break
                await asyncio.sleep(wait)
            self.requests.take(1)
            self.tokens.take(estimated_tokens)

    def settle(self, estimated_tokens: float, actual_tokens: float) -> None:
        """Correct the token bucket once the response says how many tokens were really used."""
        self.tokens.give_back(estimated_tokens - actual_tokens)

"""Token buckets that pace sends to an ESP's documented rate limits.

An ESP states its limits as a burst (requests allowed at once) and a steady
rate; a token bucket with capacity = burst that refills at the steady rate
models both. Senders reserve tokens and sleep outside the lock, so many worker
threads share one bucket and the total rate never exceeds the limit.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable


@dataclass(frozen=True)
class RateLimit:
    """One limit an ESP documents: `per_second` steady rate, `burst` capacity.

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


class TokenBucket:
    """A thread-safe token bucket: `acquire(n)` blocks until n tokens are available."""

    def __init__(
        self,
        per_second: float,
        burst: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.per_second = float(per_second)
        self.burst = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._updated = clock()
        self._lock = threading.Lock()

    def reserve(self, tokens: float = 1.0) -> float:
        """Take `tokens` now (possibly going into debt) and return how long to wait before using them."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.per_second)
            self._updated = now
            self._tokens -= tokens
            # In debt: wait until the refill has paid it back. Reserving first keeps callers in order.
            return 0.0 if self._tokens >= 0 else -self._tokens / self.per_second

    def acquire(self, tokens: float = 1.0) -> float:
        """Block until `tokens` may be spent; returns the seconds waited."""
        wait = self.reserve(tokens)
        if wait > 0:
            self._sleep(wait)
        return wait


class RateLimiter:
    """All of one ESP's limits at once: a send waits for every bucket it draws on.

    `profile_limits` are what one profile update draws on (default: the same as a message).
    Buckets are shared by name, so messages and profile updates hitting the same endpoint
    tier (Klaviyo's profiles API) stay under its limit together.
    """

    def __init__(self, limits: Iterable[RateLimit], profile_limits: Iterable[RateLimit] | None = None,
                 **bucket_kwargs) -> None:
        self.limits = list(limits)
        self.profile_limits = self.limits if profile_limits is None else list(profile_limits)
        self._sleep = bucket_kwargs.get("sleep", time.sleep)
        self._buckets: dict[str, TokenBucket] = {}
        for limit in self.limits + self.profile_limits:
            if limit.name not in self._buckets:
                self._buckets[limit.name] = TokenBucket(limit.per_second, limit.burst, **bucket_kwargs)

    def acquire_send(self, kind: str = "message") -> float:
        """Block until one more message (or, with kind `properties`, profile update) may go out;
        returns the seconds waited."""
        limits = self.profile_limits if kind == "properties" else self.limits
        waits = [self._buckets[limit.name].reserve(limit.cost_per_send) for limit in limits]
        wait = max(waits, default=0.0)
        if wait > 0:
            self._sleep(wait)
        return wait

    @property
    def sends_per_second(self) -> float:
        """The steady send rate these limits allow (the tightest one)."""
        return min((lim.per_second / lim.cost_per_send for lim in self.limits), default=float("inf"))

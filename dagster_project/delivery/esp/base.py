"""The one ESP interface: what a message is, what a send returns, and how errors are told apart.

Every adapter (Klaviyo, Customer.io, HubSpot, signed webhook, JSONL file) is a
Dagster `ConfigurableResource` subclassing `EspResource`, takes an
`OutboundMessage` (`send`) or a customer's properties (`update_profile`) and
either returns a `SendResult` or raises an `EspError`:
`RetryableEspError` (429, 5xx, timeout, dropped connection; may carry the
ESP's Retry-After) or `PermanentEspError` (anything retrying will not fix).
The outbox decides what to do with each; adapters never retry themselves.
"""

from __future__ import annotations

import json
import socket
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, NamedTuple, Sequence

import dagster as dg
from pydantic import Field

from dagster_project.delivery.ratelimit import RateLimit, parse_retry_after  # noqa: F401 - adapters' API
from dagster_project.ingest.contract import campaign_id

# The ESP's own error text is kept short in the outbox: enough to act on, no payload echo.
MAX_ERROR_CHARS = 300


@dataclass(frozen=True)
class OutboundMessage:
    """One personalised message, as the outbox hands it to an adapter."""

    send_id: str  # deterministic: hash of (batch, customer, playbook)
    batch_id: str
    customer_id: str
    playbook_id: str
    email: str
    first_name: str | None
    subject: str
    body: str
    cta: str | None
    preheader: str | None = None
    offer_id: str | None = None  # the offer the body words: the ESP template applies its code

    def personalised_fields(self) -> dict[str, Any]:
        """The fields an ESP template renders; `campaign_id`/`message_id` come back on ESP events."""
        return {
            "send_id": self.send_id,
            "campaign_id": campaign_id(self.batch_id),  # the assignment's: ESP events come back on it
            "message_id": self.send_id,
            "batch_id": self.batch_id,
            "playbook_id": self.playbook_id,
            "subject": self.subject,
            "preheader": self.preheader,
            "body": self.body,
            "cta": self.cta,
            "offer_id": self.offer_id,
        }


@dataclass(frozen=True)
class SendResult:
    """A send the ESP accepted. `duplicate` means it had already accepted this idempotency key."""

    send_id: str
    esp_message_id: str | None = None
    duplicate: bool = False


class ProfileUpdate(NamedTuple):
    """One outbox profile update as `EspResource.update_profiles` takes it."""

    customer_id: str
    email: str | None
    body: str  # the properties: the outbox's body, a JSON object checked when it was queued
    idempotency_key: str


class EspError(Exception):
    """A send the ESP did not accept. `retryable` says whether trying again can help."""

    retryable: ClassVar[bool] = False

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(message[:MAX_ERROR_CHARS])
        self.status = status
        self.retry_after = retry_after


class RetryableEspError(EspError):
    """429, 5xx, timeout or a dropped connection: try again later (after `retry_after` if set)."""

    retryable = True


class PermanentEspError(EspError):
    """A 4xx or a bad message: retrying the same request will fail the same way."""

    retryable = False


def _header(headers: Mapping[str, Any] | None, name: str) -> str | None:
    if not headers:
        return None
    for key, value in dict(headers).items():
        if str(key).lower() == name.lower():
            return value
    return None


def http_error(esp: str, status: int, headers: Mapping[str, Any] | None = None, detail: str = "") -> EspError:
    """The error for a non-2xx answer: 408/429/5xx are retryable (with Retry-After), other 4xx permanent."""
    retry_after = parse_retry_after(_header(headers, "Retry-After"))
    text = f"{esp}: HTTP {status}" + (f" {detail.strip()}" if detail and detail.strip() else "")
    if status in (408, 425, 429) or status >= 500:
        return RetryableEspError(text, status=status, retry_after=retry_after)
    return PermanentEspError(text, status=status)


def _is_timeout(exc: BaseException) -> bool:
    import requests
    import urllib3.exceptions as u3

    return isinstance(exc, (TimeoutError, socket.timeout, u3.TimeoutError, requests.Timeout))


def _is_connection_error(exc: BaseException) -> bool:
    import requests
    import urllib3.exceptions as u3

    return isinstance(exc, (ConnectionError, u3.HTTPError, requests.ConnectionError, requests.exceptions.ChunkedEncodingError))


def classify_exception(esp: str, exc: BaseException) -> EspError:
    """Map any SDK or transport exception to the taxonomy (walks `__cause__` for wrapped errors).

    SDK exceptions with an integer `status` (Klaviyo's and HubSpot's `ApiException`)
    become `http_error`s; timeouts and connection failures are retryable; anything
    else (a payload the SDK rejected, a bug) is permanent so it dead-letters with a reason.
    """
    if isinstance(exc, EspError):
        return exc
    seen: BaseException | None = exc
    while seen is not None:
        status = getattr(seen, "status", None)
        if isinstance(status, int) and status >= 400:
            body = getattr(seen, "body", None) or getattr(seen, "reason", "") or ""
            if isinstance(body, bytes):
                body = body.decode("utf-8", "replace")
            return http_error(esp, status, getattr(seen, "headers", None), str(body)[:200])
        if _is_timeout(seen):
            return RetryableEspError(f"{esp}: timed out ({type(seen).__name__})")
        if _is_connection_error(seen):
            return RetryableEspError(f"{esp}: connection failed ({type(seen).__name__})")
        seen = seen.__cause__ or seen.__context__
    return PermanentEspError(f"{esp}: {type(exc).__name__}: {str(exc)[:200]}")


class EspResource(dg.ConfigurableResource):
    """Base of every ESP adapter: one `send`, its rate limits and its idempotency key.

    `base_url` points at the ESP (or a loopback server in tests). `requests_per_second`
    and `burst` override the ESP's documented limits with one bucket (tests, benchmarks,
    or a contract with higher limits).
    """

    esp_name: ClassVar[str] = "esp"
    # Sends may overlap (network ESPs wait on the wire). A local sink says False: its sends are
    # Python work under one lock, which parallel threads only slow down with contention.
    parallel_sends: ClassVar[bool] = True

    base_url: str = Field(description="ESP API base URL; point at a loopback server in tests")
    timeout_seconds: float = Field(default=10.0, description="per-request timeout")
    requests_per_second: float | None = Field(default=None, description="override the documented rate limit")
    burst: float | None = Field(default=None, description="override the documented burst")

    @abstractmethod
    def send(self, message: OutboundMessage) -> SendResult:
        """Deliver one message or raise an `EspError`. Must be safe to call from worker threads."""

    @abstractmethod
    def update_profile(self, customer_id: str, email: str | None, properties: Mapping[str, Any],
                       idempotency_key: str) -> SendResult:
        """Write `properties` onto the customer's profile (no email is sent) or raise an `EspError`.

        Returns a `SendResult` whose `send_id` is the idempotency key. A profile upsert sets
        the same values when repeated, so a re-send after a crash changes nothing; sinks that
        can (webhook, file) also deduplicate on the key. Must be safe to call from worker threads.
        """

    def update_profiles(self, updates: Sequence[ProfileUpdate]) -> list[SendResult | EspError]:
        """Several profile updates: a result per update, in their order (the `EspError` where one
        failed). The sender calls this, not `update_profile`, for a sink with no rate limits that
        sends from one thread (`parallel_sends` False). Default: `update_profile` one at a time;
        a sink that can write many at once overrides it (the file sink: one write per round)."""
        results: list[SendResult | EspError] = []
        for update in updates:
            try:
                results.append(self.update_profile(update.customer_id, update.email, json.loads(update.body),
                                                   update.idempotency_key))
            except Exception as exc:  # noqa: BLE001 - classified, as the sender does for one send
                results.append(classify_exception(self.esp_name, exc))
        return results

    def documented_limits(self) -> list[RateLimit]:
        """The ESP's published limits, per endpoint tier this adapter calls."""
        return []

    def documented_profile_limits(self) -> list[RateLimit]:
        """The published limits one `update_profile` (one API call) draws on; default: the send limits."""
        return [RateLimit(limit.name, limit.per_second, limit.burst) for limit in self.documented_limits()]

    def profile_update_limits(self) -> list[RateLimit]:
        """The limits the outbox paces profile updates by (sharing buckets with sends by name)."""
        if self.requests_per_second:
            return [RateLimit("configured", self.requests_per_second,
                              max(self.burst or self.requests_per_second, 1.0))]
        return self.documented_profile_limits()

    def requests_per_send(self) -> int:
        """API calls one `send` makes (the override bucket charges this many tokens)."""
        return 1

    def rate_limits(self) -> list[RateLimit]:
        """The limits the outbox paces this adapter by."""
        if self.requests_per_second:
            cost = self.requests_per_send()
            return [RateLimit("configured", self.requests_per_second,
                              max(self.burst or self.requests_per_second, cost), cost)]
        return self.documented_limits()

    def idempotency_key(self, send_id: str) -> str:
        """The key the ESP deduplicates on; the same send id always gives the same key."""
        return send_id

    def reconcile(self, message: OutboundMessage) -> bool | None:
        """After a crash: did the ESP already get this message? True/False, or None if it cannot tell
        (the outbox then re-sends with the same idempotency key and the ESP deduplicates)."""
        return None

    def sync(self) -> None:
        """Make the sends reported so far durable; the outbox calls it before recording a chunk
        as sent (default: nothing to do, an API call is done when it returns)."""

    def close(self) -> None:
        """Release connections (optional)."""

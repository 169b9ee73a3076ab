"""Customer.io through the official `customerio` SDK: identify the person, then track an event.

A Customer.io campaign triggered by `event_name` sends the message with the
event data. The event `id` is a ULID derived from the send id; Customer.io
deduplicates events by it, so a re-sent event is recorded once. A profile
update is one identify call carrying the values as person attributes;
repeating it sets the same values.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any, Mapping
from urllib.parse import urlsplit

from pydantic import Field, PrivateAttr

from dagster_project.delivery.esp.base import (
    EspResource, OutboundMessage, SendResult, classify_exception, http_error,
)
from dagster_project.delivery.ratelimit import RateLimit

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def ulid_for(send_id: str) -> str:
    """A valid, deterministic ULID (26 Crockford base32 chars) from a send id."""
    value = int.from_bytes(hashlib.sha256(send_id.encode()).digest()[:16], "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))  # 130 bits for 128: the first char is always 0-7, as ULIDs require


def split_base_url(base_url: str) -> tuple[str, int, str]:
    """`https://host[:port][/prefix]` → (host, port, url prefix) for the SDK's host/port/url_prefix."""
    parts = urlsplit(base_url if "://" in base_url else f"https://{base_url}")
    if parts.scheme != "https":
        raise ValueError(f"Customer.io base_url {base_url!r}: the SDK only speaks https")
    return parts.hostname or "", parts.port or 443, parts.path.strip("/") or "api/v1"


def _adapter(base, ca_bundle: str | None):
    """The SDK's keep-alive adapter without retries, trusting `ca_bundle` when given.

    The CA is pinned in the adapter because requests lets REQUESTS_CA_BUNDLE override a
    session's `verify`.
    """

    class Adapter(base):
        def send(self, request, **kwargs):
            if ca_bundle:
                kwargs["verify"] = ca_bundle
            return super().send(request, **kwargs)

    return Adapter(max_retries=0, pool_maxsize=32)


class CustomerIoEsp(EspResource):
    """Customer.io Track API: identify + event (`CUSTOMERIO_SITE_ID`, `CUSTOMERIO_API_KEY`)."""

    esp_name = "customerio"

    site_id: str = Field(description="Track API site id", repr=False)
    api_key: str = Field(description="Track API key", repr=False)
    base_url: str = "https://track.customer.io/api/v1"
    event_name: str = Field(default="nextbest_message", description="event the sending campaign triggers on")
    ca_bundle: str | None = Field(default=None, description="CA file to trust (a proxy or a test server)")

    _client: Any = PrivateAttr(default=None)
    _lock: Any = PrivateAttr(default_factory=threading.Lock)
    _last: Any = PrivateAttr(default_factory=threading.local)

    def documented_limits(self) -> list[RateLimit]:
        # Track API fair use: 100 requests/s; identify + track are two requests per message.
        return [RateLimit.windows("track api", [(100, 1)], burst=10, cost_per_send=2)]

    def requests_per_send(self) -> int:
        return 2

    def idempotency_key(self, send_id: str) -> str:
        return ulid_for(send_id)

    def _sdk(self):
        with self._lock:
            if self._client is None:
                from customerio import CustomerIO
                from customerio.client_base import TCPKeepAliveHTTPAdapter

                host, port, prefix = split_base_url(self.base_url)
                client = CustomerIO(self.site_id, self.api_key, host=host, port=port, url_prefix=prefix,
                                    retries=0, timeout=self.timeout_seconds)
                session = client.http
                # No transport retries (the outbox retries), and a larger pool for worker threads.
                session.mount("https://", _adapter(TCPKeepAliveHTTPAdapter, self.ca_bundle))
                # The SDK's exception carries no headers; keep each thread's last response for Retry-After.
                session.hooks["response"].append(self._remember)
                self._client = client
            return self._client

    def _remember(self, response, *args, **kwargs):
        self._last.response = response
        return response

    def _error(self, exc: Exception):
        response = getattr(self._last, "response", None)
        text = str(exc)
        status = text.split(":", 1)[0]
        if response is not None and status.isdigit() and int(status) == response.status_code:
            # Not the SDK's message: it echoes the request data (email, copy).
            return http_error(self.esp_name, response.status_code, response.headers, response.text[:200])
        return classify_exception(self.esp_name, exc)

    def send(self, message: OutboundMessage) -> SendResult:
        client = self._sdk()
        self._last.response = None
        try:
            attributes = {"email": message.email}
            if message.first_name:
                attributes["first_name"] = message.first_name
            client.identify(id=message.customer_id, **attributes)
            self._last.response = None
            client.track(customer_id=message.customer_id, name=self.event_name,
                         data=message.personalised_fields(), id=self.idempotency_key(message.send_id))
        except Exception as exc:
            raise self._error(exc) from None
        return SendResult(message.send_id, esp_message_id=self.idempotency_key(message.send_id))

    def update_profile(self, customer_id: str, email: str | None, properties: Mapping[str, Any],
                       idempotency_key: str) -> SendResult:
        client = self._sdk()
        self._last.response = None
        attributes = dict(properties)
        if email:
            attributes["email"] = email
        try:
            client.identify(id=customer_id, **attributes)
        except Exception as exc:
            raise self._error(exc) from None
        return SendResult(idempotency_key)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

"""A signed JSON webhook: POST each message to your own endpoint.

The body is JSON with a `type`: `message` (the recipient and personalised
fields) or `profile_update` (the customer and their `properties`).
`X-NextBest-Timestamp` and `X-NextBest-Signature` sign it (see
`delivery/signing.py`) and `Idempotency-Key` carries the send id, which the
receiver should deduplicate on (answer 409 for a key it already has).
"""

from __future__ import annotations

import json
import threading
from typing import Any, Mapping

from pydantic import Field, PrivateAttr

from dagster_project.delivery.esp.base import (
    EspResource, OutboundMessage, SendResult, classify_exception, http_error,
)
from dagster_project.delivery.ratelimit import RateLimit
from dagster_project.delivery.signing import sign


def webhook_body(message: OutboundMessage) -> bytes:
    """The JSON the endpoint receives for a message: recipient plus the personalised fields."""
    payload = {"type": "message", "customer_id": message.customer_id, "email": message.email,
               "first_name": message.first_name, **message.personalised_fields()}
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


def profile_update_body(customer_id: str, email: str | None, properties: Mapping[str, Any],
                        idempotency_key: str) -> bytes:
    """The JSON the endpoint receives for a profile update (`send_id` is the idempotency key)."""
    payload = {"type": "profile_update", "customer_id": customer_id, "email": email,
               "send_id": idempotency_key, "properties": dict(properties)}
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


class WebhookEsp(EspResource):
    """Signed webhook (`NEXTBEST_WEBHOOK_URL`, `NEXTBEST_WEBHOOK_SECRET`)."""

    esp_name = "webhook"

    base_url: str = Field(description="the URL each message is POSTed to")
    secret: str = Field(description="HMAC-SHA256 signing secret", repr=False)
    max_per_second: float = Field(default=50.0, description="what your endpoint accepts")

    _session: Any = PrivateAttr(default=None)
    _lock: Any = PrivateAttr(default_factory=threading.Lock)

    def documented_limits(self) -> list[RateLimit]:
        return [RateLimit("webhook", self.max_per_second, max(1.0, self.max_per_second))]

    def _http(self):
        with self._lock:
            if self._session is None:
                import requests
                from requests.adapters import HTTPAdapter

                session = requests.Session()
                session.mount("http://", HTTPAdapter(max_retries=0, pool_maxsize=32))
                session.mount("https://", HTTPAdapter(max_retries=0, pool_maxsize=32))
                self._session = session
            return self._session

    def send(self, message: OutboundMessage) -> SendResult:
        result = self._post(webhook_body(message), self.idempotency_key(message.send_id))
        return SendResult(message.send_id, esp_message_id=result.esp_message_id, duplicate=result.duplicate)

    def update_profile(self, customer_id: str, email: str | None, properties: Mapping[str, Any],
                       idempotency_key: str) -> SendResult:
        return self._post(profile_update_body(customer_id, email, properties, idempotency_key), idempotency_key)

    def _post(self, body: bytes, key: str) -> SendResult:
        headers = {"Content-Type": "application/json", "Idempotency-Key": key, **sign(self.secret, body)}
        try:
            response = self._http().post(self.base_url, data=body, headers=headers, timeout=self.timeout_seconds)
        except Exception as exc:
            raise classify_exception(self.esp_name, exc) from None
        if response.status_code == 409:  # the receiver already has this idempotency key
            return SendResult(key, duplicate=True)
        if not 200 <= response.status_code < 300:
            raise http_error(self.esp_name, response.status_code, response.headers, response.text[:200])
        return SendResult(key, esp_message_id=response.headers.get("X-Message-Id"))

    def close(self) -> None:
        if self._session is not None:
            self._session.close()

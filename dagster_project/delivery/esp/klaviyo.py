"""Klaviyo through the official `klaviyo-api` SDK: upsert the profile, then create an event.

A Klaviyo flow triggered by the event metric (`metric_name`) sends the email,
rendering the personalised fields carried in the event properties. The event's
`unique_id` is the send id, so Klaviyo records a re-sent event only once.
A profile update is one profile upsert (`POST /api/profile-import`) with the
values as custom profile `properties`; repeating it sets the same values.
"""

from __future__ import annotations

import threading
from typing import Any, Mapping

from pydantic import Field, PrivateAttr

from dagster_project.delivery.esp.base import EspResource, OutboundMessage, SendResult, classify_exception
from dagster_project.delivery.ratelimit import RateLimit

# Klaviyo publishes a burst and a steady limit per endpoint: events 350/s and 3,500/min,
# profiles 75/s and 750/min.
KLAVIYO_EVENTS = RateLimit.windows("events", [(350, 1), (3500, 60)], burst=50)
KLAVIYO_PROFILES = RateLimit.windows("profiles", [(75, 1), (750, 60)], burst=10)


def profile_payload(message: OutboundMessage) -> dict[str, Any]:
    """JSON:API body for `POST /api/profile-import` (create or update by email / external id)."""
    attributes: dict[str, Any] = {"email": message.email, "external_id": message.customer_id}
    if message.first_name:
        attributes["first_name"] = message.first_name
    return {"data": {"type": "profile", "attributes": attributes}}


def profile_properties_payload(customer_id: str, email: str | None,
                               properties: Mapping[str, Any]) -> dict[str, Any]:
    """JSON:API body for `POST /api/profile-import` that sets custom properties (by external id / email)."""
    attributes: dict[str, Any] = {"external_id": customer_id, "properties": dict(properties)}
    if email:
        attributes["email"] = email
    return {"data": {"type": "profile", "attributes": attributes}}


def event_payload(message: OutboundMessage, metric_name: str, unique_id: str) -> dict[str, Any]:
    """JSON:API body for `POST /api/events`: the metric a flow listens to, with the copy as properties."""
    return {
        "data": {
            "type": "event",
            "attributes": {
                "properties": message.personalised_fields(),
                "unique_id": unique_id,
                "metric": {"data": {"type": "metric", "attributes": {"name": metric_name}}},
                "profile": {"data": {"type": "profile", "attributes": {
                    "email": message.email, "external_id": message.customer_id}}},
            },
        }
    }


class KlaviyoEsp(EspResource):
    """Klaviyo: profile upsert + event per message (`KLAVIYO_API_KEY`, base URL `KLAVIYO_BASE_URL`)."""

    esp_name = "klaviyo"

    api_key: str = Field(description="private API key (pk_...)", repr=False)
    base_url: str = "https://a.klaviyo.com"
    metric_name: str = Field(default="NextBest Message", description="metric the sending flow triggers on")
    upsert_profile: bool = Field(default=True, description="update name/external id before the event")

    _client: Any = PrivateAttr(default=None)
    _lock: Any = PrivateAttr(default_factory=threading.Lock)

    def documented_limits(self) -> list[RateLimit]:
        limits = [KLAVIYO_EVENTS]
        if self.upsert_profile:
            limits.append(KLAVIYO_PROFILES)
        return limits

    def documented_profile_limits(self) -> list[RateLimit]:
        # A profile update is one call to the profiles endpoint, and nothing on events.
        return [KLAVIYO_PROFILES]

    def requests_per_send(self) -> int:
        return 2 if self.upsert_profile else 1

    def _apis(self):
        with self._lock:
            if self._client is None:
                from klaviyo_api import KlaviyoAPI

                # max_retries=1: one attempt; the outbox owns retries, backoff and Retry-After.
                sdk = KlaviyoAPI(self.api_key, max_delay=1, max_retries=1, test_host=self.base_url.rstrip("/"))
                self._client = (sdk.Profiles, sdk.Events)
            return self._client

    def send(self, message: OutboundMessage) -> SendResult:
        profiles, events = self._apis()
        try:
            profile_id = None
            if self.upsert_profile:
                response = profiles.create_or_update_profile(
                    profile_payload(message), _request_timeout=self.timeout_seconds)
                profile_id = getattr(getattr(response, "data", None), "id", None)
            events.create_event(
                event_payload(message, self.metric_name, self.idempotency_key(message.send_id)),
                _request_timeout=self.timeout_seconds,
            )
        except Exception as exc:  # every SDK / transport failure is classified, none escapes raw
            raise classify_exception(self.esp_name, exc) from None
        return SendResult(message.send_id, esp_message_id=profile_id)

    def update_profile(self, customer_id: str, email: str | None, properties: Mapping[str, Any],
                       idempotency_key: str) -> SendResult:
        profiles, _ = self._apis()
        try:
            response = profiles.create_or_update_profile(
                profile_properties_payload(customer_id, email, properties), _request_timeout=self.timeout_seconds)
        except Exception as exc:
            raise classify_exception(self.esp_name, exc) from None
        return SendResult(idempotency_key, esp_message_id=getattr(getattr(response, "data", None), "id", None))

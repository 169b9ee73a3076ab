"""HubSpot through the official `hubspot-api-client`: upsert the contact, then a single send.

The contact is upserted by email with its properties; the message goes out via
the transactional single-send API using a template (`email_id`) that renders
the personalised fields passed as `customProperties`. The `sendId` is the send
id: HubSpot sends at most one email per sendId, and answers 409 for a repeat.
A profile update is the same contact upsert carrying the values as contact
properties (create the `nextbest_*` properties in HubSpot first; HubSpot
rejects unknown ones with a 400, which dead-letters the row with that reason).
"""

from __future__ import annotations

import json
import threading
from typing import Any, Mapping

from pydantic import Field, PrivateAttr

from dagster_project.delivery.esp.base import (
    EspResource, OutboundMessage, PermanentEspError, SendResult, classify_exception,
)
from dagster_project.delivery.ratelimit import RateLimit


def contact_properties(message: OutboundMessage) -> dict[str, str]:
    """Contact properties to upsert (HubSpot properties are strings)."""
    props = {"email": message.email, "nextbest_customer_id": message.customer_id}
    if message.first_name:
        props["firstname"] = message.first_name
    return props


def property_value(value: Any) -> str:
    """A value as HubSpot stores it: strings, `true`/`false`, `;`-joined lists (multiple checkboxes)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ";".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


class HubSpotEsp(EspResource):
    """HubSpot: contact upsert + transactional single send (`HUBSPOT_ACCESS_TOKEN`, `HUBSPOT_EMAIL_ID`)."""

    esp_name = "hubspot"

    access_token: str = Field(description="private app access token", repr=False)
    email_id: int = Field(description="id of the HubSpot email template that renders the message")
    base_url: str = "https://api.hubapi.com"
    upsert_contact: bool = Field(default=True, description="upsert contact properties before sending")

    _client: Any = PrivateAttr(default=None)
    _lock: Any = PrivateAttr(default_factory=threading.Lock)

    def documented_limits(self) -> list[RateLimit]:
        # Private apps: 190 requests per 10 seconds (Professional/Enterprise).
        return [RateLimit.windows("private app", [(190, 10)], burst=19, cost_per_send=self.requests_per_send())]

    def requests_per_send(self) -> int:
        return 2 if self.upsert_contact else 1

    def _sdk(self):
        with self._lock:
            if self._client is None:
                from hubspot import HubSpot
                from urllib3.util.retry import Retry

                # Retry(0): no transport retries; the outbox owns them.
                sdk = HubSpot(access_token=self.access_token, host=self.base_url.rstrip("/"),
                              retry=Retry(total=0, read=False, redirect=False))
                # Each attribute access builds a new API client (and connection pool): build them once.
                self._client = (sdk.crm.contacts.batch_api, sdk.marketing.transactional.single_send_api)
            return self._client

    def send(self, message: OutboundMessage) -> SendResult:
        from hubspot.crm.contacts import (
            BatchInputSimplePublicObjectBatchInputUpsert, SimplePublicObjectBatchInputUpsert,
        )
        from hubspot.marketing.transactional import PublicSingleSendEmail, PublicSingleSendRequestEgg

        contacts, single_send = self._sdk()
        if self.upsert_contact:
            try:
                contacts.upsert(
                    BatchInputSimplePublicObjectBatchInputUpsert(inputs=[SimplePublicObjectBatchInputUpsert(
                        id=message.email, id_property="email", properties=contact_properties(message))]),
                    _request_timeout=self.timeout_seconds,
                )
            except Exception as exc:  # a 409 here is a contact conflict, not this email sent before
                raise classify_exception(self.esp_name, exc) from None
        try:
            status = single_send.send_email(
                PublicSingleSendRequestEgg(
                    email_id=self.email_id,
                    message=PublicSingleSendEmail(to=message.email,
                                                  send_id=self.idempotency_key(message.send_id)),
                    contact_properties=contact_properties(message),
                    custom_properties=message.personalised_fields(),
                ),
                _request_timeout=self.timeout_seconds,
            )
        except Exception as exc:
            if getattr(exc, "status", None) == 409:  # this sendId was already sent
                return SendResult(message.send_id, duplicate=True)
            raise classify_exception(self.esp_name, exc) from None
        return SendResult(message.send_id, esp_message_id=getattr(status, "status_id", None))

    def update_profile(self, customer_id: str, email: str | None, properties: Mapping[str, Any],
                       idempotency_key: str) -> SendResult:
        from hubspot.crm.contacts import (
            BatchInputSimplePublicObjectBatchInputUpsert, SimplePublicObjectBatchInputUpsert,
        )

        if not email:
            raise PermanentEspError(f"hubspot: customer {customer_id} has no email in raw.customers; "
                                    "contacts are upserted by email")
        props = {key: property_value(value) for key, value in properties.items()}
        props.update({"email": email, "nextbest_customer_id": str(customer_id)})
        contacts, _ = self._sdk()
        try:
            response = contacts.upsert(
                BatchInputSimplePublicObjectBatchInputUpsert(inputs=[SimplePublicObjectBatchInputUpsert(
                    id=email, id_property="email", properties=props)]),
                _request_timeout=self.timeout_seconds,
            )
        except Exception as exc:
            raise classify_exception(self.esp_name, exc) from None
        results = getattr(response, "results", None) or []
        return SendResult(idempotency_key, esp_message_id=getattr(results[0], "id", None) if results else None)

"""ESP adapters behind one interface (`EspResource`), each a Dagster resource configured from env.

`esp_from_env()` picks the adapter named by `NEXTBEST_ESP` (klaviyo, customerio,
hubspot, webhook, file; default file) and wires its secrets as `dagster.EnvVar`s,
so they are read at run time and never written into run config or logs.
"""

from __future__ import annotations

import os

import dagster as dg

from dagster_project.delivery.esp.base import (
    EspError, EspResource, OutboundMessage, PermanentEspError, RetryableEspError, SendResult,
)
from dagster_project.delivery.esp.customerio import CustomerIoEsp
from dagster_project.delivery.esp.file import FileEsp
from dagster_project.delivery.esp.hubspot import HubSpotEsp
from dagster_project.delivery.esp.klaviyo import KlaviyoEsp
from dagster_project.delivery.esp.webhook import WebhookEsp

__all__ = [
    "EspError", "EspResource", "OutboundMessage", "PermanentEspError", "RetryableEspError", "SendResult",
    "CustomerIoEsp", "FileEsp", "HubSpotEsp", "KlaviyoEsp", "WebhookEsp", "esp_from_env", "ESP_NAMES",
]

ESP_NAMES = ("klaviyo", "customerio", "hubspot", "webhook", "file")


def esp_from_env(name: str | None = None) -> EspResource:
    """The ESP resource for `name` (default `NEXTBEST_ESP`, else `file`), secrets from env vars.

    | ESP        | required env                                              | base URL env          |
    |------------|-----------------------------------------------------------|-----------------------|
    | klaviyo    | KLAVIYO_API_KEY                                           | KLAVIYO_BASE_URL      |
    | customerio | CUSTOMERIO_SITE_ID, CUSTOMERIO_API_KEY                    | CUSTOMERIO_BASE_URL   |
    | hubspot    | HUBSPOT_ACCESS_TOKEN, HUBSPOT_EMAIL_ID                    | HUBSPOT_BASE_URL      |
    | webhook    | NEXTBEST_WEBHOOK_URL, NEXTBEST_WEBHOOK_SECRET             | (the URL itself)      |
    | file       | (NEXTBEST_OUTBOX_FILE, default outbox.jsonl beside the DuckDB file) |                       |
    """
    name = (name or os.environ.get("NEXTBEST_ESP") or "file").lower()

    def base(var: str) -> dict:
        return {"base_url": dg.EnvVar(var)} if os.environ.get(var) else {}

    if name == "klaviyo":
        return KlaviyoEsp(api_key=dg.EnvVar("KLAVIYO_API_KEY"), **base("KLAVIYO_BASE_URL"))
    if name == "customerio":
        return CustomerIoEsp(site_id=dg.EnvVar("CUSTOMERIO_SITE_ID"), api_key=dg.EnvVar("CUSTOMERIO_API_KEY"),
                             **base("CUSTOMERIO_BASE_URL"))
    if name == "hubspot":
        return HubSpotEsp(access_token=dg.EnvVar("HUBSPOT_ACCESS_TOKEN"),
                          email_id=dg.EnvVar.int("HUBSPOT_EMAIL_ID"), **base("HUBSPOT_BASE_URL"))
    if name == "webhook":
        return WebhookEsp(base_url=dg.EnvVar("NEXTBEST_WEBHOOK_URL"), secret=dg.EnvVar("NEXTBEST_WEBHOOK_SECRET"))
    if name == "file":
        from dagster_project.project import sink_file_default

        return FileEsp(path=os.environ.get("NEXTBEST_OUTBOX_FILE") or str(sink_file_default("outbox.jsonl")))
    raise ValueError(f"NEXTBEST_ESP={name!r} is not one of {', '.join(ESP_NAMES)}")

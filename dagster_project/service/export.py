"""Tags and agent-view fields out to the ESP's profile properties and a helpdesk sink, through the outbox.

Each customer's properties become one outbox row of kind `properties` per destination
(playbook `service_profile` to the ESP, `service_helpdesk` to the helpdesk sink; the
properties as JSON in `body`), so the outbox's deterministic send id, claim/settle loop
and idempotent adapters deliver them exactly once, through each adapter's
`update_profile`. Profile updates are not marketing sends: no frequency cap, opt-in,
suppression or quiet hours hold them, and they never count towards a customer's cap,
so this export can run every day beside the campaigns without touching them. Only
customers whose properties changed since their last export are queued; a newer update
replaces an older one still waiting. The helpdesk sink is helpdesk-neutral: a signed webhook
(`NEXTBEST_HELPDESK_WEBHOOK_URL`, `NEXTBEST_HELPDESK_WEBHOOK_SECRET`) or a JSONL file
(`NEXTBEST_HELPDESK_FILE`, default data/helpdesk.jsonl).
"""

from __future__ import annotations

import json
import os
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Iterable

import pandas as pd

from dagster_project.delivery import outbox
from dagster_project.delivery.esp import EspResource, FileEsp, WebhookEsp
from dagster_project.delivery.sender import ExportSummary, run_export
from dagster_project.resources.warehouse import WarehouseInterface

PROFILE_PLAYBOOK = "service_profile"
HELPDESK_PLAYBOOK = "service_helpdesk"
# The outbox destination of each playbook: the configured ESP's profiles, or the helpdesk sink.
OUTBOX_DESTINATIONS = {PROFILE_PLAYBOOK: outbox.ESP_DESTINATION, HELPDESK_PLAYBOOK: "helpdesk"}
# Agent-view fields exported as properties (tags first); as_of_date is left out so an
# unchanged customer is not re-sent every day.
PROPERTY_FIELDS = (
    "high_ltv", "gift_recipient", "at_risk", "brand_advocate", "tenure_tier", "tenure_months",
    "lifetime_value_tier", "subscription_status", "plan", "cadence_days", "next_charge_date",
    "last_delivery_status", "last_delivery_date", "payment_health", "channel_preference",
    "tone_preference", "open_tickets", "has_repeat_issue", "repeat_issue_topic",
)


def _plain(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()[:10]
    if isinstance(value, Decimal):
        return float(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, float) and value != value:
        return None
    return value


def profile_properties(row: dict) -> dict[str, Any]:
    """The properties sent for one customer (`nextbest_` prefixed, JSON-ready)."""
    props = {f"nextbest_{k}": _plain(row.get(k)) for k in PROPERTY_FIELDS}
    props["nextbest_tags"] = [t for t in ("high_ltv", "gift_recipient", "at_risk", "brand_advocate") if row.get(t)]
    return props


def export_frame(rows: Iterable[dict], playbook_id: str, batch_id: str,
                 previous: dict[str, str]) -> pd.DataFrame:
    """Outbox profile updates (batch_id, customer_id, playbook_id, body) for changed customers only."""
    out = []
    for row in rows:
        body = json.dumps(profile_properties(row), sort_keys=True, separators=(",", ":"))
        if previous.get(row["customer_id"]) != body:
            out.append({"batch_id": batch_id, "customer_id": row["customer_id"], "playbook_id": playbook_id,
                        "body": body})
    return pd.DataFrame(out, columns=list(outbox.PROPERTY_COLUMNS))


def last_exported(warehouse: WarehouseInterface, playbook_id: str) -> dict[str, str]:
    """customer_id -> the properties last queued for them to this destination and still on their way
    or delivered (dead, suppressed and superseded updates never arrived, so they do not count)."""
    outbox.ensure_outbox(warehouse)
    rows = warehouse.read_df(f"select customer_id, max_by(body, enqueued_at) as body from {outbox.OUTBOX} "
                             "where playbook_id = ? and kind = 'properties' "
                             "and state in ('queued', 'failed', 'sending', 'sent') group by customer_id",
                             [playbook_id])
    return dict(zip(rows["customer_id"], rows["body"]))


def helpdesk_sink_from_env() -> EspResource:
    """The helpdesk sink: signed webhook when `NEXTBEST_HELPDESK_WEBHOOK_URL` is set, else a JSONL file."""
    url = os.environ.get("NEXTBEST_HELPDESK_WEBHOOK_URL")
    if url:
        secret = os.environ.get("NEXTBEST_HELPDESK_WEBHOOK_SECRET")
        if not secret:
            raise ValueError("NEXTBEST_HELPDESK_WEBHOOK_URL is set but NEXTBEST_HELPDESK_WEBHOOK_SECRET is not")
        return WebhookEsp(base_url=url, secret=secret)
    from dagster_project.project import REPO_ROOT

    return FileEsp(path=os.environ.get("NEXTBEST_HELPDESK_FILE") or str(REPO_ROOT / "data" / "helpdesk.jsonl"))


def export_service_context(warehouse: WarehouseInterface, rows: list[dict], as_of: str,
                           destinations: dict[str, EspResource], **export_kw) -> dict[str, dict]:
    """Queue changed customers per destination (playbook id -> adapter) and send every profile update
    due there (today's, and earlier ones still retrying). Messages in the outbox are left alone.

    Re-running is safe: queued rows keep their send id, sent ones are not sent again.
    """
    result = {}
    for playbook_id, esp in destinations.items():
        if playbook_id not in OUTBOX_DESTINATIONS:
            raise ValueError(f"service export: unknown destination playbook {playbook_id!r}; "
                             f"expected one of {', '.join(OUTBOX_DESTINATIONS)}")
        destination = OUTBOX_DESTINATIONS[playbook_id]
        batch_id = f"{playbook_id}-{as_of}"
        frame = export_frame(rows, playbook_id, batch_id, last_exported(warehouse, playbook_id))
        queued = (outbox.enqueue_batch(warehouse, batch_id, frame, kind="properties", destination=destination)
                  if len(frame) else None)
        summary: ExportSummary = run_export(warehouse, esp, kind="properties", destination=destination, **export_kw)
        result[playbook_id] = {"queued": queued.queued if queued else 0,
                               "superseded": queued.superseded if queued else 0,
                               "sent": summary.sent, "duplicates": summary.duplicates,
                               "suppressed": summary.suppressed, "dead": summary.dead,
                               "remaining": summary.remaining}
    return result

"""The daily job that runs the whole pipeline, and its schedule."""

from __future__ import annotations

import dagster as dg

from dagster_project.project import WAREHOUSE_RUN_TAGS

daily_personalization = dg.define_asset_job(
    name="daily_personalization",
    # Sending is the approval sensor's job (esp_export, one run per approved batch).
    # service_context_export runs here: it sends only profile updates (outbox kind
    # `properties`), which no cap, opt-in or quiet hours apply to, and touches no message.
    selection=dg.AssetSelection.all() - dg.AssetSelection.assets("esp_export"),
    description="Load or observe raw data, rebuild context and segments, and everything downstream.",
    tags=WAREHOUSE_RUN_TAGS,
)

daily_personalization_schedule = dg.ScheduleDefinition(
    name="daily_personalization_schedule",
    job=daily_personalization,
    cron_schedule="0 5 * * *",  # 05:00 UTC, after the nightly loaders have landed raw data
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)

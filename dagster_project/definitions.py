"""The one Dagster `Definitions` of NextBest: it wires, and does nothing else."""

from __future__ import annotations

import dagster as dg

from dagster_project.decisioning import assets as decisioning
from dagster_project.delivery import assets as delivery
from dagster_project.delivery import sensors as delivery_sensors
from dagster_project.delivery.esp import esp_from_env
from dagster_project.ingest.assets import raw_sources
from dagster_project.messaging.assets import message_drafts
from dagster_project.models import clv_assets, propensity_assets, uplift_assets
from dagster_project.quality import checks as quality
from dagster_project.resources import build_dbt_resource, build_warehouse
from dagster_project.schedules import daily_personalization, daily_personalization_schedule
from dagster_project.service import assets as service
from dagster_project.warehouse.assets import nextbest_dbt_models, nextbest_dbt_scored_models, warehouse_full_refresh

# Listed in pipeline order: ingest → warehouse → models → decisioning → messaging → delivery.
STAGES = (propensity_assets, clv_assets, uplift_assets, decisioning, service, delivery)

defs = dg.Definitions(
    assets=[
        raw_sources,
        nextbest_dbt_models,
        nextbest_dbt_scored_models,
        message_drafts,
        *quality.assets,
        *(asset for stage in STAGES for asset in getattr(stage, "assets", [])),
    ],
    asset_checks=[
        *quality.asset_checks,
        *quality.customer_scores_checks,
        *quality.message_drafts_checks,
        *(check for stage in STAGES for check in getattr(stage, "asset_checks", [])),
    ],
    jobs=[daily_personalization, warehouse_full_refresh, *(job for stage in STAGES for job in getattr(stage, "jobs", []))],
    schedules=[
        daily_personalization_schedule,
        *(schedule for stage in STAGES for schedule in getattr(stage, "schedules", [])),
    ],
    sensors=[*quality.sensors, *delivery_sensors.sensors],
    resources={"warehouse": build_warehouse(), "dbt": build_dbt_resource(), "esp": esp_from_env()},
    # DuckDB allows one writer per file: run each job's steps in one process.
    executor=dg.in_process_executor,
)

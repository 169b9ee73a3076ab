"""The one Dagster `Definitions` of NextBest: it wires, and does nothing else."""

from __future__ import annotations

import dagster as dg

from dagster_project.decisioning import assets as decisioning_assets
from dagster_project.delivery import assets as delivery_assets
from dagster_project.delivery import sensors as delivery_sensors
from dagster_project.delivery.esp import esp_from_env
from dagster_project.ingest.assets import raw_sources
from dagster_project.messaging.assets import message_drafts
from dagster_project.models import clv_assets, uplift_assets
from dagster_project.quality.checks import asset_checks as quality_checks
from dagster_project.quality.checks import message_drafts_checks
from dagster_project.quality.checks import sensors as quality_sensors
from dagster_project.service.assets import asset_checks as service_checks
from dagster_project.service.assets import assets as service_assets
from dagster_project.resources import build_dbt_resource, build_warehouse
from dagster_project.schedules import daily_personalization, daily_personalization_schedule
from dagster_project.warehouse.assets import nextbest_dbt_models

defs = dg.Definitions(
    assets=[raw_sources, nextbest_dbt_models, message_drafts, *clv_assets.assets, *service_assets,
            *uplift_assets.assets, *decisioning_assets.assets, *delivery_assets.assets],
    asset_checks=[*clv_assets.asset_checks, *quality_checks, *message_drafts_checks, *service_checks,
                  *uplift_assets.asset_checks, *decisioning_assets.asset_checks],
    sensors=[*quality_sensors, *delivery_sensors.sensors],
    jobs=[daily_personalization, *clv_assets.jobs, *uplift_assets.jobs, *decisioning_assets.jobs,
          *delivery_assets.jobs],
    schedules=[daily_personalization_schedule, *clv_assets.schedules, *uplift_assets.schedules,
               *decisioning_assets.schedules],
    resources={"warehouse": build_warehouse(), "dbt": build_dbt_resource(), "esp": esp_from_env()},
    # DuckDB allows one writer per file: run each job's steps in one process.
    executor=dg.in_process_executor,
)

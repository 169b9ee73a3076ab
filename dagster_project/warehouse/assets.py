"""dbt models as Dagster assets (group `warehouse`); dbt tests become asset checks.

Two `@dbt_assets` because Python scoring sits in the middle of the dbt graph:
`nextbest_dbt_models` builds everything up to context, features and labels; the
`customer_scores` asset (group `models`) writes `nextbest.customer_scores`; then
`nextbest_dbt_scored_models` builds what reads the scores (source
`nextbest.customer_scores` and everything downstream of it: segments, their
history, tags, ...). One `dbt build` would make that a cycle.

Both take run config `full_refresh` (`dbt build --full-refresh`: rebuild the incremental
feature history from scratch, after late events, backfills or a changed var); the
`warehouse_full_refresh` job runs both that way.
"""


import json
import os
from typing import Any, Mapping

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, dbt_assets
from pydantic import Field

from dagster_project.messaging.briefs import BriefError, load_briefs
from dagster_project.models.goals import campaign_goals_var
from dagster_project.project import WAREHOUSE_RUN_TAGS, dbt_project, default_as_of, ensure_manifest
from dagster_project.resources.warehouse import DuckDBWarehouse


# Models that read the scores, and everything downstream of them (dbt selection syntax).
SCORED_MODELS = "source:nextbest.customer_scores+"
# Sources that are Python assets: the asset key of the one that writes each.
PYTHON_SOURCES = {
    ("nextbest", "customer_scores"): dg.AssetKey("customer_scores"),
    ("nextbest", "customer_predictions"): dg.AssetKey("customer_predictions"),
}


class NextBestTranslator(DagsterDbtTranslator):
    """Models are keyed by name (`customer_context`) in group `warehouse`; sources keep `raw/<table>`,
    except those the Python assets write (`nextbest.customer_scores`, `nextbest.customer_predictions`)."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] in ("model", "snapshot", "seed"):
            return dg.AssetKey(dbt_resource_props["name"])
        if dbt_resource_props["resource_type"] == "source":
            written_by = PYTHON_SOURCES.get((dbt_resource_props["source_name"], dbt_resource_props["name"]))
            if written_by:
                return written_by
        return super().get_asset_key(dbt_resource_props)

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return "warehouse"


# A table the first build makes: while it is missing, the build is the warehouse's first.
FIRST_BUILD_MARKER = ("analytics", "customer_features")


def dbt_vars(first_build: bool = False) -> list[str]:
    """`--vars` for dbt: the as-of date from `NEXTBEST_AS_OF` (YYYY-MM-DD) when set; each playbook's
    goal from its brief (`campaign_goals`); on a warehouse's first build, `daily_test_days: 0`, so
    its tests check every row rather than the recent days a daily run can change
    (dbt/macros/daily_tests.sql)."""
    values: dict[str, Any] = {"as_of": default_as_of()} if os.environ.get("NEXTBEST_AS_OF") else {}  # checked there
    goals = brief_goals()
    if goals:
        values["campaign_goals"] = campaign_goals_var(goals)
    if first_build:
        values["daily_test_days"] = 0
    return ["--vars", json.dumps(values)] if values else []


def brief_goals() -> dict[str, str] | None:
    """Each playbook's goal from the briefs (`NEXTBEST_BRIEFS_DIR`); None when they do not load: the
    build then measures dbt's default goals, and routing stops on the same problem, naming file and field."""
    try:
        return {playbook: brief.goal for playbook, brief in load_briefs().playbooks.items()}
    except BriefError:
        return None


class DbtBuildConfig(dg.Config):
    """How `dbt build` runs."""

    full_refresh: bool = Field(default=False, description=(
        "Rebuild incremental models (the feature history) from scratch: after events loaded more than "
        "incremental_lookback_days late, a backfill, deleted customers or a changed dbt var or model."))


def build_args(config: DbtBuildConfig, first_build: bool = False) -> list[str]:
    """The `dbt build` command line for this run."""
    return ["build", *dbt_vars(first_build), *(["--full-refresh"] if config.full_refresh else [])]


@dbt_assets(
    manifest=ensure_manifest(),
    project=dbt_project,
    dagster_dbt_translator=NextBestTranslator(),
    exclude=SCORED_MODELS,
)
def nextbest_dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, config: DbtBuildConfig,
                        warehouse: DuckDBWarehouse):
    """`dbt build` of everything that does not read the scores: models, snapshots and tests."""
    first_build = not warehouse.table_exists(*FIRST_BUILD_MARKER)  # checked, and closed, before dbt opens it
    if first_build:
        context.log.info("first build of this warehouse: dbt tests check every row")
    yield from dbt.cli(build_args(config, first_build), context=context).stream()


@dbt_assets(
    manifest=ensure_manifest(),
    project=dbt_project,
    dagster_dbt_translator=NextBestTranslator(),
    select=SCORED_MODELS,
    name="nextbest_dbt_scored_models",
)
def nextbest_dbt_scored_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, config: DbtBuildConfig):
    """`dbt build` of the models that read `nextbest.customer_scores` and everything after them."""
    yield from dbt.cli(build_args(config), context=context).stream()


_FULL_REFRESH = {"config": {"full_refresh": True}}
warehouse_full_refresh = dg.define_asset_job(
    "warehouse_full_refresh", selection=dg.AssetSelection.assets(nextbest_dbt_models, nextbest_dbt_scored_models),
    config={"ops": {"nextbest_dbt_models": _FULL_REFRESH, "nextbest_dbt_scored_models": _FULL_REFRESH}},
    description="`dbt build --full-refresh` of every model: rebuilds the incremental feature history from raw.",
    tags=WAREHOUSE_RUN_TAGS)

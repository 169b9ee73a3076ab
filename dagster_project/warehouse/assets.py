"""dbt models as Dagster assets (group `warehouse`); dbt tests become asset checks.

Two `@dbt_assets` because Python scoring sits in the middle of the dbt graph:
`nextbest_dbt_models` builds everything up to context, features and labels; the
`customer_scores` asset (group `models`) writes `nextbest.customer_scores`; then
`nextbest_dbt_scored_models` builds what reads the scores (source
`nextbest.customer_scores` and everything downstream of it: segments, their
history, tags, ...). One `dbt build` would make that a cycle.
"""


import json
import os
from typing import Any, Mapping

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, dbt_assets

from dagster_project.project import dbt_project, ensure_manifest


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


def dbt_vars() -> list[str]:
    """`--vars` for dbt: the as-of date from `NEXTBEST_AS_OF` (YYYY-MM-DD) when set."""
    as_of = os.environ.get("NEXTBEST_AS_OF")
    return ["--vars", json.dumps({"as_of": as_of})] if as_of else []


@dbt_assets(
    manifest=ensure_manifest(),
    project=dbt_project,
    dagster_dbt_translator=NextBestTranslator(),
    exclude=SCORED_MODELS,
)
def nextbest_dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource):
    """`dbt build` of everything that does not read the scores: models, snapshots and tests."""
    yield from dbt.cli(["build", *dbt_vars()], context=context).stream()


@dbt_assets(
    manifest=ensure_manifest(),
    project=dbt_project,
    dagster_dbt_translator=NextBestTranslator(),
    select=SCORED_MODELS,
    name="nextbest_dbt_scored_models",
)
def nextbest_dbt_scored_models(context: dg.AssetExecutionContext, dbt: DbtCliResource):
    """`dbt build` of the models that read `nextbest.customer_scores` and everything after them."""
    yield from dbt.cli(["build", *dbt_vars()], context=context).stream()

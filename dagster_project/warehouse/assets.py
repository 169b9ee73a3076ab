"""dbt models as Dagster assets (group `warehouse`); dbt tests become asset checks."""


import json
import os
from typing import Any, Mapping

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, dbt_assets

from dagster_project.project import dbt_project, ensure_manifest


class NextBestTranslator(DagsterDbtTranslator):
    """Models are keyed by name (`customer_context`) in group `warehouse`; sources keep `raw/<table>`."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] in ("model", "snapshot", "seed"):
            return dg.AssetKey(dbt_resource_props["name"])
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
)
def nextbest_dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource):
    """`dbt build`: models, snapshots and tests, in dependency order."""
    yield from dbt.cli(["build", *dbt_vars()], context=context).stream()

"""dbt models as Dagster assets (group `warehouse`); dbt tests become asset checks."""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, dbt_assets

from dagster_project.project import dbt_project, ensure_manifest


class NextBestTranslator(DagsterDbtTranslator):
    """Puts every dbt model in the `warehouse` group; sources keep keys `raw/<table>`."""

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

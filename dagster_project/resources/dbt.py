"""The dbt resource: the project in `dbt/`, the target chosen by `NEXTBEST_DBT_TARGET`."""

from __future__ import annotations

from dagster_dbt import DbtCliResource

from dagster_project.project import dbt_executable, dbt_project, dbt_target


def build_dbt_resource() -> DbtCliResource:
    """dbt CLI resource; the executable is passed explicitly (an unactivated venv has none on PATH)."""
    return DbtCliResource(
        project_dir=dbt_project,
        target=dbt_target(),
        dbt_executable=dbt_executable(),
    )

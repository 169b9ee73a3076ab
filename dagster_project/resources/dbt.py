"""The dbt resource: the project in `dbt/`, the target chosen by `NEXTBEST_DBT_TARGET`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dagster_project import project

if TYPE_CHECKING:
    from dagster_dbt import DbtCliResource


def build_dbt_resource() -> "DbtCliResource":
    """dbt CLI resource; the executable is passed explicitly (an unactivated venv has none on PATH).

    dagster-dbt is imported here, not when the package loads: the CLI's commands do not need it.
    """
    from dagster_dbt import DbtCliResource

    return DbtCliResource(
        project_dir=project.dbt_project,
        target=project.dbt_target(),
        dbt_executable=project.dbt_executable(),
    )

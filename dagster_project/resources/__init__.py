"""Dagster resources: the warehouse and dbt, configured from the environment."""

from dagster_project.resources.dbt import build_dbt_resource
from dagster_project.resources.snowflake import SnowflakeWarehouse
from dagster_project.resources.warehouse import DuckDBWarehouse, build_warehouse

__all__ = ["DuckDBWarehouse", "SnowflakeWarehouse", "build_warehouse", "build_dbt_resource"]

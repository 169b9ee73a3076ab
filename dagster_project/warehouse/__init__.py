"""Warehouse: the dbt project wired into Dagster (staging, intermediate and marts)."""

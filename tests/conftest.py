"""Shared fixtures: every test gets its own DuckDB file, never the user's."""

from __future__ import annotations

import pytest


@pytest.fixture
def duckdb_file(tmp_path, monkeypatch):
    """A fresh warehouse path, exported as NEXTBEST_DUCKDB_PATH for dbt and Dagster."""
    path = tmp_path / "warehouse.duckdb"
    monkeypatch.setenv("NEXTBEST_DUCKDB_PATH", str(path))
    return path

"""Fixtures for messaging tests: the tiny store as a DuckDB file and as context packs."""

from __future__ import annotations

import duckdb
import pytest

from dagster_project.messaging.briefs import load_briefs
from dagster_project.messaging.context_pack import load_catalog, load_context_packs
from tests.messaging.store import AS_OF, write_store


@pytest.fixture(scope="session")
def store_con(tmp_path_factory):
    """A read-only connection to a DuckDB file holding the tiny store."""
    path = tmp_path_factory.mktemp("store") / "store.duckdb"
    con = duckdb.connect(str(path))
    write_store(con)
    con.close()
    con = duckdb.connect(str(path), read_only=True)
    yield con
    con.close()


@pytest.fixture(scope="session")
def briefs():
    return load_briefs()


@pytest.fixture(scope="session")
def catalog(store_con):
    return load_catalog(store_con)


@pytest.fixture(scope="session")
def packs(store_con):
    return load_context_packs(store_con, ["C001", "C002", "C003"], as_of=AS_OF)

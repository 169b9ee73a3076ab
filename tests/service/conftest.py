"""Fixtures for service tests: the messaging tests' tiny store as context packs, and the briefs."""

from __future__ import annotations

import duckdb
import pytest

from dagster_project.messaging.briefs import load_briefs
from dagster_project.messaging.context_pack import load_catalog, load_context_packs
from dagster_project.service.replies import load_reply_brief
from dagster_project.service.save_offers import load_save_brief
from tests.messaging.store import AS_OF, write_store


@pytest.fixture(scope="session")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("service_store") / "store.duckdb"
    with duckdb.connect(str(path)) as con:
        write_store(con)
        packs = load_context_packs(con, ["C001", "C002", "C003"], as_of=AS_OF)
        catalog = load_catalog(con)
    return packs, catalog


@pytest.fixture(scope="session")
def packs(store):
    return store[0]


@pytest.fixture(scope="session")
def catalog(store):
    return store[1]


@pytest.fixture(scope="session")
def voice():
    return load_briefs().brand_voice


@pytest.fixture(scope="session")
def reply_brief():
    return load_reply_brief()


@pytest.fixture(scope="session")
def save_brief():
    return load_save_brief()

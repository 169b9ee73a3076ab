"""Context packs read the same whatever hands them the warehouse, and whichever way the customers are chosen:
a pack's fingerprint is its draft-cache key, so the same data must give the same pack."""

from __future__ import annotations

import duckdb
import pytest

from dagster_project.messaging import context_pack
from dagster_project.messaging.context_pack import data_fresh_day, load_catalog, load_context_packs, load_scoped_packs
from dagster_project.resources.warehouse import DuckDBWarehouse
from tests.messaging.store import AS_OF, write_store

CUSTOMERS = ["C001", "C002", "C003"]


@pytest.fixture
def warehouse(tmp_path) -> DuckDBWarehouse:
    path = tmp_path / "store.duckdb"
    con = duckdb.connect(str(path))
    write_store(con)
    con.close()
    return DuckDBWarehouse(path=str(path))


def fingerprints(packs) -> dict[str, str]:
    return {customer: pack.fingerprint() for customer, pack in packs.items()}


def test_a_connection_a_resource_and_a_session_give_the_same_packs_and_catalog(warehouse, packs, catalog):
    expected = fingerprints(packs)
    assert list(expected) == CUSTOMERS
    assert fingerprints(load_context_packs(warehouse, CUSTOMERS + ["C404"], as_of=AS_OF)) == expected
    with warehouse.transaction() as tx:
        assert fingerprints(load_context_packs(tx, CUSTOMERS, as_of=AS_OF)) == expected
        assert load_catalog(tx) == catalog
    assert load_catalog(warehouse) == catalog
    # Typed as the contract says: whole numbers stay whole, money is text with two decimals.
    anna = packs["C001"]
    assert anna.value("subscription:S001:cadence_days") == 28 and anna.value("subscription:S001:price") == "25.20"
    assert anna.value("order:O003:item:P006:quantity") == 1 and anna.data_fresh_at == "2026-02-20"


def test_a_chunk_of_customers_chosen_by_sql_gets_the_packs_asked_for_by_id(warehouse, packs):
    fresh_at = data_fresh_day(warehouse, AS_OF)
    chunk = "select customer_id from raw.customers where customer_id >= ? and customer_id <= ?"
    scoped = load_scoped_packs(warehouse, chunk, ["C002", "C003"], AS_OF, fresh_at)
    assert fingerprints(scoped) == {c: packs[c].fingerprint() for c in ("C002", "C003")}


def test_many_ids_are_read_a_bounded_group_at_a_time(warehouse, packs, monkeypatch):
    monkeypatch.setattr(context_pack, "IDS_PER_QUERY", 2)
    assert fingerprints(load_context_packs(warehouse, reversed(CUSTOMERS), as_of=AS_OF)) == fingerprints(packs)


def test_freshness_is_the_newest_source_even_when_another_is_empty(warehouse):
    assert data_fresh_day(warehouse, AS_OF) == "2026-02-20"  # Anna's last order
    warehouse.execute("delete from raw.orders")  # greatest() would be null on Snowflake here
    assert data_fresh_day(warehouse, AS_OF) == "2026-02-11"  # Ben's ticket
    assert data_fresh_day(warehouse, "2024-01-09") is None  # before anything happened

"""The data-quality suites on the Snowflake resource, against fakesnow, beside DuckDB.

Run by `test_snowflake.py` in the fakesnow virtualenv, like `fakesnow_suite.py`. The
same small raw.customers and raw.orders (created with the contract's column types, so
Snowflake reports TEXT, NUMBER(12,2) and TIMESTAMP_NTZ) go into fakesnow and into a
DuckDB file, with a few bad rows; `validate_suite` must reach the same outcomes on both
and catch the bad rows on Snowflake.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import fakesnow
import pandas as pd
import pytest
from fakesnow.cursor import FakeSnowflakeCursor

from dagster_project.quality.runner import GX_MAX_ROWS_ENV, _gx_frame, table_columns, validate_suite
from dagster_project.quality.suites import suite_for
from dagster_project.resources.snowflake import SnowflakeWarehouse
from dagster_project.resources.warehouse import DuckDBWarehouse, build_warehouse
from tests.resources.fakesnow_suite import ENV, _fetch_arrow_batches

NOW = datetime(2026, 6, 1, 12)
CUSTOMERS = 12
# The contract's types (dagster_project/ingest/contract.py), in DDL both engines take.
TABLES = {
    "customers": "customer_id varchar, email varchar, first_name varchar, created_at timestamp, country varchar, "
                 "timezone varchar, marketing_opt_in boolean, channel_preference varchar",
    "subscriptions": "subscription_id varchar, customer_id varchar",
    "orders": "order_id varchar, customer_id varchar, subscription_id varchar, ordered_at timestamp, "
              "status varchar, total decimal(12,2), discount_code varchar, shipped_at timestamp, "
              "delivered_at timestamp",
}


def store() -> dict[str, pd.DataFrame]:
    """Raw rows with three bad ones: an unknown status, an orphaned customer_id, a blank email."""
    ids = [f"C{k:03d}" for k in range(CUSTOMERS)]
    customers = pd.DataFrame({
        "customer_id": ids, "email": [None if k == 3 else f"c{k}@example.com" for k in range(CUSTOMERS)],
        "first_name": [f"Name{k}" for k in range(CUSTOMERS)],
        "created_at": [datetime(2025, 1, 1) + timedelta(days=k) for k in range(CUSTOMERS)],
        "country": "US", "timezone": "UTC", "marketing_opt_in": [k % 4 != 1 for k in range(CUSTOMERS)],
        "channel_preference": "email"})
    subscriptions = pd.DataFrame({"subscription_id": [f"S{c}" for c in ids], "customer_id": ids})
    orders = pd.DataFrame([{
        "order_id": f"O{k:04d}", "customer_id": "C999" if k == 7 else ids[k % CUSTOMERS],
        "subscription_id": f"S{ids[k % CUSTOMERS]}" if k % 2 else None,
        "ordered_at": datetime(2026, 3, 1) + timedelta(hours=9 * k),
        "status": "teleported" if k == 11 else ("skipped" if k % 5 == 0 else "fulfilled"),
        "total": 0.0 if k % 5 == 0 else 24.5 + k % 3,
        "discount_code": None, "shipped_at": datetime(2026, 3, 2) + timedelta(hours=9 * k),
        "delivered_at": datetime(2026, 3, 4) + timedelta(hours=9 * k)} for k in range(30)])
    return {"customers": customers, "subscriptions": subscriptions, "orders": orders}


def load(warehouse) -> None:
    warehouse.execute("create schema if not exists raw")
    for table, frame in store().items():
        warehouse.execute(f"create table raw.{table} ({TABLES[table]})")
        warehouse.write_df("raw", table, frame)


@pytest.fixture
def engines(monkeypatch, tmp_path):
    """(Snowflake resource on fakesnow, DuckDB resource), the same raw tables in each."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(FakeSnowflakeCursor, "fetch_arrow_batches", _fetch_arrow_batches, raising=False)
    duck = DuckDBWarehouse(path=str(tmp_path / "w.duckdb"))
    load(duck)
    with fakesnow.patch():
        snow = build_warehouse()
        assert isinstance(snow, SnowflakeWarehouse)
        snow = snow.process_config_and_initialize()
        load(snow)
        yield snow, duck


def verdicts(result) -> list[tuple[str, str, str]]:
    return [(o.name, o.status, o.severity) for o in result.outcomes]


@pytest.mark.parametrize("table", ["raw.customers", "raw.orders"])
def test_a_suite_on_snowflake_reaches_what_it_reaches_on_duckdb(engines, table):
    snow, duck = engines
    suite = suite_for(table)
    on_snowflake = validate_suite(snow, suite, NOW)
    on_duckdb = validate_suite(duck, suite, NOW)
    assert on_snowflake.table == on_duckdb.table == table
    assert on_snowflake.row_count == on_duckdb.row_count > 0
    assert verdicts(on_snowflake) == verdicts(on_duckdb)
    # The contract types pass in Snowflake's spellings (TEXT, NUMBER(12,2), TIMESTAMP_NTZ, BOOLEAN).
    types = {o.name: o for o in on_snowflake.outcomes}["column_types"]
    assert types.status == "passed", types.message


def test_the_bad_rows_are_caught_on_snowflake(engines):
    snow, duck = engines
    orders = {o.name: o for o in validate_suite(snow, suite_for("raw.orders"), NOW).outcomes}
    customers = {o.name: o for o in validate_suite(snow, suite_for("raw.customers"), NOW).outcomes}
    status = orders["status_accepted_values"]
    assert status.blocking and "1 of 30 rows" in status.message and "'teleported'" in status.message
    assert [e["order_id"] for e in status.examples] == ["O0011"]
    orphan = orders["customer_id_references_customers"]
    assert orphan.blocking and orphan.message.startswith("1 row(s) of raw.orders have a customer_id")
    assert [e["order_id"] for e in orphan.examples] == ["O0007"]  # example rows keep lower-case names
    assert orders["subscription_id_references_subscriptions"].status == "passed"
    email = customers["email_not_null"]
    assert email.failed and email.severity == "WARN" and not email.blocking
    assert [o.name for o in customers.values() if o.failed] == ["email_not_null"]
    assert "TEXT" in table_columns(snow, "raw.orders")["status"]


def test_a_big_table_is_checked_on_the_same_rows_on_both_engines(engines, monkeypatch):
    """Above NEXTBEST_GX_MAX_ROWS: the newest rows by `recent_by`, or (without one) the hash-ordered
    sample, are the same rows on both engines, so the outcomes and messages match."""
    snow, duck = engines
    monkeypatch.setenv(GX_MAX_ROWS_ENV, "10")
    by_time = suite_for("raw.orders")
    for suite in (by_time, replace(by_time, recent_by="")):
        picked = []
        for warehouse in (snow, duck):
            with warehouse.transaction() as tx:
                frame, _ = _gx_frame(tx, suite, "raw.orders", table_columns(tx, "raw.orders"), 30)
            picked.append(sorted(frame["order_id"]))
        assert picked[0] == picked[1] and len(picked[0]) == 10
        on_snowflake = validate_suite(snow, suite, NOW)
        on_duckdb = validate_suite(duck, suite, NOW)
        assert verdicts(on_snowflake) == verdicts(on_duckdb)
        for a, b in zip(on_snowflake.outcomes, on_duckdb.outcomes):
            if a.kind == "expectation":
                assert a.message == b.message
    assert "checked on a sample of 10 of 30 rows" in on_snowflake.outcomes[2].message
    assert "checked on the newest 10 of 30 rows by ordered_at" in validate_suite(snow, by_time, NOW).outcomes[2].message

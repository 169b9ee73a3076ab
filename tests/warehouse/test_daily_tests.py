"""A daily run tests only the recent rows of the big event and history tables; a full refresh,
or var daily_test_days: 0, tests every row (dbt/macros/daily_tests.sql)."""

from __future__ import annotations

from datetime import date

import pytest

from tests.warehouse.dbt_warehouse import Warehouse, new_warehouse

AS_OF = date(2025, 6, 30)
EVENTS_TEST = "unique_stg_raw__email_events_email_event_id"  # a model with meta daily_test_column
CUSTOMERS_TEST = "unique_stg_raw__customers_customer_id"  # a small table: always tested in full


@pytest.fixture(scope="module")
def wh(tmp_path_factory) -> Warehouse:
    return new_warehouse(tmp_path_factory, "daily-tests")


def compiled(wh: Warehouse, test: str, *extra: str, dbt_vars: dict | None = None) -> str:
    """The SQL dbt runs for `test` at AS_OF."""
    result = wh.dbt("compile", "--select", test, *extra, as_of=AS_OF, dbt_vars=dbt_vars)
    assert result.returncode == 0, f"dbt compile failed:\n{result.stdout[-4000:]}"
    (path,) = (wh.work_dir / "target" / "compiled").rglob(f"{test}.sql")
    return path.read_text()


def test_a_daily_run_tests_the_last_week_of_events(wh):
    sql = compiled(wh, EVENTS_TEST)
    assert "where occurred_at >=" in sql and "2025-06-30" in sql and "-7" in sql


def test_a_full_refresh_or_the_var_tests_every_row(wh):
    assert "occurred_at >=" not in compiled(wh, EVENTS_TEST, "--full-refresh")
    assert "occurred_at >=" not in compiled(wh, EVENTS_TEST, dbt_vars={"daily_test_days": 0})


def test_tables_without_a_daily_column_are_tested_in_full(wh):
    assert "dbt_subquery" not in compiled(wh, CUSTOMERS_TEST)

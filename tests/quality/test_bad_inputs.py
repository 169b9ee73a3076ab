"""Bad data written straight into raw.* (by a loader other than `nextbest import`) is caught by the
suites, each defect by the check that names it, with a message and example rows a data owner can act on.

All defects go into one copy of the store (each in a table or column of its own), and every
suite runs once; each case then asserts on its outcome.
"""

from __future__ import annotations

import duckdb
import pytest

from dagster_project.quality.runner import gx_comparable, validate_suite
from dagster_project.quality.suites import load_suites

DEFECTS = [
    "insert into raw.customers values (null, 'nokey@example.com', 'No', '2025-01-01', 'US', null, true, 'email')",
    "insert into raw.orders select * from raw.orders order by order_id limit 1",
    "insert into raw.orders values ('O_FUTURE', 'C00000001', null, '2099-01-01', 'fulfilled', 20, null, null, null)",
    # Three orphaned orders, two of them of one unknown customer: the count is of rows, not of keys.
    "insert into raw.orders values ('O_GHOST', 'C_GHOST', null, '2025-03-01', 'fulfilled', 20, null, null, null), "
    "('O_GHOST2', 'C_GHOST', null, '2025-03-02', 'fulfilled', 20, null, null, null), "
    "('O_GHOST3', 'C_GHOST3', null, '2025-03-03', 'fulfilled', 20, null, null, null)",
    "insert into raw.orders values ('O_ENUM', 'C00000001', null, '2025-03-01', 'shipped', 20, null, null, null)",
    "update raw.products set price = -4.50 where product_id = 'P001'",
    "insert into raw.payments select 'PAY_ABSURD', customer_id, order_id, attempted_at, 'succeeded', null, 99999 "
    "from raw.payments limit 1",
    "alter table raw.order_items drop column unit_price",
    "delete from raw.support_tickets",
    "update raw.portal_events set occurred_at = '1970-01-01' where event_id = (select min(event_id) from raw.portal_events)",
    "alter table raw.email_events alter column occurred_at type varchar",
    "update raw.subscriptions set cadence_days = 0 where subscription_id = (select min(subscription_id) from raw.subscriptions)",
    # Beyond pandas' nanosecond timestamps: GX compares this column a value at a time, and still catches it.
    "insert into raw.payments select 'PAY_FAR', customer_id, order_id, timestamp '9999-06-01', 'succeeded', null, 10 "
    "from raw.payments limit 1",
]

# (table, check, severity, words the message must contain, example row must show this value or None)
CASES = [
    ("raw.customers", "customer_id_not_null", "ERROR", "1 of", "nokey@example.com"),
    ("raw.orders", "order_id_unique", "ERROR", "share their order_id", None),
    ("raw.orders", "ordered_at_not_in_future", "ERROR", "in the future", "O_FUTURE"),
    ("raw.orders", "customer_id_references_customers", "ERROR",
     "3 row(s) of raw.orders have a customer_id with no match in raw.customers.customer_id (orphaned foreign keys)",
     "O_GHOST"),
    ("raw.orders", "status_accepted_values", "ERROR", "'shipped'", "O_ENUM"),
    ("raw.products", "price_not_negative", "ERROR", "below 0", "P001"),
    ("raw.payments", "amount_max", "WARN", "above 10000", "PAY_ABSURD"),
    ("raw.order_items", "columns_present", "ERROR", "missing column(s): unit_price", None),
    ("raw.order_items", "unit_price_not_null", "ERROR", "has no column unit_price", None),
    ("raw.support_tickets", "row_count", "WARN", "has 0 rows; expected at least 1", None),
    ("raw.portal_events", "occurred_at_not_before_2000", "WARN", "are below 2000-01-01", None),
    ("raw.email_events", "column_types", "ERROR", "occurred_at is VARCHAR, expected TIMESTAMP", None),
    ("raw.subscriptions", "cadence_days_in_range", "ERROR", "outside 1..365", None),
    ("raw.payments", "attempted_at_not_in_future", "ERROR", "1 of", "PAY_FAR"),
]


@pytest.fixture(scope="module")
def outcomes(store_template, tmp_path_factory):
    """Every raw suite's outcomes on the store with all DEFECTS, keyed by (table, check)."""
    import shutil

    path = tmp_path_factory.mktemp("bad") / "bad.duckdb"
    shutil.copy(store_template, path)
    con = duckdb.connect(str(path))
    try:
        for sql in DEFECTS:
            con.execute(sql)
        return {(o.target, o.name): o for s in load_suites() if s.tables[0].startswith("raw.")
                for o in validate_suite(con, s).outcomes}
    finally:
        con.close()


@pytest.mark.parametrize("table,check,severity,words,example", CASES, ids=[f"{c[0]}:{c[1]}" for c in CASES])
def test_defect_is_caught_with_a_clear_message(outcomes, table, check, severity, words, example):
    outcome = outcomes[(table, check)]
    assert outcome.failed and outcome.severity == severity
    assert outcome.blocking == (severity == "ERROR")
    assert words in outcome.message, outcome.message
    assert table in outcome.message
    assert outcome.fix, "a failure says what to do"
    if example is not None:
        assert any(example in map(str, row.values()) for row in outcome.examples), outcome.examples


def test_untouched_tables_stay_clean(outcomes):
    clean = [o for (table, _), o in outcomes.items() if table == "raw.customers" and o.name != "customer_id_not_null"]
    assert clean and not any(o.failed for o in clean)


def test_duckdb_columns_reach_gx_as_the_types_it_compares_whole():
    frame = duckdb.connect().execute(
        "select 7::int as cadence, 2::utinyint as small, 1.5::float as ratio, timestamp '2025-01-01 10:00:00' as at, "
        "timestamp '9999-06-01' as far, 'x' as name").df()
    widened = gx_comparable(frame)
    assert {c: str(t) for c, t in widened.dtypes.items()} == {
        "cadence": "int64", "small": "int64", "ratio": "float64", "at": "datetime64[ns]",
        "far": str(frame["far"].dtype), "name": str(frame["name"].dtype)}
    assert widened.to_dict("list") == frame.to_dict("list")  # the same values

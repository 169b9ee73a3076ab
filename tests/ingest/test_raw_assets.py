"""The raw sources asset: mode `auto` simulates the demo store only into an empty warehouse."""

from __future__ import annotations

import dagster as dg
import duckdb

from dagster_project.ingest import contract
from dagster_project.ingest.assets import raw_is_empty, raw_sources
from dagster_project.resources.warehouse import DuckDBWarehouse


def test_auto_mode_keeps_a_warehouse_whose_customers_are_missing(tmp_path):
    """A loader that filled raw.orders but not (yet) raw.customers: the daily run (mode auto) must
    not take the warehouse for empty and replace every raw table with the simulated store."""
    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as con:
        contract.create_raw_schema(con)
        con.execute("insert into raw.orders (order_id, customer_id, ordered_at, status, total) "
                    "values ('REAL-1', 'C1', '2026-03-01 08:00', 'fulfilled', 20)")
        assert not raw_is_empty(con)

    result = dg.materialize(
        [raw_sources], resources={"warehouse": DuckDBWarehouse(path=str(path))},
        run_config={"ops": {"raw_sources": {"config": {"customers": 5, "months": 1}}}}, raise_on_error=False)

    with duckdb.connect(str(path)) as con:
        assert con.execute("select order_id from raw.orders").fetchall() == [("REAL-1",)]
        assert con.execute("select count(*) from raw.customers").fetchone()[0] == 0
    assert result.success


def test_a_warehouse_with_no_raw_rows_is_empty(tmp_path):
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        assert raw_is_empty(con)

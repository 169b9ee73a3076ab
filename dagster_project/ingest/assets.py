"""The raw sources as Dagster assets (group `ingest`).

One multi-asset owns every `raw.*` table of the source contract. By default it
fills an empty warehouse with the demo store and otherwise leaves what the
user's loaders (Fivetran, Segment, `nextbest import`) wrote, reporting row
counts and the newest timestamp per table.
"""


from datetime import date, datetime, timezone
from typing import Iterator, Literal

import dagster as dg
import pandas as pd
from pydantic import Field

from dagster_project.ingest import contract
from dagster_project.ingest.simulator import (
    DEFAULT_CUSTOMERS,
    DEFAULT_MONTHS,
    DEFAULT_SEED,
    simulate,
)
from dagster_project.resources.warehouse import DuckDBWarehouse, WarehouseInterface

# Column whose maximum says how fresh a table is.
FRESHNESS_COLUMNS = {
    "customers": "created_at",
    "subscriptions": "started_at",
    "orders": "ordered_at",
    "email_events": "occurred_at",
    "portal_events": "occurred_at",
    "support_tickets": "created_at",
    "payments": "attempted_at",
}


class RawSourcesConfig(dg.Config):
    """How the raw tables are filled on this run."""

    mode: Literal["auto", "simulate", "import", "existing"] = Field(  # type: ignore[valid-type]
        default="auto",
        description=(
            "auto: simulate the demo store only when every raw table is empty; "
            "simulate: replace raw.* with a fresh simulation; import: load files from "
            "import_dir; existing: keep raw.* as loaded by your own tools."
        ),
    )
    customers: int = Field(default=DEFAULT_CUSTOMERS, description="Simulated subscribers.")
    months: int = Field(default=DEFAULT_MONTHS, description="Months of simulated history.")
    seed: int = Field(default=DEFAULT_SEED, description="Simulation seed (same seed, same store).")
    end_date: str | None = Field(default=None, description="Last simulated day, YYYY-MM-DD (default today).")
    import_dir: str | None = Field(default=None, description="Folder of CSV/Parquet files for mode=import.")


RAW_SPECS = [
    dg.AssetSpec(
        key=dg.AssetKey([contract.RAW_SCHEMA, name]),
        group_name="ingest",
        description=contract.TABLES[name].description,
        kinds={"duckdb"},
    )
    for name in contract.LOAD_ORDER
]


def naive_utc(value) -> datetime | None:
    """A warehouse timestamp as a naive UTC `datetime` (the contract's form), None for null.

    A loader may write TIMESTAMP WITH TIME ZONE (Snowflake's TIMESTAMP_TZ / _LTZ), which comes
    back aware in the session's zone: it is converted, not relabelled."""
    if value is None or pd.isna(value):
        return None
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp.to_pydatetime()


def raw_is_empty(con) -> bool:
    """True when no `raw.*` table of the source contract holds a row.

    Simulating replaces every raw table (and `nextbest.assignments`), so a warehouse is only
    taken for empty when all are: a loader that filled orders but not (yet) customers must
    not lose its rows to the demo store.
    """
    contract.create_raw_schema(con)
    tables = [f"{contract.RAW_SCHEMA}.{name}" for name in contract.LOAD_ORDER]
    exists = con.execute("select count(*) from information_schema.tables "
                         "where table_schema = ? and table_name = 'assignments'", [contract.NEXTBEST_SCHEMA])
    if exists.fetchone()[0]:
        tables.append(f"{contract.NEXTBEST_SCHEMA}.assignments")
    return not any(con.execute(f"select exists (select 1 from {table})").fetchone()[0] for table in tables)


@dg.multi_asset(specs=RAW_SPECS, name="raw_sources", can_subset=False)
def raw_sources(context: dg.AssetExecutionContext, config: RawSourcesConfig, warehouse: DuckDBWarehouse):
    """Fill (or observe) the `raw.*` source tables."""
    if not isinstance(warehouse, DuckDBWarehouse):
        # On Snowflake raw.* belongs to the store's own loaders: observe it, never replace it.
        if config.mode not in ("auto", "existing"):
            raise dg.Failure(
                f"raw_sources mode={config.mode} writes raw.* into the embedded DuckDB file; with "
                "NEXTBEST_WAREHOUSE=snowflake, load raw.* with your own loader (Fivetran, Snowpipe, ...) "
                "and run with mode=existing (auto means existing there)."
            )
        yield from observe_raw(warehouse, "existing")
        return
    with warehouse.connect() as con:
        mode = config.mode
        if mode == "auto":
            mode = "simulate" if raw_is_empty(con) else "existing"
        if mode == "simulate":
            end = date.fromisoformat(config.end_date) if config.end_date else None
            context.log.info(f"Simulating {config.customers:,} customers over {config.months} months")
            simulate(con, customers=config.customers, months=config.months, seed=config.seed,
                     end_date=end, progress=context.log.info)
        elif mode == "import":
            if not config.import_dir:
                raise dg.Failure("mode=import needs import_dir: the folder holding customers.csv, orders.csv, ...")
            from dagster_project.ingest.importer import import_directory

            summary = import_directory(con, config.import_dir, progress=context.log.info)
            context.log.info(summary.render())
        else:
            contract.create_raw_schema(con)
    yield from observe_raw(warehouse, mode)


def observe_raw(warehouse: WarehouseInterface, mode: str) -> Iterator[dg.MaterializeResult]:
    """Row count and newest record per raw table (the freshness checks measure the data's age, not the run's)."""
    missing = [name for name in contract.LOAD_ORDER if not warehouse.table_exists(contract.RAW_SCHEMA, name)]
    if missing:
        raise dg.Failure(f"The warehouse has no {', '.join(f'raw.{name}' for name in missing)}: load every table of "
                         "the source contract (README, 'Point it at your own data') before running the pipeline.")
    for name in contract.LOAD_ORDER:
        column = FRESHNESS_COLUMNS.get(name)
        newest_sql = f"max({column})" if column else "null"
        row = warehouse.read_df(f"select count(*) as n, {newest_sql} as newest from raw.{name}").iloc[0]
        metadata: dict = {"dagster/row_count": int(row["n"]), "source": mode}
        if column:
            newest = naive_utc(row["newest"])
            metadata["newest_record"] = str(newest) if newest else "none"
            if newest:
                metadata["dagster/last_updated_timestamp"] = dg.MetadataValue.timestamp(
                    newest.replace(tzinfo=timezone.utc)
                )
        yield dg.MaterializeResult(asset_key=dg.AssetKey([contract.RAW_SCHEMA, name]), metadata=metadata)

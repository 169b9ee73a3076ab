"""The raw sources as Dagster assets (group `ingest`).

One multi-asset owns every `raw.*` table of the source contract. By default it
fills an empty warehouse with the demo store and otherwise leaves what the
user's loaders (Fivetran, Segment, `nextbest import`) wrote, reporting row
counts and the newest timestamp per table.
"""


from datetime import date, timezone
from typing import Literal

import dagster as dg
from pydantic import Field

from dagster_project.ingest import contract
from dagster_project.ingest.simulator import (
    DEFAULT_CUSTOMERS,
    DEFAULT_MONTHS,
    DEFAULT_SEED,
    simulate,
)
from dagster_project.resources.warehouse import DuckDBWarehouse

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
            "auto: simulate the demo store only when raw.customers is empty; "
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


def raw_is_empty(con) -> bool:
    """True when the warehouse has no customers yet."""
    contract.create_raw_schema(con)
    return con.execute("select count(*) from raw.customers").fetchone()[0] == 0


@dg.multi_asset(specs=RAW_SPECS, name="raw_sources", can_subset=False)
def raw_sources(context: dg.AssetExecutionContext, config: RawSourcesConfig, warehouse: DuckDBWarehouse):
    """Fill (or observe) the `raw.*` source tables."""
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

        for name in contract.LOAD_ORDER:
            rows = con.execute(f"select count(*) from raw.{name}").fetchone()[0]
            metadata: dict = {"dagster/row_count": rows, "source": mode}
            column = FRESHNESS_COLUMNS.get(name)
            if column:
                newest = con.execute(f"select max({column}) from raw.{name}").fetchone()[0]
                metadata["newest_record"] = str(newest) if newest else "none"
                if newest:  # freshness checks measure the data's age, not the run's
                    metadata["dagster/last_updated_timestamp"] = dg.MetadataValue.timestamp(
                        newest.replace(tzinfo=timezone.utc)
                    )
            yield dg.MaterializeResult(asset_key=dg.AssetKey([contract.RAW_SCHEMA, name]), metadata=metadata)

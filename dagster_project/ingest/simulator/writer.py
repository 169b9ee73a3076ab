"""Buffered, vectorised writes of simulated rows into DuckDB.

The simulator produces numpy columns (integer ids, seconds since the window
start, money in cents, small integer codes for text). A `TableBuffer` collects
them in chunks and, once a chunk is large enough, hands the chunk to DuckDB as
an Arrow table; one `insert ... select` turns codes into the contract's text
ids, timestamps and decimals. Formatting in SQL keeps Python out of the
per-row path and keeps peak memory to one chunk per table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pyarrow as pa

from dagster_project.ingest import contract

FLUSH_ROWS = 1_000_000  # rows per Arrow chunk; bounds memory at 1M customers
NULL_TS = -(2**62)  # "no timestamp"; real ones may be negative (before the window)

# Id prefixes and zero-padded widths, so ids sort like their creation order.
ID_FORMATS = {
    "customer": ("C", 8),
    "subscription": ("S", 9),
    "order": ("O", 10),
    "email_event": ("EE", 11),
    "portal_event": ("PE", 10),
    "ticket": ("T", 9),
    "payment": ("PAY", 10),
    "message": ("M", 10),
    "assignment": ("A", 9),
    "product": ("P", 3),
}


def id_sql(kind: str, column: str) -> str:
    """SQL expression turning an integer id column into its text id ('C00000001')."""
    prefix, width = ID_FORMATS[kind]
    return f"'{prefix}' || lpad(cast({column} as varchar), {width}, '0')"


def money_sql(column: str) -> str:
    """SQL expression turning integer cents into DECIMAL(12,2)."""
    return f"cast({column} / 100 as decimal(12,2))"


@dataclass
class TableBuffer:
    """Collects numpy column chunks for one target table and inserts them in bulk.

    `columns` maps staging column name to kind: 'int', 'float', 'bool', 'ts'
    (int64 seconds since the window start, NULL_TS = null), or a vocabulary
    (sequence of strings, or a callable returning one) for code columns
    (int code, negative = null). `select_sql` maps staging columns to the
    target's columns, reading from the registered chunk `_chunk`.
    """

    con: object
    target: str
    columns: dict[str, object]
    select_sql: str
    start: np.datetime64
    end_sec: int | None = None  # drop rows whose `filter_ts` is at or after this
    filter_ts: str | None = None
    rows: int = 0
    _parts: list[dict[str, np.ndarray]] = field(default_factory=list)
    _pending: int = 0

    def add(self, **cols: np.ndarray) -> None:
        """Queue one chunk of columns (equal lengths); flushes when large enough."""
        n = len(next(iter(cols.values())))
        if n == 0:
            return
        if self.filter_ts is not None and self.end_sec is not None:
            keep = cols[self.filter_ts] < self.end_sec
            if not keep.all():
                cols = {k: v[keep] for k, v in cols.items()}
                n = int(keep.sum())
                if n == 0:
                    return
        missing = set(self.columns) - set(cols)
        if missing:
            raise ValueError(f"{self.target}: chunk is missing columns {sorted(missing)}")
        self._parts.append(cols)
        self._pending += n
        if self._pending >= FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        """Insert everything queued so far."""
        if not self._parts:
            return
        arrays, names = [], []
        for name, kind in self.columns.items():
            values = np.concatenate([p[name] for p in self._parts])
            arrays.append(self._to_arrow(values, kind))
            names.append(name)
        chunk = pa.Table.from_arrays(arrays, names=names)
        self.con.register("_chunk", chunk)
        try:
            self.con.execute(f"insert into {self.target} {self.select_sql}")
        finally:
            self.con.unregister("_chunk")
        self.rows += chunk.num_rows
        self._parts, self._pending = [], 0

    def _to_arrow(self, values: np.ndarray, kind: object) -> pa.Array:
        if kind == "ts":
            secs = values.astype(np.int64)
            null = secs <= NULL_TS
            stamps = self.start + np.where(null, 0, secs).astype("timedelta64[s]")
            return pa.array(stamps.astype("datetime64[us]"), mask=null)
        if kind == "int":
            return pa.array(values.astype(np.int64))
        if kind == "float":
            return pa.array(values.astype(np.float64))
        if kind == "bool":
            return pa.array(values.astype(bool))
        vocab = kind() if callable(kind) else kind
        codes = values.astype(np.int32)
        indices = pa.array(np.where(codes < 0, 0, codes), mask=codes < 0, type=pa.int32())
        return pa.DictionaryArray.from_arrays(indices, pa.array(list(vocab), type=pa.string()))


def table_sql(table: str, exprs: dict[str, str]) -> str:
    """`select` list in contract column order; fails loudly if a column is missing."""
    names = contract.TABLES[table].column_names
    missing = [c for c in names if c not in exprs]
    if missing:
        raise ValueError(f"raw.{table}: no expression for contract columns {missing}")
    cols = ", ".join(f"{exprs[c]} as {c}" for c in names)
    return f"({', '.join(names)}) select {cols} from _chunk"


EXTRA_DDL = (
    f"create schema if not exists {contract.NEXTBEST_SCHEMA}",
    f"create schema if not exists {contract.SIM_TRUTH_SCHEMA}",
    f"""create or replace table {contract.NEXTBEST_SCHEMA}.assignments (
        assignment_id varchar, campaign_id varchar, playbook_id varchar, customer_id varchar,
        assigned_at timestamp, arm varchar, message_id varchar)""",
    f"""create or replace table {contract.SIM_TRUTH_SCHEMA}.customer_traits (
        customer_id varchar, customer_type varchar, engagement double,
        churn_hazard_monthly double, subscribed_cadence_days integer,
        preferred_cadence_days integer, cadence_mismatch boolean, addon_appetite double,
        price_sensitivity double, is_gift boolean, writer_style varchar,
        payment_failure_propensity double, sleeping_dog boolean)""",
    f"""create or replace table {contract.SIM_TRUTH_SCHEMA}.uplift (
        customer_id varchar, playbook_id varchar, goal varchar, true_uplift double)""",
)


def reset_tables(con) -> None:
    """Create the contract schema and empty every table the simulator owns.

    `raw.raw_quarantine` belongs to the importer and is left as it is.
    """
    contract.create_raw_schema(con)
    for name in contract.LOAD_ORDER:
        con.execute(f"delete from {contract.RAW_SCHEMA}.{name}")
    for ddl in EXTRA_DDL:
        con.execute(ddl)


# What the pipeline builds on the raw data (dbt's schemas, and NextBest's own tables beside the
# simulator's nextbest.assignments): a new simulation leaves none of it true.
PIPELINE_SCHEMAS = ("staging", "intermediate", "analytics", contract.NEXTBEST_SCHEMA)


def pipeline_tables(con) -> list[str]:
    """The tables the pipeline has built in this warehouse (schema.table); [] for a fresh or simulated-only file."""
    rows = con.execute(
        f"""select table_schema || '.' || table_name from information_schema.tables
            where table_catalog = current_database()
              and table_schema in ({", ".join("?" * len(PIPELINE_SCHEMAS))})
              and not (table_schema = ? and table_name = 'assignments')
            order by 1""", [*PIPELINE_SCHEMAS, contract.NEXTBEST_SCHEMA]).fetchall()
    return [r[0] for r in rows]


def drop_pipeline_state(con) -> list[str]:
    """Drop every schema the pipeline builds (see PIPELINE_SCHEMAS), so the next run starts this warehouse
    over: incremental dbt models would otherwise keep the old store's settled rows, and sends, approvals
    and drafts would point at customers that no longer exist. Returns the tables dropped."""
    dropped = pipeline_tables(con)
    for schema in PIPELINE_SCHEMAS:
        con.execute(f"drop schema if exists {schema} cascade")
    return dropped


def count_rows(con, tables: Sequence[str]) -> dict[str, int]:
    """Row counts of fully qualified tables."""
    return {t: con.execute(f"select count(*) from {t}").fetchall()[0][0] for t in tables}


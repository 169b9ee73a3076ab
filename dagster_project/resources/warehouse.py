"""The warehouse resource Python assets use to read and write tables.

DuckDB lets one process write a file at a time, so connections are opened per
step and closed straight after (a sensor or `dagster dev` never holds the file
open), and the pipeline runs in process (see `definitions.py`).

Both engines, DuckDB here and Snowflake in `snowflake.py`, offer the same
methods (`read_df`, `iter_batches`, `write_df`, `merge_df`, `execute`,
`transaction`); `build_warehouse()` picks one by `NEXTBEST_WAREHOUSE`.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Literal, Sequence

import dagster as dg
import duckdb
import pandas as pd

from dagster_project.project import duckdb_path

if TYPE_CHECKING:
    from dagster_project.resources.snowflake import SnowflakeWarehouse

# How long to wait for another process to release the DuckDB file.
LOCK_WAIT_SECONDS = 30.0


def connect_duckdb(path: str | Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the DuckDB file, waiting briefly if another process holds its lock."""
    path = Path(path)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not path.exists():
        raise FileNotFoundError(
            f"No warehouse at {path}. Run `nextbest demo` or `nextbest simulate` first, "
            "or set NEXTBEST_DUCKDB_PATH to your DuckDB file."
        )
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as error:
            if "lock" not in str(error).lower() or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def replace_table_rows(con: duckdb.DuckDBPyConnection, table: str, ddl: str, frame: pd.DataFrame) -> None:
    """Make `table` hold exactly `frame`'s rows, in one transaction on a DuckDB connection.

    `ddl` creates the table when missing (its schema is created too); readers never
    see it half written, and a failure leaves the old rows in place.
    """
    schema = table.split(".")[0]
    con.execute("begin transaction")
    try:
        con.execute(f"create schema if not exists {schema}")
        con.execute(ddl)
        con.execute(f"delete from {table}")
        con.register("_replacement_rows", frame)
        con.execute(f"insert into {table} select * from _replacement_rows")
        con.unregister("_replacement_rows")
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise


# ---------------------------------------------------------------------------
# The engine-neutral interface. Python assets that should run on DuckDB and on
# Snowflake use these methods (not `connect()`, which hands out a DuckDB
# connection): SQL goes in with `?` placeholders, DataFrames come back with
# lower-case column names on both engines.
# ---------------------------------------------------------------------------

WriteMode = Literal["append", "replace"]
# Rows per DataFrame handed out by `iter_batches`: memory stays bounded by this, not by customers.
DEFAULT_BATCH_ROWS = 50_000
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class MergeResult:
    """What a `merge_df` did: rows new to the table, and existing rows it updated.

    Final once the transaction block has ended (on DuckDB at once, on Snowflake at commit).
    """

    inserted: int = 0
    updated: int = 0


def check_identifier(name: str, what: str) -> str:
    """A schema, table or column name safe to splice into SQL on both engines, or a ValueError."""
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise ValueError(
            f"{what} {name!r} is not a plain identifier (letters, digits, underscore; not starting "
            "with a digit), which both DuckDB and Snowflake need unquoted."
        )
    return name


class WarehouseSession(ABC):
    """The writes of one transaction; subclasses say how an engine stages a DataFrame and when
    statements run (DuckDB at once; Snowflake at commit, see snowflake.py).

    `write_df` and `merge_df` are written once here in SQL both engines speak
    (`insert ... select`, `merge into`), so the two engines cannot drift apart.
    """

    @abstractmethod
    def quote(self, name: str) -> str:
        """An identifier quoted the way the engine resolves its unquoted form."""

    @abstractmethod
    def _query(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        """Run a query now; rows as a DataFrame with lower-case column names."""

    @abstractmethod
    def _statement(self, sql: str, params: Sequence[Any] | None = None) -> None:
        """Run a statement now."""

    @abstractmethod
    def _apply(self, step: Callable[[], None]) -> None:
        """Run one write step (a function of `_query` / `_statement`) in the transaction."""

    @abstractmethod
    def _stage(self, schema: str, df: pd.DataFrame) -> str:
        """Put `df` where this session's SQL can select from it; return that relation's name."""

    @abstractmethod
    def _create_like(self, schema: str, table: str, source: str) -> None:
        """Create `schema.table` with `source`'s columns when it does not exist yet."""

    def close(self) -> None:
        """Release whatever `_stage` made."""

    def read_df(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        """A query's rows as a DataFrame with lower-case column names (`?` placeholders)."""
        return self._query(sql, params)

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        """Run one data-changing statement in the transaction (`?` placeholders).

        Keep DDL out of transactions: Snowflake commits the open transaction before any DDL.
        """
        self._apply(lambda: self._statement(sql, params))

    def table(self, schema: str, table: str) -> str:
        """`schema.table`, checked and quoted."""
        return (f"{self.quote(check_identifier(schema, 'Schema'))}."
                f"{self.quote(check_identifier(table, 'Table'))}")

    def write_df(self, schema: str, table: str, df: pd.DataFrame, mode: WriteMode = "append") -> int:
        """Add `df`'s rows to `schema.table` (created from `df` when missing); return rows written.

        `mode="replace"` deletes the table's rows first, in the same transaction,
        so readers see the old rows or the new ones, never none.
        """
        if mode not in ("append", "replace"):
            raise ValueError(f"write_df into {schema}.{table}: mode {mode!r}, expected 'append' or 'replace'")
        columns = [check_identifier(str(c), f"Column of {schema}.{table}") for c in df.columns]
        target = self.table(schema, table)
        if df.empty:
            if mode == "replace" and self._exists(schema, table):
                self.execute(f"delete from {target}")
            return 0
        source = self._stage(schema, df)
        self._create_like(schema, table, source)
        if mode == "replace":
            self.execute(f"delete from {target}")
        cols = ", ".join(self.quote(c) for c in columns)
        self.execute(f"insert into {target} ({cols}) select {cols} from {source}")
        return len(df)

    def merge_df(self, schema: str, table: str, df: pd.DataFrame, keys: Sequence[str],
                 update_columns: Sequence[str] | None = None) -> MergeResult:
        """Upsert `df` into `schema.table` by `keys` with one MERGE: running it twice changes nothing.

        `update_columns=None` updates every non-key column of matched rows;
        `update_columns=()` only inserts keys not there yet (an outbox enqueue must
        never reset a message that has already moved on to `sent`).
        """
        name = f"{schema}.{table}"
        keys = [check_identifier(k, f"Key of {name}") for k in keys]
        columns = [check_identifier(str(c), f"Column of {name}") for c in df.columns]
        if not keys or not set(keys) <= set(columns):
            raise ValueError(f"merge_df into {name}: keys {keys} must be non-empty columns of the DataFrame {columns}")
        if update_columns is None:
            update_columns = [c for c in columns if c not in keys]
        update_columns = [check_identifier(c, f"Column of {name}") for c in update_columns]
        if not set(update_columns) <= set(columns):
            raise ValueError(f"merge_df into {name}: update_columns {update_columns} not all in {columns}")
        _check_merge_keys(name, df, keys)
        result = MergeResult()
        if df.empty:
            return result
        target = self.table(schema, table)
        source = self._stage(schema, df)
        self._create_like(schema, table, source)
        q = self.quote
        on = " and ".join(f"t.{q(k)} = s.{q(k)}" for k in keys)
        merge = f"merge into {target} t using {source} s on {on}"
        if update_columns:
            merge += " when matched then update set " + ", ".join(f"{q(c)} = s.{q(c)}" for c in update_columns)
        merge += (f" when not matched then insert ({', '.join(q(c) for c in columns)})"
                  f" values ({', '.join('s.' + q(c) for c in columns)})")
        new_rows = f"select count(*) as n from {source} s where not exists (select 1 from {target} t where {on})"

        def step() -> None:
            result.inserted, result.updated = self._merge(merge, new_rows, len(df), bool(update_columns))

        self._apply(step)
        return result

    def _merge(self, merge: str, new_rows: str, rows: int, updates: bool) -> tuple[int, int]:
        """Run the MERGE; return (inserted, updated). Counted just before it, in the same transaction."""
        inserted = int(self._query(new_rows).iloc[0, 0])
        self._statement(merge)
        return inserted, (rows - inserted) if updates else 0

    def _exists(self, schema: str, table: str) -> bool:
        found = self._query(
            "select count(*) as n from information_schema.tables where upper(table_schema) = ? "
            "and upper(table_name) = ?", [schema.upper(), table.upper()],
        )
        return int(found.iloc[0, 0]) > 0


def _check_merge_keys(name: str, df: pd.DataFrame, keys: list[str]) -> None:
    """Null or repeated keys would make a MERGE insert twice or fail half-way: refuse them up front."""
    for key in keys:
        nulls = int(df[key].isna().sum())
        if nulls:
            raise ValueError(f"merge_df into {name}: {nulls} row(s) have a null {key!r}; keys must be set")
    repeated = df[df.duplicated(subset=keys, keep=False)]
    if not repeated.empty:
        example = tuple(repeated.iloc[0][keys])
        raise ValueError(
            f"merge_df into {name}: {len(repeated)} rows share a key ({', '.join(keys)}), "
            f"e.g. {example}; each key may appear once per merge"
        )


class WarehouseInterface:
    """The methods both warehouse resources offer; each write call is its own transaction.

    `with warehouse.transaction() as tx:` groups writes (`tx.write_df`, `tx.merge_df`,
    `tx.execute`) so they land together or not at all; an exception in the block
    leaves the warehouse as it was.
    """

    def transaction(self) -> AbstractContextManager[WarehouseSession]:  # pragma: no cover - abstract
        raise NotImplementedError

    def iter_batches(self, sql: str, batch_size: int = DEFAULT_BATCH_ROWS,
                     params: Sequence[Any] | None = None) -> Iterator[pd.DataFrame]:  # pragma: no cover
        """A query's rows as DataFrames of at most `batch_size` rows, streamed (lower-case columns)."""
        raise NotImplementedError

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        """Run one statement (`?` placeholders), DDL included."""
        with self.transaction() as tx:
            tx._statement(sql, params)

    def read_df(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        """A query's rows as one DataFrame (lower-case columns); use `iter_batches` for big results."""
        with self.transaction() as tx:
            return tx.read_df(sql, params)

    def write_df(self, schema: str, table: str, df: pd.DataFrame, mode: WriteMode = "append") -> int:
        """See `WarehouseSession.write_df`."""
        with self.transaction() as tx:
            return tx.write_df(schema, table, df, mode)

    def merge_df(self, schema: str, table: str, df: pd.DataFrame, keys: Sequence[str],
                 update_columns: Sequence[str] | None = None) -> MergeResult:
        """See `WarehouseSession.merge_df`."""
        with self.transaction() as tx:
            result = tx.merge_df(schema, table, df, keys, update_columns)
        return result


class DuckDBSession(WarehouseSession):
    """A DuckDB connection in a transaction; DataFrames are scanned in place (registered views)."""

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self.con = con
        self._views: list[str] = []

    def quote(self, name: str) -> str:
        return f'"{name}"'

    def _query(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        df = self.con.execute(sql, list(params or [])).df()
        df.columns = [str(c).lower() for c in df.columns]
        return df

    def _statement(self, sql: str, params: Sequence[Any] | None = None) -> None:
        self.con.execute(sql, list(params or []))

    def _apply(self, step: Callable[[], None]) -> None:
        step()  # DuckDB's transactions take DDL and DML alike: run now, read your writes.

    def _stage(self, schema: str, df: pd.DataFrame) -> str:
        view = f"nb_stage_{uuid.uuid4().hex}"
        self.con.register(view, df)
        self._views.append(view)
        return view

    def _create_like(self, schema: str, table: str, source: str) -> None:
        self._statement(f"create schema if not exists {self.quote(schema)}")
        self._statement(f"create table if not exists {self.table(schema, table)} as select * from {source} limit 0")

    def close(self) -> None:
        for view in self._views:
            self.con.unregister(view)
        self._views.clear()


class DuckDBWarehouse(WarehouseInterface, dg.ConfigurableResource):
    """The embedded warehouse: one DuckDB file (`NEXTBEST_DUCKDB_PATH`)."""

    path: str

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection for the length of a `with` block."""
        con = connect_duckdb(self.path, read_only=read_only)
        try:
            yield con
        finally:
            con.close()

    def table_row_counts(self, schema: str) -> dict[str, int]:
        """Rows per table in one schema (empty when the schema does not exist)."""
        with self.connect() as con:
            tables = con.execute(
                "select table_name from information_schema.tables where table_schema = ? order by 1",
                [schema],
            ).fetchall()
            return {
                name: con.execute(f'select count(*) from "{schema}"."{name}"').fetchone()[0]
                for (name,) in tables
            }

    # The engine-neutral interface (see WarehouseInterface); `connect()` above stays DuckDB's own.

    @contextmanager
    def transaction(self) -> Iterator[DuckDBSession]:
        """One connection in one transaction: committed when the block ends, rolled back on error."""
        with self.connect() as con:
            session = DuckDBSession(con)
            con.execute("begin transaction")
            try:
                yield session
            except BaseException:
                con.execute("rollback")
                raise
            else:
                con.execute("commit")
            finally:
                session.close()

    def iter_batches(self, sql: str, batch_size: int = DEFAULT_BATCH_ROWS,
                     params: Sequence[Any] | None = None) -> Iterator[pd.DataFrame]:
        """A query's rows as DataFrames of at most `batch_size` rows, streamed from DuckDB."""
        # A read-write connection: a read-only one in the same process would clash with the
        # writes the caller makes while it iterates (DuckDB wants one configuration per file).
        with self.connect() as con:
            reader = con.sql(sql, params=list(params) if params else None).to_arrow_reader(batch_size)
            for batch in reader:
                df = batch.to_pandas()
                df.columns = [str(c).lower() for c in df.columns]
                yield df


def build_warehouse() -> DuckDBWarehouse | SnowflakeWarehouse:
    """The warehouse resource `NEXTBEST_WAREHOUSE` names: `duckdb` (default) or `snowflake`.

    DuckDB's path comes from `NEXTBEST_DUCKDB_PATH` (defaulted in project.py);
    Snowflake's settings from the `SNOWFLAKE_*` variables (see snowflake.py).
    """
    engine = os.environ.get("NEXTBEST_WAREHOUSE", "duckdb").strip().lower() or "duckdb"
    if engine == "snowflake":
        from dagster_project.resources.snowflake import build_snowflake_warehouse

        return build_snowflake_warehouse()
    if engine != "duckdb":
        raise ValueError(f"NEXTBEST_WAREHOUSE={engine!r}: expected 'duckdb' or 'snowflake'")
    # The variable always exists by now (project.py sets its default), so EnvVar resolves.
    assert "NEXTBEST_DUCKDB_PATH" in os.environ
    return DuckDBWarehouse(path=dg.EnvVar("NEXTBEST_DUCKDB_PATH"))

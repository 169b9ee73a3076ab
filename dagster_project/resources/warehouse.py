"""The warehouse resource Python assets use to read and write tables.

DuckDB lets one process write a file at a time, so connections are opened per
step and closed straight after (a sensor or `dagster dev` never holds the file
open), and the pipeline runs in process (see `definitions.py`).

Both engines, DuckDB here and Snowflake in `snowflake.py`, offer the same
methods (`read_df`, `iter_batches`, `key_ranges`, `write_df`, `merge_df`,
`staged`, `execute`, `transaction`, `kept_open`); `build_warehouse()` picks one by
`NEXTBEST_WAREHOUSE`. Steps that touch every customer (scoring, routing,
drafting) work a chunk of `batch_rows` customers at a time (`NEXTBEST_BATCH_ROWS`);
steps that learn from history (model training) read a bounded, stable sample of
customers chosen in the warehouse (`read_key_sample`).
"""

from __future__ import annotations

import os
import re
import time
import uuid
import warnings
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Literal, Sequence

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from dagster_project.project import check_duckdb_file_name, positive_int_env

if TYPE_CHECKING:
    from dagster_project.resources.snowflake import SnowflakeWarehouse

# How long to wait for another process to release the DuckDB file.
LOCK_WAIT_SECONDS = 30.0
MEMORY_LIMIT_ENV = "NEXTBEST_DUCKDB_MEMORY_LIMIT"
DEFAULT_MEMORY_LIMIT = "6GB"
# Write-ahead log a `kept_open` block may gather before DuckDB checkpoints (its default: 16MB).
KEPT_OPEN_CHECKPOINT = "1GB"
_KEPT_OPEN: set[str] = set()  # the files a `kept_open` block of this process holds open


def memory_limit() -> str:
    """DuckDB's memory cap from `NEXTBEST_DUCKDB_MEMORY_LIMIT` (default 6GB), e.g. 4GB or 512MB."""
    value = (os.environ.get(MEMORY_LIMIT_ENV) or DEFAULT_MEMORY_LIMIT).strip().replace(" ", "")
    if not re.fullmatch(r"\d+(\.\d+)?(KB|MB|GB|TB|KiB|MiB|GiB|TiB)", value, re.IGNORECASE):
        raise ValueError(f"{MEMORY_LIMIT_ENV}={os.environ.get(MEMORY_LIMIT_ENV)!r}: expected a size such as 6GB or 512MB")
    return value


def connect_duckdb(path: str | Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the DuckDB file, waiting briefly if another process holds its lock."""
    path = Path(path)
    if path.is_dir():  # as a missing file to the commands: the file meant is not there
        raise FileNotFoundError(f"{path} is a folder, not a DuckDB file: point NEXTBEST_DUCKDB_PATH (or --db) at "
                                f"a file, e.g. {path / 'warehouse.duckdb'}")
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not path.exists():
        raise FileNotFoundError(
            f"No warehouse at {path}. Run `nextbest demo` or `nextbest simulate` first (or `nextbest import DIR` "
            "for your own data), or set NEXTBEST_DUCKDB_PATH to your DuckDB file."
        )
    limit = memory_limit()
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
            # The same cap as dbt's builds (dbt/profiles.yml): DuckDB spills to disk beyond it instead
            # of taking 80% of the machine while the Python step holds frames of its own. Set, not
            # passed as connect config: a file open elsewhere in the process with other config would refuse.
            con.execute(f"set memory_limit = '{limit}'")
            # Timestamps are UTC (the source contract): DuckDB's session zone is otherwise the machine's,
            # and a tz-aware value written into a `timestamp` column would be stored as local wall time.
            con.execute("set TimeZone = 'UTC'")
            return con
        except duckdb.IOException as error:
            if "lock" not in str(error).lower() or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


# ---------------------------------------------------------------------------
# The engine-neutral interface. Python assets that should run on DuckDB and on
# Snowflake use these methods (not `connect()`, which hands out a DuckDB
# connection): SQL goes in with `?` placeholders, DataFrames come back with
# lower-case column names on both engines.
# ---------------------------------------------------------------------------

WriteMode = Literal["append", "replace"]
# Rows per DataFrame handed out by `iter_batches`: memory stays bounded by this, not by customers.
DEFAULT_BATCH_ROWS = 50_000
BATCH_ROWS_ENV = "NEXTBEST_BATCH_ROWS"
SCRATCH_PREFIX = "nb_stage_"  # scratch tables of `staged`, like Snowflake's upload tables (NB_STAGE_*)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def batch_rows_from_env() -> int:
    """Customers per chunk from `NEXTBEST_BATCH_ROWS` (default 50,000), or a ValueError naming it."""
    return positive_int_env(BATCH_ROWS_ENV, DEFAULT_BATCH_ROWS, "customers per chunk")


# SQL keeping one chunk's customers: the bounds of a KeyRange (params: chunk.first, chunk.last).
IN_CHUNK = "customer_id >= ? and customer_id <= ?"


@dataclass(frozen=True)
class KeyRange:
    """`first` to `last` (inclusive) of a sorted key, holding `rows` keys: one chunk of a chunked step."""

    first: Any
    last: Any
    rows: int

    @property
    def bounds(self) -> list[Any]:
        """`[first, last]`: the parameters of `IN_CHUNK`."""
        return [self.first, self.last]


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

    @abstractmethod
    def dbapi(self) -> Any:
        """A DB-API handle (`execute(sql, params)`, then `fetchone`/`fetchall`/`description`) on this
        session's connection, for helpers written against one; their SQL must be this engine's."""

    def exists(self, schema: str, table: str) -> bool:
        """Whether `schema.table` exists (either case, as both engines fold unquoted names)."""
        return self._exists(schema, table)

    def read_df(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        """A query's rows as a DataFrame with lower-case column names (`?` placeholders)."""
        return self._query(sql, params)

    def unmatched_rows_sql(self, table: str, column: str, reference: str, reference_column: str) -> str:
        """SQL selecting the rows of `table` whose `column` is set and matches no row of `reference`
        by `reference_column` (orphaned foreign keys)."""
        return (f"select k.* from {table} k where k.{column} is not null and not exists "
                f"(select 1 from {reference} r where r.{reference_column} = k.{column})")

    def stage_df(self, schema: str, df: pd.DataFrame) -> str:
        """`df` as a relation this session's SQL can select from until the block ends, for an
        `insert ... select` or `update ... from` of one's own (`write_df` and `merge_df` stage the same
        way): a registered view on DuckDB, a transient table uploaded into `schema` on Snowflake."""
        return self._stage(check_identifier(schema, "Schema"), df)

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

    def key_ranges(self, sql: str, batch_size: int = DEFAULT_BATCH_ROWS,
                   params: Sequence[Any] | None = None) -> list[KeyRange]:
        """Chunks of `batch_size` keys: `sql` selects one key column, distinct and in ascending order.

        Only each chunk's first and last key are kept, so a step can then read every input of a
        chunk with `key >= first and key <= last` and hold one chunk at a time.

        Null keys are left out (no range can select them, and as a chunk's last key one would select
        nothing of its chunk); a key repeated across a batch's border stays in the chunk it started,
        so no two ranges overlap and every row is read once.
        """
        ranges: list[KeyRange] = []
        for batch in self.iter_batches(sql, batch_size, params):
            keys = batch.iloc[:, 0]
            keys = keys[keys.notna()]
            if ranges:  # the previous chunk already covers its last key
                keys = keys[keys != ranges[-1].last]
            if len(keys):
                ranges.append(KeyRange(keys.iloc[0], keys.iloc[-1], int(keys.nunique())))
        return ranges

    def table_exists(self, schema: str, table: str) -> bool:
        """Whether `schema.table` exists."""
        with self.transaction() as tx:
            return tx.exists(schema, table)

    @contextmanager
    def kept_open(self) -> Iterator[None]:
        """Within the block, transactions skip the cost of opening the warehouse anew, for steps that
        run many small ones (the sender claims and settles each chunk in its own). Nothing by default."""
        yield

    @contextmanager
    def staged(self, schema: str, table: str) -> Iterator[StagedRows]:
        """A scratch copy of `schema.table` (which must exist) to fill chunk by chunk; dropped at the end.

        Publish with `rows.replace(tx)` or `rows.append(tx)` inside a `transaction()` block, so
        readers of `schema.table` see its old rows or all the new ones, never a part.
        """
        rows = StagedRows(self, schema, table)
        try:
            yield rows
        finally:
            rows.drop()

    def replace_in_chunks(self, schema: str, table: str, chunks: Iterable[pd.DataFrame],
                          columns: Sequence[str]) -> int:
        """Replace every row of `schema.table` (which must exist) with `chunks`' `columns`, in one
        transaction at the end: each chunk is staged as it comes (memory holds one), and an error
        before the end leaves the old rows in place. Returns the rows written."""
        with self.staged(schema, table) as staged:
            for chunk in chunks:
                staged.write_df(chunk[list(columns)])
            with self.transaction() as tx:
                return staged.replace(tx)

    def artifact_dir(self) -> Path | None:
        """The folder relative model artifact paths in `nextbest.model_registry` resolve against."""
        return None

    def _scratch_kind(self) -> str:
        return "table"

    @contextmanager
    def scratch_table(self, schema: str, stem: str, definition: str) -> Iterator[str]:
        """A new scratch table `schema.nb_stage_<stem>_<tag>` for one run's intermediate rows: yields its
        name (`schema.table`, unquoted), drops it when the block ends.

        `definition` follows the name in `create table`: a column list (`(customer_id varchar, ...)`) or
        `as select ...`. Transient on Snowflake (no fail-safe copies of rows that live for one run). The
        `create` runs on its own, as Snowflake commits any open transaction before DDL.
        """
        name = (f"{check_identifier(schema, 'Schema')}."
                f"{check_identifier(f'{SCRATCH_PREFIX}{stem}_{uuid.uuid4().hex[:12]}', 'Scratch table')}")
        self.execute(f"create {self._scratch_kind()} {name} {definition}")
        try:
            yield name
        finally:
            try:
                self.execute(f"drop table if exists {name}")
            except Exception:  # noqa: BLE001 - never hide the error that ended the block
                pass  # a leftover nb_stage_* table holds only rows that were never published

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


class StagedRows:
    """Rows written a chunk at a time into a scratch copy of `schema.table`, then published in one go.

        with warehouse.staged("nextbest", "customer_scores") as staged:
            for chunk in chunks:
                staged.write_df(score(chunk))          # each chunk its own small transaction
            with warehouse.transaction() as tx:
                staged.replace(tx)                     # delete + insert ... select, atomically

    Memory holds one chunk; the table changes only when the transaction commits.
    """

    def __init__(self, warehouse: WarehouseInterface, schema: str, table: str):
        self.warehouse = warehouse
        self.schema = check_identifier(schema, "Schema")
        self.table = check_identifier(table, "Table")
        self.scratch: str | None = None  # the scratch table's name (nb_stage_<table>_<tag>), made by the first chunk
        self.columns: list[str] | None = None
        self.rows = 0
        self._scratch = ExitStack()

    def write_df(self, df: pd.DataFrame) -> int:
        """Add a chunk's rows (the same columns every time, cast to the table's types); rows written."""
        if df.empty:
            return 0
        columns = [str(c) for c in df.columns]
        if self.columns is not None and columns != self.columns:
            raise ValueError(f"staged rows for {self.schema}.{self.table}: columns {columns} differ from the "
                             f"first chunk's {self.columns}")
        if self.scratch is None:
            # Unquoted names fold the same way on both engines as the quoted ones `write_df` uses.
            qualified = self._scratch.enter_context(self.warehouse.scratch_table(
                self.schema, self.table, f"as select * from {self.schema}.{self.table} where 1 = 0"))
            self.scratch = qualified.split(".", 1)[1]
        self.columns = columns
        written = self.warehouse.write_df(self.schema, self.scratch, df)
        self.rows += written
        return written

    def relation(self, tx: WarehouseSession) -> str:
        """The scratch table's name for SQL in `tx` (e.g. an `insert ... select` of one's own)."""
        if self.scratch is None:
            raise ValueError(f"staged rows for {self.schema}.{self.table}: nothing staged yet")
        return tx.table(self.schema, self.scratch)

    def append(self, tx: WarehouseSession) -> int:
        """Insert the staged rows into the table in `tx`; rows inserted."""
        if not self.rows:
            return 0
        cols = ", ".join(tx.quote(c) for c in self.columns or [])
        tx.execute(f"insert into {tx.table(self.schema, self.table)} ({cols}) select {cols} from {self.relation(tx)}")
        return self.rows

    def replace(self, tx: WarehouseSession, where: str | None = None, params: Sequence[Any] | None = None) -> int:
        """Delete the table's rows (all, or those `where` matches) and insert the staged ones, in `tx`."""
        target = tx.table(self.schema, self.table)
        tx.execute(f"delete from {target}" + (f" where {where}" if where else ""), params)
        return self.append(tx)

    def drop(self) -> None:
        """Drop the scratch table (`staged` does this when its block ends)."""
        self._scratch.close()
        self.scratch = None


# ---------------------------------------------------------------------------
# A bounded, stable sample of a query's keys (customers), chosen in the warehouse.
# ---------------------------------------------------------------------------

# A key's bucket: the first hex digits of md5 of the key. md5 is the same function on DuckDB and
# Snowflake and across their versions (DuckDB's hash() is not), so a sample holds the same customers
# on either engine and at every retrain, and a smaller sample is a subset of a larger one.
SAMPLE_BUCKET_DIGITS = 4  # 65,536 buckets: at 1M customers a bucket holds ~15 of them


@dataclass(frozen=True)
class KeySample:
    """How much of a query `read_key_sample` read: rows and distinct keys, read and available.

    `below` is the bucket bound (keys whose md5 starts below it were read); None when all were.
    """

    rows_available: int
    keys_available: int
    rows_read: int
    keys_read: int
    below: str | None = None

    @property
    def complete(self) -> bool:
        """Whether every row was read."""
        return self.below is None

    def describe(self, rows: str, keys: str = "customers") -> str:
        """A log line, e.g. `read 800,000 of 19,500,000 training rows, those of 10,240 of 250,000 customers ...`."""
        if self.complete:
            return f"read all {self.rows_read:,} {rows} ({self.keys_read:,} {keys})"
        return (f"read {self.rows_read:,} of {self.rows_available:,} {rows}, those of {self.keys_read:,} of "
                f"{self.keys_available:,} {keys} (a stable sample: md5 of the id below {self.below!r})")

    def as_dict(self) -> dict:
        """The figures as plain values, for run metadata and the model registry."""
        return {"rows_read": self.rows_read, "rows_available": self.rows_available, "keys_read": self.keys_read,
                "keys_available": self.keys_available, "sampled": not self.complete,
                "md5_prefix_below": self.below}


def sample_bucket(key: str) -> str:
    """SQL (both engines) for the sample bucket of column `key`: the first hex digits of its md5."""
    return f"substr(md5(cast({check_identifier(key, 'Key column')} as varchar)), 1, {SAMPLE_BUCKET_DIGITS})"


def read_key_sample(warehouse: WarehouseInterface, sql: str, key: str, max_rows: int,
                    params: Sequence[Any] | None = None,
                    order_by: Sequence[str] = ()) -> tuple[pd.DataFrame, KeySample]:
    """`sql`'s rows for a stable pseudo-random subset of its `key` values, at most `max_rows` rows.

    A key (customer) is read with all its rows or not at all. One grouped count per md5 bucket
    comes first (at most 65,536 rows back, however big the query); then the longest run of buckets,
    in md5 order, whose rows fit in `max_rows` is read. When the whole query fits, every row is
    read. `sql` must return `key`; `?` params go to `sql`. `order_by` (columns of `sql`) fixes the
    rows' order, which engines otherwise leave to chance (DuckDB's parallel joins do).
    """
    bucket = sample_bucket(key)
    order = ", ".join(check_identifier(c, "Order column") for c in order_by)
    order = f" order by {order}" if order else ""
    counts = warehouse.read_df(
        f"select {bucket} as bucket, count(*) as n_rows, count(distinct {key}) as n_keys "
        f"from ({sql}) as sampled group by 1", params)
    rows_available, keys_available = int(counts["n_rows"].sum()), int(counts["n_keys"].sum())
    if rows_available <= max_rows:
        frame = warehouse.read_df(f"select * from ({sql}) as sampled{order}", params)
        return frame, KeySample(rows_available, keys_available, len(frame), keys_available)
    # Rows with a null key have no bucket: a sample leaves them out.
    counts = counts[counts["bucket"].notna()].sort_values("bucket", ignore_index=True)  # the order of `<`
    fits = int((counts["n_rows"].cumsum() <= max_rows).sum())  # buckets 0..fits-1 are read
    below = str(counts["bucket"].iloc[fits]) if fits < len(counts) else "g"  # "g": above every hex digit
    frame = warehouse.read_df(f"select * from ({sql}) as sampled where {bucket} < ?{order}",
                              [*(params or []), below])
    return frame, KeySample(rows_available, keys_available, len(frame),
                            int(counts["n_keys"].iloc[:fits].sum()), below)


class DuckDBSession(WarehouseSession):
    """A DuckDB connection in a transaction; DataFrames are scanned in place (registered views)."""

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self.con = con
        self._views: list[str] = []

    def quote(self, name: str) -> str:
        return f'"{name}"'

    def _query(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        result = self.con.execute(sql, list(params or []))
        if any(str(column[1]) == "VARCHAR" for column in result.description or []):
            with warnings.catch_warnings():
                # Through the DB-API result (`con.sql` refuses to run while a statement's result is
                # unread); the copy it warns of costs less than the strings `.df()` would make.
                warnings.filterwarnings("ignore", message="Arrow output on a DB-API result")
                df = duckdb_frame(self.con, result.to_arrow_table())
        else:  # no text: `.df()` makes no strings, and an Arrow copy first would only double the memory
            df = result.df()
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
        # The types DuckDB reads off this one frame, made fit for the frames after it: a column the frame
        # leaves blank is text (DuckDB's NULL type takes no value ever), and decimals get the widest
        # precision at their scale (not just enough digits for this frame's values).
        columns = []
        for name, kind, *_ in self.con.execute(f"describe select * from {source}").fetchall():
            kind = "varchar" if kind == '"NULL"' or kind == "NULL" else re.sub(
                r"^DECIMAL\(\d+,\s*(\d+)\)$", r"DECIMAL(38, \1)", kind)
            columns.append(f"{self.quote(name)} {kind}")
        self._statement(f"create table if not exists {self.table(schema, table)} ({', '.join(columns)})")

    def unmatched_rows_sql(self, table: str, column: str, reference: str, reference_column: str) -> str:
        # DuckDB's anti join: 0.8-0.9 s over 10-11M orders and items, where `not exists` took 2.4 s
        # (3.2-3.4 s counted per distinct key).
        return (f"select k.* from {table} k anti join {reference} r on r.{reference_column} = k.{column} "
                f"where k.{column} is not null")

    def dbapi(self) -> duckdb.DuckDBPyConnection:
        return self.con

    def close(self) -> None:
        for view in self._views:
            self.con.unregister(view)
        self._views.clear()


@contextmanager
def session_on(source: WarehouseInterface | WarehouseSession | duckdb.DuckDBPyConnection) -> Iterator[WarehouseSession]:
    """A session on whatever a helper was handed: a warehouse resource (one transaction of its own),
    a session (as it is), or a DuckDB connection (wrapped as it is; CLI commands and tests hold those)."""
    if isinstance(source, WarehouseSession):
        yield source
        return
    if isinstance(source, WarehouseInterface):
        with source.transaction() as tx:
            yield tx
        return
    session = DuckDBSession(source)
    try:
        yield session
    finally:
        session.close()


def table_exists(source: WarehouseInterface | WarehouseSession | duckdb.DuckDBPyConnection, qualified: str) -> bool:
    """Whether `schema.table` exists; `source` is a warehouse resource, a session or a DuckDB connection."""
    schema, name = qualified.split(".")
    with session_on(source) as tx:
        return tx.exists(schema, name)


class DuckDBWarehouse(WarehouseInterface, dg.ConfigurableResource):
    """The embedded warehouse: one DuckDB file (`NEXTBEST_DUCKDB_PATH`)."""

    path: str
    batch_rows: int = DEFAULT_BATCH_ROWS  # customers per chunk of scoring, routing and drafting

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection for the length of a `with` block."""
        con = connect_duckdb(self.path, read_only=read_only)
        try:
            yield con
        finally:
            con.close()

    @contextmanager
    def kept_open(self) -> Iterator[None]:
        """The file stays open for the block: a process's connections share one open database, so each
        transaction's connection costs almost nothing (instead of reopening the file). Other processes
        wait for the block to end, as for any writer.

        Inside the block DuckDB checkpoints (folds its write-ahead log into the file) only past
        `KEPT_OPEN_CHECKPOINT` of log, and once more when the block ends, instead of at every commit past
        16MB: a checkpoint rewrites the row groups a commit touched, and the service export's rounds
        of 50,000 outbox updates each paid one (1M customers: 142.7 -> 108.9 s, +0.75 GB peak).
        """
        key = str(Path(self.path).expanduser().resolve())
        outermost = key not in _KEPT_OPEN
        with self.connect() as con:
            # A setting of the open database, which every connection to it shares: the outermost block
            # sets it and puts DuckDB's default back.
            if outermost:
                con.execute(f"set checkpoint_threshold = '{KEPT_OPEN_CHECKPOINT}'")
                _KEPT_OPEN.add(key)
            try:
                yield
            finally:
                if outermost:
                    _KEPT_OPEN.discard(key)
                    con.execute("reset checkpoint_threshold")

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

    def artifact_dir(self) -> Path:
        """The DuckDB file's folder (model artifacts live in its `models/`; see models/registry.py)."""
        return Path(self.path).expanduser().resolve().parent

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
        """A query's rows as DataFrames of `batch_size` rows (the last may be shorter), streamed from DuckDB."""
        # A read-write connection: a read-only one in the same process would clash with the
        # writes the caller makes while it iterates (DuckDB wants one configuration per file).
        with self.connect() as con:
            reader = con.sql(sql, params=list(params) if params else None).to_arrow_reader(batch_size)
            for table in rebatched((pa.Table.from_batches([batch]) for batch in reader), batch_size):
                df = table.to_pandas()
                df.columns = [str(c).lower() for c in df.columns]
                yield df


def rebatched(tables: Iterable[pa.Table], size: int) -> Iterator[pa.Table]:
    """Arrow tables re-cut to `size` rows each (the last may be shorter), without copying.

    Engines hand a result over in pieces of their own size: DuckDB's reader gave a filtered
    scan of 1M rows in 116 pieces of ~8,600 rows, and every chunked step pays its per-chunk
    costs (a model's predict, a staged write) per piece.
    """
    pending: list[pa.Table] = []
    held = 0
    for table in tables:
        pending.append(table)
        held += table.num_rows
        while held >= size:
            joined = concat_pieces(pending)
            yield joined.slice(0, size)
            rest = joined.slice(size)
            pending, held = ([rest] if rest.num_rows else []), rest.num_rows
    if held:
        yield concat_pieces(pending)


def concat_pieces(tables: list[pa.Table]) -> pa.Table:
    """Pieces of one result as one table. Snowflake picks each chunk's Arrow types from its values (a
    NUMBER(38,0) as int8 in one chunk and int64 in the next, a chunk of blanks as null), so types are
    widened to fit every piece instead of refused."""
    return pa.concat_tables(tables, promote_options="permissive")


def duckdb_frame(con: duckdb.DuckDBPyConnection, table: pa.Table) -> pd.DataFrame:
    """A DuckDB result (as Arrow) as the DataFrame DuckDB's `.df()` makes of it, text read through Arrow.

    `.df()` makes a Python string of every text value and pandas then copies them into Arrow
    again: 0.84 s for 200,000 outbox rows, where Arrow's own columns take 0.27 s. Every other
    column goes through DuckDB's `.df()` as before, so numbers, dates and nulls come out alike.
    """
    names, seen = [], {}
    for name in table.schema.names:  # a repeated name gets a suffix, as `.df()` gives it: a, a_1
        names.append(f"{name}_{seen[name]}" if seen.get(name) else name)
        seen[name] = seen.get(name, 0) + 1
    table = table.rename_columns(names)
    text = [pa.types.is_string(f.type) or pa.types.is_large_string(f.type) for f in table.schema]
    if not any(text) or not table.num_rows:  # nothing to gain: as `.df()` has it (empty text is object)
        return duckdb.from_arrow(table, connection=con).df()
    rest = (duckdb.from_arrow(table.select([i for i, is_text in enumerate(text) if not is_text]), connection=con).df()
            if not all(text) else None)
    columns, position = [], 0
    for i, is_text in enumerate(text):
        if not is_text:
            columns.append(rest.iloc[:, position])
            position += 1
        elif table.column(i).null_count == table.num_rows:  # `.df()`: no text at all is an object column of None
            columns.append(pd.Series([None] * table.num_rows, dtype=object))
        else:
            columns.append(table.column(i).to_pandas())
    frame = pd.DataFrame(dict(enumerate(columns)))
    frame.columns = table.schema.names
    return frame


def column_names(reader: "WarehouseInterface | WarehouseSession", relation: str) -> list[str]:
    """The columns of `relation`, in order, without reading a row (a warehouse of either engine or a
    session of one: anything with `read_df`)."""
    return list(reader.read_df(f"select * from {relation} where 1 = 0").columns)


def in_values(column: pd.Series, values: Iterable) -> np.ndarray:
    """Whether each value of `column` is one of `values` (a null is not), as a NumPy bool array.

    Text the warehouse returns is Arrow-backed, and pandas' `isin` on it makes an Arrow scalar of
    every value it is given: 0.73 s for 400,000 ids against 200,000, where Arrow's own `is_in`
    takes 0.08 s (and a Python set lookup per row 0.24 s).
    """
    column_array = pa.array(column)
    value_set = values if isinstance(values, pa.Array) else pa.array(
        values if isinstance(values, pd.Series) else list(values))
    if value_set.type != column_array.type:
        value_set = value_set.cast(column_array.type)
    return pc.is_in(column_array, value_set=value_set).fill_null(False).to_numpy(zero_copy_only=False)


def command_source(db: str | None = None, read_only: bool = True,
                   must_exist: bool = False) -> tuple[str, Any, Callable[[], None]]:
    """What a CLI command reads (and writes) through: (a description of it, the source, how to release it).

    The Snowflake resource when `NEXTBEST_WAREHOUSE=snowflake` and no `--db` is given; otherwise a
    DuckDB connection (read-only unless asked: it never waits for or blocks a running pipeline) to
    `db`, default `NEXTBEST_DUCKDB_PATH`. The service and quality readers take either. `must_exist`
    as in `command_warehouse`.
    """
    warehouse = command_warehouse(db, must_exist=must_exist)
    if not isinstance(warehouse, DuckDBWarehouse):
        return f"Snowflake {warehouse.database} ({warehouse.account})", warehouse, lambda: None
    con = connect_duckdb(warehouse.path, read_only=read_only)
    return warehouse.path, con, con.close


def command_warehouse(db: str | None = None, must_exist: bool = False) -> DuckDBWarehouse | SnowflakeWarehouse:
    """The warehouse resource (initialized) a CLI command works through, one rule for every command.

    `--db` given: DuckDB at that file, whatever `NEXTBEST_WAREHOUSE` says. Otherwise the engine
    `NEXTBEST_WAREHOUSE` names (`build_warehouse`). A DuckDB file named after a NextBest schema
    is refused either way. `must_exist`: raise FileNotFoundError for a DuckDB file that does not
    exist (commands that write: opening a mistyped path would create an empty warehouse).
    """
    if db:
        path = Path(db).expanduser().resolve()
        check_duckdb_file_name(path)
        warehouse = DuckDBWarehouse(path=str(path), batch_rows=batch_rows_from_env())
    else:
        warehouse = build_warehouse().process_config_and_initialize()
        if isinstance(warehouse, DuckDBWarehouse):
            check_duckdb_file_name(Path(warehouse.path))
    if must_exist and isinstance(warehouse, DuckDBWarehouse) and not Path(warehouse.path).exists():
        raise FileNotFoundError(
            f"No warehouse at {warehouse.path}. Run `nextbest demo` or `nextbest simulate` first (or `nextbest "
            "import DIR` for your own data), or set NEXTBEST_DUCKDB_PATH (or --db) to your DuckDB file.")
    return warehouse


def build_warehouse() -> DuckDBWarehouse | SnowflakeWarehouse:
    """The warehouse resource `NEXTBEST_WAREHOUSE` names: `duckdb` (default) or `snowflake`.

    DuckDB's path comes from `NEXTBEST_DUCKDB_PATH` (defaulted in project.py);
    Snowflake's settings from the `SNOWFLAKE_*` variables (see snowflake.py); both take the
    chunk size of the chunked steps from `NEXTBEST_BATCH_ROWS`.
    """
    engine = os.environ.get("NEXTBEST_WAREHOUSE", "duckdb").strip().lower() or "duckdb"
    if engine == "snowflake":
        from dagster_project.resources.snowflake import build_snowflake_warehouse

        return build_snowflake_warehouse()
    if engine != "duckdb":
        raise ValueError(f"NEXTBEST_WAREHOUSE={engine!r}: expected 'duckdb' or 'snowflake'")
    # The variable always exists by now (project.py sets its default), so EnvVar resolves.
    assert "NEXTBEST_DUCKDB_PATH" in os.environ
    return DuckDBWarehouse(path=dg.EnvVar("NEXTBEST_DUCKDB_PATH"), batch_rows=batch_rows_from_env())

"""The Snowflake warehouse resource: the same methods as `DuckDBWarehouse`, on
`snowflake-connector-python`.

Chosen with `NEXTBEST_WAREHOUSE=snowflake`; settings come from the `SNOWFLAKE_*`
variables through `dagster.EnvVar`, so the Dagster UI shows variable names, never
values, and the secret fields are left out of the resource's repr.

DataFrames travel as Parquet (`write_pandas`) and Arrow (`fetch_arrow_batches`),
never row by row. Snowflake commits any open transaction before DDL, and loading
a DataFrame needs DDL (a stage, a table), so a transaction here works in two
phases: each write uploads its rows to a transient staging table as it is
called, and the data-changing statements (`insert ... select`, `merge`,
`delete`) run together in one short transaction when the block ends.
"""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import dagster as dg
import pandas as pd
import pyarrow as pa
import snowflake.connector
import snowflake.connector.pandas_tools
from pydantic import Field, PrivateAttr

from dagster_project.resources.warehouse import (
    DEFAULT_BATCH_ROWS,
    WarehouseInterface,
    WarehouseSession,
    batch_rows_from_env,
    check_identifier,
    concat_pieces,
    rebatched,
)

# Rows per Parquet file `write_pandas` uploads: bounds the memory of one upload.
WRITE_CHUNK_ROWS = 100_000
STAGE_PREFIX = "NB_STAGE_"  # transient tables left by a crashed run can be found by this prefix
REQUIRED_ENV = ("SNOWFLAKE_ACCOUNT", "SNOWFLAKE_USER", "SNOWFLAKE_WAREHOUSE", "SNOWFLAKE_DATABASE")
OPTIONAL_ENV = ("SNOWFLAKE_PASSWORD", "SNOWFLAKE_PRIVATE_KEY_PATH", "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE",
                "SNOWFLAKE_ROLE", "SNOWFLAKE_SCHEMA")


def _lower_columns(df: pd.DataFrame) -> pd.DataFrame:
    # Snowflake upper-cases unquoted names; give callers the lower-case names DuckDB gives.
    df.columns = [c.lower() if c == c.upper() else c for c in map(str, df.columns)]
    return df


def _arrow_batches(cursor: Any) -> Iterator[pa.Table]:
    """The result of the cursor's last query as Arrow tables, as the connector streams them."""
    for table in cursor.fetch_arrow_batches():
        yield table if isinstance(table, pa.Table) else pa.Table.from_batches([table])


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    """A result as DuckDB hands it over: a boolean column with blanks as pandas' nullable `boolean`
    (Arrow's default makes it objects, which callers would not count as a flag or a number)."""
    df = table.to_pandas()
    for field, column in zip(table.schema, table.columns):
        if pa.types.is_boolean(field.type) and column.null_count:
            df[field.name] = df[field.name].astype("boolean")
    return df


def _empty_result(cursor: Any) -> pd.DataFrame:
    return pd.DataFrame(columns=[column[0] for column in cursor.description or []])


class SnowflakeSession(WarehouseSession):
    """One Snowflake connection: uploads as writes are called, then the statements in one transaction."""

    def __init__(self, con: Any, chunk_rows: int = WRITE_CHUNK_ROWS):
        self.con = con
        self.chunk_rows = chunk_rows
        self._steps: list[Callable[[], None]] = []
        self._staged: list[str] = []
        self._cursors: list[Any] = []

    def quote(self, name: str) -> str:
        # Quoted upper case is what Snowflake resolves an unquoted name to.
        return f'"{name.upper()}"'

    def _query(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        cursor = self.con.cursor()
        try:
            cursor.execute(sql, list(params) if params else None)
            tables = list(_arrow_batches(cursor))
            df = _to_pandas(concat_pieces(tables)) if tables else _empty_result(cursor)
            return _lower_columns(df)
        finally:
            cursor.close()

    def _statement(self, sql: str, params: Sequence[Any] | None = None) -> None:
        cursor = self.con.cursor()
        try:
            cursor.execute(sql, list(params) if params else None)
        finally:
            cursor.close()

    def read_df(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        if self._steps:
            raise RuntimeError(
                "read_df after a write in the same Snowflake transaction: the writes apply when the "
                "`with warehouse.transaction()` block ends; read after the block instead."
            )
        return self._query(sql, params)

    def _apply(self, step: Callable[[], None]) -> None:
        self._steps.append(step)

    def _merge(self, merge: str, new_rows: str, rows: int, updates: bool) -> tuple[int, int]:
        # Snowflake's MERGE answers with its own counts, one column per action taken.
        counts = self._query(merge)
        row = counts.iloc[0].to_dict() if not counts.empty else {}
        return int(row.get("number of rows inserted", 0)), int(row.get("number of rows updated", 0))

    def _ensure_schema(self, schema: str) -> None:
        self._statement(f"create schema if not exists {self.quote(check_identifier(schema, 'Schema'))}")

    def _stage(self, schema: str, df: pd.DataFrame) -> str:
        self._ensure_schema(schema)
        name = f"{STAGE_PREFIX}{uuid.uuid4().hex.upper()}"
        upper = df.rename(columns={c: str(c).upper() for c in df.columns})
        staged = f"{self.quote(schema)}.{self.quote(name)}"
        # Listed before the upload: `write_pandas` creates the table before it loads the files, and a
        # load that fails must still have it dropped by `close`.
        self._staged.append(staged)
        # Looked up on the module at call time, so a test emulator patching it is honoured.
        snowflake.connector.pandas_tools.write_pandas(
            self.con, upper, name, schema=schema.upper(), chunk_size=self.chunk_rows,
            auto_create_table=True, table_type="transient", quote_identifiers=True,
            use_logical_type=True,  # pandas timestamps land as TIMESTAMP_NTZ, not integers
        )
        return staged

    def _create_like(self, schema: str, table: str, source: str) -> None:
        self._statement(
            f"create table if not exists {self.table(schema, table)} as select * from {source} where 1 = 0"
        )

    def dbapi(self) -> Any:
        cursor = self.con.cursor()  # the connector's cursor: execute(sql, params), fetchone, description
        self._cursors.append(cursor)
        return cursor

    def commit(self) -> None:
        """Run the queued statements in one transaction; roll back and re-raise if one fails."""
        if len(self._steps) == 1:
            # One statement is atomic on its own (and fakesnow cannot MERGE inside BEGIN).
            self._steps.pop()()
            return
        if not self._steps:
            return
        self._statement("begin transaction")
        try:
            for step in self._steps:
                step()
        except BaseException:
            self._statement("rollback")
            raise
        self._statement("commit")
        self._steps.clear()

    def close(self) -> None:
        self._steps.clear()
        for cursor in self._cursors:
            cursor.close()
        self._cursors.clear()
        for staged in self._staged:
            try:
                self._statement(f"drop table if exists {staged}")
            except Exception:  # noqa: BLE001 - never hide the error that ended the block
                pass  # a leftover NB_STAGE_* transient table holds only rows already uploaded
        self._staged.clear()


class SnowflakeWarehouse(WarehouseInterface, dg.ConfigurableResource):
    """Snowflake, configured from `SNOWFLAKE_*` (password or key-pair auth)."""

    account: str
    user: str
    warehouse: str
    database: str
    default_schema: str = "NEXTBEST"
    role: str | None = None
    password: str | None = Field(default=None, repr=False)
    private_key_path: str | None = None
    private_key_passphrase: str | None = Field(default=None, repr=False)
    write_chunk_rows: int = WRITE_CHUNK_ROWS
    batch_rows: int = DEFAULT_BATCH_ROWS  # customers per chunk of scoring, routing and drafting
    _kept: Any = PrivateAttr(default=None)  # the connection of a running `kept_open` block

    def _scratch_kind(self) -> str:
        return "transient table"  # no fail-safe copies of rows that live for one run

    def _connect_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "account": self.account, "user": self.user, "warehouse": self.warehouse,
            "database": self.database, "schema": self.default_schema,
            "paramstyle": "qmark",  # `?` placeholders, as on DuckDB
            "application": "NextBest",
            # UTC, as DuckDB's connections: timestamps are UTC (the source contract), and Snowflake's default
            # zone (America/Los_Angeles) would turn a tz-aware value into LA wall time in a TIMESTAMP_NTZ column.
            "session_parameters": {"QUERY_TAG": "nextbest", "TIMEZONE": "UTC"},
        }
        if self.role:
            kwargs["role"] = self.role
        if self.private_key_path:
            key = Path(self.private_key_path).expanduser()
            if not key.is_file():
                raise FileNotFoundError(f"SNOWFLAKE_PRIVATE_KEY_PATH: no private key file at {key}")
            kwargs["private_key_file"] = str(key)
            if self.private_key_passphrase:
                kwargs["private_key_file_pwd"] = self.private_key_passphrase
        elif self.password:
            kwargs["password"] = self.password
        else:
            raise ValueError("Snowflake needs SNOWFLAKE_PASSWORD or SNOWFLAKE_PRIVATE_KEY_PATH (key-pair auth)")
        return kwargs

    @contextmanager
    def connect(self) -> Iterator[Any]:
        """A Snowflake connection (autocommit) for the length of a `with` block: the one `kept_open`
        holds, if its block is running, else a new one."""
        if self._kept is not None:
            yield self._kept
            return
        con = snowflake.connector.connect(**self._connect_kwargs())
        try:
            yield con
        finally:
            con.close()

    @contextmanager
    def kept_open(self) -> Iterator[None]:
        """One connection (one login) for every read, write and transaction in the block, instead of one
        each: the sender claims and settles each chunk in its own transaction. Sessions on it stay
        separate, as a session sends its writes in one `begin ... commit` only when its block ends."""
        if self._kept is not None:  # already inside a kept_open block
            yield
            return
        con = snowflake.connector.connect(**self._connect_kwargs())
        self._kept = con
        try:
            yield
        finally:
            self._kept = None
            con.close()

    @contextmanager
    def transaction(self) -> Iterator[SnowflakeSession]:
        """Writes in the block land together when it ends, or not at all if it raises."""
        with self.connect() as con:
            session = SnowflakeSession(con, self.write_chunk_rows)
            try:
                yield session
                session.commit()
            finally:
                session.close()

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        """Run one statement (`?` placeholders), DDL included, in its own autocommit."""
        with self.connect() as con:
            SnowflakeSession(con)._statement(sql, params)

    def read_df(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        with self.connect() as con:
            return SnowflakeSession(con)._query(sql, params)

    def iter_batches(self, sql: str, batch_size: int = DEFAULT_BATCH_ROWS,
                     params: Sequence[Any] | None = None) -> Iterator[pd.DataFrame]:
        """A query's rows as DataFrames of `batch_size` rows (the last may be shorter), streamed."""
        with self.connect() as con:
            cursor = con.cursor()
            cursor.execute(sql, list(params) if params else None)
            # Snowflake's result chunks have their own size: re-cut them to `batch_size`.
            for table in rebatched(_arrow_batches(cursor), batch_size):
                yield _lower_columns(_to_pandas(table))


def build_snowflake_warehouse() -> SnowflakeWarehouse:
    """The Snowflake resource from `SNOWFLAKE_*`; names every missing variable at once."""
    missing = [name for name in REQUIRED_ENV if not os.environ.get(name)]
    if not (os.environ.get("SNOWFLAKE_PASSWORD") or os.environ.get("SNOWFLAKE_PRIVATE_KEY_PATH")):
        missing.append("SNOWFLAKE_PASSWORD or SNOWFLAKE_PRIVATE_KEY_PATH")
    if missing:
        raise ValueError(f"NEXTBEST_WAREHOUSE=snowflake needs these environment variables set: {', '.join(missing)}")

    def env(name: str) -> dg.EnvVar | None:
        return dg.EnvVar(name) if os.environ.get(name) else None

    optional = {
        "role": env("SNOWFLAKE_ROLE"), "default_schema": env("SNOWFLAKE_SCHEMA"),
        "password": env("SNOWFLAKE_PASSWORD"), "private_key_path": env("SNOWFLAKE_PRIVATE_KEY_PATH"),
        "private_key_passphrase": env("SNOWFLAKE_PRIVATE_KEY_PASSPHRASE"),
    }
    return SnowflakeWarehouse(
        account=dg.EnvVar("SNOWFLAKE_ACCOUNT"), user=dg.EnvVar("SNOWFLAKE_USER"),
        warehouse=dg.EnvVar("SNOWFLAKE_WAREHOUSE"), database=dg.EnvVar("SNOWFLAKE_DATABASE"),
        batch_rows=batch_rows_from_env(),
        **{key: value for key, value in optional.items() if value is not None},
    )

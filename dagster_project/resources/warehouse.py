"""The warehouse resource Python assets use to read and write tables.

DuckDB lets one process write a file at a time, so connections are opened per
step and closed straight after (a sensor or `dagster dev` never holds the file
open), and the pipeline runs in process (see `definitions.py`).
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import dagster as dg
import duckdb

from dagster_project.project import duckdb_path

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


class DuckDBWarehouse(dg.ConfigurableResource):
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


def build_warehouse() -> DuckDBWarehouse:
    """The warehouse resource, its path from `NEXTBEST_DUCKDB_PATH` (defaulted in project.py)."""
    # The variable always exists by now (project.py sets its default), so EnvVar resolves.
    assert "NEXTBEST_DUCKDB_PATH" in os.environ
    return DuckDBWarehouse(path=dg.EnvVar("NEXTBEST_DUCKDB_PATH"))

"""Run the dbt project against a scratch DuckDB file and read the marts back."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb

from tests.warehouse import handbuilt

REPO_ROOT = Path(__file__).resolve().parents[2]
DBT_DIR = REPO_ROOT / "dbt"


@dataclass
class Warehouse:
    """A DuckDB file plus the way to run dbt against it and read the marts back."""

    path: Path
    work_dir: Path

    def dbt(self, *args: str, as_of: date, dbt_vars: dict | None = None) -> subprocess.CompletedProcess:
        """Run a dbt command (e.g. "build") against this file at `as_of` (plus any other `dbt_vars`)."""
        exe = shutil.which("dbt")
        assert exe, "dbt is not on PATH"
        env = {
            **os.environ,
            "NEXTBEST_DUCKDB_PATH": str(self.path),
            "NEXTBEST_DBT_TARGET": "duckdb",
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "DO_NOT_TRACK": "1",
        }
        cmd = [
            exe, *args,
            "--project-dir", str(DBT_DIR), "--profiles-dir", str(DBT_DIR),
            "--target-path", str(self.work_dir / "target"),
            "--log-path", str(self.work_dir / "logs"),
            "--vars", json.dumps({"as_of": as_of.isoformat(), **(dbt_vars or {})}),
        ]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)

    def build(self, as_of: date, *extra: str) -> subprocess.CompletedProcess:
        """`dbt build` at `as_of`; fails the test with dbt's output if anything fails."""
        result = self.dbt("build", *extra, as_of=as_of)
        assert result.returncode == 0, f"dbt build failed:\n{result.stdout[-8000:]}\n{result.stderr[-2000:]}"
        return result

    def copy(self, tmp_path_factory, name: str) -> "Warehouse":
        """A copy of this warehouse's file in a new folder, to move on without touching this one."""
        other = new_warehouse(tmp_path_factory, name)
        shutil.copyfile(self.path, other.path)
        return other

    def rows(self, sql: str, *params) -> list[dict]:
        """Query the warehouse (read-only) and return rows as dicts."""
        with duckdb.connect(str(self.path), read_only=True) as con:
            cur = con.execute(sql, list(params))
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]

    def segments(self, prefix: str = "HB-") -> dict[str, set[str]]:
        """Current segments of the customers whose id starts with `prefix`, by id suffix."""
        out: dict[str, set[str]] = {}
        for r in self.rows("select customer_id from analytics.customer_context "
                           "where customer_id like ?", prefix + "%"):
            out[r["customer_id"][len(prefix):]] = set()
        for r in self.rows("select customer_id, segment from analytics.customer_segments "
                           "where customer_id like ?", prefix + "%"):
            out[r["customer_id"][len(prefix):]].add(r["segment"])
        return out

    def context(self, customer_id: str) -> dict:
        """The customer's customer_context row."""
        (row,) = self.rows("select * from analytics.customer_context where customer_id = ?",
                           customer_id)
        return row

    def tags(self, customer_id: str) -> dict:
        """The customer's customer_tags row."""
        (row,) = self.rows("select * from analytics.customer_tags where customer_id = ?",
                           customer_id)
        return row


def new_warehouse(tmp_path_factory, name: str) -> Warehouse:
    """An empty warehouse in its own temporary folder (dbt's target and logs go there too)."""
    work_dir = tmp_path_factory.mktemp(name)
    return Warehouse(path=work_dir / "warehouse.duckdb", work_dir=work_dir)


def load_handbuilt(warehouse: Warehouse, as_of: date, prefix: str = "HB-") -> None:
    """(Re)load the hand-built customers as they stand at the end of `as_of`."""
    with duckdb.connect(str(warehouse.path)) as con:
        handbuilt.load(con, as_of, prefix)

"""Run in the fakesnow virtualenv (see tests/fakesnow_venv.py), not collected by pytest.

    python snowflake_target_run.py SOURCE.duckdb OUT_DIR AS_OF

Copies `raw.*` and `nextbest.*` from a DuckDB warehouse into an emulated Snowflake
account, runs `dbt build` on the project's `snowflake` target (dbt-snowflake, the
real adapter and its macros) and writes each mart to OUT_DIR/<mart>.parquet, plus
dbt's run_results.json.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import duckdb
import fakesnow
import snowflake.connector
import snowflake.connector.pandas_tools

REPO = Path(__file__).resolve().parents[2]
DATABASE = "NEXTBEST_TEST"
MARTS = ("customer_context", "customer_segments", "customer_segment_history", "customer_tags",
         "customer_features", "customer_labels", "customer_service_context", "campaign_performance")


def load(source: str, con) -> None:
    """Copy the source contract (and NextBest's own records) into Snowflake, upper-case names."""
    src = duckdb.connect(source, read_only=True)
    con.cursor().execute(f"create database if not exists {DATABASE}")
    for schema in ("raw", "nextbest"):
        con.cursor().execute(f"create schema if not exists {DATABASE}.{schema}")
        tables = src.execute("select table_name from information_schema.tables where table_schema = ? "
                             "order by 1", [schema]).fetchall()
        for (table,) in tables:
            df = src.execute(f'select * from "{schema}"."{table}"').df()
            df.columns = [c.upper() for c in df.columns]
            # looked up at call time: fakesnow.patch() swaps the module's function
            snowflake.connector.pandas_tools.write_pandas(con, df, table.upper(), database=DATABASE, schema=schema.upper(),
                         auto_create_table=True, use_logical_type=True)
    src.close()


def main(source: str, out: str, as_of: str) -> int:
    from dbt.cli.main import dbtRunner

    out_dir = Path(out)
    os.environ.update({"NEXTBEST_DBT_TARGET": "snowflake", "SNOWFLAKE_ACCOUNT": "fake", "SNOWFLAKE_USER": "fake",
                       "SNOWFLAKE_PASSWORD": "fake", "SNOWFLAKE_WAREHOUSE": "fake", "SNOWFLAKE_DATABASE": DATABASE,
                       "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DO_NOT_TRACK": "1"})
    with fakesnow.patch():
        con = snowflake.connector.connect(account="fake", user="fake", password="fake", database=DATABASE)
        load(source, con)
        result = dbtRunner().invoke([
            "build", "--project-dir", str(REPO / "dbt"), "--profiles-dir", str(REPO / "dbt"),
            "--target", "snowflake", "--target-path", str(out_dir / "target"), "--log-path", str(out_dir / "logs"),
            "--vars", json.dumps({"as_of": as_of}), "--quiet",
        ])
        shutil.copyfile(out_dir / "target" / "run_results.json", out_dir / "run_results.json")
        if not result.success:
            return 1
        cur = con.cursor()
        for mart in MARTS:
            df = cur.execute(f"select * from {DATABASE}.ANALYTICS.{mart.upper()}").fetch_pandas_all()
            df.columns = [c.lower() for c in df.columns]
            df.to_parquet(out_dir / f"{mart}.parquet")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))

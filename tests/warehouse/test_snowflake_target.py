"""The dbt project on its `snowflake` target gives the same marts as on DuckDB.

A small simulated store with the hand-built customers mixed in is built twice: with
dbt-duckdb, and with dbt-snowflake (the real adapter and its macros) against fakesnow,
a Snowflake emulator, in its own virtualenv (tests/fakesnow_venv.py). Every model and
dbt test must succeed on Snowflake, and every mart must hold the same rows on both
engines (values compared after normalising how each driver hands them back: Decimal
vs float, None vs NaN, timestamp types).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from tests.fakesnow_venv import ensure_venv
from tests.warehouse import handbuilt
from tests.warehouse.dbt_warehouse import REPO_ROOT, load_handbuilt, new_warehouse

simulator = pytest.importorskip("dagster_project.ingest.simulator")

D1 = handbuilt.ANCHOR
RUNNER = Path(__file__).with_name("snowflake_target_run.py")
MARTS = ("customer_context", "customer_segments", "customer_segment_history", "customer_tags",
         "customer_features", "customer_labels", "customer_service_context", "campaign_performance")


@pytest.fixture(scope="module")
def both_engines(tmp_path_factory):
    """(DuckDB warehouse, folder of the Snowflake run's marts), built from the same raw data."""
    wh = new_warehouse(tmp_path_factory, "snowflake_target")
    with duckdb.connect(str(wh.path)) as con:
        simulator.simulate(con, customers=250, months=8, seed=11, end_date=D1)
    load_handbuilt(wh, D1)
    source = wh.work_dir / "source.duckdb"
    source.write_bytes(wh.path.read_bytes())  # raw data only, before dbt adds its schemas
    wh.build(D1)
    out = tmp_path_factory.mktemp("snowflake_marts")
    python = ensure_venv()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "NEXTBEST_DUCKDB_PATH": str(out / "unused.duckdb")}
    run = subprocess.run([str(python), str(RUNNER), str(source), str(out), D1.isoformat()],
                         capture_output=True, text=True, timeout=900, env=env, cwd=REPO_ROOT)
    results = out / "run_results.json"
    failed = []
    if results.exists():
        failed = [(r["unique_id"], r["status"], r.get("message")) for r in json.loads(results.read_text())["results"]
                  if r["status"] not in ("success", "pass")]
    assert run.returncode == 0 and not failed, (
        f"dbt build on the snowflake target failed: {failed[:10]}\n{run.stdout[-4000:]}\n{run.stderr[-4000:]}")
    return wh, out


def _plain(value):
    """One value as both drivers can agree on it."""
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (Decimal, float)):
        return round(float(value), 6)
    if isinstance(value, (pd.Timestamp, datetime)):
        return pd.Timestamp(value).tz_localize(None).isoformat() if pd.Timestamp(value).tzinfo else \
            pd.Timestamp(value).isoformat()
    if isinstance(value, date):
        return pd.Timestamp(value).isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return _plain(value.item())
    if value is pd.NA:
        return None
    return value


def _rows(df: pd.DataFrame) -> list[tuple]:
    rows = [tuple(_plain(v) for v in row) for row in df.itertuples(index=False, name=None)]
    return sorted(rows, key=repr)


@pytest.mark.parametrize("mart", MARTS)
def test_mart_is_the_same_on_snowflake_and_duckdb(both_engines, mart):
    wh, out = both_engines
    with duckdb.connect(str(wh.path), read_only=True) as con:
        on_duckdb = con.execute(f"select * from analytics.{mart}").df()
    on_snowflake = pd.read_parquet(out / f"{mart}.parquet")
    assert list(on_snowflake.columns) == list(on_duckdb.columns)
    assert len(on_duckdb) > 0, f"{mart} is empty: the comparison would prove nothing"
    duck_rows, snow_rows = _rows(on_duckdb), _rows(on_snowflake[on_duckdb.columns])
    assert len(snow_rows) == len(duck_rows)
    differing = [(d, s) for d, s in zip(duck_rows, snow_rows) if d != s]
    assert not differing, f"{mart}: {len(differing)} rows differ, e.g.\nduckdb:    {differing[0][0]}\n" \
                          f"snowflake: {differing[0][1]}"

"""Without var as_of the marts are "current" at today's date in UTC - the rule the Python
assets follow (dagster_project/project.py) - whatever the time zone of the machine or the
warehouse session: customer_scores() finds the scores the scoring asset wrote for today, and
the scoring point of customer_features is the day the propensity models read."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import datetime, timezone

from tests.warehouse.dbt_warehouse import DBT_DIR


def test_the_default_as_of_is_todays_utc_date(handbuilt_warehouse, tmp_path_factory):
    wh = handbuilt_warehouse.copy(tmp_path_factory, "as-of-default")
    # a zone whose date is not the UTC date right now (UTC+14 from 10:00 UTC, UTC-12 before 12:00)
    zone = "Pacific/Kiritimati" if datetime.now(timezone.utc).hour >= 10 else "Etc/GMT+12"
    env = {**os.environ, "TZ": zone, "NEXTBEST_DUCKDB_PATH": str(wh.path), "NEXTBEST_DBT_TARGET": "duckdb",
           "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DO_NOT_TRACK": "1"}
    before = datetime.now(timezone.utc).date()
    result = subprocess.run(
        [shutil.which("dbt"), "run", "--select", "customer_context",
         "--project-dir", str(DBT_DIR), "--profiles-dir", str(DBT_DIR),
         "--target-path", str(wh.work_dir / "target"), "--log-path", str(wh.work_dir / "logs")],
        env=env, capture_output=True, text=True, timeout=600)
    after = datetime.now(timezone.utc).date()
    assert result.returncode == 0, result.stdout[-4000:]
    days = {r["as_of_date"] for r in wh.rows("select distinct as_of_date from analytics.customer_context")}
    assert len(days) == 1 and days <= {before, after}, (zone, days, before)

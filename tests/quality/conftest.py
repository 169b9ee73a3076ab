"""A small simulated store, built once per session and copied into each test's own DuckDB file.

The store ends yesterday (UTC) and NEXTBEST_AS_OF is set to today, so freshness,
"not in the future" and the anomaly windows all see it as current.
"""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone

import duckdb
import pytest

from dagster_project.ingest.simulator import simulate

TODAY = datetime.now(timezone.utc).date()


@pytest.fixture(scope="session")
def store_template(tmp_path_factory):
    """The simulated store's DuckDB file (do not write to it; use `store`)."""
    path = tmp_path_factory.mktemp("quality") / "template.duckdb"
    con = duckdb.connect(str(path))
    simulate(con, customers=150, months=3, seed=11, end_date=TODAY)
    # A store this small has quiet days (the newsletter is fortnightly): one open and one login
    # yesterday keep the 3-day feeds fresh whatever day the tests run on.
    noon = yesterday_at(12)
    con.execute("insert into raw.email_events select 'E_TOPUP', customer_id, campaign_id, message_id, 'open', ? "
                "from raw.email_events where event_type = 'sent' order by occurred_at desc limit 1", [noon])
    con.execute("insert into raw.portal_events select 'PE_TOPUP', customer_id, 'login', ?, '{}' "
                "from raw.customers order by customer_id limit 1", [noon])
    con.close()
    return path


@pytest.fixture
def store(store_template, duckdb_file, monkeypatch):
    """A copy of the simulated store at NEXTBEST_DUCKDB_PATH, current as of today."""
    shutil.copy(store_template, duckdb_file)
    monkeypatch.setenv("NEXTBEST_AS_OF", TODAY.isoformat())
    return duckdb_file


def yesterday_at(hour: int) -> datetime:
    """A timestamp on the last complete day (what the anomaly checks look at)."""
    return datetime.combine(TODAY - timedelta(days=1), datetime.min.time()) + timedelta(hours=hour)

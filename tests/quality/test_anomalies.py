"""Anomaly checks: a feed that dropped and a segment that jumped overnight are named with their numbers."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import duckdb
import pytest

from dagster_project.ingest import contract
from dagster_project.quality.anomalies import event_volume, score_shift, segment_change
from dagster_project.quality.suites import load_anomaly_config

DAY = date(2026, 3, 9)
CONFIG = load_anomaly_config()


@pytest.fixture
def con(tmp_path):
    con = duckdb.connect(str(tmp_path / "anomaly.duckdb"))
    contract.create_raw_schema(con)
    yield con
    con.close()


def _portal_events(con, per_day: int, last_day: int):
    """`per_day` logins on each of the 28 days before DAY, `last_day` on DAY."""
    start = datetime.combine(DAY - timedelta(days=28), datetime.min.time())
    con.execute("""
        insert into raw.portal_events
        select 'E' || d || '-' || i, 'C1', 'login', ?::timestamp + to_days(d::int) + to_minutes(i::int), '{}'
        from range(28) t(d), range(?) u(i)""", [start, per_day])
    con.execute("""
        insert into raw.portal_events
        select 'T' || i, 'C1', 'login', ?::timestamp + to_minutes(i::int), '{}' from range(?) u(i)""",
                [datetime.combine(DAY, datetime.min.time()), last_day])


def test_day_below_half_the_trailing_median_fails(con):
    _portal_events(con, per_day=40, last_day=12)
    result = {o.target: o for o in event_volume(con, CONFIG["event_volume"], day=DAY)}
    portal = result["raw.portal_events"]
    assert portal.failed and portal.severity == "WARN"
    assert f"12 rows on {DAY}, below 50% of the trailing 28-day median (40 rows/day); 30% of a usual day" \
        in portal.message
    assert result["raw.orders"].status == "skipped" and "too little traffic" in result["raw.orders"].message


def test_normal_day_passes(con):
    _portal_events(con, per_day=40, last_day=35)
    portal = {o.target: o for o in event_volume(con, CONFIG["event_volume"], day=DAY)}["raw.portal_events"]
    assert portal.status == "passed"


def _segments(con, yesterday: dict[str, int], today: dict[str, int], as_of=DAY):
    con.execute("create schema analytics")
    con.execute("create table analytics.customer_segments (customer_id varchar, segment varchar, reason varchar, "
                "as_of_date date)")
    con.execute("create table analytics.customer_segment_history (membership_id varchar, customer_id varchar, "
                "segment varchar, entered_at date, exited_at date)")
    for segment, n in yesterday.items():
        con.execute("insert into analytics.customer_segment_history select ? || i, 'C' || i, ?, ?, null "
                    "from range(?) t(i)", [segment, segment, as_of - timedelta(days=5), n])
    for segment, n in today.items():
        con.execute("insert into analytics.customer_segments select 'C' || i, ?, 'rule', ? from range(?) t(i)",
                    [segment, as_of, n])


def test_segment_tripling_overnight_fails_and_names_the_segment(con):
    _segments(con, {"at_risk": 100, "win_back": 80}, {"at_risk": 310, "win_back": 90})
    result = {o.name: o for o in segment_change(con, CONFIG["segment_change"])}
    at_risk = result["segment_size_change:at_risk"]
    assert at_risk.blocking
    assert f"at_risk: 100 customers before {DAY}, 310 now (x3.10; allowed x0.50 to x2.00)" in at_risk.message
    assert result["segment_size_change:win_back"].status == "passed"


def test_first_run_without_history_skips(con):
    _segments(con, {}, {"at_risk": 100})
    [only] = segment_change(con, CONFIG["segment_change"])
    assert only.status == "skipped" and "first run" in only.message


def test_score_shift_skips_until_scores_exist(con):
    [only] = score_shift(con, CONFIG["score_shift"])
    assert only.status == "skipped" and "customer_scores does not exist yet" in only.message

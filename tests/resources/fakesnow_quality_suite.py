"""The data-quality checks and the lift on the Snowflake resource, against fakesnow, beside DuckDB.

Run by `test_snowflake.py` in the fakesnow virtualenv, like `fakesnow_suite.py`. The
same small raw.customers and raw.orders (created with the contract's column types, so
Snowflake reports TEXT, NUMBER(12,2) and TIMESTAMP_NTZ) go into fakesnow and into a
DuckDB file, with a few bad rows; `validate_suite` must reach the same outcomes on both
and catch the bad rows on Snowflake. A feed that dropped (raw.portal_events), a segment
that tripled overnight, scores that shifted, stale sources and a campaign_performance
mart go into both as well: the anomaly and freshness checks, `data_quality_summary` and
`campaign_lift` must say the same on both engines.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any, Callable, Iterator

import dagster as dg
import fakesnow
import numpy as np
import pandas as pd
import pytest
from fakesnow.cursor import FakeSnowflakeCursor

from dagster_project.delivery.assets import campaign_lift
from dagster_project.models.propensity_assets import SCORES_DDL
from dagster_project.quality import freshness
from dagster_project.quality.anomalies import REFERENCE_TABLE, event_volume, score_shift, segment_change
from dagster_project.quality.checks import data_quality_summary
from dagster_project.quality.freshness import freshness_outcomes
from dagster_project.quality.runner import GX_MAX_ROWS_ENV, _gx_frame, read_columns, table_columns, validate_suite
from dagster_project.quality.suites import load_anomaly_config, suite_for
from dagster_project.quality.summary import collect_outcomes
from dagster_project.resources.snowflake import SnowflakeWarehouse
from dagster_project.resources.warehouse import DuckDBWarehouse, build_warehouse
from tests.resources.fakesnow_suite import ENV, _fetch_arrow_batches

NOW = datetime(2026, 6, 1, 12)
CUSTOMERS = 12
# The contract's types (dagster_project/ingest/contract.py), in DDL both engines take.
TABLES = {
    "customers": "customer_id varchar, email varchar, first_name varchar, created_at timestamp, country varchar, "
                 "timezone varchar, marketing_opt_in boolean, channel_preference varchar",
    "subscriptions": "subscription_id varchar, customer_id varchar",
    "orders": "order_id varchar, customer_id varchar, subscription_id varchar, ordered_at timestamp, "
              "status varchar, total decimal(12,2), discount_code varchar, shipped_at timestamp, "
              "delivered_at timestamp",
}


def store() -> dict[str, pd.DataFrame]:
    """Raw rows with three bad ones: an unknown status, an orphaned customer_id, a blank email."""
    ids = [f"C{k:03d}" for k in range(CUSTOMERS)]
    customers = pd.DataFrame({
        "customer_id": ids, "email": [None if k == 3 else f"c{k}@example.com" for k in range(CUSTOMERS)],
        "first_name": [f"Name{k}" for k in range(CUSTOMERS)],
        "created_at": [datetime(2025, 1, 1) + timedelta(days=k) for k in range(CUSTOMERS)],
        "country": "US", "timezone": "UTC", "marketing_opt_in": [k % 4 != 1 for k in range(CUSTOMERS)],
        "channel_preference": "email"})
    subscriptions = pd.DataFrame({"subscription_id": [f"S{c}" for c in ids], "customer_id": ids})
    orders = pd.DataFrame([{
        "order_id": f"O{k:04d}", "customer_id": "C999" if k == 7 else ids[k % CUSTOMERS],
        "subscription_id": f"S{ids[k % CUSTOMERS]}" if k % 2 else None,
        "ordered_at": datetime(2026, 3, 1) + timedelta(hours=9 * k),
        "status": "teleported" if k == 11 else ("skipped" if k % 5 == 0 else "fulfilled"),
        "total": 0.0 if k % 5 == 0 else 24.5 + k % 3,
        "discount_code": None, "shipped_at": datetime(2026, 3, 2) + timedelta(hours=9 * k),
        "delivered_at": datetime(2026, 3, 4) + timedelta(hours=9 * k)} for k in range(30)])
    return {"customers": customers, "subscriptions": subscriptions, "orders": orders}


def load(warehouse) -> None:
    warehouse.execute("create schema if not exists raw")
    for table, frame in store().items():
        warehouse.execute(f"create table raw.{table} ({TABLES[table]})")
        warehouse.write_df("raw", table, frame)


@contextmanager
def both_engines(monkeypatch, tmp_path, fill: Callable[[Any], None]) -> Iterator[tuple[SnowflakeWarehouse,
                                                                                        DuckDBWarehouse]]:
    """(Snowflake resource on fakesnow, DuckDB resource), each filled by `fill(warehouse)`."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(FakeSnowflakeCursor, "fetch_arrow_batches", _fetch_arrow_batches, raising=False)
    duck = DuckDBWarehouse(path=str(tmp_path / "w.duckdb"))
    fill(duck)
    with fakesnow.patch():
        snow = build_warehouse()
        assert isinstance(snow, SnowflakeWarehouse)
        snow = snow.process_config_and_initialize()
        fill(snow)
        yield snow, duck


@pytest.fixture
def engines(monkeypatch, tmp_path):
    """(Snowflake resource on fakesnow, DuckDB resource), the same raw tables in each."""
    with both_engines(monkeypatch, tmp_path, load) as pair:
        yield pair


def verdicts(result) -> list[tuple[str, str, str]]:
    return [(o.name, o.status, o.severity) for o in result.outcomes]


@pytest.mark.parametrize("table", ["raw.customers", "raw.orders"])
def test_a_suite_on_snowflake_reaches_what_it_reaches_on_duckdb(engines, table):
    snow, duck = engines
    suite = suite_for(table)
    on_snowflake = validate_suite(snow, suite, NOW)
    on_duckdb = validate_suite(duck, suite, NOW)
    assert on_snowflake.table == on_duckdb.table == table
    assert on_snowflake.row_count == on_duckdb.row_count > 0
    assert verdicts(on_snowflake) == verdicts(on_duckdb)
    # The contract types pass in Snowflake's spellings (TEXT, NUMBER(12,2), TIMESTAMP_NTZ, BOOLEAN).
    types = {o.name: o for o in on_snowflake.outcomes}["column_types"]
    assert types.status == "passed", types.message


def test_the_bad_rows_are_caught_on_snowflake(engines):
    snow, duck = engines
    orders = {o.name: o for o in validate_suite(snow, suite_for("raw.orders"), NOW).outcomes}
    customers = {o.name: o for o in validate_suite(snow, suite_for("raw.customers"), NOW).outcomes}
    status = orders["status_accepted_values"]
    assert status.blocking and "1 of 30 rows" in status.message and "'teleported'" in status.message
    assert [e["order_id"] for e in status.examples] == ["O0011"]
    orphan = orders["customer_id_references_customers"]
    assert orphan.blocking and orphan.message.startswith("1 row(s) of raw.orders have a customer_id")
    assert [e["order_id"] for e in orphan.examples] == ["O0007"]  # example rows keep lower-case names
    assert orders["subscription_id_references_subscriptions"].status == "passed"
    email = customers["email_not_null"]
    assert email.failed and email.severity == "WARN" and not email.blocking
    assert [o.name for o in customers.values() if o.failed] == ["email_not_null"]
    assert "TEXT" in table_columns(snow, "raw.orders")["status"]


def test_a_big_table_is_checked_on_the_same_rows_on_both_engines(engines, monkeypatch):
    """Above NEXTBEST_GX_MAX_ROWS: the newest rows by `recent_by`, or (without one) the hash-ordered
    sample, are the same rows on both engines, so the outcomes and messages match."""
    snow, duck = engines
    monkeypatch.setenv(GX_MAX_ROWS_ENV, "10")
    by_time = suite_for("raw.orders")
    for suite in (by_time, replace(by_time, recent_by="")):
        picked = []
        for warehouse in (snow, duck):
            with warehouse.transaction() as tx:
                columns = table_columns(tx, "raw.orders")
                frame, _ = _gx_frame(tx, suite, "raw.orders", columns, read_columns(suite, columns), 30)
            picked.append(sorted(frame["order_id"]))
        assert picked[0] == picked[1] and len(picked[0]) == 10
        on_snowflake = validate_suite(snow, suite, NOW)
        on_duckdb = validate_suite(duck, suite, NOW)
        assert verdicts(on_snowflake) == verdicts(on_duckdb)
        for a, b in zip(on_snowflake.outcomes, on_duckdb.outcomes):
            if a.kind == "expectation":
                assert a.message == b.message
    assert "checked on a sample of 10 of 30 rows" in on_snowflake.outcomes[2].message
    assert "checked on the newest 10 of 30 rows by ordered_at" in validate_suite(snow, by_time, NOW).outcomes[2].message


# --- anomalies, freshness, the summary and the lift -------------------------------------------

DAY = date(2026, 5, 31)  # the last complete day before NOW
ANOMALIES = load_anomaly_config()
LIMITS = {"orders": {"warn": timedelta(days=2), "error": timedelta(days=7)},
          "portal_events": {"error": timedelta(days=3)}, "payments": {"error": timedelta(days=7)}}
HISTORY = {
    "raw.portal_events": "event_id varchar, customer_id varchar, event_type varchar, occurred_at timestamp, "
                         "properties varchar",
    "analytics.customer_segments": "customer_id varchar, segment varchar, reason varchar, as_of_date date",
    "analytics.customer_segment_history": "membership_id varchar, customer_id varchar, segment varchar, "
                                          "entered_at date, exited_at date",
    "analytics.campaign_performance": "playbook_id varchar, goal varchar, campaign_id varchar, control_arm varchar, "
                                      "window_complete boolean, treated_customers bigint, "
                                      "treated_conversions bigint, control_customers bigint, "
                                      "control_conversions bigint",
}


def history() -> dict[str, pd.DataFrame]:
    """40 logins a day for 28 days, then 12; a segment tripling overnight; two playbooks' campaigns."""
    start = datetime.combine(DAY - timedelta(days=28), datetime.min.time())
    logins = [start + timedelta(days=d, minutes=i) for d in range(28) for i in range(40)]
    logins += [datetime.combine(DAY, datetime.min.time()) + timedelta(minutes=i) for i in range(12)]
    portal = pd.DataFrame({"event_id": [f"PE{k}" for k in range(len(logins))], "customer_id": "C001",
                           "event_type": "login", "occurred_at": logins, "properties": "{}"})
    # Dates as Timestamps: fakesnow's write_pandas would store a date object as text.
    as_of, entered = pd.Timestamp(DAY + timedelta(days=1)), pd.Timestamp(DAY - timedelta(days=5))
    segments = pd.DataFrame([{"customer_id": f"C{i}", "segment": segment, "reason": "rule", "as_of_date": as_of}
                             for segment, n in (("at_risk", 310), ("win_back", 90)) for i in range(n)])
    segment_history = pd.DataFrame([{"membership_id": f"{segment}{i}", "customer_id": f"C{i}", "segment": segment,
                                     "entered_at": entered, "exited_at": pd.NaT}
                                    for segment, n in (("at_risk", 100), ("win_back", 80)) for i in range(n)])
    performance = pd.DataFrame([
        ("expansion", "expansion_conversion", "e1", "holdout", True, 1000, 300, 250, 25),
        ("expansion", "expansion_conversion", "e2", "holdout", True, 1000, 300, 250, 25),
        ("expansion", "expansion_conversion", "e2", "global_holdout", True, 1000, 300, 100, 10),
        ("expansion", "expansion_conversion", "e3", "holdout", False, 1000, 900, 250, 0),
        ("win_back", "reactivation", "w1", "holdout", True, 400, 40, 100, 10),
    ], columns=["playbook_id", "goal", "campaign_id", "control_arm", "window_complete", "treated_customers",
                "treated_conversions", "control_customers", "control_conversions"])
    return {"raw.portal_events": portal, "analytics.customer_segments": segments,
            "analytics.customer_segment_history": segment_history, "analytics.campaign_performance": performance}


def plant_scores(warehouse, p_churn: np.ndarray) -> None:
    """nextbest.customer_scores with one churn score per customer (other scores null), as scoring writes it."""
    warehouse.execute("create schema if not exists nextbest")
    warehouse.execute(SCORES_DDL)
    with warehouse.transaction() as tx:
        tx.write_df("nextbest", "customer_scores", pd.DataFrame({
            "customer_id": [f"C{i}" for i in range(len(p_churn))], "as_of_date": pd.Timestamp(DAY),
            "p_churn": p_churn, "churn_model_version": "churn-v1", "scored_at": pd.Timestamp(NOW)}), mode="replace")


@pytest.fixture
def stores(engines, monkeypatch):
    """`engines` with the history above in both, as of NOW."""
    monkeypatch.setenv("NEXTBEST_AS_OF", (DAY + timedelta(days=1)).isoformat())
    # The dbt sources' freshness limits, fixed here rather than read from a parsed manifest.
    monkeypatch.setattr(freshness, "dbt_source_freshness", lambda: LIMITS)
    for warehouse in engines:
        for schema in ("raw", "analytics"):
            warehouse.execute(f"create schema if not exists {schema}")
        for table, frame in history().items():
            warehouse.execute(f"create table {table} ({HISTORY[table]})")
            warehouse.write_df(*table.split("."), frame)
    return engines


def materialized(asset, warehouse) -> dict:
    """The metadata values of one materialization of `asset` on `warehouse`."""
    result = dg.materialize([asset], resources={"warehouse": warehouse}, instance=dg.DagsterInstance.ephemeral())
    assert result.success
    [event] = result.get_asset_materialization_events()
    return {key: value.value for key, value in event.materialization.metadata.items()}


def said(outcomes) -> list[tuple[str, str, str, str, str]]:
    return [(o.target, o.name, o.severity, o.status, o.message) for o in outcomes]


def test_anomaly_and_freshness_checks_say_the_same_on_both_engines(stores):
    snow, duck = stores
    volume = said(event_volume(snow, ANOMALIES["event_volume"], day=DAY))
    assert volume == said(event_volume(duck, ANOMALIES["event_volume"], day=DAY))
    portal = {target: (status, message) for target, _, _, status, message in volume}["raw.portal_events"]
    assert portal == ("failed", f"raw.portal_events: 12 rows on {DAY}, below 50% of the trailing 28-day median "
                                "(40 rows/day); 30% of a usual day")

    segments = said(segment_change(snow, ANOMALIES["segment_change"]))
    assert segments == said(segment_change(duck, ANOMALIES["segment_change"]))
    at_risk = {name: (status, message) for _, name, _, status, message in segments}["segment_size_change:at_risk"]
    assert at_risk == ("failed", f"at_risk: 100 customers before {DAY + timedelta(days=1)}, 310 now "
                                 "(x3.10; allowed x0.50 to x2.00)")

    fresh = said(freshness_outcomes(snow))
    assert fresh == said(freshness_outcomes(duck))
    by_source = {target: (severity, status) for target, _, severity, status, _ in fresh}
    # No payments at all: a source this store may not have, reported but not blocking.
    assert by_source == {"raw.orders": ("ERROR", "failed"), "raw.portal_events": ("ERROR", "passed"),
                         "raw.payments": ("WARN", "failed")}


def test_score_shift_records_its_reference_and_warns_alike_on_both_engines(stores):
    snow, duck = stores
    baseline = np.random.default_rng(0).beta(2, 8, 400)
    config = ANOMALIES["score_shift"]
    for warehouse in stores:
        plant_scores(warehouse, baseline)
    first = [said(score_shift(w, config, record=True)) for w in stores]
    assert first[0] == first[1]
    churn = {name: message for _, name, _, _, message in first[0]}["score_distribution_shift:p_churn"]
    assert "first scores of churn-v1 (400 customers, as of 2026-05-31); recorded now as its reference" in churn
    references = [w.read_df(f"select score, model_version, as_of_date, customers, edges, shares "
                            f"from {REFERENCE_TABLE}") for w in stores]
    assert len(references[0]) == 1
    pd.testing.assert_frame_equal(references[0].astype(str), references[1].astype(str))

    for warehouse in stores:
        plant_scores(warehouse, np.clip(baseline + 0.3, 0, 1))
    shifted = [said(score_shift(w, config, record=True)) for w in stores]
    assert shifted[0] == shifted[1]
    _, _, severity, status, message = {o[1]: o for o in shifted[0]}["score_distribution_shift:p_churn"]
    assert (severity, status) == ("WARN", "failed") and message.startswith("p_churn PSI ")
    assert len(snow.read_df(f"select * from {REFERENCE_TABLE}")) == 1, "a known version is not recorded again"


def test_data_quality_summary_says_the_same_on_both_engines(stores):
    snow, duck = stores
    outcomes = [collect_outcomes(w) for w in stores]
    assert [(o.target, o.name, o.severity, o.status) for o in outcomes[0]] == \
        [(o.target, o.name, o.severity, o.status) for o in outcomes[1]]
    names = {(o.target, o.name): o for o in outcomes[0]}
    assert names[("raw.portal_events", "daily_volume")].failed
    assert names[("analytics.customer_segments", "segment_size_change:at_risk")].blocking
    assert names[("raw.orders", "status_accepted_values")].blocking

    on_snowflake, on_duckdb = (materialized(data_quality_summary, w) for w in stores)
    assert on_snowflake["checks_evaluated"] == on_duckdb["checks_evaluated"] == len(outcomes[0])
    assert on_snowflake["blocking_failures"] == on_duckdb["blocking_failures"] >= 3
    assert on_snowflake["headline"] == on_duckdb["headline"]
    assert "the check could not run" not in on_snowflake["summary"]


def test_campaign_lift_is_the_same_on_both_engines(stores):
    on_snowflake, on_duckdb = (materialized(campaign_lift, w) for w in stores)
    on_snowflake.pop("lift_chart", None), on_duckdb.pop("lift_chart", None)  # PNG bytes, when matplotlib is there
    assert on_snowflake == on_duckdb
    assert (on_snowflake["campaigns"], on_snowflake["finished_campaigns"]) == (4, 3)
    table = on_snowflake["lift_by_playbook"]
    assert "| expansion | expansion_conversion | 2 | 2,000 | 500 | 30.0% | 10.0% | +20.0 |" in table
    assert "| win_back | reactivation | 1 | 400 | 100 | 10.0% | 10.0% | +0.0 |" in table


def test_doctor_checks_snowflake_when_it_is_the_warehouse(stores, capsys):
    import argparse

    from dagster_project.quality.commands import register

    parser = argparse.ArgumentParser(prog="nextbest")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["doctor"])
    assert args.func(args) == 1  # the bad orders and the tripled segment block
    out = capsys.readouterr().out
    assert out.startswith("Data-quality checks on Snowflake nextbest_db (acme-test)")
    assert "FAIL (blocking)  ERROR segment_size_change:at_risk" in out
    assert "FAIL (warning)   WARN  daily_volume" in out

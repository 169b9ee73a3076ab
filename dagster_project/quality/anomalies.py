"""Anomaly checks: a feed that dropped, a segment that jumped overnight, scores that drifted.

Thresholds live in `expectations/anomalies.yml`. Each function takes a warehouse
resource, a session of one or a DuckDB connection (`session_on`), reads through the
engine-neutral `read_df` in SQL DuckDB and Snowflake both run, and returns `Outcome`s,
one per event source or segment, with a message that says what moved and by how much.
"""

from __future__ import annotations

import json
import os
from datetime import date, datetime, timedelta
from statistics import median
from typing import Any

import pandas as pd

from dagster_project.models.propensity import OUTCOMES, FeatureReference, feature_psi, feature_reference
from dagster_project.models.registry import REGISTRY_TABLE
from dagster_project.project import default_as_of
from dagster_project.quality.outcomes import Outcome
from dagster_project.quality.runner import now_utc
from dagster_project.resources.warehouse import WarehouseSession, session_on, table_exists

SCORES_TABLE = "nextbest.customer_scores"
# Decile edges and shares of each model version's first scores: the reference of the shift check.
REFERENCE_TABLE = "nextbest.score_reference"
REFERENCE_DDL = (f"create table if not exists {REFERENCE_TABLE} (score varchar not null, model_version varchar not null, "
                 "as_of_date date, customers integer, edges varchar, shares varchar, recorded_at timestamp)")
SEGMENTS_TABLE = "analytics.customer_segments"
SEGMENT_HISTORY_TABLE = "analytics.customer_segment_history"


def reference_day(now: datetime | None = None) -> date:
    """The last complete day: the day before `NEXTBEST_AS_OF` (history ends at as_of 00:00), else yesterday."""
    today = date.fromisoformat(default_as_of()) if os.environ.get("NEXTBEST_AS_OF") else (now or now_utc()).date()
    return today - timedelta(days=1)


def as_date(value: Any) -> date | None:
    """A warehouse date (a pandas Timestamp, a `date`, a DuckDB or Snowflake DATE) as a `date`; None for null."""
    return None if value is None or pd.isna(value) else pd.Timestamp(value).date()


def daily_counts(tx: WarehouseSession, table: str, column: str, first: date, last: date) -> dict[date, int]:
    """Rows of `table` per day of `column` from `first` to `last` inclusive, zero for empty days."""
    # Timestamps as bounds: a DATE parameter against a TIMESTAMP column is cast alike on both engines.
    rows = tx.read_df(
        f"select cast({column} as date) as d, count(*) as n from {table} "
        f"where {column} >= ? and {column} < ? group by 1",
        [datetime.combine(first, datetime.min.time()), datetime.combine(last + timedelta(days=1), datetime.min.time())])
    counts = {first + timedelta(days=i): 0 for i in range((last - first).days + 1)}
    counts.update({as_date(d): int(n) for d, n in rows.itertuples(index=False)})
    return counts


def event_volume(source, config: dict[str, Any], day: date | None = None) -> list[Outcome]:
    """Per event source: the reference day's rows against the median day of the trailing window."""
    with session_on(source) as tx:
        return _event_volume(tx, config, day or reference_day())


def _event_volume(tx: WarehouseSession, config: dict[str, Any], day: date) -> list[Outcome]:
    share, window = float(config["min_share_of_median"]), int(config["trailing_days"])
    floor, severity = float(config["min_median"]), config["severity"]
    fix = ("Check that the loader for this source finished (a partial load looks like a drop), "
           "then rerun it; if the drop is real (a holiday, a paused newsletter), this warning can be ignored.")
    outcomes = []
    for source, column in config["sources"].items():
        table = f"raw.{source}"
        if not table_exists(tx, table):
            outcomes.append(Outcome(table, "daily_volume", severity, "skipped", f"{table} does not exist yet.",
                                    fix, kind="anomaly"))
            continue
        counts = daily_counts(tx, table, column, day - timedelta(days=window), day)
        today = counts.pop(day)
        typical = median(counts.values()) if counts else 0
        if typical < floor:
            outcomes.append(Outcome(table, "daily_volume", severity, "skipped",
                                    f"{table}: median {typical:g} rows/day over the {window} days before {day} is "
                                    f"below {floor:g}, too little traffic to judge a drop ({today:,} on {day}).",
                                    fix, kind="anomaly"))
            continue
        ok = today >= share * typical
        words = "at least" if ok else "below"
        outcomes.append(Outcome(
            table, "daily_volume", severity, "passed" if ok else "failed",
            f"{table}: {today:,} rows on {day}, {words} {share:.0%} of the trailing {window}-day median "
            f"({typical:g} rows/day)" + ("" if ok else f"; {today / typical:.0%} of a usual day"),
            fix, kind="anomaly"))
    return outcomes


def _pairs(frame: pd.DataFrame) -> dict[str, int]:
    """A two-column result (name, count) as a dict."""
    return {str(name): int(n) for name, n in frame.itertuples(index=False)}


def segment_change(source, config: dict[str, Any]) -> list[Outcome]:
    """Per segment: today's size in `analytics.customer_segments` against yesterday's membership,
    i.e. the rows of `analytics.customer_segment_history` open on the day before as_of."""
    with session_on(source) as tx:
        return _segment_change(tx, config)


def _segment_change(tx: WarehouseSession, config: dict[str, Any]) -> list[Outcome]:
    severity, factor, floor = config["severity"], float(config["max_factor"]), int(config["min_size"])
    fix = ("Look at what changed overnight: the segment's inputs in customer_context, the dbt vars in "
           "dbt/dbt_project.yml, or a partial raw load. If the change is intended, raise "
           "segment_change.max_factor in expectations/anomalies.yml.")
    target, history = SEGMENTS_TABLE, SEGMENT_HISTORY_TABLE
    if not (table_exists(tx, target) and table_exists(tx, history)):
        return [Outcome(target, "segment_size_change", severity, "skipped",
                        "customer_segments or customer_segment_history does not exist yet.", fix, kind="anomaly")]
    as_of = as_date(tx.read_df(f"select max(as_of_date) as as_of from {target}").iloc[0, 0])
    if as_of is None:
        return [Outcome(target, "segment_size_change", severity, "skipped", "customer_segments is empty.", fix,
                        kind="anomaly")]
    today = _pairs(tx.read_df(f"select segment, count(*) as n from {target} group by 1"))
    # Membership before today's run: entered before as_of and not yet exited at as_of.
    yesterday = _pairs(tx.read_df(
        f"select segment, count(*) as n from {history} "
        "where entered_at < ? and (exited_at is null or exited_at >= ?) group by 1", [as_of, as_of]))
    history_days = int(tx.read_df(f"select count(*) as n from {history} where entered_at < ?",
                                  [as_of]).iloc[0, 0])
    if not history_days:
        return [Outcome(target, "segment_size_change", severity, "skipped",
                        f"no segment history before {as_of}: this is the first run, nothing to compare with.",
                        fix, kind="anomaly")]
    outcomes = []
    for segment in sorted(set(today) | set(yesterday)):
        now_n, before = today.get(segment, 0), yesterday.get(segment, 0)
        name = f"segment_size_change:{segment}"
        if max(now_n, before) < floor:
            outcomes.append(Outcome(target, name, severity, "skipped",
                                    f"{segment}: {before:,} -> {now_n:,} customers, too small to judge "
                                    f"(below {floor})", fix, kind="anomaly"))
            continue
        ratio = (now_n / before) if before else float("inf")
        ok = before > 0 and now_n > 0 and 1 / factor <= ratio <= factor
        change = "appeared" if not before else "emptied" if not now_n else f"x{ratio:.2f}"
        outcomes.append(Outcome(
            target, name, severity, "passed" if ok else "failed",
            f"{segment}: {before:,} customers before {as_of}, {now_n:,} now ({change}; allowed x{1 / factor:.2f} "
            f"to x{factor:.2f})", fix, kind="anomaly"))
    return outcomes


def score_shift(source, config: dict[str, Any], record: bool = False) -> list[Outcome]:
    """Per propensity: PSI of today's `nextbest.customer_scores` against the same model version's reference.

    The registry keeps no score distribution, so the reference is the version's first scores
    (the closest to its training window without rescoring old rows): deciles kept in
    `nextbest.score_reference`. With `record`, a version seen for the first time is recorded
    (the Dagster check does; `nextbest doctor` is read-only and only compares). `source`: a
    warehouse resource (recording then creates the table outside the reading transaction, as
    Snowflake wants DDL on its own), a session or a DuckDB connection.
    """
    if record and table_exists(source, SCORES_TABLE) and not table_exists(source, REFERENCE_TABLE):
        # Each statement on its own: a resource runs it in its own autocommit, a connection at once.
        source.execute("create schema if not exists nextbest")
        source.execute(REFERENCE_DDL)
    with session_on(source) as tx:
        outcomes, first_scores = _score_shift(tx, config, record)
        if first_scores:
            tx.write_df(*REFERENCE_TABLE.split("."), pd.DataFrame(first_scores))  # after every read
    return outcomes


def _score_shift(tx: WarehouseSession, config: dict[str, Any], record: bool) -> tuple[list[Outcome], list[dict]]:
    """The outcomes, and with `record` the reference rows of versions seen for the first time (to write)."""
    severity, limit, floor = config["severity"], float(config["max_psi"]), int(config.get("min_customers", 1))
    fix = ("Retrain the propensity models (job propensity_retrain: the customers changed), or check the features "
           "feeding the scores (the models' feature_drift checks name them). If the shift is intended, raise "
           "score_shift.max_psi in expectations/anomalies.yml.")
    if not table_exists(tx, SCORES_TABLE):
        return [Outcome(SCORES_TABLE, "score_distribution_shift", severity, "skipped",
                        "customer_scores does not exist yet; the shift check runs once scores are written.",
                        fix, kind="anomaly")], []
    references = _score_references(tx)
    outcomes, first_scores = [], []
    for outcome, spec in OUTCOMES.items():
        name, version_column = f"score_distribution_shift:{spec.score}", f"{outcome}_model_version"
        scores = tx.read_df(f"select {version_column} as v, {spec.score} as p, as_of_date from {SCORES_TABLE} "
                            f"where {spec.score} is not null and {version_column} is not null")
        if scores.empty:
            outcomes.append(Outcome(SCORES_TABLE, name, severity, "skipped",
                                    f"no {spec.score} scores (no {outcome} model has passed its gate yet).",
                                    fix, kind="anomaly"))
            continue
        for version, group in scores.groupby("v"):
            values = group["p"].to_numpy(dtype=float)[:, None]
            reference = references.get((spec.score, version))
            if len(values) < floor:
                outcomes.append(Outcome(SCORES_TABLE, name, severity, "skipped",
                                        f"{spec.score}: {len(values):,} scores of {version}, too few to judge "
                                        f"(below {floor}).", fix, kind="anomaly"))
            elif reference is None:
                as_of = as_date(group["as_of_date"].max())
                if record:
                    deciles = feature_reference(values, [spec.score])
                    first_scores.append({
                        "score": spec.score, "model_version": str(version),
                        # A Timestamp, not a date: staged for Snowflake, a date object would travel as text.
                        "as_of_date": pd.Timestamp(as_of), "customers": len(values),
                        "edges": json.dumps(deciles.edges[spec.score]),
                        "shares": json.dumps(deciles.shares[spec.score]), "recorded_at": pd.Timestamp(now_utc())})
                words = ("recorded now as its reference" if record else
                         "no reference recorded yet (the Dagster check score_distribution_shift records it)")
                outcomes.append(Outcome(SCORES_TABLE, name, severity, "skipped",
                                        f"{spec.score}: first scores of {version} ({len(values):,} customers, "
                                        f"as of {as_of}); {words}.", fix, kind="anomaly"))
            else:
                edges, shares, ref_as_of = reference
                value = feature_psi(FeatureReference({spec.score: edges}, {spec.score: shares}), values,
                                    [spec.score])[spec.score]
                ok = value <= limit
                window = _training_window(tx, version)
                outcomes.append(Outcome(
                    SCORES_TABLE, name, severity, "passed" if ok else "failed",
                    f"{spec.score} PSI {value:.2f} vs the reference of {version} (its first scores, as of "
                    f"{ref_as_of}{window}; threshold {limit:g}): " + (
                        "the scores look like the ones the model started with." if ok else
                        f"{len(values):,} customers no longer score like the customers the model was trained "
                        "and validated on; audiences picked by this score may be wrong."),
                    fix, kind="anomaly"))
    return outcomes, first_scores


def _score_references(tx: WarehouseSession) -> dict[tuple[str, str], tuple[list[float], list[float], date]]:
    """(score, model version) -> reference decile edges, shares and as_of date; empty before the first record."""
    if not table_exists(tx, REFERENCE_TABLE):
        return {}
    rows = tx.read_df(f"select score, model_version, edges, shares, as_of_date from {REFERENCE_TABLE}")
    return {(score, version): (json.loads(edges), json.loads(shares), as_date(as_of))
            for score, version, edges, shares, as_of in rows.itertuples(index=False)}


def _training_window(tx: WarehouseSession, version: str) -> str:
    """`, trained on start..end` from the model registry, or nothing when the version is not registered here."""
    if not table_exists(tx, REGISTRY_TABLE):
        return ""
    rows = tx.read_df(f"select training_window_start, training_window_end from {REGISTRY_TABLE} "
                      "where version = ?", [version])
    return "" if rows.empty else f", trained on {as_date(rows.iloc[0, 0])}..{as_date(rows.iloc[0, 1])}"

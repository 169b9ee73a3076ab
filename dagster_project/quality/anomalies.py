"""Anomaly checks: a feed that dropped, a segment that jumped overnight, scores that drifted.

Thresholds live in `expectations/anomalies.yml`. Each function reads the
warehouse through a connection the caller owns and returns `Outcome`s, one per
event source or segment, with a message that says what moved and by how much.
"""

from __future__ import annotations

import json
import os
from datetime import date, datetime, timedelta
from statistics import median
from typing import Any

from dagster_project.models.propensity import OUTCOMES, FeatureReference, feature_psi, feature_reference
from dagster_project.models.registry import REGISTRY_TABLE
from dagster_project.quality.outcomes import Outcome
from dagster_project.quality.runner import existing_table, now_utc

SCORES_TABLE = "nextbest.customer_scores"
# Decile edges and shares of each model version's first scores: the reference of the shift check.
REFERENCE_TABLE = "nextbest.score_reference"
REFERENCE_DDL = (f"create table if not exists {REFERENCE_TABLE} (score varchar not null, model_version varchar not null, "
                 "as_of_date date, customers integer, edges varchar, shares varchar, recorded_at timestamp)")


def reference_day(now: datetime | None = None) -> date:
    """The last complete day: the day before `NEXTBEST_AS_OF` (history ends at as_of 00:00), else yesterday."""
    as_of = os.environ.get("NEXTBEST_AS_OF")
    today = date.fromisoformat(as_of) if as_of else (now or now_utc()).date()
    return today - timedelta(days=1)


def daily_counts(con, table: str, column: str, first: date, last: date) -> dict[date, int]:
    """Rows of `table` per day of `column` from `first` to `last` inclusive, zero for empty days."""
    rows = con.execute(
        f"select cast({column} as date) d, count(*) from {table} "
        f"where {column} >= ? and {column} < ? group by 1", [first, last + timedelta(days=1)]
    ).fetchall()
    counts = {first + timedelta(days=i): 0 for i in range((last - first).days + 1)}
    counts.update({d: n for d, n in rows})
    return counts


def event_volume(con, config: dict[str, Any], day: date | None = None) -> list[Outcome]:
    """Per event source: the reference day's rows against the median day of the trailing window."""
    day = day or reference_day()
    share, window = float(config["min_share_of_median"]), int(config["trailing_days"])
    floor, severity = float(config["min_median"]), config["severity"]
    fix = ("Check that the loader for this source finished (a partial load looks like a drop), "
           "then rerun it; if the drop is real (a holiday, a paused newsletter), this warning can be ignored.")
    outcomes = []
    for source, column in config["sources"].items():
        table = f"raw.{source}"
        if existing_table(con, (table,)) is None:
            outcomes.append(Outcome(table, "daily_volume", severity, "skipped", f"{table} does not exist yet.",
                                    fix, kind="anomaly"))
            continue
        counts = daily_counts(con, table, column, day - timedelta(days=window), day)
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


def segment_change(con, config: dict[str, Any]) -> list[Outcome]:
    """Per segment: today's size in `analytics.customer_segments` against yesterday's membership,
    i.e. the rows of `analytics.customer_segment_history` open on the day before as_of."""
    severity, factor, floor = config["severity"], float(config["max_factor"]), int(config["min_size"])
    fix = ("Look at what changed overnight: the segment's inputs in customer_context, the dbt vars in "
           "dbt/dbt_project.yml, or a partial raw load. If the change is intended, raise "
           "segment_change.max_factor in expectations/anomalies.yml.")
    target = "analytics.customer_segments"
    if existing_table(con, (target, "analytics.customer_segment_history")) is None or \
            existing_table(con, ("analytics.customer_segment_history",)) is None:
        return [Outcome(target, "segment_size_change", severity, "skipped",
                        "customer_segments or customer_segment_history does not exist yet.", fix, kind="anomaly")]
    as_of = con.execute(f"select max(as_of_date) from {target}").fetchone()[0]
    if as_of is None:
        return [Outcome(target, "segment_size_change", severity, "skipped", "customer_segments is empty.", fix,
                        kind="anomaly")]
    today = dict(con.execute(f"select segment, count(*) from {target} group by 1").fetchall())
    # Membership before today's run: entered before as_of and not yet exited at as_of.
    yesterday = dict(con.execute(
        "select segment, count(*) from analytics.customer_segment_history "
        "where entered_at < ? and (exited_at is null or exited_at >= ?) group by 1", [as_of, as_of]).fetchall())
    history_days = con.execute("select count(*) from analytics.customer_segment_history where entered_at < ?",
                               [as_of]).fetchone()[0]
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


def score_shift(con, config: dict[str, Any], record: bool = False) -> list[Outcome]:
    """Per propensity: PSI of today's `nextbest.customer_scores` against the same model version's reference.

    The registry keeps no score distribution, so the reference is the version's first scores
    (the closest to its training window without rescoring old rows): deciles kept in
    `nextbest.score_reference`. With `record`, a version seen for the first time is recorded
    (the Dagster check does; `nextbest doctor` is read-only and only compares).
    """
    severity, limit, floor = config["severity"], float(config["max_psi"]), int(config.get("min_customers", 1))
    fix = ("Retrain the propensity models (job propensity_retrain: the customers changed), or check the features "
           "feeding the scores (the models' feature_drift checks name them). If the shift is intended, raise "
           "score_shift.max_psi in expectations/anomalies.yml.")
    if existing_table(con, (SCORES_TABLE,)) is None:
        return [Outcome(SCORES_TABLE, "score_distribution_shift", severity, "skipped",
                        "customer_scores does not exist yet; the shift check runs once scores are written.",
                        fix, kind="anomaly")]
    if record:
        con.execute("create schema if not exists nextbest")
        con.execute(REFERENCE_DDL)
    references = _score_references(con)
    outcomes = []
    for outcome, spec in OUTCOMES.items():
        name, version_column = f"score_distribution_shift:{spec.score}", f"{outcome}_model_version"
        scores = con.execute(f"select {version_column} v, {spec.score} p, as_of_date from {SCORES_TABLE} "
                             f"where {spec.score} is not null and {version_column} is not null").df()
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
                as_of = group["as_of_date"].max()
                if record:
                    deciles = feature_reference(values, [spec.score])
                    con.execute(f"insert into {REFERENCE_TABLE} values (?, ?, ?, ?, ?, ?, ?)",
                                [spec.score, version, as_of, len(values), json.dumps(deciles.edges[spec.score]),
                                 json.dumps(deciles.shares[spec.score]), now_utc()])
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
                window = _training_window(con, version)
                outcomes.append(Outcome(
                    SCORES_TABLE, name, severity, "passed" if ok else "failed",
                    f"{spec.score} PSI {value:.2f} vs the reference of {version} (its first scores, as of "
                    f"{ref_as_of}{window}; threshold {limit:g}): " + (
                        "the scores look like the ones the model started with." if ok else
                        f"{len(values):,} customers no longer score like the customers the model was trained "
                        "and validated on; audiences picked by this score may be wrong."),
                    fix, kind="anomaly"))
    return outcomes


def _score_references(con) -> dict[tuple[str, str], tuple[list[float], list[float], date]]:
    """(score, model version) -> reference decile edges, shares and as_of date; empty before the first record."""
    if existing_table(con, (REFERENCE_TABLE,)) is None:
        return {}
    rows = con.execute(f"select score, model_version, edges, shares, as_of_date from {REFERENCE_TABLE}").fetchall()
    return {(score, version): (json.loads(edges), json.loads(shares), as_of)
            for score, version, edges, shares, as_of in rows}


def _training_window(con, version: str) -> str:
    """`, trained on start..end` from the model registry, or nothing when the version is not registered here."""
    if existing_table(con, (REGISTRY_TABLE,)) is None:
        return ""
    row = con.execute(f"select training_window_start, training_window_end from {REGISTRY_TABLE} "
                      "where version = ?", [version]).fetchone()
    return f", trained on {row[0]}..{row[1]}" if row else ""

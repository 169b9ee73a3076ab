"""Freshness: how old the newest row of each raw source is, and who may run on it.

`assert_fresh` is what generation and export call before they act on a
customer's data: it raises `StaleSourceError` naming every source that is older
than allowed and by how much; `stale_playbooks` applies it per campaign brief. The Dagster freshness checks on the raw assets
take their limits from the dbt source freshness (`error_after` in
`dbt/models/staging/sources.yml`), so there is one place to set them. Every reader takes
a warehouse resource (DuckDB or Snowflake), a session of one or a DuckDB connection.

Old is not always stale. A source past its limit is only stale when a silence that long is unusual
at its own rate: the rows it had in the `RATE_WINDOW` before its newest one would, at that pace,
have brought `QUIET_EXPECTED_ROWS` or more since (a loader that still ran would deliver nothing
for that long less than 1% of the time). Otherwise the source is quiet: a small store's support
tickets, a week without a ticket, are not a broken loader. A source with no rows at all is quiet
too (a store without a helpdesk or a portal never has any), except `orders`, without which no
customer fact is current.
"""

from __future__ import annotations

import json
import os
from datetime import date, datetime, timedelta
from typing import Iterable, Mapping

from dagster_project.ingest.assets import FRESHNESS_COLUMNS, naive_utc
from dagster_project.project import default_as_of
from dagster_project.quality.outcomes import Outcome
from dagster_project.quality.runner import now_utc
from dagster_project.resources.warehouse import session_on

# The raw sources a playbook's messages are built from (context pack facts, and the portal
# actions behind its segments). Briefs set one limit, `max_data_staleness_days`, for all of them.
# Event sources whose age says whether a brief's facts are current. Not
# subscriptions: its newest started_at only moves when someone subscribes.
BRIEF_SOURCES = ("orders", "support_tickets", "portal_events")

# How far back a source's pace is measured, and how many rows that pace must have promised since
# the newest one before an old source counts as stale (ln 100: a silence with under 1% chance).
RATE_WINDOW = timedelta(days=90)
QUIET_EXPECTED_ROWS = 4.6
# Sources whose empty table is stale, never quiet.
REQUIRED_SOURCES = ("orders",)

_PERIODS = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}


class StaleSourceError(RuntimeError):
    """A source feeding a brief is older than the brief allows; `stale` maps source -> age (None: no rows)."""

    def __init__(self, message: str, stale: dict[str, timedelta | None]):
        super().__init__(message)
        self.stale = stale


def reference_time() -> datetime:
    """What "now" means for freshness: `NEXTBEST_AS_OF` 00:00 when set (history ends there), else now (UTC)."""
    if not os.environ.get("NEXTBEST_AS_OF"):
        return now_utc()
    return datetime.combine(date.fromisoformat(default_as_of()), datetime.min.time())  # checked there


def describe_age(age: timedelta) -> str:
    """An age in words: `3 days 4 hours`, `5 hours 10 minutes`."""
    seconds = max(int(age.total_seconds()), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    parts = [(days, "day"), (hours, "hour")] if days else [(hours, "hour"), (minutes, "minute")]
    words = [f"{n} {unit}{'s' if n != 1 else ''}" for n, unit in parts if n]
    return " ".join(words) or "less than a minute"


def newest_record(con, source: str) -> datetime | None:
    """The newest timestamp in `raw.<source>` (by its freshness column), None when empty.

    `con`: a warehouse resource, a session of one, or a DuckDB connection.
    """
    column = FRESHNESS_COLUMNS.get(source)
    if column is None:
        raise KeyError(f"raw.{source} has no timestamp that says how fresh it is; "
                       f"sources with one: {', '.join(FRESHNESS_COLUMNS)}")
    with session_on(con) as tx:
        if not tx.exists("raw", source):
            return None
        newest = tx.read_df(f"select max({column}) as newest from raw.{source}").iloc[0, 0]
    return naive_utc(newest)


def newest_records(con, sources: Iterable[str]) -> dict[str, datetime | None]:
    """`newest_record` of each source, read in one session."""
    with session_on(con) as tx:
        return {source: newest_record(tx, source) for source in sources}


def recent_pace(con, source: str, newest: datetime) -> tuple[int, timedelta]:
    """(rows, span): the rows of `raw.<source>` in the `RATE_WINDOW` up to its `newest` row, and the
    time they cover (the window, or less for a younger source: from its oldest row, at least a day)."""
    column = FRESHNESS_COLUMNS[source]
    since = newest - RATE_WINDOW
    with session_on(con) as tx:
        found = tx.read_df(f"select count(*) as n, min({column}) as oldest from raw.{source} where {column} > ?",
                           [since]).iloc[0]
    oldest = naive_utc(found["oldest"])
    span = newest - oldest if oldest is not None else timedelta(0)
    return int(found["n"]), max(span, timedelta(days=1))


def is_quiet(source: str, age: timedelta | None, pace: tuple[int, timedelta] | None) -> bool:
    """True when a source this old (None: no rows; then `pace` is None too) is quiet rather than stale
    (see the module's note)."""
    if age is None:
        return source not in REQUIRED_SOURCES
    rows, span = pace
    return rows * (age / span) < QUIET_EXPECTED_ROWS


def _describe_pace(pace: tuple[int, timedelta]) -> str:
    rows, span = pace
    return f"{rows} row{'s' if rows != 1 else ''} in the {describe_age(span)} up to it"


class _Paces:
    """Each source's `recent_pace`, read once and only for the sources that are past a limit."""

    def __init__(self, con):
        self.con, self.read = con, {}

    def __call__(self, source: str, newest: datetime) -> tuple[int, timedelta]:
        if source not in self.read:
            self.read[source] = recent_pace(self.con, source, newest)
        return self.read[source]


def assert_fresh(con, sources: Iterable[str], max_staleness: timedelta | Mapping[str, timedelta],
                 now: datetime | None = None) -> dict[str, timedelta]:
    """Raise `StaleSourceError` when a source's newest row is older than `max_staleness`.

    `sources` are raw table names (`orders`, `email_events`); `max_staleness` is one
    limit or one per source. Returns each source's age when all are fresh.
    """
    with session_on(con) as tx:
        return _judge(newest_records(tx, sources), max_staleness, now or reference_time(), _Paces(tx))


def _judge(newest_by_source: Mapping[str, datetime | None], max_staleness: timedelta | Mapping[str, timedelta],
           now: datetime, pace: _Paces) -> dict[str, timedelta]:
    """`assert_fresh` on newest rows already read (`pace`: each source's recent pace, read when needed).
    A quiet source's age is returned with the fresh ones'."""
    ages: dict[str, timedelta] = {}
    stale: dict[str, timedelta | None] = {}
    lines = []
    for source, newest in newest_by_source.items():
        limit = max_staleness[source] if isinstance(max_staleness, Mapping) else max_staleness
        column = FRESHNESS_COLUMNS[source]
        if newest is None:
            if not is_quiet(source, None, None):
                stale[source] = None
                lines.append(f"raw.{source} has no rows (no {column} at all); allowed age {describe_age(limit)}")
            continue
        age = now - newest
        ages[source] = age
        if age > limit and not is_quiet(source, age, pace(source, newest)):
            stale[source] = age
            lines.append(f"raw.{source} is {describe_age(age)} old (newest {column} {newest:%Y-%m-%d %H:%M} UTC, "
                         f"{_describe_pace(pace(source, newest))}); allowed {describe_age(limit)}")
    if stale:
        raise StaleSourceError(
            "Refusing to run on stale data:\n  " + "\n  ".join(lines)
            + "\nReload these sources (check their loader or `nextbest import`) and run again.", stale)
    return ages


def stale_playbooks(con, briefs: Iterable, now: datetime | None = None,
                    sources: Iterable[str] = BRIEF_SOURCES) -> dict[str, StaleSourceError]:
    """playbook id -> why it must not run (`StaleSourceError`), for each brief whose sources are too old.

    `con`: a warehouse resource, a session of one, or a DuckDB connection; each source's newest
    row is read once for all briefs. `briefs`: objects with `id` and `max_data_staleness_days`
    (`messaging.briefs.Brief`). Fresh briefs are left out, so an empty result means every brief may run.
    """
    now = now or reference_time()
    with session_on(con) as tx:
        newest = newest_records(tx, sources)
        pace = _Paces(tx)
        stale: dict[str, StaleSourceError] = {}
        for brief in briefs:
            try:
                _judge(newest, timedelta(days=brief.max_data_staleness_days), now, pace)
            except StaleSourceError as error:
                stale[brief.id] = StaleSourceError(
                    f"Playbook {brief.id} (max data staleness {brief.max_data_staleness_days} days): {error}",
                    error.stale)
    return stale


def dbt_source_freshness() -> dict[str, dict[str, timedelta]]:
    """source -> {'warn': timedelta, 'error': timedelta} from the dbt sources' freshness config."""
    from dagster_project.project import ensure_manifest

    manifest = json.loads(ensure_manifest().read_text())
    limits: dict[str, dict[str, timedelta]] = {}
    for source in manifest["sources"].values():
        if source.get("source_name") != "raw":
            continue
        found = {}
        for level in ("warn", "error"):
            spec = (source.get("freshness") or {}).get(f"{level}_after") or {}
            if spec.get("count") and spec.get("period") in _PERIODS:
                found[level] = spec["count"] * _PERIODS[spec["period"]]
        if found:
            limits[source["name"]] = found
    return limits


def freshness_outcomes(con, now: datetime | None = None,
                       limits: dict[str, dict[str, timedelta]] | None = None) -> list[Outcome]:
    """Per source with dbt freshness limits: failed ERROR past `error_after`, failed WARN past `warn_after`.

    `con`: a warehouse resource, a session of one, or a DuckDB connection.
    """
    now = now or reference_time()
    limits = dbt_source_freshness() if limits is None else limits
    outcomes = []
    with session_on(con) as tx:
        newest_by_source = newest_records(tx, sorted(limits))
        pace = _Paces(tx)
        for source, levels in sorted(limits.items()):
            newest = newest_by_source[source]
            age = None if newest is None else now - newest
            past_error = age is None or ("error" in levels and age > levels["error"])
            # A source's pace is read only when its age would fail it.
            recent = pace(source, newest) if newest is not None and past_error else None
            quiet = past_error and is_quiet(source, age, recent)
            outcomes.append(_freshness_outcome(source, newest, age, levels, quiet, recent))
    return outcomes


def _freshness_outcome(source: str, newest: datetime | None, age: timedelta | None,
                       levels: dict[str, timedelta], quiet: bool, pace: tuple[int, timedelta] | None) -> Outcome:
    """One source's freshness outcome: failed ERROR past `error_after` (WARN when the source is quiet
    rather than stale), failed WARN past `warn_after`, else passed."""
    target = f"raw.{source}"
    fix = ("Nothing is blocked; if this source should have rows by now, check its loader." if quiet else
           "Reload the source (check its loader or `nextbest import`); drafting and export refuse stale sources.")
    if newest is None:
        if quiet:
            return Outcome(target, "freshness", "WARN", "failed",
                           f"{target} has no rows: a source this store may not have, so it is quiet, not stale.",
                           fix, kind="freshness")
        return Outcome(target, "freshness", "ERROR", "failed", f"{target} has no rows.", fix, kind="freshness")
    base = f"{target}: newest row {newest:%Y-%m-%d %H:%M} UTC, {describe_age(age)} old"
    if pace is not None:
        base += f" ({_describe_pace(pace)})"
    if "error" in levels and age > levels["error"]:
        if quiet:
            return Outcome(target, "freshness", "WARN", "failed",
                           f"{base}; past error after {describe_age(levels['error'])}, but at its pace a silence "
                           "this long is usual: quiet, not stale", fix, kind="freshness")
        return Outcome(target, "freshness", "ERROR", "failed",
                       f"{base}; error after {describe_age(levels['error'])}", fix, kind="freshness")
    if "warn" in levels and age > levels["warn"]:
        return Outcome(target, "freshness", "WARN", "failed", f"{base}; warn after {describe_age(levels['warn'])}",
                       fix, kind="freshness")
    return Outcome(target, "freshness", "ERROR", "passed", base, fix, kind="freshness")

"""Freshness: how old the newest row of each raw source is, and who may run on it.

`assert_fresh` is what generation and export call before they act on a
customer's data: it raises `StaleSourceError` naming every source that is older
than allowed and by how much; `stale_playbooks` applies it per campaign brief. The Dagster freshness checks on the raw assets
take their limits from the dbt source freshness (`error_after` in
`dbt/models/staging/sources.yml`), so there is one place to set them. Every reader takes
a warehouse resource (DuckDB or Snowflake), a session of one or a DuckDB connection.
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


def assert_fresh(con, sources: Iterable[str], max_staleness: timedelta | Mapping[str, timedelta],
                 now: datetime | None = None) -> dict[str, timedelta]:
    """Raise `StaleSourceError` when a source's newest row is older than `max_staleness`.

    `sources` are raw table names (`orders`, `email_events`); `max_staleness` is one
    limit or one per source. Returns each source's age when all are fresh.
    """
    return _judge(newest_records(con, sources), max_staleness, now or reference_time())


def _judge(newest_by_source: Mapping[str, datetime | None], max_staleness: timedelta | Mapping[str, timedelta],
           now: datetime) -> dict[str, timedelta]:
    """`assert_fresh` on newest rows already read."""
    ages: dict[str, timedelta] = {}
    stale: dict[str, timedelta | None] = {}
    lines = []
    for source, newest in newest_by_source.items():
        limit = max_staleness[source] if isinstance(max_staleness, Mapping) else max_staleness
        column = FRESHNESS_COLUMNS[source]
        if newest is None:
            stale[source] = None
            lines.append(f"raw.{source} has no rows (no {column} at all); allowed age {describe_age(limit)}")
            continue
        age = now - newest
        ages[source] = age
        if age > limit:
            stale[source] = age
            lines.append(f"raw.{source} is {describe_age(age)} old (newest {column} {newest:%Y-%m-%d %H:%M} UTC); "
                         f"allowed {describe_age(limit)}")
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
    newest = newest_records(con, sources)
    stale: dict[str, StaleSourceError] = {}
    for brief in briefs:
        try:
            _judge(newest, timedelta(days=brief.max_data_staleness_days), now)
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
    fix = "Reload the source (check its loader or `nextbest import`); drafting and export refuse stale sources."
    outcomes = []
    newest_by_source = newest_records(con, sorted(limits))
    for source, levels in sorted(limits.items()):
        newest = newest_by_source[source]
        target = f"raw.{source}"
        if newest is None:
            outcomes.append(Outcome(target, "freshness", "ERROR", "failed", f"{target} has no rows.", fix,
                                    kind="freshness"))
            continue
        age = now - newest
        base = f"{target}: newest row {newest:%Y-%m-%d %H:%M} UTC, {describe_age(age)} old"
        if "error" in levels and age > levels["error"]:
            outcome = Outcome(target, "freshness", "ERROR", "failed",
                              f"{base}; error after {describe_age(levels['error'])}", fix, kind="freshness")
        elif "warn" in levels and age > levels["warn"]:
            outcome = Outcome(target, "freshness", "WARN", "failed",
                              f"{base}; warn after {describe_age(levels['warn'])}", fix, kind="freshness")
        else:
            outcome = Outcome(target, "freshness", "ERROR", "passed", base, fix, kind="freshness")
        outcomes.append(outcome)
    return outcomes

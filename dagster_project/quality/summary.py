"""The data-quality summary in words: markdown for Dagster metadata, plain text for `nextbest doctor`."""

from __future__ import annotations

import json
from collections import defaultdict
from contextlib import nullcontext
from typing import Iterable

from dagster_project.quality.outcomes import Outcome

_MARK = {"passed": "✅", "failed": "❌", "skipped": "⏭️"}
_WORD = {"passed": "ok", "failed": "FAIL", "skipped": "skip"}


def status_label(outcome: Outcome) -> str:
    """`ok`, `skip`, `FAIL (blocking)` or `FAIL (warning)`."""
    if not outcome.failed:
        return _WORD[outcome.status]
    return "FAIL (blocking)" if outcome.blocking else "FAIL (warning)"


def headline(outcomes: Iterable[Outcome]) -> str:
    """One line: how many checks ran, how many block, how many warn."""
    outcomes = list(outcomes)
    blocking = sum(o.blocking for o in outcomes)
    warnings = sum(o.failed and not o.blocking for o in outcomes)
    skipped = sum(o.status == "skipped" for o in outcomes)
    verdict = ("blocking: downstream assets, drafting and export must not run" if blocking
               else "nothing blocks" + (", see warnings" if warnings else ""))
    return (f"{len(outcomes)} checks: {len(outcomes) - blocking - warnings - skipped} passed, {blocking} blocking "
            f"failure(s), {warnings} warning(s), {skipped} skipped — {verdict}")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(outcomes: Iterable[Outcome], title: str = "Data quality") -> str:
    """Every check with its status; failures first, each with what to do and a few example rows."""
    outcomes = sorted(outcomes, key=lambda o: (not o.blocking, not o.failed, o.status == "skipped", o.target))
    lines = [f"### {title}", "", headline(outcomes), "",
             "| | severity | table | check | finding | what to do |", "|---|---|---|---|---|---|"]
    for o in outcomes:
        lines.append(f"| {_MARK[o.status]} | {o.severity} | `{o.target}` | `{o.name}` | {_cell(o.message)} | "
                     f"{_cell(o.fix) if o.failed else ''} |")
    for o in outcomes:
        if o.failed and o.examples:
            lines += ["", f"**Example rows — `{o.target}` `{o.name}`**", "", "```json",
                      "\n".join(json.dumps(row, default=str) for row in o.examples), "```"]
    return "\n".join(lines)


def render_text(outcomes: Iterable[Outcome]) -> str:
    """Plain text for a terminal: checks grouped by table, failures with their fix and one example row."""
    outcomes = list(outcomes)
    by_target: dict[str, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        by_target[o.target].append(o)
    lines = []
    for target, group in by_target.items():
        failed = sum(o.failed for o in group)
        lines.append(f"{target}  ({len(group)} checks, {failed} failed)")
        for o in group:
            lines.append(f"  {status_label(o):<16} {o.severity:<5} {o.name:<42} {o.message}")
            if o.failed:
                lines.append(f"  {'':<16} {'':<5} -> {o.fix}" if o.fix else "")
                if o.examples:
                    lines.append(f"  {'':<16} {'':<5}    e.g. {json.dumps(o.examples[0], default=str)[:300]}")
        lines.append("")
    lines.append(headline(outcomes))
    return "\n".join(line for line in lines if line is not None)


# Quarantined rows this recent are reported as a warning (older ones are only counted).
QUARANTINE_RECENT_DAYS = 7


def quarantine_outcomes(source, now=None) -> list:
    """Rows the imports set aside (`raw.raw_quarantine`): a warning with a few examples when any came
    in the last `QUARANTINE_RECENT_DAYS` days, else passed. None before anything was imported."""
    from datetime import timedelta

    from dagster_project.ingest.contract import QUARANTINE_TABLE, RAW_SCHEMA
    from dagster_project.quality.runner import now_utc
    from dagster_project.resources.warehouse import session_on

    table = f"{RAW_SCHEMA}.{QUARANTINE_TABLE}"
    since = (now or now_utc()) - timedelta(days=QUARANTINE_RECENT_DAYS)
    with session_on(source) as tx:
        if not tx.exists(RAW_SCHEMA, QUARANTINE_TABLE):
            return []
        counts = tx.read_df(f"select count(*) as total, count(case when quarantined_at >= ? then 1 end) as recent "
                            f"from {table}", [since]).iloc[0]
        examples = tx.read_df(f"select source_table, source_file, row_number, reason from {table} "
                              "where quarantined_at >= ? order by quarantined_at desc, source_file, row_number limit 5",
                              [since])
    total, recent = int(counts["total"]), int(counts["recent"])
    fix = (f"Fix those rows in your export and import it again; every row and its reason: select * from {table}")
    if not recent:
        return [Outcome(table, "quarantined_rows", "WARN", "passed",
                        f"no rows quarantined in the last {QUARANTINE_RECENT_DAYS} days ({total} before)", fix,
                        kind="sql")]
    return [Outcome(table, "quarantined_rows", "WARN", "failed",
                    f"{recent} rows quarantined by imports in the last {QUARANTINE_RECENT_DAYS} days "
                    f"({total} in all); they are not in the raw tables", fix,
                    examples=[{k: (int(v) if k == "row_number" else str(v)) for k, v in row.items()}
                              for row in examples.to_dict("records")], kind="sql")]


def collect_outcomes(source, suites=None, validated: dict | None = None) -> list[Outcome]:
    """Every check on the warehouse: the suites, the anomaly checks and source freshness.

    `source`: a warehouse resource (DuckDB or Snowflake), a session of one or a DuckDB connection.
    `validated`: suite file -> a `SuiteResult` already had for it (the run's own asset check),
    used instead of validating that suite again. Nothing is written. Each check reads in a
    session of its own, so a rule that cannot run (which on DuckDB aborts its transaction)
    leaves the other checks' reads alone.
    """
    from dagster_project.quality import anomalies
    from dagster_project.quality.freshness import freshness_outcomes
    from dagster_project.quality.runner import validate_suite
    from dagster_project.quality.suites import load_anomaly_config, load_suites
    from dagster_project.resources.warehouse import WarehouseInterface

    outcomes: list[Outcome] = []
    config = load_anomaly_config()
    # DuckDB keeps the file open meanwhile, so each check's session costs little.
    with source.kept_open() if isinstance(source, WarehouseInterface) else nullcontext():
        for suite in suites if suites is not None else load_suites():
            had = (validated or {}).get(suite.path)
            outcomes.extend((had or validate_suite(source, suite)).outcomes)
        outcomes.extend(freshness_outcomes(source))
        outcomes.extend(quarantine_outcomes(source))
        outcomes.extend(anomalies.event_volume(source, config["event_volume"]))
        outcomes.extend(anomalies.segment_change(source, config["segment_change"]))
        outcomes.extend(anomalies.score_shift(source, config["score_shift"]))
    return outcomes

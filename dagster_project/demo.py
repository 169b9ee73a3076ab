"""`nextbest demo`: the demo store end to end on the embedded DuckDB.

Simulates the store when the warehouse is empty (or `--fresh`), then runs the
`daily_personalization` job in process, so every asset that exists is
materialized exactly as the schedule would, and prints what came out.
"""

from __future__ import annotations

import time
from typing import Callable

from dagster_project.ingest.assets import raw_is_empty
from dagster_project.ingest.simulator import drop_pipeline_state, pipeline_tables, simulate
from dagster_project.project import dagster_instance, duckdb_path
from dagster_project.resources.warehouse import connect_duckdb

MARTS = ("customer_context", "customer_segments", "customer_segment_history", "customer_tags",
         "customer_features", "customer_labels", "customer_service_context", "campaign_performance")
MARTS_SCHEMA = "analytics"
# NextBest's own tables written by the Python assets.
DECISION_TABLES = ("customer_scores", "customer_predictions", "routing_decisions", "message_drafts")


def summarize(echo: Callable[[str], None]) -> None:
    """Print rows per mart and segment sizes."""
    con = connect_duckdb(duckdb_path(), read_only=True)
    try:
        existing = {(schema, name) for schema, name in con.execute(
            "select table_schema, table_name from information_schema.tables").fetchall()}
        echo("Tables:")
        for schema, table in [(MARTS_SCHEMA, m) for m in MARTS] + [("nextbest", t) for t in DECISION_TABLES]:
            if (schema, table) in existing:
                rows = con.execute(f"select count(*) from {schema}.{table}").fetchone()[0]
                echo(f"  {schema + '.' + table:<36} {rows:>10,} rows")
        customers = con.execute(f"select count(*) from {MARTS_SCHEMA}.customer_context").fetchone()[0]
        echo("Segments (customers now in each):")
        for segment, size in con.execute(
            f"select segment, count(*) from {MARTS_SCHEMA}.customer_segments group by 1 order by 2 desc"
        ).fetchall():
            share = size / customers if customers else 0
            echo(f"  {segment:<20} {size:>8,}  ({share:.1%})")
        tags = con.execute(
            f"""select count_if(high_ltv), count_if(gift_recipient), count_if(at_risk), count_if(brand_advocate)
                from {MARTS_SCHEMA}.customer_tags"""
        ).fetchone()
        echo("Tags: high_ltv {:,}, gift_recipient {:,}, at_risk {:,}, brand_advocate {:,}".format(*tags))
        if ("nextbest", "message_drafts") in existing:
            echo("Drafts by status: " + ", ".join(
                f"{status} {count:,}" for status, count in con.execute(
                    "select status, count(*) from nextbest.message_drafts group by 1 order by 1").fetchall()))
            echo("Next: `nextbest review` to read a batch, `nextbest approve BATCH --by YOU` to send it.")
    finally:
        con.close()


def _shown(value) -> str:
    """A check's metadata value on one line: numbers rounded, text cut short."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return " ".join(str(value).split())[:80]


def run_demo(customers: int, months: int, seed: int, fresh: bool, echo: Callable[[str], None]) -> int:
    """Simulate if needed, materialize everything, print a summary. Returns an exit code."""
    db = duckdb_path()
    echo(f"NextBest demo on {db}")
    con = connect_duckdb(db)
    try:
        if fresh or raw_is_empty(con):
            echo(f"[1/3] Simulating the demo coffee store: {customers:,} subscribers, {months} months")
            if fresh and pipeline_tables(con):
                echo(f"      starting over: dropped {len(drop_pipeline_state(con))} tables the pipeline had built")
            simulate(con, customers=customers, months=months, seed=seed,
                     progress=lambda m: echo(f"      {m}"))
        else:
            echo("[1/3] Raw data already present; keeping it (use --fresh to re-simulate)")
    finally:
        con.close()  # the job opens its own connections

    echo("[2/3] Materializing the pipeline (job daily_personalization)")
    from dagster_project.definitions import defs

    started = time.perf_counter()
    result = defs.resolve_job_def("daily_personalization").execute_in_process(
        run_config={
            "ops": {"raw_sources": {"config": {"mode": "existing"}}},
            "loggers": {"console": {"config": {"log_level": "INFO"}}},
        },
        instance=dagster_instance(),
        raise_on_error=False,
    )
    if not result.success:
        failures = [e for e in result.all_events if e.is_step_failure]
        for event in failures:
            echo(f"  FAILED {event.step_key}: {event.event_specific_data.error.message.strip()[:2000]}")
        echo("The pipeline failed; nothing downstream of the failure was built.")
        return 1
    materialized = len(result.get_asset_materialization_events())
    echo(f"      {materialized} assets materialized in {time.perf_counter() - started:.1f}s")
    checks = result.get_asset_check_evaluations()
    failed = [c for c in checks if not c.passed]
    echo(f"      {len(checks) - len(failed)} of {len(checks)} checks passed")
    for check in failed:
        # What the check measured, here: the run is not kept unless DAGSTER_HOME is set, and doctor
        # runs the data checks only (not the models' floors and drift).
        found = "; ".join(f"{key} {_shown(value.value)}" for key, value in list(check.metadata.items())[:4])
        echo(f"      {check.severity.value}: {check.asset_key.to_user_string()} · {check.check_name} failed"
             + (f" ({found[:300]})" if found else ""))

    echo("[3/3] Summary")
    summarize(echo)
    return 0

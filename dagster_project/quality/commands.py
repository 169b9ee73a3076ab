"""`nextbest doctor`: every data-quality check on the warehouse, its status and what to do about a failure.

Exit code 0 when nothing blocks, 1 when a blocking (ERROR) check fails, 2 when
there is no warehouse to check. On DuckDB (the default, or `--db FILE`) it opens
the file read-only, so it never waits for or blocks a running pipeline; with
`NEXTBEST_WAREHOUSE=snowflake` it reads Snowflake through the warehouse resource.
Either way the checks are the same functions the Dagster checks run.
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    """Add `doctor` to the `nextbest` parser."""
    doctor = subparsers.add_parser(
        "doctor", help="run every data-quality check and say what to do about failures (exit 1 if one blocks)")
    doctor.add_argument("--db", default=None,
                        help="DuckDB file (default: NEXTBEST_DUCKDB_PATH; with it, DuckDB even if "
                             "NEXTBEST_WAREHOUSE=snowflake)")
    doctor.add_argument("--markdown", action="store_true", help="print the summary as markdown")
    doctor.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the checks and print the summary; the exit code says whether anything blocks."""
    from dagster_project.project import default_as_of
    from dagster_project.quality.summary import collect_outcomes, render_markdown, render_text
    from dagster_project.resources.warehouse import command_source

    try:
        default_as_of()  # the freshness and anomaly checks measure from NEXTBEST_AS_OF: refuse a bad one first
    except ValueError as error:
        print(f"Cannot run the checks: {error}", file=sys.stderr)
        return 2
    try:
        where, source, close = command_source(getattr(args, "db", None))
    except Exception as error:  # noqa: BLE001 - shown to the user as is
        print(f"Cannot open the warehouse: {error}", file=sys.stderr)
        return 2
    try:
        outcomes = collect_outcomes(source)
    finally:
        close()
    print(f"Data-quality checks on {where}\n", flush=True)
    print(render_markdown(outcomes, "nextbest doctor") if getattr(args, "markdown", False)
          else render_text(outcomes))
    return 1 if any(o.blocking for o in outcomes) else 0

"""`nextbest doctor`: every data-quality check on the warehouse, its status and what to do about a failure.

Exit code 0 when nothing blocks, 1 when a blocking (ERROR) check fails, 2 when
there is no warehouse to check. Opens the DuckDB file read-only.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def register(subparsers) -> None:
    """Add `doctor` to the `nextbest` parser."""
    doctor = subparsers.add_parser(
        "doctor", help="run every data-quality check and say what to do about failures (exit 1 if one blocks)")
    doctor.add_argument("--db", default=None, help="DuckDB file (default: NEXTBEST_DUCKDB_PATH)")
    doctor.add_argument("--markdown", action="store_true", help="print the summary as markdown")
    doctor.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the checks and print the summary; the exit code says whether anything blocks."""
    from dagster_project.project import duckdb_path
    from dagster_project.quality.summary import collect_outcomes, render_markdown, render_text
    from dagster_project.resources.warehouse import connect_duckdb

    if getattr(args, "db", None):
        os.environ["NEXTBEST_DUCKDB_PATH"] = str(Path(args.db).expanduser().resolve())
    path = duckdb_path()
    try:
        con = connect_duckdb(path, read_only=True)
    except Exception as error:  # noqa: BLE001 - shown to the user as is
        print(f"Cannot open the warehouse: {error}")
        return 2
    try:
        outcomes = collect_outcomes(con)
    finally:
        con.close()
    print(f"Data-quality checks on {path}\n", flush=True)
    print(render_markdown(outcomes, "nextbest doctor") if getattr(args, "markdown", False)
          else render_text(outcomes))
    return 1 if any(o.blocking for o in outcomes) else 0

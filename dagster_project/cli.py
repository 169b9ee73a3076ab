"""The `nextbest` command line: simulate a store, import your data, run the demo.

    nextbest simulate --customers 8000 --months 18 --seed 42
    nextbest import ./exports
    nextbest demo
"""

from __future__ import annotations

import argparse
import importlib
import io
import os
import sys
import time
from datetime import date
from pathlib import Path

from dagster_project.project import DUCKDB_HELP, duckdb_path


# Modules that add subcommands via `register(subparsers)`; each sets `func` to a
# callable(args) -> exit code.
STAGE_COMMAND_MODULES: tuple[str, ...] = (
    "dagster_project.messaging.commands",
    "dagster_project.delivery.approval_commands",
    "dagster_project.delivery.commands",
    "dagster_project.quality.commands",
    "dagster_project.service.commands",
    "dagster_project.models.clv_commands",
    "dagster_project.decisioning.commands",
)


def _print(message: str) -> None:
    print(message, flush=True)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text}")
    return value


def _use_db(path: str | None) -> Path:
    """Point NEXTBEST_DUCKDB_PATH at --db (before dbt or Dagster read it).

    Raises ValueError for a file named after a NextBest schema (e.g. raw.duckdb).
    """
    if path:
        os.environ["NEXTBEST_DUCKDB_PATH"] = str(Path(path).expanduser().resolve())
    return duckdb_path()


def _error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)


def cmd_simulate(args: argparse.Namespace) -> int:
    from dagster_project.ingest.simulator import drop_pipeline_state, pipeline_tables, simulate
    from dagster_project.resources.warehouse import connect_duckdb

    try:
        db = _use_db(args.db)
    except ValueError as error:
        _error(str(error))
        return 2
    con = connect_duckdb(db)
    try:
        built = pipeline_tables(con)
        if built and not args.replace:
            _error(f"{db} holds what the pipeline built on its store ({len(built)} tables, e.g. "
                   f"{', '.join(built[:3])}): sends, approvals, drafts and the feature history. A new "
                   "simulation replaces the raw data under them. Simulate into another file (--db NEW.duckdb), "
                   "or pass --replace to start this warehouse over (drops those tables).")
            return 2
        if built:
            drop_pipeline_state(con)
            _print(f"Starting {db} over: dropped {len(built)} tables the pipeline had built")
        _print(f"Simulating {args.customers:,} subscribers over {args.months} months (seed {args.seed}) into {db}")
        summary = simulate(con, customers=args.customers, months=args.months, seed=args.seed,
                           end_date=args.end_date, progress=lambda m: _print(f"  {m}"))
    finally:
        con.close()
    _print("Rows per table:")  # the simulator's progress has said how long it took
    for table, rows in summary.row_counts.items():
        _print(f"  {table:<28} {rows:>12,}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from dagster_project.ingest.importer import ContractError, import_directory, refuse_on_snowflake
    from dagster_project.resources.warehouse import connect_duckdb

    try:
        db = _use_db(args.db)
    except ValueError as error:
        _error(str(error))
        return 2
    folder = Path(args.directory)
    if not folder.is_dir():
        _error(f"{folder} is not a folder of CSV/Parquet files named after the raw tables")
        return 2
    try:
        refuse_on_snowflake()  # before opening (and so creating) the DuckDB file
    except ContractError as error:
        _error(str(error))
        return 2
    _print(f"Importing {folder} into {db}")
    con = connect_duckdb(db)
    try:
        summary = import_directory(con, folder, progress=lambda m: _print(f"  {m}"))
    except ContractError as error:
        _error(str(error))
        return 2
    finally:
        con.close()
    _print(summary.render())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from dagster_project.demo import run_demo

    try:
        _use_db(args.db)
    except ValueError as error:
        _error(str(error))
        return 2
    return run_demo(customers=args.customers, months=args.months, seed=args.seed,
                    fresh=args.fresh, echo=_print)


def _store_options(parser: argparse.ArgumentParser) -> None:
    """The simulated store's size and seed (`simulate`, and `demo` when it simulates)."""
    from dagster_project.ingest.simulator import DEFAULT_CUSTOMERS, DEFAULT_MONTHS, DEFAULT_SEED

    parser.add_argument("--customers", type=_positive_int, default=DEFAULT_CUSTOMERS,
                        help=f"subscribers to simulate (default {DEFAULT_CUSTOMERS:,})")
    parser.add_argument("--months", type=_positive_int, default=DEFAULT_MONTHS,
                        help=f"months of history up to the end date (default {DEFAULT_MONTHS})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help=f"random seed: the same seed gives the same store (default {DEFAULT_SEED})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nextbest",
        description="NextBest: warehouse-native next-best-message engine for subscription businesses.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    db_help = DUCKDB_HELP

    sim = sub.add_parser("simulate", help="write a simulated coffee subscription store into raw.*")
    _store_options(sim)
    sim.add_argument("--end-date", type=date.fromisoformat, default=None,
                     help="last simulated day, YYYY-MM-DD (default today, UTC)")
    sim.add_argument("--db", default=None, help=db_help)
    sim.add_argument("--replace", action="store_true",
                     help="start a warehouse the pipeline has already run on over: drop what it built (sends, "
                          "approvals, drafts, dbt models) before simulating; without it, such a warehouse is refused")
    sim.set_defaults(func=cmd_simulate)

    imp = sub.add_parser("import", help="load CSV/Parquet files named after the raw tables (changed rows update "
                                        "the stored ones; refused on a warehouse holding the simulated demo store)")
    imp.add_argument("directory", help="folder with customers.csv, orders.parquet, ...")
    imp.add_argument("--db", default=None, help=db_help)
    imp.set_defaults(func=cmd_import)

    demo = sub.add_parser("demo", help="simulate if empty, then materialize the whole pipeline")
    _store_options(demo)
    demo.add_argument("--fresh", action="store_true",
                      help="start over: drop what the pipeline built (sends, approvals, drafts, dbt models) "
                           "and simulate again, even when raw data exists")
    demo.add_argument("--db", default=None, help=db_help)
    demo.set_defaults(func=cmd_demo)

    # Each stage adds its own commands: a module with `register(subparsers)`.
    for module_name in STAGE_COMMAND_MODULES:
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `nextbest` console script."""
    import duckdb

    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    try:
        code = args.func(args)
    except duckdb.IOException as error:
        # Every command opens the file through connect_duckdb, which waits a while for the lock and
        # then gives up: one message for all of them instead of a traceback from each.
        if "lock" not in str(error).lower():
            # Not a DuckDB file, or a damaged one: say which, without a traceback.
            _error(f"Cannot open the warehouse: {error}\nPass --db (or set NEXTBEST_DUCKDB_PATH) to a DuckDB file.")
            return 2
        _error(f"{error}\nThe warehouse is open in another process (a `nextbest demo`, a Dagster run "
               "or a SQL client): run the command again once it is done, or pass --db "
               "for another file.")
        return 2
    except BrokenPipeError:
        # The reader went away (`nextbest review | head`): stop quietly, as other command-line tools do.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
            pass  # stdout is not a file descriptor (e.g. captured in tests): nothing left to flush
        return 1
    if args.command == "demo" and code == 0:
        _print(f"Finished in {time.perf_counter() - started:.1f}s")
    return code


if __name__ == "__main__":
    sys.exit(main())

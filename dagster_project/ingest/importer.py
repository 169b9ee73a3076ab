"""`nextbest import DIR`: load a directory of CSV / Parquet exports into `raw.*`.

    summary = import_directory(con, "exports/")
    print(summary.render())

Files are named after the source tables (`customers.csv`, `orders.parquet`,
`orders_2024.csv.gz`, ...) and loaded in `contract.LOAD_ORDER`, so foreign keys
are checked against what `raw.*` already holds plus this import's parents.

- File level: every file's header is checked before anything is loaded. A
  missing required column raises `ContractError` naming the file, the column
  and the expected columns, and nothing is imported. Extra columns, unknown
  file names and empty files are warnings in the summary.
- Row level: a row that breaks the contract goes to `raw.raw_quarantine` with
  a reason naming the column and what was expected; the good rows load.
- Re-imports: exports are snapshots, so a row whose primary key is already in
  `raw.<table>` is compared with the stored row. In a table of current state
  (customers, products, subscriptions, orders, order_items, support_tickets,
  payments) a row with other values replaces the stored one ("updated"); the
  columns the file leaves out keep their stored values. Events (email_events,
  portal_events) never change once stored. A row that is the same once
  normalised ('TRUE' for true, another timestamp format) is "already
  present", so importing the same files again changes nothing. A bad row is
  quarantined and the stored row of its key stays as it is; a quarantine row
  is written once per file, row and reason. No stored row is ever deleted.

Each file is loaded (and its updates written) in its own transaction, entirely in DuckDB
SQL. DuckDB only: on Snowflake (`NEXTBEST_WAREHOUSE=snowflake`) the raw tables are loaded
by the store's own loader, and an import is refused with a message saying so. A warehouse
holding the simulated demo store is refused too: its rows would mix with the store's own.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from dagster_project.ingest import contract, row_checks
from dagster_project.ingest.errors import ContractError
from dagster_project.ingest.source_files import (
    SourceFile,
    csv_encoding,
    discover,
    drop_temp_tables,
    header_columns,
    is_empty,
    stage,
)
from dagster_project.resources.warehouse import table_exists

__all__ = ["ContractError", "FileResult", "ImportError_", "ImportSummary", "import_directory"]

ImportError_ = ContractError  # the name in the first API sketch; ContractError is the class

Progress = Callable[[str], None]


@dataclass
class FileResult:
    """Row counts for one imported file."""

    table: str
    file: str
    rows_read: int = 0
    loaded: int = 0
    updated: int = 0
    quarantined: int = 0
    already_present: int = 0


@dataclass
class ImportSummary:
    """What an import did: one `FileResult` per file, and warnings."""

    directory: Path
    files: list[FileResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def rows_loaded(self) -> int:
        return sum(f.loaded for f in self.files)

    @property
    def rows_updated(self) -> int:
        return sum(f.updated for f in self.files)

    @property
    def rows_quarantined(self) -> int:
        return sum(f.quarantined for f in self.files)

    def by_table(self) -> dict[str, tuple[int, FileResult]]:
        """table -> (number of files, summed counts), in load order."""
        out: dict[str, tuple[int, FileResult]] = {}
        for f in self.files:
            n, total = out.get(f.table, (0, FileResult(f.table, "")))
            total.rows_read += f.rows_read
            total.loaded += f.loaded
            total.updated += f.updated
            total.quarantined += f.quarantined
            total.already_present += f.already_present
            out[f.table] = (n + 1, total)
        return out

    def render(self) -> str:
        """A plain-text table per source table, then warnings and where to look."""
        header = ("table", "files", "rows read", "loaded", "updated", "quarantined", "already present")
        rows = [
            (t.table, n, t.rows_read, t.loaded, t.updated, t.quarantined, t.already_present)
            for n, t in self.by_table().values()
        ]
        totals = [sum(r[i] for r in rows) for i in range(1, len(header))]
        body = [header, *rows, ("total", *totals)]
        cells = [[str(c) if i == 0 else f"{c:,}" if isinstance(c, int) else c for i, c in enumerate(r)] for r in body]
        widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
        lines = [f"Import from {self.directory}"]
        for r in cells:
            lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if self.warnings:
            lines += ["", "Warnings:", *(f"  - {w}" for w in self.warnings)]
        if self.rows_quarantined:
            lines += [
                "",
                f"{self.rows_quarantined:,} row(s) quarantined: see {contract.RAW_SCHEMA}.{contract.QUARANTINE_TABLE} "
                "(source_file, row_number, reason).",
            ]
        return "\n".join(lines)


@dataclass
class _Plan:
    source: SourceFile
    columns: dict[str, str]  # file column -> normalised name
    encoding: str


def refuse_on_snowflake() -> None:
    """The importer writes DuckDB SQL into the DuckDB file; it must not run while Snowflake is the warehouse."""
    if os.environ.get("NEXTBEST_WAREHOUSE", "").strip().lower() == "snowflake":
        raise ContractError(
            "NEXTBEST_WAREHOUSE=snowflake: `nextbest import` loads files into the DuckDB warehouse only. On "
            "Snowflake, load raw.customers, raw.orders, ... with your own loader (Fivetran, Snowpipe, COPY INTO) "
            "in the shape of the source contract (DESIGN.md), or unset NEXTBEST_WAREHOUSE to import into DuckDB.")


def refuse_demo_store(con: duckdb.DuckDBPyConnection) -> None:
    """Refuse to import into a warehouse holding the simulated demo store (`nextbest simulate` /
    `nextbest demo`): the store's rows would mix with the demo's, and where ids meet (products
    P001...) the demo's rows would be compared with, or overwritten by, the store's."""
    if not _holds_demo_store(con):
        return
    path = con.execute("select path from duckdb_databases() where database_name = current_database()").fetchone()
    where = path[0] if path and path[0] else "this warehouse"
    raise ContractError(
        f"{where} holds the simulated demo store (written by `nextbest simulate` or `nextbest demo`; "
        f"its customers are in {contract.SIM_TRUTH_SCHEMA}.customer_traits), so your store's rows would mix "
        "with the demo's. Nothing was imported. Import into a new file instead: `nextbest import DIR --db "
        "data/mystore.duckdb` (or set NEXTBEST_DUCKDB_PATH=data/mystore.duckdb) and point the other "
        "commands at the same file.")


def _holds_demo_store(con: duckdb.DuckDBPyConnection) -> bool:
    """True when raw.customers holds a customer the simulator wrote (its oracle lists them)."""
    if not (table_exists(con, f"{contract.SIM_TRUTH_SCHEMA}.customer_traits")
            and table_exists(con, f"{contract.RAW_SCHEMA}.customers")):
        return False
    return con.execute(
        f"select exists (select 1 from {contract.RAW_SCHEMA}.customers c "
        f"join {contract.SIM_TRUTH_SCHEMA}.customer_traits t using (customer_id))"
    ).fetchone()[0]


def import_directory(
    con: duckdb.DuckDBPyConnection, directory: str | Path, progress: Progress | None = None
) -> ImportSummary:
    """Import every source file of `directory` into `raw.*` and return what
    happened. `progress`, if given, is called with one line of text per step.

    Raises `ContractError` (and imports nothing) when a file cannot be loaded
    as a whole: no source files, unreadable file, missing required column; or
    when the warehouse holds the simulated demo store.
    """
    refuse_on_snowflake()
    refuse_demo_store(con)
    directory = Path(directory)
    say = progress or (lambda message: None)
    contract.create_raw_schema(con)
    sources, warnings = discover(directory)
    if not sources:
        raise ContractError(
            f"{directory}: no source files to import; expected files named after the source tables "
            f"({', '.join(contract.LOAD_ORDER)}) ending in .csv, .csv.gz or .parquet"
        )
    summary = ImportSummary(directory=directory, warnings=warnings)
    plans = _check_headers(con, sources, summary)
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    # Row numbers rely on files being read in order.
    keep_order = con.execute("select current_setting('preserve_insertion_order')").fetchone()[0]
    con.execute("set preserve_insertion_order = true")
    try:
        for plan in plans:
            say(f"{plan.source.name}: reading into raw.{plan.source.table}")
            result = _load_file(con, plan, now, summary.warnings)
            summary.files.append(result)
            say(
                f"{plan.source.name}: {result.rows_read:,} rows read, {result.loaded:,} loaded, "
                f"{result.updated:,} updated, {result.quarantined:,} quarantined, "
                f"{result.already_present:,} already present"
            )
    finally:
        _drop_work_tables(con)
        con.execute(f"set preserve_insertion_order = {str(bool(keep_order)).lower()}")
    return summary


def _check_headers(con: duckdb.DuckDBPyConnection, sources: list[SourceFile], summary: ImportSummary) -> list[_Plan]:
    """Check every file's columns against the contract before loading any."""
    plans, problems = [], []
    for source in sources:
        try:
            if is_empty(source):
                summary.warnings.append(f"{source.name}: empty file (0 bytes); nothing loaded into raw.{source.table}")
                summary.files.append(FileResult(source.table, source.name))
                continue
            encoding = csv_encoding(source) if source.format == "csv" else "utf-8"
            found = header_columns(con, source, encoding)
        except ContractError as unreadable:
            problems.extend(unreadable.problems)
            continue
        problem = _column_problem(source, found, summary.warnings)
        if problem:
            problems.append(problem)
        else:
            plans.append(_Plan(source, {name: name.strip().lower() for name in found}, encoding))
    if problems:
        raise ContractError(problems + ["Nothing was imported: fix the files above and run the import again."])
    return plans


def _column_problem(source: SourceFile, found: list[str], warnings: list[str]) -> str | None:
    """A message if `found` cannot be loaded into the source's table; warns about extras."""
    table = contract.TABLES[source.table]
    names = [n.strip().lower() for n in found]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        return f"{source.name}: column(s) {', '.join(twice)} appear more than once in the header"
    missing = [c.name for c in table.columns if c.required and c.name not in names]
    if missing:
        expected = ", ".join(c.name + ("" if c.required else " (optional)") for c in table.columns)
        hint = ""
        if len(found) == 1 and any(sep in found[0] for sep in ";\t|"):
            hint = " The header looks like it is not comma-separated; export the file as CSV with ',' separators."
        return (
            f"{source.name}: missing required column(s) {', '.join(missing)} for raw.{table.name}. "
            f"Expected columns (any order): {expected}. Found: {', '.join(found) or 'none'}.{hint}"
        )
    extras = [n for n in names if n not in table.column_names]
    if extras:
        warnings.append(f"{source.name}: ignored column(s) not in raw.{table.name}: {', '.join(extras)}")
    return None


def _load_file(con: duckdb.DuckDBPyConnection, plan: _Plan, now: datetime, warnings: list[str]) -> FileResult:
    """Stage, check, quarantine, load and update one file in one transaction."""
    source, table = plan.source, contract.TABLES[plan.source.table]
    result = FileResult(source.table, source.name)
    # Staged outside the transaction: the data row numbers come from the
    # rowids of committed temp tables (uncommitted rows have provisional ids).
    _drop_work_tables(con)
    try:
        staged = stage(con, source, plan.columns, plan.encoding)
    except duckdb.Error as exc:
        raise ContractError(f"{source.name}: cannot be read as {source.format.upper()}: {exc}") from exc
    warnings.extend(staged.warnings)
    if staged.rows + staged.rejected == 0:
        warnings.append(f"{source.name}: header only, no data rows; nothing loaded into raw.{table.name}")
    con.begin()
    try:
        columns = list(plan.columns.values())
        con.execute(row_checks.checked_rows_sql(table, set(columns), now))
        con.execute(row_checks.final_rows_sql(table, set(columns)))
        counts = con.execute(row_checks.counts_sql()).fetchone()
        result.loaded, result.updated, quarantined, result.already_present, events_differ = counts
        con.execute(row_checks.quarantine_sql(table, str(source.path.resolve()), columns, now))
        con.execute(row_checks.load_sql(table))
        if result.updated:
            con.execute(row_checks.update_sql(table, set(columns)))
        if events_differ:
            key = ", ".join(table.primary_key)
            warnings.append(
                f"{source.name}: {events_differ:,} row(s) whose {key} is already in raw.{table.name} hold other "
                f"values; an event does not change once stored, so the stored row(s) were kept")
        result.rows_read = staged.rows + staged.rejected
        result.quarantined = quarantined + staged.rejected
        con.commit()
    except duckdb.Error as exc:
        con.rollback()
        raise ContractError(
            f"{source.name}: could not be imported into raw.{table.name} ({exc}); "
            "files listed before it in the progress output were imported"
        ) from exc
    except BaseException:
        con.rollback()
        raise
    return result


def _drop_work_tables(con: duckdb.DuckDBPyConnection) -> None:
    drop_temp_tables(con)
    for name in (row_checks.CHECKED_TABLE, row_checks.FINAL_TABLE):
        con.execute(f"drop table if exists temp.{name}")

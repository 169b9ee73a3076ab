"""Find the source files of an import directory and read them into DuckDB as text.

A file belongs to a source table by its name: `<table>.csv`, `<table>.csv.gz`,
`<table>.parquet`, or several files per table such as `orders_2024.csv`.
Every value is read as text (`all_varchar` / cast to varchar) so that the
contract types are checked row by row in SQL afterwards (see `row_checks.py`).

Reading a file leaves two temp tables behind for the importer:
`STAGE_TABLE` (`_nb_row` = 1-based data row number in the file, then one
varchar column per file column, names trimmed and lower-cased) and
`REJECTS_TABLE` (`_nb_row`, `reason`, `row_json`) for CSV rows DuckDB could not
split into the header's columns or decode.
"""

from __future__ import annotations

import csv
import gzip
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from dagster_project.ingest import contract
from dagster_project.ingest.errors import ContractError

STAGE_TABLE = "_nextbest_import_stage"
REJECTS_TABLE = "_nextbest_import_rejects"
_READ_TABLE = "_nextbest_import_read"
_DUCKDB_REJECTS = "_nextbest_import_csv_errors"
_DUCKDB_REJECT_SCANS = "_nextbest_import_csv_scans"

SUFFIXES = {".csv.gz": "csv", ".csv": "csv", ".parquet": "parquet"}
_LATIN1_NOTE = "read it as Latin-1 (re-export as UTF-8 if accents look wrong)"
# Excel's "CSV UTF-8" starts the file with it. DuckDB's UTF-8 reader skips it; Python's
# csv module needs `utf-8-sig`, or the first column is read as '\ufeffcustomer_id'.
_UTF8_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class SourceFile:
    """One file of the import directory and the `raw.*` table it feeds."""

    path: Path
    table: str
    format: str  # "csv" | "parquet"

    @property
    def name(self) -> str:
        return self.path.name


@dataclass
class StagedFile:
    """What reading one file into `STAGE_TABLE` / `REJECTS_TABLE` produced."""

    rows: int  # rows in STAGE_TABLE
    rejected: int  # rows in REJECTS_TABLE
    warnings: list[str] = field(default_factory=list)


def quote_ident(name: str) -> str:
    """SQL identifier quoting (file headers can hold any characters)."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """SQL string literal quoting."""
    return "'" + value.replace("'", "''") + "'"


def table_for(filename: str) -> tuple[str, str] | None:
    """(table, format) for a file name, or None when it names no source table."""
    lower = filename.lower()
    for suffix, fmt in SUFFIXES.items():
        if lower.endswith(suffix):
            stem = lower[: -len(suffix)]
            # longest table name first, so `order_items_x` is not read as `order...`
            for table in sorted(contract.TABLES, key=len, reverse=True):
                if stem == table or stem.startswith(table + "_"):
                    return table, fmt
            return None
    return None


def discover(directory: Path) -> tuple[list[SourceFile], list[str]]:
    """Source files of `directory` in `contract.LOAD_ORDER` (then by name), and
    a warning for every file that was ignored."""
    if not directory.is_dir():
        raise ContractError(f"{directory}: no such directory to import from")
    files, warnings = [], []
    examples = "customers.csv, orders.parquet, orders_2024.csv.gz"
    for path in sorted(directory.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        match = table_for(path.name)
        if match is None:
            warnings.append(
                f"{path.name}: ignored, the name matches no source table "
                f"(expected one of {', '.join(contract.LOAD_ORDER)} as e.g. {examples})"
            )
            continue
        files.append(SourceFile(path, *match))
    files.sort(key=lambda f: (contract.LOAD_ORDER.index(f.table), f.name))
    return files, warnings


def is_empty(source: SourceFile) -> bool:
    """True for a zero-byte file (or a CSV holding only whitespace)."""
    if source.path.stat().st_size == 0:
        return True
    return source.format == "csv" and _head(source.path).lstrip(_UTF8_BOM).strip() == b""


def csv_encoding(source: SourceFile) -> str:
    """Encoding to read a CSV with, judged from its header line: UTF-8 (with or
    without Excel's byte-order mark), UTF-16 (byte-order mark) or Latin-1 when
    the header is not valid UTF-8."""
    head = _head(source.path)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    if head.startswith(_UTF8_BOM):
        return "utf-8"
    try:
        head.split(b"\n", 1)[0].decode("utf-8")
    except UnicodeDecodeError:
        return "latin-1"
    return "utf-8"


def header_columns(con: duckdb.DuckDBPyConnection, source: SourceFile, encoding: str) -> list[str]:
    """The file's column names as DuckDB reads them (cheap: sniff or metadata)."""
    try:
        rows = con.execute(f"describe select * from {_reader_sql(source, encoding)}").fetchall()
    except duckdb.Error as exc:
        # DuckDB's sniffer refuses a file whose sample breaks CSV rules with a dump of its dialect
        # search; say which row is broken when that can be found.
        problem = _csv_problem(source, encoding) if source.format == "csv" else None
        raise ContractError(f"{source.name}: cannot be read as {source.format.upper()}: {problem or exc}") from exc
    names = [r[0] for r in rows if r[0] != "file_row_number" or source.format != "parquet"]
    if source.format == "csv":
        # DuckDB renames a repeated header name (`email`, `email_1`): the file's own names show the repeat.
        written = _csv_header(source, encoding)
        if written is not None and len(written) == len(names):
            return written
    return names


def _csv_header(source: SourceFile, encoding: str) -> list[str] | None:
    """The CSV's header as written (first record, delimiter sniffed), or None when it does not read."""
    try:
        with _open_csv_text(source, encoding) as f:
            first = f.readline()
        dialect = csv.Sniffer().sniff(first, delimiters=",;\t|")
        return next(csv.reader([first], dialect))
    except (OSError, UnicodeError, csv.Error, StopIteration):
        return None


def stage(con: duckdb.DuckDBPyConnection, source: SourceFile, columns: dict[str, str], encoding: str) -> StagedFile:
    """Read `source` into `STAGE_TABLE` (text values, `columns` maps the file's
    header to the normalised name) and `REJECTS_TABLE`.

    A CSV that is not UTF-8 is re-read as Latin-1 with a warning, unless other
    rows hold valid UTF-8 text: then it is UTF-8 and only the undecodable rows
    are rejected.
    """
    drop_temp_tables(con)
    select = ", ".join(f"cast({quote_ident(src)} as varchar) as {quote_ident(dst)}" for src, dst in columns.items())
    warnings = []
    if source.format == "parquet":
        con.execute(
            f"create temp table {STAGE_TABLE} as select file_row_number + 1 as _nb_row, {select} "
            f"from {_reader_sql(source, encoding)} order by file_row_number"
        )
        con.execute(f"create temp table {REJECTS_TABLE} (_nb_row bigint, reason varchar, row_json varchar)")
    else:
        if encoding == "latin-1":
            warnings.append(f"{source.name}: header not UTF-8 encoded; {_LATIN1_NOTE}")
        _read_csv(con, source, encoding)
        # A byte-order mark says UTF-8: its undecodable rows are rejected, not re-read as Latin-1.
        if (encoding == "utf-8" and _has_encoding_errors(con) and not _has_non_ascii(con, columns)
                and not _head(source.path, len(_UTF8_BOM)).startswith(_UTF8_BOM)):
            warnings.append(f"{source.name}: not UTF-8 encoded; {_LATIN1_NOTE}")
            _read_csv(con, source, "latin-1")
        unclosed = _unclosed_quote_row(con)
        if unclosed is not None:
            raise ContractError(
                f"{source.name}: row {unclosed} opens a quoted value that is never closed, so the rest of the "
                f"file cannot be split into rows; nothing of {source.name} was imported (files listed before it "
                "in the progress output were). Close the quote (a quote inside a value is written \"\") and "
                "import again.")
        _stage_csv(con, select)
    rows, rejected = (con.execute(f"select count(*) from {t}").fetchone()[0] for t in (STAGE_TABLE, REJECTS_TABLE))
    return StagedFile(rows=rows, rejected=rejected, warnings=warnings)


def drop_temp_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Remove the temp tables a previous `stage` left behind."""
    for name in (STAGE_TABLE, REJECTS_TABLE, _READ_TABLE, _DUCKDB_REJECTS, _DUCKDB_REJECT_SCANS):
        con.execute(f"drop table if exists temp.{name}")


def _opener(path: Path):
    """`open`, or `gzip.open` for a .gz file."""
    return gzip.open if path.name.lower().endswith(".gz") else open


def _open_csv_text(source: SourceFile, encoding: str):
    """The CSV as text for Python's csv module (undecodable bytes replaced, newlines as written,
    a UTF-8 byte-order mark dropped as DuckDB drops it)."""
    python_encoding = "utf-8-sig" if encoding == "utf-8" else encoding
    return _opener(source.path)(source.path, "rt", encoding=python_encoding, errors="replace", newline="")


def _head(path: Path, size: int = 65536) -> bytes:
    try:
        with _opener(path)(path, "rb") as f:
            return f.read(size)
    except OSError as exc:
        raise ContractError(f"{path.name}: cannot be read: {exc}") from exc


def _csv_problem(source: SourceFile, encoding: str) -> str | None:
    """Why a CSV DuckDB could not read cannot be split into rows, naming the data row; None if not found."""
    records = 0  # records read, the header included: the failing one is data row `records`
    try:
        with _open_csv_text(source, encoding) as f:
            for records, _ in enumerate(csv.reader(f, strict=True), start=1):
                pass
    except csv.Error as error:
        where = f"row {records}" if records else "the header"
        if "unexpected end of data" in str(error):
            return (f"{where} opens a quoted value that is never closed, so the rest of the file cannot be split "
                    "into rows; close the quote (a quote inside a value is written \"\") and import again")
        if "expected after" in str(error):
            return (f"{where}: a quoted value must be followed by ',' or the end of the line; write a quote "
                    "inside a value as \"\" (and quote the whole value), then import again")
        return None
    except (OSError, UnicodeError):
        return None
    head = _head(source.path)
    if b"\r\n" in head and b"\n" in head.replace(b"\r\n", b""):
        return ("it mixes Windows (CRLF) and Unix (LF) line endings; re-save it with one kind of line ending "
                "and import again")
    return None


def _reader_sql(source: SourceFile, encoding: str) -> str:
    path = quote_literal(str(source.path))
    if source.format == "parquet":
        return f"read_parquet({path}, file_row_number=true)"
    # Dialect fixed to standard CSV; the sniffer only finds line endings. Rows
    # that do not split into the header's columns are stored as rejects instead
    # of failing the whole file.
    return (
        f"read_csv({path}, header=true, all_varchar=true, delim=',', quote='\"', escape='\"', "
        f"comment='', skip=0, encoding={quote_literal(encoding)}, store_rejects=true, "
        f"rejects_table='{_DUCKDB_REJECTS}', rejects_scan='{_DUCKDB_REJECT_SCANS}')"
    )


def _read_csv(con: duckdb.DuckDBPyConnection, source: SourceFile, encoding: str) -> None:
    for name in (_READ_TABLE, _DUCKDB_REJECTS, _DUCKDB_REJECT_SCANS):
        con.execute(f"drop table if exists temp.{name}")
    # Insertion order is kept, so rowid + 1 is the position among the rows read.
    con.execute(f"create temp table {_READ_TABLE} as select * from {_reader_sql(source, encoding)}")
    con.execute(
        f"create temp table if not exists {_DUCKDB_REJECTS} "
        "(line bigint, error_type varchar, error_message varchar, csv_line varchar)"
    )


def _has_encoding_errors(con: duckdb.DuckDBPyConnection) -> bool:
    sql = f"select count(*) from {_DUCKDB_REJECTS} where error_type = 'INVALID ENCODING'"
    return con.execute(sql).fetchone()[0] > 0


def _has_non_ascii(con: duckdb.DuckDBPyConnection, columns: dict[str, str]) -> bool:
    tests = " or ".join(f"strlen({quote_ident(c)}) <> length({quote_ident(c)})" for c in columns)
    return con.execute(f"select exists (select 1 from {_READ_TABLE} where {tests})").fetchone()[0]


def _unclosed_quote_row(con: duckdb.DuckDBPyConnection) -> int | None:
    """The data row whose unclosed quote swallowed the rest of the file, or None.

    DuckDB reads everything after an opening quote that never closes as one value and
    rejects it as a single row: rejected like any malformed row, the rows after it would be
    lost without a word. It is told from a stray quote inside one row (`"Big" Grinder`, also
    an UNQUOTED VALUE) by being the file's last row and spanning lines.
    """
    sql = f"""
        select line - 1 from {_DUCKDB_REJECTS}
        where error_type = 'UNQUOTED VALUE' and contains(csv_line, chr(10))
          and line - 1 = (select count(*) from {_READ_TABLE}) + (select count(distinct line) from {_DUCKDB_REJECTS})
    """
    row = con.execute(sql).fetchone()
    return None if row is None else int(row[0])


def _stage_csv(con: duckdb.DuckDBPyConnection, select: str) -> None:
    # DuckDB reports a rejected row's `line` counting the header as 1, so its
    # data row number is line - 1; good rows keep their order, and take the
    # data row numbers no reject took.
    con.execute(
        f"""
        create temp table {REJECTS_TABLE} as
        select line - 1 as _nb_row,
               case when bool_or(error_type = 'INVALID ENCODING')
                    then 'row is not valid UTF-8 text (the rest of the file is UTF-8): fix its encoding'
                    else 'malformed CSV row: ' || string_agg(distinct error_message, '; ') end as reason,
               json_object('csv_line', any_value(csv_line)) as row_json
        from {_DUCKDB_REJECTS} group by line
        """
    )
    rejected = con.execute(f"select count(*) from {REJECTS_TABLE}").fetchone()[0]
    if rejected == 0:
        con.execute(f"create temp table {STAGE_TABLE} as select rowid + 1 as _nb_row, {select} from {_READ_TABLE}")
        return
    total = con.execute(f"select count(*) from {_READ_TABLE}").fetchone()[0] + rejected
    con.execute(
        f"""
        create temp table {STAGE_TABLE} as
        with numbers as (
            select i as data_row, row_number() over (order by i) as _nb_position
            from range(1, {total + 1}) t(i)
            where i not in (select _nb_row from {REJECTS_TABLE})
        ), read as (select rowid + 1 as _nb_position, * from {_READ_TABLE})
        select numbers.data_row as _nb_row, {select}
        from read join numbers using (_nb_position)
        order by numbers.data_row
        """
    )

"""The source contract's row checks, as DuckDB SQL over a staged file.

Everything here builds SQL; nothing loops over rows in Python. The steps,
each a temp table or an insert:

1. `checked_rows_sql`: cast each text value to its contract type with
   `try_cast` and collect, per row, every reason it breaks the contract
   (unparseable value, missing required value, out of range, unknown enum
   value, timestamp in the future).
2. `final_rows_sql`: among the rows that passed, keep the first of each
   primary key in the file, compare rows whose key is already in
   `raw.<table>` with the stored row, check foreign keys against `raw.*`
   (parents are loaded first, so that includes this import's parents), and
   decide each row's action: load a new key; update a stored key whose
   values changed, when the table holds current state (`Table.current_state`:
   an order ships, a subscription is cancelled); keep the stored row when
   nothing changed or the table holds events ("already present"); or
   quarantine.
3. `quarantine_sql` / `load_sql` / `update_sql`: write the rejected rows to
   `raw.raw_quarantine` (once per file, row and reason), append the new rows
   and write the changed ones over the stored rows. A bad row never touches
   the stored row of its key.

Values are trimmed; an empty value is a null. Enum values are compared in
lower case. Timestamps with an offset (`+02:00`, `Z`) or a zone name
(`America/New_York`) are converted to UTC; an unknown zone is quarantined.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from dagster_project.ingest import contract
from dagster_project.ingest.contract import Column, Table
from dagster_project.ingest.source_files import REJECTS_TABLE, STAGE_TABLE, quote_ident, quote_literal

CHECKED_TABLE = "_nextbest_import_checked"
FINAL_TABLE = "_nextbest_import_final"

# What the import does with a row of FINAL_TABLE (`_nb_action`): append it, write it over the
# stored row of its key, leave the stored row as it is, or quarantine it.
LOAD, UPDATE, KEEP, QUARANTINE = "load", "update", "keep", "quarantine"

# Scheduled times legitimately lie ahead; every other timestamp more than
# FUTURE_SLACK after now is a broken clock or a bad export.
FUTURE_SLACK = timedelta(days=1)

# A time of day followed by a zone: an offset (`+02:00`, `Z`, ` -0500` as Shopify and Rails
# write it) or a name (`UTC`, `America/New_York`); a plain date like 2024-01-01 must not match.
# DuckDB's TIMESTAMP cast ignores a zone name (22:00 New York would load as 22:00 UTC), so
# every value with a zone goes through TIMESTAMPTZ, which reads it or fails.
_ZONE_PATTERN = r"\d{2}:\d{2}(:\d{2}(\.\d+)?)?(\s*(Z|[+-]\d{2}(:?\d{2})?)|\s+[A-Za-z][A-Za-z0-9_/+-]*)$"
# TIMESTAMPTZ parses an offset only when it follows the time directly.
_SPACE_BEFORE_OFFSET = r"\s+([+-]\d|Z$)"
_INTEGER_TYPES = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT"}
_VALUE_SHOWN = 60  # characters of a bad value quoted in a reason


def checked_rows_sql(table: Table, file_columns: set[str], now: datetime) -> str:
    """SQL creating CHECKED_TABLE: `_nb_row`, every contract column typed, and
    `_nb_reason` (null when the row meets the column rules)."""
    texts = ", ".join(f"{_text(c, c.name in file_columns)} as {_v(c)}" for c in table.columns)
    typed = ", ".join(f"{_typed(c)} as {quote_ident(c.name)}" for c in table.columns)
    reasons = [r for c in table.columns for r in _reasons(table, c, now)]
    return f"""
        create temp table {CHECKED_TABLE} as
        with v as (select _nb_row, {texts} from {STAGE_TABLE}),
             t as (select *, {typed} from v)
        select _nb_row, {", ".join(quote_ident(c) for c in table.column_names)},
               nullif(concat_ws('; ', {", ".join(reasons)}), '') as _nb_reason
        from t
    """


def final_rows_sql(table: Table, file_columns: set[str]) -> str:
    """SQL creating FINAL_TABLE from CHECKED_TABLE: adds `_nb_why` (the
    quarantine reason, null for a good row), `_nb_action` (LOAD, UPDATE, KEEP
    or QUARANTINE) and `_nb_differs` (the key is stored with other values)."""
    pk = [quote_ident(c) for c in table.primary_key]
    key_text = " || ', ' || ".join(f"'{c}=''' || r.{quote_ident(c)} || ''''" for c in table.primary_key)
    stored = f"{contract.RAW_SCHEMA}.{table.name}"
    # Typed values are compared, so 'TRUE' for true or another timestamp format is no change;
    # a column the file leaves out is neither compared nor overwritten (see `update_sql`).
    same = " and ".join(
        f"c.{quote_ident(c)} is not distinct from s.{quote_ident(c)}" for c in _updatable_columns(table, file_columns)
    )
    ctes = [
        f"present as (select distinct {', '.join(pk)} from {stored})",
        f"same as (select distinct c._nb_row from {CHECKED_TABLE} c join {stored} s on "
        + " and ".join(f"c.{c} = s.{c}" for c in pk) + f" where {same or 'true'})",
    ]
    joins = [
        "left join present p on " + " and ".join(f"r.{c} = p.{c}" for c in pk),
        "left join same on r._nb_row = same._nb_row",
    ]
    orphans = []
    for i, (column, (parent, parent_column)) in enumerate(table.foreign_keys.items()):
        col = f"r.{quote_ident(column)}"
        ctes.append(f"fk{i} as (select distinct {quote_ident(parent_column)} as k from {contract.RAW_SCHEMA}.{parent})")
        joins.append(f"left join fk{i} on {col} = fk{i}.k")
        orphans.append(
            f"case when {col} is not null and fk{i}.k is null then "
            f"'{column}: ''' || {col} || ''' has no match in {contract.RAW_SCHEMA}.{parent}.{parent_column} "
            f"(orphaned foreign key; the parent row must be in this import or an earlier one)' end"
        )
    orphan_reason = f"nullif(concat_ws('; ', {', '.join(orphans)}), '')" if orphans else "null"
    present = f"p.{pk[0]} is not null"
    # A stored row left as it is needs no foreign key check; a new or replacing one does.
    kept = f"{present} and same._nb_row is not null" if table.current_state else present
    replaces = "_nb_differs" if table.current_state else "false"
    return f"""
        create temp table {FINAL_TABLE} as
        with ranked as (
            select *, row_number() over w as _nb_rank, first_value(_nb_row) over w as _nb_first
            from {CHECKED_TABLE}
            window w as (partition by _nb_reason is null, {', '.join(pk)} order by _nb_row)
        ), {', '.join(ctes)},
        judged as (
            select r.*,
                case when r._nb_reason is not null then r._nb_reason
                     when r._nb_rank > 1 then 'duplicate primary key ' || {key_text}
                          || ' in this file: row ' || r._nb_first || ' is kept'
                     when {kept} then null
                     else {orphan_reason} end as _nb_why,
                {present} as _nb_stored,
                {present} and same._nb_row is null as _nb_differs
            from ranked r {' '.join(joins)}
        )
        select * exclude (_nb_stored),
            case when _nb_why is not null then '{QUARANTINE}'
                 when not _nb_stored then '{LOAD}'
                 when {replaces} then '{UPDATE}'
                 else '{KEEP}' end as _nb_action
        from judged
    """


def counts_sql() -> str:
    """SQL returning (loaded, updated, quarantined, already present, already present with
    other values) for FINAL_TABLE; the last counts events kept as first stored."""
    return f"""
        select count(*) filter (where _nb_action = '{LOAD}'),
               count(*) filter (where _nb_action = '{UPDATE}'),
               count(*) filter (where _nb_action = '{QUARANTINE}'),
               count(*) filter (where _nb_action = '{KEEP}'),
               count(*) filter (where _nb_action = '{KEEP}' and _nb_differs)
        from {FINAL_TABLE}
    """


def quarantine_sql(table: Table, source_file: str, stage_columns: list[str], now: datetime) -> str:
    """SQL appending the file's rejected rows to `raw.raw_quarantine`, skipping
    (file, row, reason) triples already there; `row_json` holds the row as read."""
    row_json = ", ".join(f"{quote_literal(c)}, s.{quote_ident(c)}" for c in stage_columns)
    return f"""
        insert into {contract.RAW_SCHEMA}.{contract.QUARANTINE_TABLE}
            (source_table, source_file, row_number, reason, row_json, quarantined_at)
        select {quote_literal(table.name)}, {quote_literal(source_file)}, b._nb_row, b.reason, b.row_json,
               {_timestamp(now)}
        from (
            select f._nb_row, f._nb_why as reason, json_object({row_json}) as row_json
            from {FINAL_TABLE} f join {STAGE_TABLE} s using (_nb_row)
            where f._nb_why is not null
            union all
            select _nb_row, reason, row_json from {REJECTS_TABLE}
        ) b
        where not exists (
            select 1 from {contract.RAW_SCHEMA}.{contract.QUARANTINE_TABLE} q
            where q.source_table = {quote_literal(table.name)} and q.source_file = {quote_literal(source_file)}
              and q.row_number = b._nb_row and q.reason = b.reason
        )
        order by b._nb_row
    """


def load_sql(table: Table) -> str:
    """SQL appending the good, new rows of FINAL_TABLE to `raw.<table>`, in file order."""
    cols = ", ".join(quote_ident(c) for c in table.column_names)
    return f"""
        insert into {contract.RAW_SCHEMA}.{table.name} ({cols})
        select {cols} from {FINAL_TABLE}
        where _nb_action = '{LOAD}'
        order by _nb_row
    """


def update_sql(table: Table, file_columns: set[str]) -> str:
    """SQL writing, over the stored row of every key the file changes, the values of the
    file's columns (the others stay as stored). Only for a file with a changed row: such a
    file holds a column besides the key."""
    columns = [quote_ident(c) for c in _updatable_columns(table, file_columns)]
    key = " and ".join(f"s.{quote_ident(c)} = f.{quote_ident(c)}" for c in table.primary_key)
    return f"""
        update {contract.RAW_SCHEMA}.{table.name} as s
        set {", ".join(f"{c} = f.{c}" for c in columns)}
        from {FINAL_TABLE} f
        where f._nb_action = '{UPDATE}' and {key}
    """


def _updatable_columns(table: Table, file_columns: set[str]) -> list[str]:
    """The contract columns the file holds, the key excepted."""
    return [c for c in table.column_names if c in file_columns and c not in table.primary_key]


def expected(column: Column) -> str:
    """What a value of `column` should look like, for reasons and errors."""
    kind = column.type.upper()
    if kind == "TIMESTAMP":
        return "a timestamp like 2024-05-01 13:45:00 (UTC, or with an offset like +02:00)"
    if kind == "BOOLEAN":
        return "true or false"
    if kind in _INTEGER_TYPES:
        return "a whole number"
    if kind.startswith("DECIMAL") or kind in {"DOUBLE", "FLOAT", "REAL"}:
        return "a number like 12.50"
    return f"a {kind} value"


def _v(column: Column) -> str:
    return quote_ident("_nb_v_" + column.name)


def _text(column: Column, in_file: bool) -> str:
    if not in_file:
        return "null::varchar"
    text = f"nullif(trim({quote_ident(column.name)}), '')"
    return f"lower({text})" if column.accepted else text


def _typed(column: Column) -> str:
    v, kind = _v(column), column.type.upper()
    if kind == "VARCHAR":
        return v
    if kind == "TIMESTAMP":
        return (
            f"case when regexp_matches({v}, '{_ZONE_PATTERN}') "
            f"then timezone('UTC', try_cast(regexp_replace({v}, '{_SPACE_BEFORE_OFFSET}', '\\1') as timestamptz)) "
            f"else try_cast({v} as timestamp) end"
        )
    if kind in _INTEGER_TYPES:
        # try_cast('12.5' as integer) rounds; a whole number is required.
        return f"case when try_cast({v} as double) = floor(try_cast({v} as double)) then try_cast({v} as {kind}) end"
    return f"try_cast({v} as {column.type})"


def _reasons(table: Table, column: Column, now: datetime) -> list[str]:
    """SQL expressions, each null or one reason text for this column."""
    v, typed, name = _v(column), quote_ident(column.name), column.name
    got = f"left({v}, {_VALUE_SHOWN})"
    out = [
        f"case when {v} is not null and {typed} is null then "
        f"{quote_literal(f'{name}: expected {expected(column)}, got ')} || '''' || {got} || '''' end"
    ]
    if column.required:
        out.append(f"case when {v} is null then {quote_literal(f'{name}: required value is missing')} end")
    if column.min_value is not None:
        out.append(
            f"case when {typed} < {column.min_value} then "
            f"{quote_literal(f'{name}: expected >= {column.min_value:g}, got ')} || {typed}::varchar end"
        )
    if column.max_value is not None:
        out.append(
            f"case when {typed} > {column.max_value} then "
            f"{quote_literal(f'{name}: expected <= {column.max_value:g}, got ')} || {typed}::varchar end"
        )
    if column.accepted:
        values = ", ".join(quote_literal(a) for a in column.accepted)
        text = f"{name}: expected one of {', '.join(column.accepted)}; got "
        out.append(f"case when {typed} not in ({values}) then {quote_literal(text)} || '''' || {got} || '''' end")
    if column.type.upper() == "TIMESTAMP" and not column.may_be_future:
        text = f" is more than {FUTURE_SLACK.days} day in the future (expected a time that has happened)"
        out.append(
            f"case when {typed} > {_timestamp(now + FUTURE_SLACK)} then "
            f"{quote_literal(f'{name}: ')} || {typed}::varchar || {quote_literal(text)} end"
        )
    return out


def _timestamp(value: datetime) -> str:
    return f"timestamp '{value.isoformat(sep=' ')}'"

"""Every dbt model must also run on Snowflake: checked without a Snowflake account.

Two checks on the project compiled for the duckdb target:
1. each model's (and data test's) compiled SQL parses as DuckDB and transpiles
   to Snowflake with sqlglot, which raises on constructs Snowflake lacks;
2. the SQL people wrote (model files with their Jinja blanked out, and the
   project's macros) has none of the DuckDB-only functions and syntax below.
   Scanning the source, not the compiled SQL, means the output of dbt's
   cross-database macros (`dbt.datediff` compiles to DuckDB's `date_diff('day', ...)`)
   and of dispatched macros with a `snowflake__` variant is not held against anyone.
Failures name the model or macro, its file and line, and the offending snippet.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import sqlglot
from sqlglot.errors import ErrorLevel

from dagster_project.project import dbt_executable

REPO = Path(__file__).resolve().parents[2]
DBT_DIR = REPO / "dbt"

# (pattern, why it does not run on Snowflake / what to use instead). Case-insensitive.
DUCKDB_ONLY: list[tuple[str, str]] = [
    (r"\blist_\w+\s*\(", "DuckDB list function; Snowflake uses ARRAY_* functions"),
    (r"\b(struct_pack|struct_extract|struct_insert)\s*\(", "DuckDB struct; Snowflake uses OBJECT_CONSTRUCT / :field"),
    (r"\bepoch(_ms|_us|_ns)?\s*\(", "DuckDB epoch(); Snowflake: DATE_PART(epoch_second, ts)"),
    (r"\bextract\s*\(\s*epoch\b", "EXTRACT(epoch ...) is DuckDB/Postgres; Snowflake: epoch_second"),
    (r"\bdate_diff\s*\(", "DuckDB date_diff('unit', a, b); use {{ dbt.datediff(a, b, 'unit') }}"),
    (r"\bdatediff\s*\(\s*'", "datediff with a quoted unit is DuckDB's form; use {{ dbt.datediff(a, b, 'unit') }}"),
    (r"\b(date_add|date_sub)\s*\(", "DuckDB date_add/date_sub; use {{ dbt.dateadd('unit', n, d) }}"),
    (r"\b(strftime|strptime)\s*\(", "DuckDB strftime/strptime; Snowflake TO_CHAR / TO_TIMESTAMP with a format"),
    (r"\bregexp_(matches|full_match|extract|extract_all|split_to_array)\s*\(",
     "DuckDB regexp function; Snowflake: REGEXP_LIKE / REGEXP_SUBSTR"),
    (r"\binterval\s*\(?\s*-?\d", "INTERVAL 1 DAY (unquoted) is DuckDB; use {{ dbt.dateadd(...) }}"),
    (r"\binterval\s+'[^']*'\s+(year|quarter|month|week|day|hour|minute|second)s?\b", "INTERVAL '1' DAY form is DuckDB; use {{ dbt.dateadd(...) }}"),
    (r"\bfilter\s*\(\s*where\b", "aggregate FILTER (WHERE ...) is not in Snowflake; use sum(case when ...)"),
    (r"\b(string_agg|group_concat)\s*\(", "DuckDB string_agg; Snowflake LISTAGG ({{ dbt.listagg(...) }})"),
    (r"\b(bool_and|bool_or)\s*\(", "Snowflake spells these BOOLAND_AGG / BOOLOR_AGG ({{ dbt.bool_or(...) }})"),
    (r"\b(arg_max|arg_min|argmax|argmin)\s*\(", "DuckDB arg_max/arg_min; Snowflake MAX_BY / MIN_BY"),
    (r"\bquantile(_cont|_disc)?\s*\(", "DuckDB quantile(); Snowflake PERCENTILE_CONT(p) WITHIN GROUP (ORDER BY x)"),
    (r"\b(starts_with|ends_with)\s*\(", "Snowflake spells these STARTSWITH / ENDSWITH"),
    (r"\b(strlen|isnan|isinf|printf|today|gen_random_uuid|uuid)\s*\(", "DuckDB-only function"),
    (r"\bformat\s*\(", "DuckDB format(); Snowflake has no FORMAT"),
    (r"\b(string_split|str_split|string_split_regex)\s*\(", "DuckDB string_split; Snowflake SPLIT / SPLIT_PART"),
    (r"\b(make_date|make_timestamp|make_time)\s*\(", "DuckDB make_date; Snowflake DATE_FROM_PARTS"),
    (r"\b(json_extract|json_extract_string|json_value)\s*\(", "DuckDB JSON; Snowflake PARSE_JSON(x):key (a dispatch macro)"),
    (r"->>?", "DuckDB JSON arrow / lambda; Snowflake PARSE_JSON(x):key"),
    (r"\b(generate_series|unnest|read_csv\w*|read_parquet|read_json\w*)\s*\(", "DuckDB table function"),
    (r"\busing\s+sample\b|\btablesample\s+reservoir\b", "DuckDB sampling clause"),
    (r"\b(asof|positional)\s+join\b", "DuckDB join type"),
    (r"\bunion\s+(all\s+)?by\s+name\b", "UNION BY NAME: spell the columns out"),
]
# Not listed on purpose, because Snowflake has them too: `::` casts, QUALIFY, COUNT_IF,
# ILIKE, MAX_BY/MIN_BY, GROUP BY ALL, SELECT * EXCLUDE, and quoted INTERVAL '1 day'.

JINJA = re.compile(r"\{#.*?#\}|\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)
SQL_COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)


def _blank(match: re.Match) -> str:
    # Keep line breaks so that line numbers still point into the file.
    return re.sub(r"[^\n]", " ", match.group(0))


def written_sql(source: str) -> str:
    """The SQL a person wrote: Jinja and comments blanked, line numbers kept."""
    return SQL_COMMENT.sub(_blank, JINJA.sub(_blank, source))


def duckdb_only(source: str, first_line: int = 1) -> list[tuple[int, str, str]]:
    """(line, snippet, why) for each DuckDB-only construct in `source`."""
    text = written_sql(source)
    found = []
    for pattern, why in DUCKDB_ONLY:
        for match in re.finditer(pattern, text, re.IGNORECASE):
            line = text.count("\n", 0, match.start())
            snippet = source.splitlines()[line].strip()
            found.append((first_line + line, snippet, why))
    return sorted(found)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> dict:
    """The project compiled for the duckdb target into a scratch folder (no Snowflake needed)."""
    work = tmp_path_factory.mktemp("portability")
    env = {**os.environ, "NEXTBEST_DUCKDB_PATH": str(work / "compile.duckdb"), "NEXTBEST_DBT_TARGET": "duckdb",
           "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DO_NOT_TRACK": "1"}
    result = subprocess.run(
        [dbt_executable(), "compile", "--project-dir", str(DBT_DIR), "--profiles-dir", str(DBT_DIR),
         "--target-path", str(work / "target"), "--log-path", str(work / "logs"), "--quiet",
         "--vars", "{as_of: '2025-06-30'}"],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, f"dbt compile failed:\n{result.stdout[-6000:]}\n{result.stderr[-2000:]}"
    return json.loads((work / "target" / "manifest.json").read_text())


def _nodes(manifest: dict, *types: str) -> list[dict]:
    return [n for n in manifest["nodes"].values() if n["resource_type"] in types and n["package_name"] == "nextbest"]


def test_every_model_transpiles_to_snowflake(manifest):
    nodes = _nodes(manifest, "model", "test")
    assert any(n["resource_type"] == "model" for n in nodes), "the manifest has no models"
    problems = []
    for node in nodes:
        sql = node.get("compiled_code")
        if not sql:
            problems.append(f"{node['original_file_path']}: {node['name']} was not compiled")
            continue
        try:
            (snowflake_sql,) = sqlglot.transpile(sql, read="duckdb", write="snowflake",
                                                 unsupported_level=ErrorLevel.RAISE)
            sqlglot.parse_one(snowflake_sql, read="snowflake")
        except sqlglot.errors.SqlglotError as error:
            problems.append(f"{node['original_file_path']}: {node['name']}: {str(error)[:400]}")
    assert not problems, "SQL that does not carry over to Snowflake:\n" + "\n".join(problems)


def test_models_and_macros_use_no_duckdb_only_sql(manifest):
    problems = []
    for node in _nodes(manifest, "model", "test"):
        if node["resource_type"] == "test" and node.get("test_metadata"):
            continue  # generic tests come from macros, scanned below
        for line, snippet, why in duckdb_only(node["raw_code"]):
            problems.append(f"{node['original_file_path']}:{line} ({node['name']}): `{snippet}`: {why}")
    macros = {m["name"]: m for m in manifest["macros"].values() if m["package_name"] == "nextbest"}
    for name, macro in macros.items():
        if name.startswith("snowflake__") or (
                name.startswith(("default__", "duckdb__")) and f"snowflake__{name.split('__', 1)[1]}" in macros):
            continue  # a dialect variant with a Snowflake sibling, picked by adapter.dispatch
        for line, snippet, why in duckdb_only(macro["macro_sql"]):
            source = (DBT_DIR / macro["original_file_path"]).read_text()
            offset = source.find(macro["macro_sql"])
            at = source.count("\n", 0, offset) + line if offset >= 0 else line
            problems.append(f"dbt/{macro['original_file_path']}:{at} (macro {name}): `{snippet}`: {why}")
    assert not problems, "DuckDB-only SQL (fix with a cross-database or dispatch macro):\n" + "\n".join(problems)


@pytest.mark.parametrize("sql", [
    "select list_value(1, 2)",
    "select struct_pack(a := 1)",
    "select epoch(ordered_at) from o",
    "select date_diff('day', a, b)",
    "select strftime(ordered_at, '%Y')",
    "select regexp_matches(body, 'refund')",
    "select ordered_at + interval 1 day",
    "select ordered_at - interval '30' day",
    "select count(*) filter (where status = 'skipped') from o",
    "select properties->>'$.plan' from e",
])
def test_the_scan_catches_duckdb_only_sql(sql):
    assert duckdb_only(sql), sql


@pytest.mark.parametrize("sql", [
    "select {{ dbt.datediff('a', 'b', 'day') }}, x::int, count_if(skipped) from o qualify true",
    "select 1 -- date_diff('day', a, b) in a comment\n",
    "{# struct_pack( in a jinja comment #} select ordered_at + interval '1 day' from o",
    "select date_trunc('week', ordered_at), coalesce(a, b) from o",
])
def test_the_scan_lets_portable_sql_through(sql):
    assert duckdb_only(sql) == []

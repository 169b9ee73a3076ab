"""Load the data-quality suites in `expectations/` (versioned YAML, one per table).

A suite names its table (or the places it may live), the Dagster asset it checks,
Great Expectations 1.x expectations (`type`, `kwargs`, `meta: {severity, fix}`) and
`sql_checks` for what GX has no expectation for (column types, orphaned foreign
keys, cross-column rules). Errors name the file and the entry that is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dagster_project.project import REPO_ROOT
from dagster_project.quality.outcomes import Severity, check_severity

EXPECTATIONS_DIR = REPO_ROOT / "expectations"
ANOMALIES_FILE = EXPECTATIONS_DIR / "anomalies.yml"
SQL_KINDS = ("sql", "column_types", "foreign_key", "probability_columns")

# Short names for expectation types, used to name each check (`order_id_unique`).
_SHORT = {
    "expect_column_values_to_not_be_null": "not_null",
    "expect_column_values_to_be_unique": "unique",
    "expect_compound_columns_to_be_unique": "unique",
    "expect_column_values_to_be_in_set": "accepted_values",
    "expect_table_columns_to_match_set": "columns_present",
    "expect_table_row_count_to_be_between": "row_count",
}


@dataclass(frozen=True)
class Expectation:
    """One GX expectation with its severity and the advice shown when it fails."""

    name: str
    type: str
    kwargs: dict[str, Any]
    severity: Severity
    fix: str

    @property
    def columns(self) -> list[str]:
        """The columns this expectation reads (empty for table-level expectations)."""
        if "column" in self.kwargs:
            return [self.kwargs["column"]]
        return list(self.kwargs.get("column_list", []))


@dataclass(frozen=True)
class SqlCheck:
    """A rule GX has no expectation for; `sql` (when given) returns the offending rows."""

    name: str
    kind: str
    severity: Severity
    fix: str
    sql: str = ""
    column: str = ""
    references: str = ""  # schema.table.column
    columns: dict[str, str] = field(default_factory=dict)  # column -> expected type


@dataclass(frozen=True)
class Suite:
    """One suite file: the table(s) it checks, its asset and its checks."""

    name: str
    path: Path
    tables: tuple[str, ...]  # schema.table; the first that exists is checked
    asset: tuple[str, ...]
    optional: bool  # skipped (not failed) while none of `tables` exists
    description: str
    expectations: tuple[Expectation, ...]
    sql_checks: tuple[SqlCheck, ...]
    version: int = 1
    # Column ordering the table by arrival (e.g. occurred_at): a table too big to validate whole in
    # pandas has its newest rows validated (`runner.gx_max_rows`); without one, a repeatable sample.
    recent_by: str = ""

    @property
    def severities(self) -> set[str]:
        return {e.severity for e in self.expectations} | {s.severity for s in self.sql_checks}


def _derived_name(type_: str, kwargs: dict[str, Any]) -> str:
    column = kwargs.get("column") or "_".join(kwargs.get("column_list", [])) or "table"
    if type_ == "expect_column_values_to_be_between":
        if kwargs.get("max_value") == "{now}":
            return f"{column}_not_in_future"
        if "min_value" in kwargs and "max_value" in kwargs:
            return f"{column}_in_range"
        low = kwargs.get("min_value")
        if low == 0:
            return f"{column}_not_negative"
        if isinstance(low, str) and low[:4].isdigit():
            return f"{column}_not_before_{low[:4]}"
        return f"{column}_{'min' if low is not None else 'max'}"
    short = _SHORT.get(type_, type_.removeprefix("expect_"))
    return short if column == "table" else f"{column}_{short}"


def _unique(name: str, seen: set[str]) -> str:
    candidate, n = name, 2
    while candidate in seen:
        candidate, n = f"{name}_{n}", n + 1
    seen.add(candidate)
    return candidate


def load_suite(path: str | Path) -> Suite:
    """Read one suite file, or raise ValueError naming the file and the bad entry."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML: {error}") from error
    for key in ("suite", "table", "asset"):
        if key not in doc:
            raise ValueError(f"{path}: missing `{key}`")
    tables = doc["table"] if isinstance(doc["table"], list) else [doc["table"]]
    seen: set[str] = set()
    expectations = []
    for i, entry in enumerate(doc.get("expectations") or []):
        where = f"{path}: expectations[{i}]"
        if "type" not in entry:
            raise ValueError(f"{where}: missing `type` (a GX expectation such as expect_column_values_to_be_unique)")
        meta = entry.get("meta") or {}
        kwargs = dict(entry.get("kwargs") or {})
        name = _unique(meta.get("name") or _derived_name(entry["type"], kwargs), seen)
        expectations.append(Expectation(name, entry["type"], kwargs, check_severity(meta.get("severity"), where),
                                        meta.get("fix", "")))
    sql_checks = []
    for i, entry in enumerate(doc.get("sql_checks") or []):
        where = f"{path}: sql_checks[{i}]"
        kind = entry.get("kind", "sql")
        if kind not in SQL_KINDS:
            raise ValueError(f"{where}: kind must be one of {', '.join(SQL_KINDS)}, got {kind!r}")
        if kind == "sql" and not entry.get("sql"):
            raise ValueError(f"{where}: a `sql` check needs a query returning the offending rows")
        if kind == "foreign_key" and (not entry.get("column") or str(entry.get("references", "")).count(".") != 2):
            raise ValueError(f"{where}: a foreign_key check needs `column` and `references: schema.table.column`")
        sql_checks.append(SqlCheck(
            name=_unique(entry.get("name") or kind, seen), kind=kind,
            severity=check_severity(entry.get("severity"), where), fix=entry.get("fix", ""),
            sql=entry.get("sql", ""), column=entry.get("column", ""), references=entry.get("references", ""),
            columns=dict(entry.get("columns") or {}),
        ))
    return Suite(
        name=doc["suite"], path=path, tables=tuple(tables), asset=tuple(doc["asset"]),
        optional=bool(doc.get("optional", len(tables) > 1 or not str(tables[0]).startswith("raw."))),
        description=doc.get("description", ""), expectations=tuple(expectations),
        sql_checks=tuple(sql_checks), version=int(doc.get("version", 1)), recent_by=str(doc.get("recent_by") or ""),
    )


def load_suites(directory: str | Path = EXPECTATIONS_DIR) -> list[Suite]:
    """Every suite under `directory` (`raw/`, `analytics/`, `nextbest/`), raw tables first."""
    paths = sorted(Path(directory).glob("*/*.yml"))
    order = {"raw": 0, "analytics": 1, "nextbest": 2}
    return [load_suite(p) for p in sorted(paths, key=lambda p: (order.get(p.parent.name, 9), p.name))]


def suite_for(table: str, directory: str | Path = EXPECTATIONS_DIR) -> Suite:
    """The suite that checks `table` (e.g. `raw.orders`)."""
    for suite in load_suites(directory):
        if table in suite.tables or suite.name == table:
            return suite
    raise KeyError(f"No suite in {directory} checks {table}")


def load_anomaly_config(path: str | Path = ANOMALIES_FILE) -> dict[str, dict[str, Any]]:
    """Thresholds of the anomaly checks (`expectations/anomalies.yml`)."""
    doc = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    for block in ("event_volume", "segment_change", "score_shift"):
        if block not in doc:
            raise ValueError(f"{path}: missing block `{block}`")
        doc[block]["severity"] = check_severity(doc[block].get("severity"), f"{path}: {block}")
    return doc

"""What a data-quality check found: one `Outcome` per expectation, SQL rule, anomaly or freshness rule.

Suites, anomaly checks and freshness all report in this one shape, so the Dagster
checks, the markdown summary and `nextbest doctor` read them the same way.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

Severity = Literal["ERROR", "WARN"]
Status = Literal["passed", "failed", "skipped"]
SEVERITIES = ("ERROR", "WARN")
EXAMPLE_ROWS = 5  # rows shown per failing check


@dataclass
class Outcome:
    """One check's result. `blocking` is true for a failed ERROR check: downstream must not run."""

    target: str  # the table or source checked, e.g. raw.orders
    name: str  # the check, e.g. customer_id_not_null
    severity: Severity
    status: Status
    message: str  # what was found, in words
    fix: str = ""  # what to do about a failure
    examples: list[dict[str, Any]] = field(default_factory=list)
    kind: str = "expectation"  # expectation | sql | anomaly | freshness

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    @property
    def blocking(self) -> bool:
        return self.failed and self.severity == "ERROR"

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "name": self.name, "severity": self.severity, "status": self.status,
                "message": self.message, "fix": self.fix, "examples": self.examples, "kind": self.kind}


def check_severity(value: Any, where: str) -> Severity:
    """The severity of a suite entry, or a ValueError naming where it was read."""
    text = str(value or "").upper()
    if text not in SEVERITIES:
        raise ValueError(f"{where}: severity must be ERROR or WARN, got {value!r}")
    return text  # type: ignore[return-value]


def json_safe(value: Any) -> Any:
    """A value fit for JSON metadata: timestamps as ISO text, decimals as floats, NaN as null."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or str(value) in ("NaT", "nan"):
        return None
    if isinstance(value, (datetime, date)):
        return value.isoformat(sep=" ") if isinstance(value, datetime) else value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if hasattr(value, "item"):  # numpy scalars
        return json_safe(value.item())
    if isinstance(value, (str, int, float, bool)):
        return value
    try:
        json.dumps(value)
        return value
    except TypeError:
        return str(value)


def safe_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Example rows with JSON-safe values."""
    return [{k: json_safe(v) for k, v in row.items()} for row in rows]

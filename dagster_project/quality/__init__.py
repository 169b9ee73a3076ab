"""Data quality that blocks bad personalisation (group-less: checks attach to the assets they guard).

Every check reads through the warehouse resource (`resources/warehouse.py`) in SQL DuckDB and
Snowflake both run, so the same checks guard either engine.

    suites.py     load the versioned suites in expectations/ (GX expectations + SQL rules)
    runner.py     validate a suite with Great Expectations 1.x (ephemeral context) and warehouse SQL
    anomalies.py  event volume drop, overnight segment size change, score shift (PSI)
    freshness.py  `assert_fresh` for drafting/export, freshness limits from dbt sources
    checks.py     the Dagster asset checks, the freshness sensor and `data_quality_summary` (`assets`)
    summary.py    the summary in words (markdown metadata, terminal text)
    commands.py   `nextbest doctor`

Import `asset_checks`, `sensors` and `assets` from `dagster_project.quality.checks` to wire them.
"""

from dagster_project.quality.freshness import StaleSourceError, assert_fresh

__all__ = ["StaleSourceError", "assert_fresh"]

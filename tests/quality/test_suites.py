"""The suites in expectations/ load, cover the source contract, and pass on a good simulated store."""

from __future__ import annotations

import pytest

from dagster_project.ingest import contract
from dagster_project.quality.suites import load_anomaly_config, load_suite, load_suites, suite_for


def test_one_suite_per_raw_table_and_key_mart():
    names = {s.name for s in load_suites()}
    assert {f"raw.{t}" for t in contract.LOAD_ORDER} <= names
    assert {"analytics.customer_context", "customer_scores", "nextbest.message_drafts"} <= names
    assert load_anomaly_config()["event_volume"]["min_share_of_median"] == 0.5


@pytest.mark.parametrize("table", contract.LOAD_ORDER)
def test_raw_suite_covers_the_contract(table):
    spec, suite = contract.TABLES[table], suite_for(f"raw.{table}")
    present = next(e for e in suite.expectations if e.type == "expect_table_columns_to_match_set")
    assert set(present.kwargs["column_set"]) == set(spec.column_names)
    keys = [e for e in suite.expectations if e.type.endswith("_to_be_unique")]
    assert keys and all(e.severity == "ERROR" for e in keys)
    foreign = {s.column: s.references for s in suite.sql_checks if s.kind == "foreign_key"}
    assert foreign == {col: f"raw.{t}.{c}" for col, (t, c) in spec.foreign_keys.items()}
    enums = {e.kwargs["column"] for e in suite.expectations if e.type == "expect_column_values_to_be_in_set"}
    assert enums == {c.name for c in spec.columns if c.accepted}
    assert all(e.fix for e in suite.expectations), "every expectation says what to do when it fails"


def test_bad_suite_file_names_file_and_entry(tmp_path):
    path = tmp_path / "broken.yml"
    path.write_text("suite: x\ntable: raw.x\nasset: [raw, x]\nexpectations:\n"
                    "  - type: expect_column_values_to_not_be_null\n    kwargs: {column: id}\n"
                    "    meta: {severity: FATAL}\n")
    with pytest.raises(ValueError, match=r"broken.yml: expectations\[0\]: severity must be ERROR or WARN"):
        load_suite(path)

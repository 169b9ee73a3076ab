"""The `column_types` rule accepts each contract type in DuckDB's and Snowflake's spellings."""

from __future__ import annotations

import pytest

from dagster_project.quality.runner import _column_types
from dagster_project.quality.suites import SqlCheck

CONTRACT = {"customer_id": "VARCHAR", "created_at": "TIMESTAMP", "signup_date": "DATE", "opted_in": "BOOLEAN",
            "total": "DECIMAL(12,2)", "quantity": "INTEGER", "p_churn": "DOUBLE"}
CHECK = SqlCheck("column_types", "column_types", "ERROR", "Cast the columns.", columns=CONTRACT)


@pytest.mark.parametrize("found", [
    {"customer_id": "VARCHAR", "created_at": "TIMESTAMP_NS", "signup_date": "DATE", "opted_in": "BOOLEAN",
     "total": "DECIMAL(12,2)", "quantity": "BIGINT", "p_churn": "DOUBLE"},  # DuckDB
    {"customer_id": "TEXT", "created_at": "TIMESTAMP_NTZ", "signup_date": "DATE", "opted_in": "BOOLEAN",
     "total": "NUMBER(12,2)", "quantity": "NUMBER(38,0)", "p_churn": "FLOAT"},  # Snowflake
], ids=["duckdb", "snowflake"])
def test_the_contract_types_pass_on_either_engine(found):
    outcome = _column_types(CHECK, "raw.orders", found)
    assert outcome.status == "passed", outcome.message


def test_a_snowflake_decimal_is_not_an_integer_and_an_integer_is_not_a_double():
    found = {"customer_id": "TEXT", "created_at": "TIMESTAMP_LTZ", "signup_date": "TEXT", "opted_in": "BOOLEAN",
             "total": "NUMBER(38,0)", "quantity": "NUMBER(12,2)", "p_churn": "NUMBER(38,0)"}
    outcome = _column_types(CHECK, "raw.orders", found)
    assert outcome.blocking
    assert outcome.message == ("raw.orders: signup_date is TEXT, expected DATE; quantity is NUMBER(12,2), "
                               "expected INTEGER; p_churn is NUMBER(38,0), expected DOUBLE")

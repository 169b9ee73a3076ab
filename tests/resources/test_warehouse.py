"""The engine-neutral warehouse interface on DuckDB, and how `build_warehouse()` picks an engine.

The Snowflake side of the same interface runs in `test_snowflake.py`.
"""

from __future__ import annotations

import inspect

import pandas as pd
import pytest
import snowflake.connector
import snowflake.connector.pandas_tools

from dagster_project.resources.snowflake import SnowflakeWarehouse
from dagster_project.resources.warehouse import DuckDBWarehouse, MergeResult, build_warehouse

SNOWFLAKE_ENV = {
    "SNOWFLAKE_ACCOUNT": "acme", "SNOWFLAKE_USER": "nb", "SNOWFLAKE_PASSWORD": "pw-not-for-logs",
    "SNOWFLAKE_WAREHOUSE": "wh", "SNOWFLAKE_DATABASE": "db",
}


@pytest.fixture
def wh(duckdb_file) -> DuckDBWarehouse:
    return DuckDBWarehouse(path=str(duckdb_file))


def outbox_rows(n: int, batch: str = "b1") -> pd.DataFrame:
    return pd.DataFrame({"send_id": [f"{batch}-{i:04d}" for i in range(n)], "state": ["queued"] * n})


def test_duckdb_stays_the_default(monkeypatch, duckdb_file):
    monkeypatch.delenv("NEXTBEST_WAREHOUSE", raising=False)
    assert isinstance(build_warehouse(), DuckDBWarehouse)
    monkeypatch.setenv("NEXTBEST_WAREHOUSE", "duckdb")
    assert isinstance(build_warehouse(), DuckDBWarehouse)


def test_snowflake_is_picked_by_env_and_names_what_is_missing(monkeypatch):
    monkeypatch.setenv("NEXTBEST_WAREHOUSE", "snowflake")
    for name in (*SNOWFLAKE_ENV, "SNOWFLAKE_PRIVATE_KEY_PATH"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="SNOWFLAKE_ACCOUNT.*SNOWFLAKE_PASSWORD or SNOWFLAKE_PRIVATE_KEY_PATH"):
        build_warehouse()
    for name, value in SNOWFLAKE_ENV.items():
        monkeypatch.setenv(name, value)
    resource = build_warehouse()
    assert isinstance(resource, SnowflakeWarehouse)
    resolved = resource.process_config_and_initialize()
    assert resolved.password == "pw-not-for-logs" and "pw-not-for-logs" not in repr(resolved)
    monkeypatch.setenv("NEXTBEST_WAREHOUSE", "bigquery")
    with pytest.raises(ValueError, match="expected 'duckdb' or 'snowflake'"):
        build_warehouse()


def test_key_pair_auth_sends_the_key_file_not_a_password(tmp_path):
    key = tmp_path / "rsa_key.p8"
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    wh = SnowflakeWarehouse(account="a", user="u", warehouse="w", database="d",
                            private_key_path=str(key), private_key_passphrase="secret")
    kwargs = wh._connect_kwargs()
    assert kwargs["private_key_file"] == str(key) and kwargs["private_key_file_pwd"] == "secret"
    assert "password" not in kwargs and kwargs["paramstyle"] == "qmark"
    with pytest.raises(FileNotFoundError, match="SNOWFLAKE_PRIVATE_KEY_PATH"):
        wh.model_copy(update={"private_key_path": str(tmp_path / "nope.p8")})._connect_kwargs()


def test_the_installed_connector_has_what_the_resource_calls():
    # The fakesnow suite runs connector 4.x; production runs 5.x: check 5.x keeps the same calls.
    params = inspect.signature(snowflake.connector.pandas_tools.write_pandas).parameters
    for name in ("chunk_size", "auto_create_table", "table_type", "quote_identifiers", "use_logical_type", "schema"):
        assert name in params
    from snowflake.connector.cursor import SnowflakeCursor

    assert callable(getattr(SnowflakeCursor, "fetch_arrow_batches"))


def test_reads_come_back_with_lower_case_columns_in_bounded_batches(wh):
    wh.write_df("analytics", "features", pd.DataFrame({"Customer_ID": [f"C{i}" for i in range(1_050)]}))
    df = wh.read_df("select Customer_ID from analytics.features where Customer_ID = ?", ["C7"])
    assert df.to_dict("records") == [{"customer_id": "C7"}]
    sizes = [len(batch) for batch in wh.iter_batches("select * from analytics.features", batch_size=500)]
    assert sizes == [500, 500, 50]


def test_writes_while_iterating_go_to_the_same_file(wh):
    wh.write_df("analytics", "features", pd.DataFrame({"customer_id": [f"C{i}" for i in range(300)]}))
    for batch in wh.iter_batches("select customer_id from analytics.features", batch_size=100):
        wh.write_df("nextbest", "customer_scores", batch.assign(score=0.5))
    assert wh.table_row_counts("nextbest") == {"customer_scores": 300}


def test_replace_swaps_rows_and_empty_replace_empties(wh):
    wh.write_df("nextbest", "outbox", outbox_rows(3))
    assert wh.write_df("nextbest", "outbox", outbox_rows(2, "b2"), mode="replace") == 2
    assert sorted(wh.read_df("select send_id from nextbest.outbox")["send_id"]) == ["b2-0000", "b2-0001"]
    wh.write_df("nextbest", "outbox", outbox_rows(0), mode="replace")
    assert wh.table_row_counts("nextbest") == {"outbox": 0}


def test_merge_is_idempotent_and_insert_only_keeps_progress(wh):
    assert wh.merge_df("nextbest", "outbox", outbox_rows(5), ["send_id"], update_columns=()) == MergeResult(5, 0)
    wh.execute("update nextbest.outbox set state = 'sent' where send_id = 'b1-0000'")
    assert wh.merge_df("nextbest", "outbox", outbox_rows(5), ["send_id"], update_columns=()) == MergeResult(0, 0)
    assert wh.read_df("select state from nextbest.outbox where send_id = 'b1-0000'")["state"][0] == "sent"
    assert wh.merge_df("nextbest", "outbox", outbox_rows(6), ["send_id"]) == MergeResult(1, 5)
    assert wh.merge_df("nextbest", "outbox", outbox_rows(6), ["send_id"]) == MergeResult(0, 6)
    assert wh.table_row_counts("nextbest") == {"outbox": 6}


@pytest.mark.parametrize("rows, message", [
    (pd.concat([outbox_rows(2), outbox_rows(1)]), "2 rows share a key"),
    (pd.DataFrame({"send_id": ["a", None], "state": ["queued", "queued"]}), "null 'send_id'"),
])
def test_merge_refuses_keys_that_would_double_insert(wh, rows, message):
    with pytest.raises(ValueError, match=message):
        wh.merge_df("nextbest", "outbox", rows, ["send_id"])


def test_names_that_are_not_plain_identifiers_are_refused(wh):
    with pytest.raises(ValueError, match="Table 'outbox; drop table x'"):
        wh.write_df("nextbest", "outbox; drop table x", outbox_rows(1))
    with pytest.raises(ValueError, match="Column of nextbest.outbox 'send id'"):
        wh.write_df("nextbest", "outbox", pd.DataFrame({"send id": ["a"]}))


def test_a_failed_transaction_leaves_nothing(wh):
    wh.write_df("nextbest", "drafts", pd.DataFrame({"customer_id": ["C0"]}))
    with pytest.raises(RuntimeError):
        with wh.transaction() as tx:
            tx.write_df("nextbest", "drafts", pd.DataFrame({"customer_id": ["C1"]}))
            tx.merge_df("nextbest", "outbox", outbox_rows(4), ["send_id"])
            raise RuntimeError("crash between the two writes' commit")
    assert wh.table_row_counts("nextbest") == {"drafts": 1}
    with wh.transaction() as tx:
        tx.write_df("nextbest", "drafts", pd.DataFrame({"customer_id": ["C1"]}))
        result = tx.merge_df("nextbest", "outbox", outbox_rows(4), ["send_id"])
    assert result == MergeResult(4, 0)
    assert wh.table_row_counts("nextbest") == {"drafts": 2, "outbox": 4}

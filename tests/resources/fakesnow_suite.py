"""The Snowflake warehouse resource against fakesnow (a Snowflake emulator on DuckDB).

Not collected by the main pytest run: fakesnow pins a sqlglot and a
snowflake-connector-python older than NextBest's, so `test_snowflake.py` runs
this file in its own virtualenv and reports each test here as one of its own.
"""

from __future__ import annotations

from datetime import datetime

import dagster as dg
import fakesnow
import pandas as pd
import pyarrow as pa
import pytest
import snowflake.connector.pandas_tools
from fakesnow.cursor import FakeSnowflakeCursor

from dagster_project.resources.snowflake import STAGE_PREFIX, SnowflakeWarehouse
from dagster_project.resources.warehouse import build_warehouse

ENV = {
    "NEXTBEST_WAREHOUSE": "snowflake",
    "SNOWFLAKE_ACCOUNT": "acme-test",
    "SNOWFLAKE_USER": "nextbest",
    "SNOWFLAKE_PASSWORD": "pw-not-for-logs",
    "SNOWFLAKE_WAREHOUSE": "compute_wh",
    "SNOWFLAKE_DATABASE": "nextbest_db",
    "SNOWFLAKE_SCHEMA": "nextbest",
}


def _fetch_arrow_batches(self):
    # fakesnow has `get_result_batches` (1,000-row batches) but not the connector's
    # `fetch_arrow_batches`; this gives it one with the real method's contract.
    for batch in self.get_result_batches() or []:
        yield pa.Table.from_batches([batch._batch])


@pytest.fixture
def statements(monkeypatch) -> list[str]:
    """Every SQL statement sent to the emulator, in order."""
    sent: list[str] = []
    original = FakeSnowflakeCursor.execute

    def execute(self, command, *args, **kwargs):
        sent.append(command)
        return original(self, command, *args, **kwargs)

    monkeypatch.setattr(FakeSnowflakeCursor, "execute", execute)
    return sent


@pytest.fixture
def wh(monkeypatch, statements) -> SnowflakeWarehouse:
    """The resource `build_warehouse()` returns under NEXTBEST_WAREHOUSE=snowflake, EnvVars resolved."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(FakeSnowflakeCursor, "fetch_arrow_batches", _fetch_arrow_batches, raising=False)
    with fakesnow.patch():
        resource = build_warehouse()
        assert isinstance(resource, SnowflakeWarehouse)
        yield resource.process_config_and_initialize()


def outbox_rows(n: int, batch: str = "b1") -> pd.DataFrame:
    return pd.DataFrame({
        "send_id": [f"{batch}-{i:05d}" for i in range(n)],
        "customer_id": [f"C{i:05d}" for i in range(n)],
        "state": ["queued"] * n,
        "enqueued_at": [datetime(2025, 6, 30, 5, 0)] * n,
    })


def staged_tables(wh: SnowflakeWarehouse) -> int:
    return int(wh.read_df("select count(*) as n from information_schema.tables where table_name like ?",
                          [STAGE_PREFIX + "%"]).iloc[0, 0])


def test_secrets_stay_out_of_repr_and_settings_come_from_env(wh):
    assert "pw-not-for-logs" not in repr(wh)
    assert wh.account == "acme-test" and wh.default_schema == "nextbest"


def test_read_df_gives_lower_case_columns_and_takes_qmark_params(wh):
    wh.execute("create schema if not exists nextbest")
    wh.execute("create table nextbest.scores (customer_id varchar, churn_risk float)")
    wh.execute("insert into nextbest.scores values (?, ?), (?, ?)", ["C1", 0.2, "C2", 0.9])
    df = wh.read_df("select customer_id, churn_risk from nextbest.scores where churn_risk > ?", [0.5])
    assert list(df.columns) == ["customer_id", "churn_risk"]
    assert df.to_dict("records") == [{"customer_id": "C2", "churn_risk": 0.9}]
    empty = wh.read_df("select customer_id from nextbest.scores where 1 = 0")
    assert list(empty.columns) == ["customer_id"] and empty.empty


def test_iter_batches_streams_arrow_batches_cut_to_batch_size(wh, monkeypatch):
    wh.write_df("nextbest", "features", pd.DataFrame({"customer_id": [f"C{i}" for i in range(2_500)],
                                                      "orders": range(2_500)}))
    fetched = []
    monkeypatch.setattr(FakeSnowflakeCursor, "fetchall", lambda self: fetched.append("fetchall"))
    sizes = [len(b) for b in wh.iter_batches("select * from nextbest.features order by orders", batch_size=700)]
    assert sizes == [700, 700, 700, 400] and not fetched
    batches = list(wh.iter_batches("select orders from nextbest.features order by orders", batch_size=1_000))
    assert pd.concat(batches)["orders"].tolist() == list(range(2_500))


def test_chunked_write_goes_through_write_pandas_not_row_inserts(wh, statements, monkeypatch):
    calls = []
    fake = snowflake.connector.pandas_tools.write_pandas  # fakesnow's, patched in by the fixture

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return fake(*args, **kwargs)

    monkeypatch.setattr(snowflake.connector.pandas_tools, "write_pandas", spy)
    chunked = wh.model_copy(update={"write_chunk_rows": 10_000})
    before = len(statements)
    assert chunked.write_df("nextbest", "outbox", outbox_rows(25_000)) == 25_000
    assert len(statements) - before < 15  # a handful of statements, not one per row
    assert [c["chunk_size"] for c in calls] == [10_000] and calls[0]["auto_create_table"]
    assert calls[0]["use_logical_type"] and calls[0]["table_type"] == "transient"
    chunked.write_df("nextbest", "outbox", outbox_rows(3, batch="b2"), mode="replace")
    df = wh.read_df("select * from nextbest.outbox order by send_id")
    assert df["send_id"].tolist() == ["b2-00000", "b2-00001", "b2-00002"]
    assert df["enqueued_at"].iloc[0] == pd.Timestamp("2025-06-30 05:00")
    assert staged_tables(wh) == 0


def test_merge_into_outbox_is_idempotent_and_never_resets_sent_rows(wh):
    first = wh.merge_df("nextbest", "outbox", outbox_rows(50), keys=["send_id"], update_columns=())
    assert (first.inserted, first.updated) == (50, 0)
    wh.execute("update nextbest.outbox set state = 'sent' where send_id = ?", ["b1-00007"])
    again = wh.merge_df("nextbest", "outbox", outbox_rows(50), keys=["send_id"], update_columns=())
    assert (again.inserted, again.updated) == (0, 0)
    df = wh.read_df("select state, count(*) as n from nextbest.outbox group by state order by state")
    assert df.to_dict("records") == [{"state": "queued", "n": 49}, {"state": "sent", "n": 1}]
    # A full upsert updates what matched and adds what is new; repeating it changes nothing.
    changed = outbox_rows(52).assign(state="suppressed")
    assert wh.merge_df("nextbest", "outbox", changed, keys=["send_id"]).__dict__ == {"inserted": 2, "updated": 50}
    wh.merge_df("nextbest", "outbox", changed, keys=["send_id"])
    assert wh.read_df("select count(*) as n, min(state) as s from nextbest.outbox").iloc[0].tolist() == [52, "suppressed"]
    assert staged_tables(wh) == 0


def test_merge_refuses_repeated_keys_before_touching_the_table(wh):
    rows = pd.concat([outbox_rows(3), outbox_rows(1)])
    with pytest.raises(ValueError, match="share a key"):
        wh.merge_df("nextbest", "outbox", rows, keys=["send_id"])


def test_exception_in_transaction_leaves_nothing(wh):
    wh.write_df("nextbest", "drafts", pd.DataFrame({"customer_id": ["C0"], "subject": ["hello"]}))
    with pytest.raises(RuntimeError, match="generator crashed"):
        with wh.transaction() as tx:
            tx.write_df("nextbest", "drafts", pd.DataFrame({"customer_id": ["C1"], "subject": ["x"]}))
            tx.merge_df("nextbest", "outbox", outbox_rows(10), keys=["send_id"])
            raise RuntimeError("generator crashed")
    assert wh.read_df("select customer_id from nextbest.drafts")["customer_id"].tolist() == ["C0"]
    assert wh.read_df("select count(*) as n from nextbest.outbox").iloc[0, 0] == 0
    assert staged_tables(wh) == 0


def test_failing_statement_rolls_back_the_writes_before_it(wh):
    # (fakesnow cannot run a MERGE inside BEGIN ... COMMIT, so this pairs plain writes.)
    wh.execute("create schema if not exists nextbest")
    wh.execute("create table nextbest.approvals (customer_id varchar, approved_at timestamp)")
    with pytest.raises(Exception):
        with wh.transaction() as tx:
            tx.write_df("nextbest", "outbox", outbox_rows(5))
            tx.execute("insert into nextbest.approvals (customer_id, approved_at) values (?, ?)",
                       ["C1", "not a timestamp"])
    assert wh.read_df("select count(*) as n from nextbest.outbox").iloc[0, 0] == 0
    with wh.transaction() as tx:  # the same pair, valid, lands together
        assert tx.write_df("nextbest", "outbox", outbox_rows(5), mode="replace") == 5
        tx.execute("insert into nextbest.approvals (customer_id, approved_at) values (?, ?)",
                   ["C1", "2025-06-30 09:00:00"])
    assert wh.read_df("select count(*) as n from nextbest.outbox").iloc[0, 0] == 5
    assert wh.read_df("select count(*) as n from nextbest.approvals").iloc[0, 0] == 1
    assert staged_tables(wh) == 0


def test_kept_open_logs_in_once_and_keeps_each_transaction_its_own(wh, monkeypatch):
    logins = []
    settings = SnowflakeWarehouse._connect_kwargs

    def counted(self):  # what every login sends to the connector
        logins.append(self.user)
        return settings(self)

    monkeypatch.setattr(SnowflakeWarehouse, "_connect_kwargs", counted)
    wh.write_df("nextbest", "outbox", outbox_rows(3))
    assert len(logins) == 1  # outside the block: a login per call
    logins.clear()
    with wh.kept_open():
        with wh.kept_open():  # nested blocks share the outer one's connection
            for batch in wh.iter_batches("select send_id from nextbest.outbox order by send_id", 2):
                with wh.transaction() as tx:  # a write while a read streams, on the same connection
                    tx.execute("update nextbest.outbox set state = 'sent' where send_id = ?", [batch["send_id"][0]])
        with pytest.raises(RuntimeError, match="chunk failed"):
            with wh.transaction() as tx:
                tx.execute("update nextbest.outbox set state = 'failed'")
                raise RuntimeError("chunk failed")
        assert wh.read_df("select state, count(*) as n from nextbest.outbox group by state order by state") \
            .to_dict("list") == {"state": ["queued", "sent"], "n": [1, 2]}
    assert logins == ["nextbest"]  # one login for the whole block
    wh.read_df("select 1 as one")
    assert len(logins) == 2  # after it, the connection is closed and calls log in again


def test_reading_back_an_unapplied_write_is_refused(wh):
    with pytest.raises(RuntimeError, match="read after the block"):
        with wh.transaction() as tx:
            tx.write_df("nextbest", "drafts", pd.DataFrame({"customer_id": ["C1"]}))
            tx.read_df("select * from nextbest.drafts")


def test_a_dagster_asset_writes_through_the_resource(monkeypatch, statements):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(FakeSnowflakeCursor, "fetch_arrow_batches", _fetch_arrow_batches, raising=False)

    @dg.asset
    def customer_scores(warehouse: SnowflakeWarehouse) -> dg.MaterializeResult:
        result = warehouse.merge_df("nextbest", "customer_scores",
                                    pd.DataFrame({"customer_id": ["C1", "C2"], "score": [0.1, 0.7]}),
                                    keys=["customer_id"])
        return dg.MaterializeResult(metadata={"inserted": result.inserted})

    with fakesnow.patch():
        resource = build_warehouse()
        outcome = dg.materialize([customer_scores], resources={"warehouse": resource})
        assert outcome.success
        scores = resource.process_config_and_initialize().read_df("select * from nextbest.customer_scores")
    assert sorted(scores["customer_id"]) == ["C1", "C2"]
    assert not any("pw-not-for-logs" in s for s in statements)


def test_an_upload_that_fails_after_creating_its_table_leaves_no_staged_table(wh, monkeypatch):
    # `write_pandas(auto_create_table=True)` creates the transient table before it loads the files;
    # a load that fails then (a bad value, a dropped connection) must not leave an NB_STAGE_* table.
    real = snowflake.connector.pandas_tools.write_pandas

    def created_then_failed(*args, **kwargs):
        real(*args, **kwargs)
        raise RuntimeError("COPY INTO failed")

    wh.write_df("nextbest", "outbox", outbox_rows(2))
    monkeypatch.setattr(snowflake.connector.pandas_tools, "write_pandas", created_then_failed)
    with pytest.raises(RuntimeError, match="COPY INTO failed"):
        wh.write_df("nextbest", "outbox", outbox_rows(3, batch="b2"))
    assert staged_tables(wh) == 0
    assert wh.read_df("select count(*) as n from nextbest.outbox").iloc[0, 0] == 2

"""The engine-neutral warehouse interface on DuckDB, and how `build_warehouse()` picks an engine.

The Snowflake side of the same interface runs in `test_snowflake.py`.
"""

from __future__ import annotations

import hashlib
import inspect

import duckdb

import pandas as pd
import pytest
import snowflake.connector
import snowflake.connector.pandas_tools

from dagster_project.resources.snowflake import SnowflakeWarehouse
from dagster_project.resources.warehouse import (SAMPLE_BUCKET_DIGITS, DuckDBWarehouse, KeyRange, MergeResult,
                                                 build_warehouse, connect_duckdb, duckdb_frame, in_values,
                                                 read_key_sample)

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


def test_a_filtered_scan_comes_back_in_whole_batches(wh):
    # DuckDB hands a filtered scan over in pieces of its own (here 40,960 rows): re-cut to the size asked.
    with wh.transaction() as tx:
        tx.execute("create schema if not exists analytics")
        tx.execute("create table analytics.wide as select i, i % 3 as m from range(400000) as r(i)")
    batches = list(wh.iter_batches("select i from analytics.wide where m = 0", batch_size=50_000))
    assert [len(b) for b in batches] == [50_000, 50_000, 33_334]
    assert sorted(pd.concat(batches)["i"]) == list(range(0, 400_000, 3))


@pytest.mark.parametrize("sql", [
    "select 'C' || i as id, case when i % 2 = 0 then 'x' end as some_text, cast(null as varchar) as no_text, "
    "i, case when i > 1 then i end as some_int, cast(i as decimal(10, 2)) as money, sum(i) over () as total, "
    "i % 2 = 0 as flag, case when i > 1 then i % 2 = 0 end as some_flag, date '2026-01-01' + cast(i as integer) as day, "
    "timestamp '2026-01-01 08:00' + i * interval 1 hour as at, i / 3 as ratio from range(4) as r(i)",
    "select 'C' || i as id, i from range(3) as r(i) where i > 5",  # no rows
    "select 42 as answer, 'a' as a, 'b' as a, 'c' as a",  # a repeated name
])
def test_duckdb_frame_is_what_df_makes_with_text_through_arrow(sql):
    con = duckdb.connect()
    expected = con.execute(sql).df()
    got = duckdb_frame(con, con.sql(sql).to_arrow_table())
    pd.testing.assert_frame_equal(got, expected)


def test_in_values_matches_warehouse_text_against_any_values(wh):
    ids = wh.read_df("select case when i = 3 then null else 'C' || i end as customer_id from range(6) as r(i)")
    column = ids["customer_id"]  # the warehouse's own (Arrow-backed) text, with a null
    assert in_values(column, ["C1", "C4", "C9"]).tolist() == [False, True, False, False, True, False]
    assert in_values(column, pd.Series(["C0", "C5"], dtype=object)).tolist() == [True, False, False, False, False, True]
    assert in_values(column, set()).tolist() == [False] * 6
    assert in_values(pd.Series(["a", "b"], dtype=object), {"b"}).tolist() == [False, True]


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


def test_key_ranges_cut_sorted_keys_into_chunks_that_cover_them(wh):
    wh.write_df("analytics", "segments", pd.DataFrame({"customer_id": [f"C{i:03d}" for i in range(23)] * 2}))
    ranges = wh.key_ranges("select distinct customer_id from analytics.segments order by 1", batch_size=10)
    assert ranges == [KeyRange("C000", "C009", 10), KeyRange("C010", "C019", 10), KeyRange("C020", "C022", 3)]
    covered = [len(wh.read_df("select * from analytics.segments where customer_id >= ? and customer_id <= ?",
                              [r.first, r.last])) for r in ranges]
    assert covered == [20, 20, 6]
    assert wh.key_ranges("select customer_id from analytics.segments where 1 = 0", batch_size=10) == []


def test_staged_rows_reach_the_table_only_when_published(wh):
    wh.execute("create schema if not exists nextbest")
    wh.execute("create table nextbest.scores (customer_id varchar, score double, note varchar)")
    wh.write_df("nextbest", "scores", pd.DataFrame({"customer_id": ["old"], "score": [0.1], "note": ["kept"]}))
    with pytest.raises(RuntimeError, match="chunk 2 failed"):
        with wh.staged("nextbest", "scores") as staged:
            staged.write_df(pd.DataFrame({"customer_id": ["C1"], "score": [0.5], "note": [None]}))
            raise RuntimeError("chunk 2 failed")
    assert wh.read_df("select customer_id from nextbest.scores")["customer_id"].tolist() == ["old"]
    with wh.staged("nextbest", "scores") as staged:
        for start in (0, 3, 6):
            # A chunk whose text column is all blank still lands in the table's varchar column.
            staged.write_df(pd.DataFrame({"customer_id": [f"C{i}" for i in range(start, start + 3)],
                                          "score": [0.5] * 3, "note": [None] * 3}))
        assert wh.read_df("select count(*) as n from nextbest.scores").iloc[0, 0] == 1  # not published yet
        with wh.transaction() as tx:
            assert staged.replace(tx) == 9
    assert wh.read_df("select count(*) as n from nextbest.scores").iloc[0, 0] == 9
    assert wh.table_row_counts("nextbest") == {"scores": 9}  # the scratch table is gone


def test_a_scratch_table_lives_for_its_block_even_when_the_block_fails(wh):
    wh.execute("create schema if not exists nextbest")
    with wh.scratch_table("nextbest", "clv_orders", "(customer_id varchar, amount double)") as first, \
            wh.scratch_table("nextbest", "clv_orders", "(customer_id varchar, amount double)") as second:
        assert first != second and first.startswith("nextbest.nb_stage_clv_orders_")
        wh.execute(f"insert into {first} values ('C1', 2.5)")
        assert wh.read_df(f"select amount from {first}")["amount"].tolist() == [2.5]
        assert sorted(wh.table_row_counts("nextbest")) == sorted(name.split(".")[1] for name in (first, second))
    assert wh.table_row_counts("nextbest") == {}
    with pytest.raises(RuntimeError, match="scoring failed"):
        with wh.scratch_table("nextbest", "clv_facts", "as select 1 as n") as name:
            assert wh.read_df(f"select n from {name}")["n"].tolist() == [1]
            raise RuntimeError("scoring failed")
    assert wh.table_row_counts("nextbest") == {}
    with pytest.raises(ValueError, match="not a plain identifier"):
        with wh.scratch_table("nextbest", "orders; drop table x", "(n int)"):
            pass


def test_chunk_size_comes_from_nextbest_batch_rows(monkeypatch, duckdb_file):
    monkeypatch.delenv("NEXTBEST_WAREHOUSE", raising=False)
    monkeypatch.delenv("NEXTBEST_BATCH_ROWS", raising=False)
    assert build_warehouse().batch_rows == 50_000
    monkeypatch.setenv("NEXTBEST_BATCH_ROWS", "20_000")
    assert build_warehouse().batch_rows == 20_000
    monkeypatch.setenv("NEXTBEST_BATCH_ROWS", "lots")
    with pytest.raises(ValueError, match="NEXTBEST_BATCH_ROWS='lots': expected a whole number"):
        build_warehouse()
    monkeypatch.setenv("NEXTBEST_WAREHOUSE", "snowflake")
    monkeypatch.setenv("NEXTBEST_BATCH_ROWS", "7")
    for name, value in SNOWFLAKE_ENV.items():
        monkeypatch.setenv(name, value)
    assert build_warehouse().batch_rows == 7


def test_a_key_sample_keeps_whole_keys_under_the_cap_by_md5_and_takes_params(wh):
    # Customer i has 1 + i % 4 orders; one order has no customer.
    orders = pd.DataFrame({"customer_id": [f"C{i:03d}" for i in range(120) for _ in range(1 + i % 4)] + [None]})
    orders["amount"] = range(len(orders))
    wh.write_df("staging", "orders", orders)
    sql = "select customer_id, amount from staging.orders where amount >= ?"
    frame, sample = read_key_sample(wh, sql, "customer_id", 100, params=[0], order_by=("customer_id", "amount"))
    assert (sample.rows_available, sample.keys_available) == (len(orders), 120)
    assert len(frame) == sample.rows_read <= 100 and frame["customer_id"].nunique() == sample.keys_read
    sizes = frame.groupby("customer_id").size()
    assert all(sizes[c] == 1 + int(c[1:]) % 4 for c in sizes.index)  # all of a customer's rows, or none
    buckets = {c: hashlib.md5(c.encode()).hexdigest()[:SAMPLE_BUCKET_DIGITS] for c in orders["customer_id"].dropna()}
    assert set(frame["customer_id"]) == {c for c, b in buckets.items() if b < sample.below}
    # The longest run of md5 buckets that fits: the next customer up would break the cap.
    next_up = min(b for b in buckets.values() if b >= sample.below)
    assert sample.rows_read + sum(1 + int(c[1:]) % 4 for c, b in buckets.items() if b == next_up) > 100
    assert frame.equals(frame.sort_values(["customer_id", "amount"], ignore_index=True))  # in the order asked
    pd.testing.assert_frame_equal(read_key_sample(wh, sql, "customer_id", 100, params=[0],
                                                  order_by=("customer_id", "amount"))[0], frame)
    everything, whole = read_key_sample(wh, sql, "customer_id", len(orders), params=[0])
    assert whole.complete and len(everything) == len(orders)  # under the cap: every row, the keyless one too
    assert read_key_sample(wh, sql, "customer_id", 100, params=[len(orders)])[1].rows_available == 0
    with pytest.raises(ValueError, match="Key column"):
        read_key_sample(wh, sql, "customer_id; drop table x", 100, params=[0])


def test_python_steps_cap_duckdb_memory_like_dbt(tmp_path, monkeypatch):
    """Connections the Python steps open spill beyond NEXTBEST_DUCKDB_MEMORY_LIMIT, as dbt's builds do;
    a file already open elsewhere in the process (without the cap) still opens."""
    path = tmp_path / "capped.duckdb"
    elsewhere = duckdb.connect(str(path))
    monkeypatch.setenv("NEXTBEST_DUCKDB_MEMORY_LIMIT", "1GB")
    con = connect_duckdb(path)
    try:
        assert con.execute("select current_setting('memory_limit')").fetchone()[0] in ("953.6 MiB", "1.0 GiB")
    finally:
        con.close()
        elsewhere.close()
    monkeypatch.setenv("NEXTBEST_DUCKDB_MEMORY_LIMIT", "lots")
    with pytest.raises(ValueError, match="NEXTBEST_DUCKDB_MEMORY_LIMIT='lots'"):
        connect_duckdb(path)


def test_a_kept_open_block_checkpoints_less_often_and_puts_the_setting_back(wh):
    def threshold(con) -> str:
        return con.execute("select current_setting('checkpoint_threshold')").fetchone()[0]

    with wh.connect() as con:
        default = threshold(con)
    with wh.kept_open():
        with wh.connect() as con:  # every connection of the block shares the open database's setting
            inside = threshold(con)
        with wh.kept_open():
            pass
        with wh.connect() as con:
            assert threshold(con) == inside  # a nested block leaves the outer one's
        wh.write_df("nextbest", "t", pd.DataFrame({"x": range(1000)}))
        with wh.connect() as con:
            con.execute("update nextbest.t set x = x + 1")
    assert inside != default and inside.endswith("MiB") and float(inside.split()[0]) > 900  # ~1GB, not 16MB
    with wh.connect() as con:
        assert threshold(con) == default
        assert con.execute("select sum(x) from nextbest.t").fetchone()[0] == sum(range(1, 1001))


def test_key_ranges_leave_out_null_keys_without_losing_a_chunk(wh):
    # A null key sorts last: as a chunk's last key it made `customer_id <= null`, which reads none of the chunk.
    wh.write_df("analytics", "segments", pd.DataFrame({"customer_id": [f"C{i}" for i in range(5)] + [None]}))
    ranges = wh.key_ranges("select distinct customer_id from analytics.segments order by 1", batch_size=10)
    assert ranges == [KeyRange("C0", "C4", 5)]
    covered = sum(len(wh.read_df("select * from analytics.segments where customer_id >= ? and customer_id <= ?",
                                 r.bounds)) for r in ranges)
    assert covered == 5


def test_key_ranges_never_split_a_repeated_key_across_chunks(wh):
    # Keys selected without `distinct` (a customer in two segments): a key on a chunk's border must not
    # start the next chunk too, or its rows are read (and written) twice.
    keys = ["A", "B", "B", "B", "C", "D", "D", "E"]
    wh.write_df("analytics", "segments", pd.DataFrame({"customer_id": keys}))
    ranges = wh.key_ranges("select customer_id from analytics.segments order by 1", batch_size=2)
    reads = [wh.read_df("select customer_id from analytics.segments where customer_id >= ? and customer_id <= ?",
                        r.bounds)["customer_id"].tolist() for r in ranges]
    assert sorted(k for read in reads for k in read) == keys  # every row once
    assert sum(r.rows for r in ranges) == len(set(keys))  # `rows` counts keys


def test_a_table_made_from_a_first_frame_takes_the_next_frames(wh):
    # The first frame made the table: a column it left blank became DuckDB's NULL type (which no value can
    # ever be cast to), and its decimals a DECIMAL just wide enough for them (12.50 then overflowed 9.99).
    from decimal import Decimal

    wh.write_df("nextbest", "notes", pd.DataFrame({"id": ["a"], "note": [None], "price": [Decimal("1.10")]}))
    wh.write_df("nextbest", "notes", pd.DataFrame({"id": ["b"], "note": ["hello"], "price": [Decimal("12345.50")]}))
    wh.merge_df("nextbest", "notes", pd.DataFrame({"id": ["a"], "note": ["set"], "price": [Decimal("2.25")]}), ["id"])
    rows = wh.read_df("select * from nextbest.notes order by id")
    assert rows["note"].tolist() == ["set", "hello"] and rows["price"].tolist() == [2.25, 12345.5]


def test_timestamps_with_a_time_zone_are_stored_in_utc_whatever_the_machines_zone(tmp_path):
    # DuckDB's session time zone is the machine's: on a New York machine a tz-aware 10:00 Berlin time
    # written into a `timestamp` column (UTC by the source contract) was stored as 04:00, not 09:00.
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    script = textwrap.dedent(f"""
        import pandas as pd
        from dagster_project.resources.warehouse import DuckDBWarehouse
        wh = DuckDBWarehouse(path={str(tmp_path / "tz.duckdb")!r})
        wh.execute("create schema if not exists raw")
        wh.execute("create table raw.events (event_id varchar, occurred_at timestamp)")
        wh.write_df("raw", "events", pd.DataFrame({{"event_id": ["e1"],
                    "occurred_at": [pd.Timestamp("2026-01-01 10:00", tz="Europe/Berlin")]}}))
        print(wh.read_df("select cast(occurred_at as varchar) as t from raw.events")["t"][0])
    """)
    repo = Path(__file__).resolve().parents[2]
    env = {**__import__("os").environ, "TZ": "America/New_York", "PYTHONPATH": str(repo)}
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1] == "2026-01-01 09:00:00"


def test_snowflake_sessions_run_in_utc_like_duckdbs():
    wh = SnowflakeWarehouse(account="a", user="u", warehouse="w", database="d", password="pw")
    assert wh._connect_kwargs()["session_parameters"] == {"QUERY_TAG": "nextbest", "TIMEZONE": "UTC"}


def test_result_pieces_whose_arrow_types_differ_are_joined_not_refused():
    # Snowflake picks each result chunk's Arrow types from its values (NUMBER(38,0) as int8 in one chunk,
    # int64 in the next; a chunk of blanks as null): joining them must widen, not raise ArrowInvalid.
    import pyarrow as pa

    from dagster_project.resources.snowflake import SnowflakeSession
    from dagster_project.resources.warehouse import rebatched

    def pieces():
        return [pa.table({"N": pa.array([1, 2], pa.int8())}), pa.table({"N": pa.array([300_000], pa.int64())}),
                pa.table({"N": pa.array([None], pa.null())})]

    assert [t.column("N").to_pylist() for t in rebatched(pieces(), 3)] == [[1, 2, 300_000], [None]]

    class Cursor:
        description = [("N",)]

        def execute(self, sql, params=None):
            pass

        def fetch_arrow_batches(self):
            yield from pieces()

        def close(self):
            pass

    class Connection:
        def cursor(self):
            return Cursor()

    df = SnowflakeSession(Connection())._query("select n from t")
    assert df["n"].tolist()[:3] == [1, 2, 300_000] and pd.isna(df["n"].iloc[3])

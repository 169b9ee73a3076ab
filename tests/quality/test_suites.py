"""The suites in expectations/ load, cover the source contract, and pass on a good simulated store."""

from __future__ import annotations

import duckdb
import pytest

from dagster_project.ingest import contract
from dagster_project.quality.runner import validate_suite
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


def test_a_table_above_the_gx_limit_is_validated_on_its_newest_rows(store, monkeypatch):
    """GX reads at most NEXTBEST_GX_MAX_ROWS rows: a bad row among the newest is caught and the
    message says which part was checked; a table without `recent_by` gets a sample; counts stay whole."""
    with duckdb.connect(str(store)) as con:
        total = con.execute("select count(*) from raw.email_events").fetchone()[0]
        newest = con.execute("select max(occurred_at) from raw.email_events").fetchone()[0]
        con.execute("insert into raw.email_events values ('E_BAD', 'C1', 'c', 'm', 'teleported', ?)", [newest])
        monkeypatch.setenv("NEXTBEST_GX_MAX_ROWS", "100")
        suites = {s.name: s for s in load_suites()}
        events = validate_suite(con, suites["raw.email_events"])
        items = validate_suite(con, suites["raw.order_items"])
        monkeypatch.setenv("NEXTBEST_GX_MAX_ROWS", "lots")
        with pytest.raises(ValueError, match="NEXTBEST_GX_MAX_ROWS='lots'"):
            validate_suite(con, suites["raw.email_events"])
    by_name = {o.name: o for o in events.outcomes}
    assert events.row_count == total + 1
    bad = by_name["event_type_accepted_values"]
    assert bad.failed and "1 of 100 rows" in bad.message
    assert f"checked on the newest 100 of {total + 1:,} rows by occurred_at" in bad.message
    assert [e["event_id"] for e in bad.examples] == ["E_BAD"]
    assert by_name["row_count"].message == f"raw.email_events has {total + 1:,} rows"
    assert all("sample of 100" in o.message for o in items.outcomes if o.kind == "expectation"
               and not o.name.endswith("row_count"))


def test_gx_reads_only_the_columns_its_expectations_name_and_the_table_keeps_its_shape(store, monkeypatch):
    """The drafts suite names a few columns: bodies, verdicts and history are never read into pandas.
    The column-set expectation still sees every column; a failure's example shows the row's id."""
    from dagster_project.quality import runner

    suite = suite_for("nextbest.message_drafts")
    with duckdb.connect(str(store)) as con:
        con.execute("create schema if not exists nextbest")
        con.execute("create table nextbest.message_drafts (draft_id varchar, batch_id varchar, customer_id varchar, "
                    "playbook_id varchar, subject varchar, body varchar, status varchar, block_reason varchar, "
                    "verdicts varchar, history varchar, as_of date, created_at timestamp)")
        customer = con.execute("select min(customer_id) from raw.customers").fetchone()[0]
        con.execute("insert into nextbest.message_drafts values ('D1', 'b', ?, 'onboarding', 'Hi', 'Body', "
                    "'pending_review', null, '[]', '[]', date '2026-02-22', timestamp '2026-02-22 05:00'), "
                    "('D2', 'b', ?, 'no_such_playbook', 'Hi', 'Body', 'pending_review', null, '[]', '[]', "
                    "date '2026-02-22', timestamp '2026-02-22 05:00')", [customer, customer])
        columns = runner.table_columns(con, "nextbest.message_drafts")
        read = runner.read_columns(suite, columns)
        queries = []
        real = duckdb.DuckDBPyConnection.execute
        monkeypatch.setattr(duckdb.DuckDBPyConnection, "execute",
                            lambda self, sql, *a, **k: queries.append(sql) or real(self, sql, *a, **k))
        result = validate_suite(con, suite)
    assert read == ["draft_id", "customer_id", "playbook_id", "status", "created_at"]
    gx_reads = [q for q in queries if q.startswith("select draft_id")]
    assert gx_reads and all("body" not in q and "verdicts" not in q for q in gx_reads)
    assert next(o for o in result.outcomes if o.name == "columns_present").status == "passed"
    bad = next(o for o in result.outcomes if o.failed and "playbook_id" in o.name)
    assert [{c: v for c, v in row.items() if c != "created_at"} for row in bad.examples] == [
        {"draft_id": "D2", "customer_id": customer, "playbook_id": "no_such_playbook", "status": "pending_review"}]


def test_a_missing_unread_column_fails_the_column_set_and_the_read_columns_are_still_checked(store):
    """The column-set expectation runs apart from the others (they see only the columns read):
    it still names an unread column the table lacks, and the value expectations still judge every row."""
    suite = suite_for("nextbest.message_drafts")
    with duckdb.connect(str(store)) as con:
        con.execute("create schema if not exists nextbest")
        con.execute("create table nextbest.message_drafts (draft_id varchar, batch_id varchar, customer_id varchar, "
                    "playbook_id varchar, subject varchar, body varchar, status varchar, block_reason varchar, "
                    "as_of date, created_at timestamp)")  # no verdicts
        customer = con.execute("select min(customer_id) from raw.customers").fetchone()[0]
        con.execute("insert into nextbest.message_drafts select 'D' || i, 'b', ?, 'onboarding', 'Hi', 'Body', "
                    "case when i = 7 then 'lost' else 'pending_review' end, null, date '2026-02-22', "
                    "timestamp '2026-02-22 05:00' from range(10) as t(i)", [customer])
        result = validate_suite(con, suite)
    columns = next(o for o in result.outcomes if o.name == "columns_present")
    assert columns.failed and "verdicts" in columns.message
    status = next(o for o in result.outcomes if o.failed and "status" in o.name)
    assert "1 of 10 rows" in status.message and [e["draft_id"] for e in status.examples] == ["D7"]
    assert next(o for o in result.outcomes if o.name == "draft_id_unique").status == "passed"


def test_timestamp_with_time_zone_columns_are_checked_not_failed(store):
    """TIMESTAMP WITH TIME ZONE meets the contract type; the date bounds judge its values in UTC
    instead of failing as "could not be evaluated" (a blocking failure on good data)."""
    with duckdb.connect(str(store)) as con:
        con.execute("set TimeZone = 'UTC'")
        con.execute("alter table raw.email_events alter occurred_at type timestamptz")
        con.execute("set TimeZone = 'America/New_York'")
        good = validate_suite(con, suite_for("raw.email_events"))
        con.execute("insert into raw.email_events select 'E_FUTURE', customer_id, campaign_id, message_id, 'open', "
                    "now() + interval 3 day from raw.email_events limit 1")
        bad = validate_suite(con, suite_for("raw.email_events"))
    assert not [o.message for o in good.outcomes if o.failed]
    future = next(o for o in bad.outcomes if o.name == "occurred_at_not_in_future")
    assert future.blocking and "1 of" in future.message and [e["event_id"] for e in future.examples] == ["E_FUTURE"]

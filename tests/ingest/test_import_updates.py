"""Re-importing a store's daily exports: a row whose key is already stored but whose
values changed (a subscription cancelled, an order shipped) replaces the stored row;
the same files imported again change nothing; events never change once stored.

Every import runs through `nextbest import` as a user runs it, into a DuckDB file.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from dagster_project.cli import main
from dagster_project.ingest import contract, row_checks

HEADERS = {name: ",".join(table.column_names) for name, table in contract.TABLES.items()}

# Yesterday's export: one row per table.
DAY_1 = {
    "customers": ["C001,ana@example.com,Ana,2024-01-05 10:00:00,DE,Europe/Berlin,true,email"],
    "products": ["P001,House Blend,coffee,14.00,true,true"],
    "subscriptions": ["S011,C001,P001,single_bag,active,28,12.60,2024-02-01 09:00:00,,,2030-01-01 00:00:00,false"],
    "orders": ["O001,C001,S011,2024-02-01 09:00:00,fulfilled,12.60,,,"],
    "order_items": ["O001,P001,1,12.60,false"],
    "email_events": ["EE1,C001,camp1,msg1,open,2024-02-02 08:00:00"],
    "portal_events": ["PE1,C001,login,2024-02-02 08:00:00,"],
    "support_tickets": ["T001,C001,2024-02-03 10:00:00,email,delivery_delay,open,,,Where is my order?"],
    "payments": ["PAY1,C001,O001,2024-02-01 09:00:00,failed,card_declined,12.60"],
}

# Today's export: every row changed the way a store's rows change.
DAY_2 = {
    "customers": ["C001,ana.new@example.com,Ana,2024-01-05 10:00:00,DE,Europe/Berlin,false,email"],
    "products": ["P001,House Blend,coffee,15.50,false,true"],
    "subscriptions": [
        "S011,C001,P001,single_bag,cancelled,28,12.60,2024-02-01 09:00:00,2024-03-01 12:00:00,too_expensive,,false"
    ],
    "orders": ["O001,C001,S011,2024-02-01 09:00:00,refunded,12.60,,2024-02-02 10:00:00,2024-02-04 15:00:00"],
    "order_items": ["O001,P001,2,12.60,false"],
    "email_events": ["EE1,C001,camp1,msg1,click,2024-02-02 08:00:00"],
    "portal_events": ["PE1,C001,skip,2024-02-02 08:00:00,"],
    "support_tickets": [
        "T001,C001,2024-02-03 10:00:00,email,delivery_delay,solved,2024-02-04 09:00:00,5,Where is my order?"
    ],
    "payments": ["PAY1,C001,O001,2024-02-01 09:00:00,succeeded,,12.60"],
}

# Tables whose rows are an entity's current state, and event tables.
CURRENT_STATE = ["customers", "products", "subscriptions", "orders", "order_items", "support_tickets", "payments"]
EVENTS = ["email_events", "portal_events"]


def write_export(folder: Path, rows: dict[str, list[str]], headers: dict[str, str] = HEADERS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for table, lines in rows.items():
        (folder / f"{table}.csv").write_text("\n".join([headers[table], *lines]) + "\n")
    return folder


def run_import(folder: Path, capsys) -> str:
    assert main(["import", str(folder)]) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def stored(db: Path, table: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(f"select * from raw.{table} order by all").fetchall()
    finally:
        con.close()


def query(db: Path, sql: str):
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_a_cancelled_subscription_replaces_the_active_one(duckdb_file, tmp_path, capsys):
    run_import(write_export(tmp_path / "day1", DAY_1), capsys)
    today = dict(DAY_1, subscriptions=DAY_2["subscriptions"])
    out = run_import(write_export(tmp_path / "day2", today), capsys)

    assert "subscriptions.csv: 1 rows read, 0 loaded, 1 updated, 0 quarantined, 0 already present" in out
    assert query(duckdb_file, "select subscription_id, status, cancelled_at::varchar, cancel_reason, next_charge_at "
                              "from raw.subscriptions") == [
        ("S011", "cancelled", "2024-03-01 12:00:00", "too_expensive", None)]
    # the summary table has the column, and nothing else was touched
    assert "updated" in out.split("Import from", 1)[1].splitlines()[1]
    for table in contract.LOAD_ORDER:
        if table != "subscriptions":
            assert len(stored(duckdb_file, table)) == 1, table


def test_every_current_state_table_takes_todays_values_and_events_stay(duckdb_file, tmp_path, capsys):
    run_import(write_export(tmp_path / "day1", DAY_1), capsys)
    day1 = {table: stored(duckdb_file, table) for table in contract.LOAD_ORDER}
    out = run_import(write_export(tmp_path / "day2", DAY_2), capsys)

    for table in CURRENT_STATE:
        assert f"{table}.csv: 1 rows read, 0 loaded, 1 updated, 0 quarantined, 0 already present" in out, table
        assert len(stored(duckdb_file, table)) == 1 and stored(duckdb_file, table) != day1[table], table
    for table in EVENTS:
        assert f"{table}.csv: 1 rows read, 0 loaded, 0 updated, 0 quarantined, 1 already present" in out, table
        assert stored(duckdb_file, table) == day1[table], table
        assert f"{table}.csv: 1 row(s) whose event_id is already in raw.{table} hold other values" in out
    assert query(duckdb_file, "select email, marketing_opt_in from raw.customers") == [("ana.new@example.com", False)]
    assert query(duckdb_file, "select price::varchar, active from raw.products") == [("15.50", False)]
    assert query(duckdb_file, "select status, delivered_at::varchar from raw.orders") == [
        ("refunded", "2024-02-04 15:00:00")]
    assert query(duckdb_file, "select quantity from raw.order_items") == [(2,)]
    assert query(duckdb_file, "select status, csat from raw.support_tickets") == [("solved", 5)]
    assert query(duckdb_file, "select status, failure_reason from raw.payments") == [("succeeded", None)]
    assert query(duckdb_file, "select event_type from raw.email_events") == [("open",)]


def test_importing_the_same_files_again_changes_nothing(duckdb_file, tmp_path, capsys):
    run_import(write_export(tmp_path / "day1", DAY_1), capsys)
    day2 = write_export(tmp_path / "day2", DAY_2)
    run_import(day2, capsys)
    after = {table: stored(duckdb_file, table) for table in [*contract.LOAD_ORDER, contract.QUARANTINE_TABLE]}
    out = run_import(day2, capsys)

    assert {table: stored(duckdb_file, table) for table in after} == after
    for table in contract.LOAD_ORDER:
        assert f"{table}.csv: 1 rows read, 0 loaded, 0 updated, 0 quarantined, 1 already present" in out, table


def test_a_value_written_another_way_is_not_an_update(duckdb_file, tmp_path, capsys):
    run_import(write_export(tmp_path / "day1", DAY_1), capsys)
    # Same values as day 1, written as another tool exports them.
    rewritten = {
        "customers": ["  C001 ,ana@example.com, Ana ,2024-01-05T12:00:00+02:00,DE,Europe/Berlin,TRUE,EMAIL"],
        "products": ["P001,House Blend,coffee,14,True,1"],
        "subscriptions": ["S011,C001,P001,single_bag,Active,28.0,12.6,2024-02-01T09:00:00Z,,,2030-01-01,f"],
    }
    out = run_import(write_export(tmp_path / "day2", rewritten), capsys)

    for table in rewritten:
        assert f"{table}.csv: 1 rows read, 0 loaded, 0 updated, 0 quarantined, 1 already present" in out, table


def test_a_changed_row_with_a_bad_value_is_quarantined_and_the_stored_row_kept(duckdb_file, tmp_path, capsys):
    run_import(write_export(tmp_path / "day1", DAY_1), capsys)
    before = stored(duckdb_file, "subscriptions")
    bad = {"subscriptions": [
        # cancelled, but with a cadence that is not a number
        "S011,C001,P001,single_bag,cancelled,monthly,12.60,2024-02-01 09:00:00,2024-03-01 12:00:00,price,,false",
    ]}
    out = run_import(write_export(tmp_path / "day2", bad), capsys)

    assert "subscriptions.csv: 1 rows read, 0 loaded, 0 updated, 1 quarantined, 0 already present" in out
    assert stored(duckdb_file, "subscriptions") == before
    assert query(duckdb_file, "select reason from raw.raw_quarantine") == [
        ("cadence_days: expected a whole number, got 'monthly'",)]


def test_a_changed_row_pointing_at_a_missing_parent_is_quarantined(duckdb_file, tmp_path, capsys):
    run_import(write_export(tmp_path / "day1", DAY_1), capsys)
    before = stored(duckdb_file, "subscriptions")
    swapped = {"subscriptions": [
        "S011,C001,P404,single_bag,active,28,12.60,2024-02-01 09:00:00,,,2030-01-01 00:00:00,false"]}
    out = run_import(write_export(tmp_path / "day2", swapped), capsys)

    assert "subscriptions.csv: 1 rows read, 0 loaded, 0 updated, 1 quarantined, 0 already present" in out
    assert stored(duckdb_file, "subscriptions") == before
    assert "product_id: 'P404' has no match in raw.products" in query(
        duckdb_file, "select reason from raw.raw_quarantine")[0][0]


def test_a_column_the_file_leaves_out_keeps_its_stored_value(duckdb_file, tmp_path, capsys):
    run_import(write_export(tmp_path / "day1", DAY_1), capsys)
    # A narrower export: no first_name, country, timezone or channel_preference.
    narrow = {"customers": "customer_id,email,created_at,marketing_opt_in"}
    out = run_import(write_export(tmp_path / "day2", {"customers": [
        "C001,ana.new@example.com,2024-01-05 10:00:00,true"]}, narrow), capsys)

    assert "customers.csv: 1 rows read, 0 loaded, 1 updated" in out
    assert query(duckdb_file, "select email, first_name, country, timezone, channel_preference from raw.customers") == [
        ("ana.new@example.com", "Ana", "DE", "Europe/Berlin", "email")]


def test_new_changed_and_unchanged_rows_in_one_file(duckdb_file, tmp_path, capsys):
    day1 = dict(DAY_1, products=["P001,House Blend,coffee,14.00,true,true", "P002,Decaf,coffee,13.00,true,true"])
    run_import(write_export(tmp_path / "day1", day1), capsys)
    products = ["P001,House Blend,coffee,14.00,true,true", "P002,Decaf,coffee,13.50,true,true",
                "P003,Espresso,coffee,15.00,true,false"]
    out = run_import(write_export(tmp_path / "day2", {"products": products}), capsys)

    assert "products.csv: 3 rows read, 1 loaded, 1 updated, 0 quarantined, 1 already present" in out
    assert [line.split() for line in out.splitlines() if line.startswith("total")] == [
        ["total", "1", "3", "1", "1", "0", "1"]]
    assert query(duckdb_file, "select product_id, price::varchar from raw.products order by 1") == [
        ("P001", "14.00"), ("P002", "13.50"), ("P003", "15.00")]


def test_updates_are_undone_with_the_rest_of_the_file_when_it_fails(duckdb_file, tmp_path, capsys, monkeypatch):
    run_import(write_export(tmp_path / "day1", DAY_1), capsys)
    before = {table: stored(duckdb_file, table) for table in [*contract.LOAD_ORDER, contract.QUARANTINE_TABLE]}
    real_update = row_checks.update_sql
    monkeypatch.setattr(row_checks, "update_sql",
                        lambda table, columns: real_update(table, columns) + " and no_such_column = 1")
    products = ["P001,House Blend,coffee,15.50,true,true", "P002,Decaf,coffee,-1,true,true",
                "P003,Espresso,coffee,15.00,true,false"]

    assert main(["import", str(write_export(tmp_path / "day2", {"products": products}))]) == 2
    assert "products.csv: could not be imported into raw.products" in capsys.readouterr().err
    # neither the new row, the quarantined row nor the update was kept
    assert {table: stored(duckdb_file, table) for table in before} == before


@pytest.mark.parametrize("table", EVENTS)
def test_a_new_event_with_a_stored_customer_is_still_loaded(duckdb_file, tmp_path, capsys, table):
    run_import(write_export(tmp_path / "day1", DAY_1), capsys)
    event = {"email_events": "EE2,C001,camp1,msg1,click,2024-02-02 09:00:00",
             "portal_events": "PE2,C001,skip,2024-02-02 09:00:00,"}[table]
    out = run_import(write_export(tmp_path / "day2", {table: [DAY_1[table][0], event]}), capsys)

    assert f"{table}.csv: 2 rows read, 1 loaded, 0 updated, 0 quarantined, 1 already present" in out
    assert len(stored(duckdb_file, table)) == 2


def test_a_whole_store_exported_and_imported_twice_is_not_updated(duckdb_file, tmp_path, capsys):
    # Microsecond timestamps, decimals, JSON properties and ticket bodies with line breaks, as a
    # real export writes them: the second import must find every row the same.
    store = tmp_path / "store.duckdb"
    argv = ["simulate", "--customers", "40", "--months", "2", "--seed", "5", "--end-date", "2026-05-31"]
    assert main([*argv, "--db", str(store)]) == 0
    exports = tmp_path / "exports"
    exports.mkdir()
    con = duckdb.connect(str(store))
    for table in contract.LOAD_ORDER:
        con.execute(f"copy raw.{table} to '{exports / f'{table}.csv'}' (header)")
    con.close()
    capsys.readouterr()

    assert main(["import", str(exports), "--db", str(duckdb_file)]) == 0
    first = capsys.readouterr().out
    assert main(["import", str(exports), "--db", str(duckdb_file)]) == 0
    second = capsys.readouterr().out

    def totals(out: str) -> list[int]:
        line = [line.split() for line in out.splitlines() if line.startswith("total")][0]
        return [int(n.replace(",", "")) for n in line[2:]]  # rows read, loaded, updated, quarantined, present

    rows_read, loaded, updated, quarantined, present = totals(first)
    assert (loaded, updated, quarantined) == (rows_read, 0, 0), first
    assert totals(second) == [rows_read, 0, 0, 0, rows_read], second

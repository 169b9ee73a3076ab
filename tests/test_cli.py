"""The `nextbest` command: simulate, import and demo as a user runs them."""

from __future__ import annotations

import duckdb
import pytest

from dagster_project.cli import main


def test_simulate_writes_the_store(duckdb_file, capsys):
    assert main(["simulate", "--customers", "300", "--months", "6", "--seed", "3", "--end-date", "2026-05-31"]) == 0
    out = capsys.readouterr().out
    assert "customers" in out and "orders" in out
    con = duckdb.connect(str(duckdb_file), read_only=True)
    assert con.execute("select count(*) from raw.customers").fetchone()[0] >= 300
    con.close()


def test_simulating_over_a_warehouse_the_pipeline_ran_on_is_refused_unless_replaced(duckdb_file, capsys):
    """Sends, approvals and the incremental feature history belong to the store they were built on: a new
    simulation under them would orphan the sends and mix two stores' features."""
    store = ["simulate", "--customers", "200", "--months", "4", "--seed", "3", "--end-date", "2026-05-31"]
    assert main(store) == 0
    with duckdb.connect(str(duckdb_file)) as con:
        con.execute("create schema analytics; create table analytics.customer_features as select 1 as x")
        con.execute("create table nextbest.outbox as select 'M1' as send_id")
        customers = con.execute("select count(*) from raw.customers").fetchone()[0]
    capsys.readouterr()
    assert main([*store[:6], "9"] + store[7:]) == 2
    err = capsys.readouterr().err
    assert "analytics.customer_features, nextbest.outbox" in err and "--replace" in err
    with duckdb.connect(str(duckdb_file), read_only=True) as con:  # nothing was touched
        assert con.execute("select count(*) from raw.customers").fetchone()[0] == customers
        assert con.execute("select count(*) from nextbest.outbox").fetchone()[0] == 1

    assert main([*store, "--replace"]) == 0
    assert "dropped 2 tables" in capsys.readouterr().out
    with duckdb.connect(str(duckdb_file), read_only=True) as con:
        left = con.execute("select table_schema || '.' || table_name from information_schema.tables "
                           "where table_schema in ('analytics', 'nextbest')").fetchall()
    assert left == [("nextbest.assignments",)]  # the simulator's own past campaigns


@pytest.mark.parametrize("command", [["service-context", "--customer", "C1"], ["preview", "--customer", "C1"],
                                     ["review"]])
def test_a_file_that_is_not_a_duckdb_warehouse_is_a_clear_error(tmp_path, capsys, command):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a database\n" * 100)
    assert main([*command, "--db", str(notes)]) == 2
    err = capsys.readouterr().err
    assert "Cannot open the warehouse" in err and "Traceback" not in err


def test_simulate_rejects_bad_sizes(duckdb_file, capsys):
    with pytest.raises(SystemExit):
        main(["simulate", "--customers", "0"])
    assert "positive" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["simulate", "--customers", "abc"])
    err = capsys.readouterr().err
    assert "--customers: must be a positive whole number, got 'abc'" in err and "_positive_int" not in err


def test_import_of_a_missing_folder_is_a_clear_error(duckdb_file, tmp_path, capsys):
    assert main(["import", str(tmp_path / "nope")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_import_is_refused_on_snowflake_without_touching_duckdb(duckdb_file, tmp_path, monkeypatch, capsys):
    (tmp_path / "customers.csv").write_text("customer_id,email\nC1,a@example.com\n")
    monkeypatch.setenv("NEXTBEST_WAREHOUSE", "snowflake")
    assert main(["import", str(tmp_path)]) == 2
    assert "own loader" in capsys.readouterr().err
    assert not duckdb_file.exists()  # nothing created on the way to the refusal


def test_demo_runs_everything_and_prints_a_summary(duckdb_file, capsys):
    assert main(["demo", "--customers", "300", "--months", "6"]) == 0
    out = capsys.readouterr().out
    assert "[1/3] Simulating" in out
    assert "analytics.customer_context" in out
    assert "Drafts by status" in out
    assert "Segments" in out
    # A failed check says what it measured, here (doctor runs the data checks only, not the models').
    failed = [line.strip() for line in out.splitlines() if line.strip().startswith(("WARN: ", "ERROR: "))]
    assert failed and not any("doctor" in line for line in failed)
    assert any("uplift_models_pass failed (failing " in line for line in failed)
    # a second demo keeps the raw data and rebuilds
    assert main(["demo"]) == 0
    assert "Raw data already present" in capsys.readouterr().out

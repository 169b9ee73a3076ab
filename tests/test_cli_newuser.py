"""The `nextbest` command as a new user meets it: wrong input, a missing or busy warehouse, clear errors."""

from __future__ import annotations

import datetime as dt
import json
import socket
import subprocess
import sys

import duckdb
import pytest

from dagster_project.cli import main
from dagster_project.ingest.simulator import simulate
from dagster_project.resources import warehouse as warehouse_module
from tests.messaging.store import AS_OF, write_store

END = dt.date(2026, 5, 31)


@pytest.fixture
def sim_db(tmp_path):
    """A small simulated store (raw.* only), as `nextbest simulate` leaves it."""
    path = tmp_path / "w.duckdb"
    con = duckdb.connect(str(path))
    simulate(con, customers=40, months=2, seed=1, end_date=END)
    con.close()
    return path


@pytest.fixture
def store_db(tmp_path):
    """The messaging test store: Anna (C001) and friends, as of AS_OF."""
    path = tmp_path / "store.duckdb"
    con = duckdb.connect(str(path))
    write_store(con)
    con.close()
    return path


@pytest.fixture
def locked(sim_db, monkeypatch):
    """`sim_db` held open for writing by another process (a demo or Dagster run); no lock wait."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time\n"
         f"con = duckdb.connect({str(sim_db)!r})\nprint('ready', flush=True)\ntime.sleep(120)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        monkeypatch.setattr(warehouse_module, "LOCK_WAIT_SECONDS", 0.0)
        yield sim_db
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("argv", [
    ["approve", "b-2026-05-31", "--by", "ana"],
    ["reject", "b-2026-05-31", "--by", "ana", "--reason", "no"],
    ["ingest-events", "EVENTS"],
    ["service-context", "--customer", "C00000001"],
    ["save-offer-choice", "--recommendation", "r", "--option", "o", "--agent", "a"],
    ["preview", "--customer", "C00000001", "--playbook", "win_back", "--as-of", "2026-05-31"],
    ["simulate", "--customers", "5", "--months", "1"],
    ["import", "FOLDER"],
], ids=lambda argv: argv[0])
def test_a_warehouse_locked_by_another_process_is_a_clear_error(locked, tmp_path, capsys, argv):
    events = tmp_path / "e.jsonl"
    events.write_text(json.dumps({"event_id": "e1", "customer_id": "C00000001", "campaign_id": "c",
                                  "message_id": "m", "event_type": "opened",
                                  "occurred_at": "2026-05-30T10:00:00"}) + "\n")
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "customers.csv").write_text("customer_id,email,created_at,marketing_opt_in\nC9,a@x.com,2026-01-01,true\n")
    argv = [{"EVENTS": str(events), "FOLDER": str(folder)}.get(a, a) for a in argv]
    assert main([*argv, "--db", str(locked)]) == 2
    err = capsys.readouterr().err
    assert str(locked) in err and "another process" in err


@pytest.mark.parametrize("argv", [["simulate", "--customers", "5", "--months", "1"], ["import", "."], ["demo"]],
                         ids=lambda argv: argv[0])
def test_simulate_import_and_demo_refuse_a_file_named_after_a_schema(tmp_path, capsys, argv):
    assert main([*argv, "--db", str(tmp_path / "raw.duckdb")]) == 2
    captured = capsys.readouterr()
    assert "same as a NextBest schema" in captured.err
    assert "Finished" not in captured.out  # nothing ran
    assert not (tmp_path / "raw.duckdb").exists()


@pytest.mark.parametrize("argv", [
    ["approve", "b-2026-05-31", "--by", "ana"],
    ["reject", "b-2026-05-31", "--by", "ana", "--reason", "no"],
    ["ingest-events", "EVENTS"],
    ["save-offer-choice", "--recommendation", "r", "--option", "o", "--agent", "a"],
], ids=lambda argv: argv[0])
def test_writing_commands_do_not_create_a_warehouse_at_a_mistyped_path(tmp_path, capsys, argv):
    events = tmp_path / "e.jsonl"
    events.write_text("")
    missing = tmp_path / "typo.duckdb"
    argv = [str(events) if a == "EVENTS" else a for a in argv]
    assert main([*argv, "--db", str(missing)]) == 2
    captured = capsys.readouterr()
    assert f"No warehouse at {missing}" in captured.out + captured.err
    assert not missing.exists()


def test_preview_with_a_bad_as_of_names_the_date(store_db, capsys, monkeypatch):
    assert main(["preview", "--customer", "C001", "--playbook", "win_back", "--as-of", "22/02/2026",
                 "--db", str(store_db)]) == 2
    assert "--as-of '22/02/2026'" in capsys.readouterr().err
    monkeypatch.setenv("NEXTBEST_AS_OF", "2026-13-01")
    assert main(["preview", "--customer", "C001", "--playbook", "win_back", "--db", str(store_db)]) == 2
    assert "NEXTBEST_AS_OF='2026-13-01'" in capsys.readouterr().err


def test_preview_of_a_missing_or_empty_warehouse_is_a_clear_error(tmp_path, capsys):
    missing = tmp_path / "typo.duckdb"
    assert main(["preview", "--customer", "C001", "--playbook", "win_back", "--db", str(missing)]) == 2
    assert f"No warehouse at {missing}" in capsys.readouterr().err
    empty = tmp_path / "empty.duckdb"
    duckdb.connect(str(empty)).close()
    assert main(["preview", "--customer", "C001", "--playbook", "win_back", "--db", str(empty)]) == 2
    assert "raw.customers does not exist" in capsys.readouterr().err


def test_preview_checks_its_output_folders_first(store_db, tmp_path, capsys):
    ctx = tmp_path / "no_such_folder" / "ctx.json"
    assert main(["preview", "--customer", "C001", "--playbook", "win_back", "--as-of", AS_OF,
                 "--db", str(store_db), "--context-out", str(ctx)]) == 2
    assert f"{ctx.parent} does not exist" in capsys.readouterr().err


def test_preview_drafts_the_playbook_routing_chose(store_db, capsys):
    """The batch a reviewer reads holds routing's playbook: preview shows that draft, not the segment's."""
    con = duckdb.connect(str(store_db))
    con.execute("create schema if not exists analytics")
    con.execute("create table analytics.customer_segments as "
                "select 'C001' as customer_id, 'cadence_mismatch' as segment")
    con.execute("create schema if not exists nextbest")
    con.execute("""create table nextbest.routing_decisions as select
        date '2026-02-22' as run_date, timestamp '2026-02-22 01:00' as decided_at, 'C001' as customer_id,
        'send' as decision, 'at_risk_save' as playbook_id, 'treatment' as arm""")
    con.close()
    assert main(["preview", "--customer", "C001", "--as-of", AS_OF, "--db", str(store_db)]) == 0
    out = capsys.readouterr().out
    assert f"Playbook at_risk_save (chosen by routing on {AS_OF})" in out
    assert "a preview, in no batch: as a draft it would be pending_review" in out  # not "status pending_review"
    # another day's routing says nothing about this one: the segment's playbook
    assert main(["preview", "--customer", "C001", "--as-of", "2026-02-23", "--db", str(store_db)]) == 0
    assert "Playbook cadence_mismatch (chosen by their segment)" in capsys.readouterr().out


def test_check_draft_with_bad_context_fields_names_the_file_and_field(store_db, tmp_path, capsys):
    ctx, draft = tmp_path / "ctx.json", tmp_path / "draft.json"
    assert main(["preview", "--customer", "C001", "--playbook", "cadence_mismatch", "--as-of", AS_OF,
                 "--db", str(store_db), "--context-out", str(ctx), "--draft-out", str(draft)]) == 0
    capsys.readouterr()
    good = json.loads(ctx.read_text())

    bad_date = json.loads(ctx.read_text())
    bad_date["context_pack"]["as_of"] = "yesterday"
    ctx.write_text(json.dumps(bad_date))
    assert main(["check-draft", "--context", str(ctx), "--draft", str(draft)]) == 2
    assert "ctx.json: context_pack.as_of 'yesterday'" in capsys.readouterr().err

    bad_catalog = dict(good, catalog={"products": [{"sku": "P1"}]})
    ctx.write_text(json.dumps(bad_catalog))
    assert main(["check-draft", "--context", str(ctx), "--draft", str(draft)]) == 2
    assert "ctx.json: catalog" in capsys.readouterr().err

    no_catalog = {k: v for k, v in good.items() if k != "catalog"}
    ctx.write_text(json.dumps(no_catalog))
    empty = tmp_path / "empty.duckdb"
    duckdb.connect(str(empty)).close()
    assert main(["check-draft", "--context", str(ctx), "--draft", str(draft), "--db", str(empty)]) == 2
    assert "raw.products does not exist" in capsys.readouterr().err


def test_doctor_with_a_bad_as_of_names_the_variable(sim_db, capsys, monkeypatch):
    monkeypatch.setenv("NEXTBEST_AS_OF", "31-05-2026")
    assert main(["doctor", "--db", str(sim_db)]) == 2
    captured = capsys.readouterr()
    assert "NEXTBEST_AS_OF='31-05-2026'" in captured.out + captured.err


def test_save_offer_choice_needs_an_agent_name(sim_db, capsys):
    assert main(["save-offer-choice", "--recommendation", "r", "--option", "o", "--agent", " ",
                 "--db", str(sim_db)]) == 2
    assert "--agent" in capsys.readouterr().err


def test_serve_webhooks_on_a_busy_port_is_a_clear_error(sim_db, capsys, monkeypatch):
    monkeypatch.setenv("NEXTBEST_WEBHOOK_SECRET", "s3cret")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve-webhooks", "--port", str(port), "--db", str(sim_db)]) == 2
    captured = capsys.readouterr()
    assert f"127.0.0.1:{port}" in captured.out + captured.err


@pytest.mark.parametrize("command", ["clv-backtest", "uplift-backtest"])
def test_backtests_check_the_predictions_folder_before_running(tmp_path, capsys, command):
    data = tmp_path / "data.csv"
    data.write_text("customer_id,ordered_at,total,arm,converted\nC1,2026-01-01,10,a,1\n")
    out = tmp_path / "no_such_folder" / "p.csv"
    argv = (["clv-backtest", str(data), "--customer", "customer_id", "--date", "ordered_at", "--amount", "total",
             "--cutoff", "2026-01-01"] if command == "clv-backtest" else
            ["uplift-backtest", str(data), "--treatment", "arm", "--control", "b", "--outcome", "converted"])
    assert main([*argv, "--predictions", str(out)]) == 2
    assert f"{out.parent}" in capsys.readouterr().err


def test_clv_backtest_cutoff_must_be_iso(tmp_path, capsys):
    data = tmp_path / "data.csv"
    data.write_text("customer_id,ordered_at,total\nC1,2026-01-01,10\nC1,2026-03-01,10\n")
    # 05/02/2026 is May 2nd to pandas and February 5th to most of the world: refuse it
    assert main(["clv-backtest", str(data), "--customer", "customer_id", "--date", "ordered_at",
                 "--amount", "total", "--cutoff", "05/02/2026"]) == 2
    assert "YYYY-MM-DD" in capsys.readouterr().err


def test_approval_help_names_the_real_default_file(capsys):
    with pytest.raises(SystemExit):
        main(["approve", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps the help
    assert "else data/warehouse.duckdb" in out and "nextbest.duckdb" not in out


def test_output_cut_short_by_the_reader_is_no_traceback(monkeypatch, capsys):
    from dagster_project.delivery import approval_commands

    def review(args):
        raise BrokenPipeError(32, "Broken pipe")  # what `nextbest review | head -1` runs into

    monkeypatch.setattr(approval_commands, "cmd_review", review)
    assert main(["review"]) == 1


def test_a_missing_campaign_file_is_named_once(tmp_path, capsys):
    missing = tmp_path / "missing.csv"
    code = main(["uplift-backtest", str(missing), "--treatment", "arm", "--control", "b", "--outcome", "y"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("missing.csv") == 1 and "no such file" in err


@pytest.mark.parametrize("argv", [["doctor"], ["review"], ["service-context", "--customer", "C1"]])
def test_a_warehouse_path_that_is_a_folder_names_the_variable(tmp_path, capsys, monkeypatch, argv):
    monkeypatch.setenv("NEXTBEST_DUCKDB_PATH", str(tmp_path))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path} is a folder, not a DuckDB file: point NEXTBEST_DUCKDB_PATH (or --db) at a file" in err

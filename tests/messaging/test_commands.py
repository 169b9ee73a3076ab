"""`nextbest preview` and `nextbest check-draft`, through their argparse registration."""

from __future__ import annotations

import argparse
import json

import duckdb
import pytest

from dagster_project.messaging.commands import register
from tests.messaging.store import AS_OF, write_store


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="nextbest")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "w.duckdb"
    con = duckdb.connect(str(path))
    write_store(con)
    con.close()
    return str(path)


def test_preview_then_check_draft_round_trip(db, tmp_path, capsys):
    ctx, draft = tmp_path / "ctx.json", tmp_path / "draft.json"
    code = run(["preview", "--customer", "C001", "--playbook", "cadence_mismatch", "--as-of", AS_OF, "--db", db,
                "--context-out", str(ctx), "--draft-out", str(draft)])
    out = capsys.readouterr().out
    assert code == 0
    assert "subscription:S001:next_charge_at" in out and "pending_review" in out and "Hi Anna," in out
    assert run(["check-draft", "--context", str(ctx), "--draft", str(draft)]) == 0
    assert json.loads(capsys.readouterr().out)["passed"] is True

    data = json.loads(draft.read_text())
    data["body"] = data["body"].replace("Hi Anna,", "Hi Anna, we noticed you opened our last email. It's $9.99!")
    draft.write_text(json.dumps(data))
    assert run(["check-draft", "--context", str(ctx), "--draft", str(draft)]) == 1
    result = json.loads(capsys.readouterr().out)
    failed = {v["check"] for v in result["verdicts"] if not v["passed"]}
    assert {"surveillance", "grounding"} <= failed


def test_check_draft_input_errors_name_the_file(tmp_path, capsys):
    bad = tmp_path / "draft.json"
    bad.write_text("{not json")
    ctx = tmp_path / "ctx.json"
    ctx.write_text(json.dumps({"playbook": "onboarding", "context_pack": {"customer_id": "C1", "first_name": "A",
                   "as_of": AS_OF, "tenure_months": 1, "tone": "brief", "facts": []}, "catalog": {"products": []}}))
    assert run(["check-draft", "--context", str(ctx), "--draft", str(bad)]) == 2
    assert "draft.json: not valid JSON" in capsys.readouterr().err


def test_preview_without_segments_asks_for_a_playbook(db, capsys):
    assert run(["preview", "--customer", "C001", "--as-of", AS_OF, "--db", db]) == 2
    assert "--playbook" in capsys.readouterr().err


def test_preview_takes_the_playbook_of_the_customers_segment(db, capsys, monkeypatch):
    con = duckdb.connect(db)
    con.execute("create schema analytics")
    con.execute("create table analytics.customer_segments as select 'C001' as customer_id, 'cadence_mismatch' as segment")
    opted_in = con.execute("select marketing_opt_in from raw.customers where customer_id = 'C001'").fetchone()[0]
    con.close()
    assert opted_in
    # --db wins over the environment's engine: with no SNOWFLAKE_* settings, opening Snowflake would fail.
    monkeypatch.setenv("NEXTBEST_WAREHOUSE", "snowflake")
    assert run(["preview", "--customer", "C001", "--as-of", AS_OF, "--db", db]) == 0
    assert "cadence_mismatch" in capsys.readouterr().out


def test_preview_refuses_a_file_named_after_a_schema(tmp_path, capsys):
    assert run(["preview", "--customer", "C001", "--db", str(tmp_path / "analytics.duckdb")]) == 2
    assert "same as a NextBest schema" in capsys.readouterr().err
    assert not (tmp_path / "analytics.duckdb").exists()

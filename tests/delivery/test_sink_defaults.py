"""The file sinks write beside their warehouse by default: two stores never share a JSONL file (the
second would find its send ids already there, count them as duplicates and send nothing)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dagster_project.delivery.esp import esp_from_env
from dagster_project.project import REPO_ROOT
from dagster_project.service.export import helpdesk_sink_from_env


@pytest.fixture
def defaults(monkeypatch):
    for name in ("NEXTBEST_OUTBOX_FILE", "NEXTBEST_HELPDESK_FILE", "NEXTBEST_HELPDESK_WEBHOOK_URL", "NEXTBEST_WAREHOUSE"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def sinks() -> tuple[Path, Path]:
    return Path(esp_from_env("file").path), Path(helpdesk_sink_from_env().path)


def test_each_warehouse_gets_its_own_sink_files(tmp_path, defaults):
    defaults.setenv("NEXTBEST_DUCKDB_PATH", str(tmp_path / "a" / "store.duckdb"))
    first = sinks()
    defaults.setenv("NEXTBEST_DUCKDB_PATH", str(tmp_path / "b" / "store.duckdb"))
    assert first == (tmp_path / "a" / "outbox.jsonl", tmp_path / "a" / "helpdesk.jsonl")
    assert sinks() == (tmp_path / "b" / "outbox.jsonl", tmp_path / "b" / "helpdesk.jsonl")


def test_the_env_vars_still_choose_the_files(tmp_path, defaults):
    defaults.setenv("NEXTBEST_DUCKDB_PATH", str(tmp_path / "a" / "store.duckdb"))
    defaults.setenv("NEXTBEST_OUTBOX_FILE", str(tmp_path / "out.jsonl"))
    defaults.setenv("NEXTBEST_HELPDESK_FILE", str(tmp_path / "desk.jsonl"))
    assert sinks() == (tmp_path / "out.jsonl", tmp_path / "desk.jsonl")


def test_on_snowflake_the_files_go_to_the_repositorys_data_folder(tmp_path, defaults):
    defaults.setenv("NEXTBEST_DUCKDB_PATH", str(tmp_path / "a" / "store.duckdb"))
    defaults.setenv("NEXTBEST_WAREHOUSE", "snowflake")
    assert sinks() == (REPO_ROOT / "data" / "outbox.jsonl", REPO_ROOT / "data" / "helpdesk.jsonl")

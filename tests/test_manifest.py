"""The dbt manifest is parsed once when several processes need it at the same time."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

from dagster_project.project import DBT_PROJECT_DIR

WAIT_THEN_PARSE = """
import sys, time
from pathlib import Path
from dagster_project.project import parse_when_stale
project, go = Path(sys.argv[1]), Path(sys.argv[2])
print("ready", flush=True)
while not go.exists():
    time.sleep(0.01)
print(parse_when_stale(project, project / "target" / "manifest.json"))
"""


def test_processes_that_start_together_parse_the_project_once(tmp_path):
    project = tmp_path / "dbt"
    shutil.copytree(DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs"))
    go = tmp_path / "go"
    workers = [subprocess.Popen([sys.executable, "-c", WAIT_THEN_PARSE, str(project), str(go)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    for worker in workers:
        assert worker.stdout.readline().strip() == "ready", worker.stderr.read()
    go.touch()
    outputs = [worker.communicate(timeout=300) for worker in workers]

    assert [worker.returncode for worker in workers] == [0, 0], outputs
    manifest = project / "target" / "manifest.json"
    assert all(out.strip() == str(manifest) for out, _ in outputs)
    assert json.loads(manifest.read_text())["nodes"]["model.nextbest.customer_context"]["name"] == "customer_context"
    runs = (project / "logs" / "dbt.log").read_text().count("Running with dbt=")
    assert runs == 1, f"dbt parse ran {runs} times"


def test_a_source_newer_than_the_manifest_parses_again(tmp_path):
    project = tmp_path / "dbt"
    shutil.copytree(DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs"))
    from dagster_project.project import parse_when_stale

    manifest = parse_when_stale(project, project / "target" / "manifest.json")
    first = manifest.stat().st_mtime_ns
    assert parse_when_stale(project, manifest).stat().st_mtime_ns == first
    time.sleep(0.05)
    (project / "models" / "marts" / "customer_context.sql").touch()
    assert parse_when_stale(project, manifest).stat().st_mtime_ns > first

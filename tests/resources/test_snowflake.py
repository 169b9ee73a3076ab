"""The Snowflake warehouse resource, and the assets that write through it, run against fakesnow
in a virtualenv of its own.

fakesnow 0.12 pins sqlglot 30.22 and imports modules that snowflake-connector-python
5 dropped, while NextBest runs sqlglot 30.30 (through dagster-dbt) and connector
5.2. So the suites in `fakesnow_suite.py` (the resource) and `fakesnow_assets_suite.py`
(chunked scoring and routing) run in a cached virtualenv that sees this Python's
packages and shadows just those two (created on first use; set NEXTBEST_FAKESNOW_VENV
to choose its folder). Each of their tests is reported here under its own name.
Skipped, with the reason, only when the package index is out of reach.
"""

from __future__ import annotations

import ast
import hashlib
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SUITES = [Path(__file__).with_name(name) for name in ("fakesnow_suite.py", "fakesnow_assets_suite.py")]
PINS = ["fakesnow==0.12.1", "snowflake-connector-python>=4.8,<5"]
UNREACHABLE = ("Could not find a version", "No matching distribution", "Max retries exceeded",
               "Temporary failure in name resolution", "Network is unreachable", "ConnectionError",
               "Failed to establish a new connection", "Read timed out")
SUITE_TESTS = [f"{suite.stem}::{node.name}" for suite in SUITES for node in ast.parse(suite.read_text()).body
               if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")]


def venv_dir() -> Path:
    """Where the fakesnow virtualenv lives: one per set of pins and Python version."""
    if os.environ.get("NEXTBEST_FAKESNOW_VENV"):
        return Path(os.environ["NEXTBEST_FAKESNOW_VENV"])
    key = hashlib.sha256(f"{sys.version}|{sys.prefix}|{'|'.join(PINS)}".encode()).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "nextbest" / f"fakesnow-venv-{key}"


def ensure_venv() -> Path:
    """The virtualenv's python, creating the venv and installing the pins when needed."""
    where = venv_dir()
    python = where / "bin" / "python"
    ready = where / ".nextbest-ready"
    if ready.exists() and python.exists():
        return python
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--clear", str(where)],
                   check=True, capture_output=True, timeout=300)
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--quiet", *PINS],
        capture_output=True, text=True, timeout=900,
    )
    if install.returncode != 0:
        output = install.stdout + install.stderr
        if any(sign in output for sign in UNREACHABLE):
            pytest.skip(f"fakesnow could not be installed (package index unreachable): {output[-400:]}")
        raise AssertionError(f"pip install {' '.join(PINS)} into {where} failed:\n{output[-4000:]}")
    ready.write_text("\n".join(PINS) + "\n")
    return python


@pytest.fixture(scope="module")
def suite_results(tmp_path_factory) -> dict[str, str | None]:
    """Run the fakesnow suites once; `suite::test` -> None when it passed, else what went wrong."""
    python = ensure_venv()
    report = tmp_path_factory.mktemp("fakesnow") / "junit.xml"
    env = {**os.environ, "PYTHONPATH": str(REPO), "NEXTBEST_DUCKDB_PATH": str(report.parent / "unused.duckdb")}
    run = subprocess.run(
        [str(python), "-m", "pytest", *map(str, SUITES), "-q", "-p", "no:cacheprovider", "-W", "ignore",
         f"--junitxml={report}", "--rootdir", str(REPO)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )
    if not report.exists():
        raise AssertionError(f"the fakesnow suites did not run (exit {run.returncode}):\n"
                             f"{run.stdout[-4000:]}\n{run.stderr[-4000:]}")
    results: dict[str, str | None] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        problem = next((c for c in case if c.tag in ("failure", "error", "skipped")), None)
        suite = (case.get("classname") or "").rsplit(".", 1)[-1]
        results[f"{suite}::{case.get('name')}"] = None if problem is None else (
            f"{problem.tag}: {problem.get('message', '')}\n{(problem.text or '')[-3000:]}")
    return results


@pytest.mark.parametrize("name", SUITE_TESTS)
def test_snowflake_resource_on_fakesnow(name: str, suite_results: dict[str, str | None]) -> None:
    assert name in suite_results, f"{name} did not run in the fakesnow suites (ran: {sorted(suite_results)})"
    assert suite_results[name] is None, suite_results[name]

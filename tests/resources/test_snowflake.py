"""The Snowflake warehouse resource, and the assets that write through it, run against fakesnow
in a virtualenv of its own.

The suites in `fakesnow_suite.py` (the resource), `fakesnow_assets_suite.py` (chunked
scoring and routing), `fakesnow_drafts_suite.py` (chunked drafting), `fakesnow_delivery_suite.py` (approvals
and the outbox, exactly once), `fakesnow_uplift_suite.py` (uplift training) and
`fakesnow_quality_suite.py` (the data-quality suites) run in the cached
fakesnow virtualenv (why it is one of its own: tests/fakesnow_venv.py). Each of their
tests is reported here under its own name. Skipped, with the reason, only when the
package index is out of reach.
"""

from __future__ import annotations

import ast
import os
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.fakesnow_venv import ensure_venv

REPO = Path(__file__).resolve().parents[2]
SUITES = [Path(__file__).with_name(name)
          for name in ("fakesnow_suite.py", "fakesnow_assets_suite.py", "fakesnow_drafts_suite.py",
                       "fakesnow_delivery_suite.py", "fakesnow_uplift_suite.py", "fakesnow_quality_suite.py",
                       "fakesnow_events_suite.py", "fakesnow_service_suite.py")]
SUITE_TESTS = [f"{suite.stem}::{node.name}" for suite in SUITES for node in ast.parse(suite.read_text()).body
               if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")]


@pytest.fixture(scope="module")
def suite_results(tmp_path_factory) -> dict[str, str | None]:
    """Run the fakesnow suites once; `suite::test` -> None when it passed, else what went wrong."""
    python = ensure_venv()
    report = tmp_path_factory.mktemp("fakesnow") / "junit.xml"
    env = {**os.environ, "PYTHONPATH": str(REPO), "NEXTBEST_DUCKDB_PATH": str(report.parent / "unused.duckdb")}
    run = subprocess.run(
        # Without hypothesis's plugin: its end-of-run import under assertion rewriting sometimes trips
        # CPython 3.11's "AST constructor recursion depth mismatch", failing a run whose tests all passed.
        [str(python), "-m", "pytest", *map(str, SUITES), "-q", "-p", "no:cacheprovider", "-p", "no:hypothesispytest",
         "-W", "ignore",
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
    # A parametrized suite test reports one case per parameter (`name[param]`); every one must pass.
    cases = {case: problem for case, problem in suite_results.items() if case == name or case.startswith(f"{name}[")}
    assert cases, f"{name} did not run in the fakesnow suites (ran: {sorted(suite_results)})"
    assert all(problem is None for problem in cases.values()), "\n".join(p for p in cases.values() if p)

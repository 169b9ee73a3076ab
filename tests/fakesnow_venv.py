"""A cached virtualenv with fakesnow (a Snowflake emulator on DuckDB), for the Snowflake tests.

fakesnow 0.12 pins sqlglot 30.22 and imports modules that snowflake-connector-python
5 dropped, while NextBest runs sqlglot 30.30 (through dagster-dbt) and connector
5.2; dbt-snowflake needs a connector below 5 as well. So Snowflake code runs in a
virtualenv that sees this Python's packages and shadows just those (created on
first use; set NEXTBEST_FAKESNOW_VENV to choose its folder). Tests using it are
skipped, with the reason, only when the package index is out of reach.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from filelock import FileLock

# One venv for every Snowflake test: the resource suite and the dbt `snowflake` target.
PINS = ["fakesnow==0.12.1", "snowflake-connector-python>=4.8,<5", "dbt-snowflake>=1.10,<1.11"]
UNREACHABLE = ("Could not find a version", "No matching distribution", "Max retries exceeded",
               "Temporary failure in name resolution", "Network is unreachable", "ConnectionError",
               "Failed to establish a new connection", "Read timed out")


def venv_dir() -> Path:
    """Where the fakesnow virtualenv lives: one per set of pins and Python version."""
    if os.environ.get("NEXTBEST_FAKESNOW_VENV"):
        return Path(os.environ["NEXTBEST_FAKESNOW_VENV"])
    key = hashlib.sha256(f"{sys.version}|{sys.prefix}|{'|'.join(PINS)}".encode()).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "nextbest" / f"fakesnow-venv-{key}"


def ensure_venv() -> Path:
    """The virtualenv's python, creating the venv and installing the pins when needed.

    Test workers (pytest-xdist) that need it at once wait on a file lock: one builds, the others use it.
    """
    where = venv_dir()
    python = where / "bin" / "python"
    ready = where / ".nextbest-ready"
    if ready.exists() and python.exists():
        return python
    where.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(where.parent / f"{where.name}.lock", timeout=1800):
        if not (ready.exists() and python.exists()):
            _build(where, python)
            ready.write_text("\n".join(PINS) + "\n")
    return python


def _build(where: Path, python: Path) -> None:
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

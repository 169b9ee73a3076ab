"""Importing the package tunes Python's cyclic collector and OpenMP's waiting threads, unless the
hosting process already did."""

from __future__ import annotations

import os
import subprocess
import sys


def _after_import(before: str, show: str, env: dict[str, str] | None = None) -> str:
    code = f"import gc, os\n{before}\nimport dagster_project\nprint({show})"
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                          env={**clean, **(env or {})}).stdout.strip()


def _thresholds_after_import(before: str) -> tuple[int, ...]:
    return tuple(int(x) for x in _after_import(before, "*gc.get_threshold()").split())


def test_import_makes_young_collections_rarer_in_a_default_process():
    from dagster_project import GC_THRESHOLDS, PYTHON_DEFAULT_GC_THRESHOLDS

    assert _thresholds_after_import("") == GC_THRESHOLDS
    assert GC_THRESHOLDS[0] > PYTHON_DEFAULT_GC_THRESHOLDS[0]


def test_import_leaves_a_process_that_chose_its_own_thresholds_alone():
    assert _thresholds_after_import("gc.set_threshold(1234, 5, 6)") == (1234, 5, 6)


SPIN = "os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY')"


def test_import_shortens_openmp_spinning_before_scikit_learn_loads_it():
    from dagster_project import OPENMP_SPIN_TURNS

    assert _after_import("", SPIN) == f"{OPENMP_SPIN_TURNS} None"
    assert int(OPENMP_SPIN_TURNS) < 300_000  # GNU OpenMP's own count


def test_import_keeps_the_waiting_an_environment_chose():
    assert _after_import("", SPIN, {"GOMP_SPINCOUNT": "50"}) == "50 None"
    assert _after_import("", SPIN, {"OMP_WAIT_POLICY": "ACTIVE"}) == "None ACTIVE"

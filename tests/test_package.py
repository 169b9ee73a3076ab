"""Importing the package tunes Python's cyclic collector, unless the hosting process already did."""

from __future__ import annotations

import subprocess
import sys


def _thresholds_after_import(before: str) -> tuple[int, ...]:
    code = f"import gc\n{before}\nimport dagster_project\nprint(*gc.get_threshold())"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return tuple(int(x) for x in out.split())


def test_import_makes_young_collections_rarer_in_a_default_process():
    from dagster_project import GC_THRESHOLDS, PYTHON_DEFAULT_GC_THRESHOLDS

    assert _thresholds_after_import("") == GC_THRESHOLDS
    assert GC_THRESHOLDS[0] > PYTHON_DEFAULT_GC_THRESHOLDS[0]


def test_import_leaves_a_process_that_chose_its_own_thresholds_alone():
    assert _thresholds_after_import("gc.set_threshold(1234, 5, 6)") == (1234, 5, 6)

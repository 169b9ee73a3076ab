"""The service commands refuse a DuckDB file that is not there, also when they would write: a mistyped
path must not become a new, empty warehouse."""

from __future__ import annotations

import argparse

import pytest

from dagster_project.service.commands import _open


def test_open_refuses_a_missing_file_even_to_write(tmp_path):
    missing = tmp_path / "typo.duckdb"
    with pytest.raises(FileNotFoundError, match=f"No warehouse at {missing}"):
        _open(argparse.Namespace(db=str(missing)), read_only=False)
    assert not missing.exists()

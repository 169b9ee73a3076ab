"""Fixtures for the dbt project: a DuckDB file per scenario, `dbt build` run once
per module and shared by its tests."""

from __future__ import annotations

import pytest

from tests.warehouse import handbuilt
from tests.warehouse.dbt_warehouse import Warehouse, load_handbuilt, new_warehouse


@pytest.fixture(scope="session")
def handbuilt_warehouse(tmp_path_factory) -> Warehouse:
    """Only the hand-built customers, loaded and built at D1 (handbuilt.ANCHOR)."""
    wh = new_warehouse(tmp_path_factory, "handbuilt")
    load_handbuilt(wh, handbuilt.ANCHOR)
    wh.build(handbuilt.ANCHOR)
    return wh

"""Importing a store's files into a warehouse that holds the simulated demo store is
refused: the two stores would mix (the demo's products P001... and the store's
products of the same ids). The user is told to import into a new file."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from dagster_project.cli import main
from dagster_project.ingest import contract

PRODUCTS = "product_id,name,category,price,active,subscription_eligible\nP001,My Own Roast,coffee,9.00,true,true\n"


@pytest.fixture
def demo_db(duckdb_file, capsys) -> Path:
    """A warehouse holding a small simulated demo store."""
    argv = ["simulate", "--customers", "20", "--months", "1", "--seed", "3", "--end-date", "2026-05-31"]
    assert main(argv) == 0
    capsys.readouterr()
    return duckdb_file


def counts(db: Path) -> dict[str, int]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        tables = [*contract.LOAD_ORDER, contract.QUARANTINE_TABLE]
        return {t: con.execute(f"select count(*) from raw.{t}").fetchone()[0] for t in tables}
    finally:
        con.close()


def test_import_into_the_demo_store_is_refused_and_changes_nothing(demo_db, tmp_path, capsys):
    exports = tmp_path / "exports"
    exports.mkdir()
    (exports / "products.csv").write_text(PRODUCTS)
    before = counts(demo_db)

    assert main(["import", str(exports)]) == 2
    err = capsys.readouterr().err
    assert f"{demo_db} holds the simulated demo store" in err
    assert "--db" in err and "NEXTBEST_DUCKDB_PATH" in err and "Nothing was imported" in err
    assert counts(demo_db) == before
    con = duckdb.connect(str(demo_db), read_only=True)
    assert con.execute("select name from raw.products where product_id = 'P001'").fetchone()[0] != "My Own Roast"
    con.close()


def test_the_same_files_import_into_a_new_file(demo_db, tmp_path, capsys):
    exports = tmp_path / "exports"
    exports.mkdir()
    (exports / "products.csv").write_text(PRODUCTS)
    mine = tmp_path / "mystore.duckdb"

    assert main(["import", str(exports), "--db", str(mine)]) == 0, capsys.readouterr().err
    con = duckdb.connect(str(mine), read_only=True)
    assert con.execute("select product_id, name from raw.products").fetchall() == [("P001", "My Own Roast")]
    con.close()

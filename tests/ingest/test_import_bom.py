"""A CSV saved by Excel as "CSV UTF-8" starts with a byte-order mark: it imports like
any UTF-8 file (the mark was read into the first column's name, and every such file
was refused for a missing `customer_id`)."""

from __future__ import annotations

import gzip
from pathlib import Path

import duckdb

from dagster_project.cli import main

BOM = b"\xef\xbb\xbf"
CUSTOMERS = (
    "customer_id,email,first_name,created_at,country,timezone,marketing_opt_in,channel_preference\r\n"
    "C001,ana@example.com,José,2024-01-05 10:00:00,ES,Europe/Madrid,true,email\r\n"
    "C002,ben@example.com,Zoë,2024-01-06 11:30:00,DE,,false,\r\n"
)


def exports(tmp_path: Path) -> Path:
    folder = tmp_path / "exports"  # beside, not around, the warehouse file
    folder.mkdir()
    return folder


def customers(db: Path) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("select customer_id, first_name from raw.customers order by 1").fetchall()
    finally:
        con.close()


def test_a_utf8_csv_with_a_byte_order_mark_is_imported(duckdb_file, tmp_path, capsys):
    folder = exports(tmp_path)
    (folder / "customers.csv").write_bytes(BOM + CUSTOMERS.encode("utf-8"))

    assert main(["import", str(folder)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "customers.csv: 2 rows read, 2 loaded" in out
    assert "Warnings" not in out  # no ignored column, no Latin-1 guess
    assert customers(duckdb_file) == [("C001", "José"), ("C002", "Zoë")]

    # and importing it again finds both rows already there
    assert main(["import", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "customers.csv: 2 rows read, 0 loaded, 0 updated, 0 quarantined, 2 already present" in out


def test_a_gzipped_csv_with_a_byte_order_mark_is_imported(duckdb_file, tmp_path, capsys):
    folder = exports(tmp_path)
    with gzip.open(folder / "customers_2024.csv.gz", "wb") as f:
        f.write(BOM + CUSTOMERS.encode("utf-8"))

    assert main(["import", str(folder)]) == 0, capsys.readouterr().err
    assert customers(duckdb_file) == [("C001", "José"), ("C002", "Zoë")]


def test_a_missing_column_is_named_without_the_mark(duckdb_file, tmp_path, capsys):
    folder = exports(tmp_path)
    (folder / "customers.csv").write_bytes(BOM + b"customer_id,email,created_at\r\nC001,ana@example.com,2024-01-05\r\n")

    assert main(["import", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "missing required column(s) marketing_opt_in" in err
    assert "Found: customer_id, email, created_at." in err and "\ufeff" not in err


def test_a_row_that_is_not_utf8_in_a_marked_file_is_quarantined(duckdb_file, tmp_path, capsys):
    # The mark says UTF-8: one undecodable row is quarantined, not taken as a sign of Latin-1.
    folder = exports(tmp_path)
    (folder / "customers.csv").write_bytes(
        BOM + b"customer_id,email,first_name,created_at,marketing_opt_in\r\n"
        b"C001,ana@example.com,Ana,2024-01-05 10:00:00,true\r\n"
        b"C002,ben@example.com,Ben,2024-01-06 11:30:00,false\r\n"
        + "C003,cy@example.com,Zoë,2024-01-07 09:00:00,true\r\n".encode("latin-1"))

    assert main(["import", str(folder)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "customers.csv: 3 rows read, 2 loaded, 0 updated, 1 quarantined" in out
    assert "Latin-1" not in out
    assert customers(duckdb_file) == [("C001", "Ana"), ("C002", "Ben")]

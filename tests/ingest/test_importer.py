"""The CSV / Parquet importer: bad rows quarantined with a reason, good rows
loaded, re-imports change nothing, broken files refused with a clear error.

The bad-file corpus lives in `tests/ingest/corpus/` (see its README.md).
"""

from __future__ import annotations

import gzip
import shutil
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from dagster_project.ingest import contract
from dagster_project.ingest.importer import ContractError, ImportError_, ImportSummary, import_directory

CORPUS = Path(__file__).parent / "corpus"


@pytest.fixture
def con(tmp_path):
    connection = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    yield connection
    connection.close()


def quarantine(con, table: str) -> dict[int, str]:
    rows = con.execute(
        "select row_number, reason from raw.raw_quarantine where source_table = ? order by row_number", [table]
    ).fetchall()
    return dict(rows)


def ids(con, table: str, column: str) -> list[str]:
    return [r[0] for r in con.execute(f"select {column} from raw.{table} order by {column}").fetchall()]


def all_counts(con) -> dict[str, int]:
    tables = [*contract.LOAD_ORDER, contract.QUARANTINE_TABLE]
    return {t: con.execute(f"select count(*) from raw.{t}").fetchone()[0] for t in tables}


# Every bad row of corpus/bad_rows: (table, data row number, reason substring).
BAD_ROWS = [
    ("customers", 3, "created_at: expected a timestamp"),
    ("customers", 4, "email: required value is missing"),
    ("customers", 5, "marketing_opt_in: expected true or false, got 'maybe'"),
    ("customers", 6, "channel_preference: expected one of email, sms, in_portal; got 'carrier_pigeon'"),
    ("customers", 7, "duplicate primary key customer_id='C001' in this file: row 1 is kept"),
    ("customers", 8, "created_at: 2099-01-01 00:00:00 is more than 1 day in the future"),
    ("products", 2, "price: expected >= 0, got -5.00"),
    ("products", 3, "price: expected a number like 12.50, got 'twelve'"),
    ("subscriptions", 2, "cadence_days: expected a whole number, got '14.5'"),
    ("subscriptions", 3, "customer_id: 'C999' has no match in raw.customers.customer_id (orphaned foreign key"),
    # C003 itself was quarantined (bad created_at), so its subscription is an orphan too
    ("subscriptions", 4, "customer_id: 'C003' has no match in raw.customers"),
    ("subscriptions", 5, "product_id: 'P404' has no match in raw.products"),
    ("subscriptions", 6, "cadence_days: expected >= 1, got 0"),
    ("orders", 3, "status: expected one of fulfilled, skipped, refunded, failed; got 'shipped'"),
    ("orders", 4, "total: expected >= 0, got -1.00"),
    ("orders", 5, "customer_id: 'C999' has no match in raw.customers"),
    ("orders", 6, "subscription_id: 'S999' has no match in raw.subscriptions"),
    ("orders", 7, "duplicate primary key order_id='O001'"),
    ("orders", 8, "ordered_at: expected a timestamp like 2024-05-01 13:45:00"),
    ("orders", 9, "shipped_at: 2099-06-01 00:00:00 is more than 1 day in the future"),
    ("orders", 10, "total: expected a number like 12.50, got '1,234.00'"),
    ("orders", 12, "malformed CSV row: Expected Number of Columns: 9 Found: 10"),
    ("order_items", 2, "quantity: expected >= 1, got 0"),
    ("order_items", 3, "duplicate primary key order_id='O001', product_id='P001'"),
    ("order_items", 4, "order_id: 'O404' has no match in raw.orders"),
    ("support_tickets", 2, "csat: expected <= 5, got 7"),
    ("payments", 2, "amount: expected >= 0, got -12.60"),
]


def test_every_bad_row_is_quarantined_with_its_reason(con):
    import_directory(con, CORPUS / "bad_rows")

    for table in {t for t, _, _ in BAD_ROWS}:
        expected = {row: reason for t, row, reason in BAD_ROWS if t == table}
        got = quarantine(con, table)
        assert set(got) == set(expected), table
        for row, reason in expected.items():
            assert reason in got[row], (table, row, got[row])


def test_good_rows_of_bad_files_load(con):
    summary = import_directory(con, CORPUS / "bad_rows")

    assert ids(con, "customers", "customer_id") == ["C001", "C002", "C008"]
    assert ids(con, "products", "product_id") == ["P001", "P004"]
    assert ids(con, "subscriptions", "subscription_id") == ["S001"]
    assert ids(con, "orders", "order_id") == ["O001", "O002", "O010"]
    assert ids(con, "support_tickets", "ticket_id") == ["T001"]
    assert ids(con, "payments", "payment_id") == ["PAY1"]
    # the first of a duplicated id is the one kept
    assert con.execute("select email from raw.customers where customer_id = 'C001'").fetchone()[0] == "ana@example.com"
    assert con.execute("select total from raw.orders where order_id = 'O001'").fetchone()[0] == Decimal("12.60")
    # an offset is converted to UTC; enum values are compared in lower case
    query = "select ordered_at::varchar, status from raw.orders where order_id = 'O010'"
    ordered_at, status = con.execute(query).fetchone()
    assert (ordered_at, status) == ("2024-03-05 22:00:00", "fulfilled")
    query = "select channel_preference from raw.customers where customer_id = 'C008'"
    assert con.execute(query).fetchone()[0] == "in_portal"
    # order_items of O010 loaded with is_one_time 'yes'
    assert con.execute("select is_one_time from raw.order_items where order_id = 'O010'").fetchone()[0] is True

    totals = {table: counts for table, (_, counts) in summary.by_table().items()}
    assert (totals["orders"].rows_read, totals["orders"].loaded, totals["orders"].quarantined) == (12, 3, 9)
    assert summary.rows_quarantined == len(BAD_ROWS)


def test_quarantine_row_keeps_the_row_as_read(con):
    import_directory(con, CORPUS / "bad_rows")

    source_file, row_json = con.execute(
        "select source_file, row_json from raw.raw_quarantine where source_table = 'products' and row_number = 3"
    ).fetchone()
    assert source_file.endswith("bad_rows/products.csv")
    assert '"price":"twelve"' in row_json and '"product_id":"P003"' in row_json


def test_summary_warns_about_unknown_files_and_extra_columns(con):
    summary = import_directory(con, CORPUS / "bad_rows")
    text = summary.render()

    assert isinstance(summary, ImportSummary)
    assert any("refunds.csv" in w and "ignored" in w for w in summary.warnings)
    assert any("customers.csv" in w and "loyalty_tier" in w for w in summary.warnings)
    for heading in ("table", "files", "rows read", "loaded", "quarantined", "already present"):
        assert heading in text
    assert "raw.raw_quarantine" in text


def test_second_import_changes_nothing(con):
    first = import_directory(con, CORPUS / "bad_rows")
    before = all_counts(con)
    second = import_directory(con, CORPUS / "bad_rows")

    assert all_counts(con) == before
    assert second.rows_loaded == 0
    assert sum(f.already_present for f in second.files) == first.rows_loaded
    assert second.rows_quarantined == first.rows_quarantined


def test_a_stored_customer_whose_export_changed_is_updated(con):
    """Exports are snapshots of current state: a stored row whose values changed takes the new ones."""
    contract.create_raw_schema(con)
    con.execute(
        "insert into raw.customers values ('C001', 'old@example.com', 'Ana', '2023-01-01', 'DE', null, true, null)"
    )
    summary = import_directory(con, CORPUS / "bad_rows")

    assert con.execute("select email from raw.customers where customer_id = 'C001'").fetchone()[0] == "ana@example.com"
    customers = summary.by_table()["customers"][1]
    assert (customers.loaded, customers.updated, customers.already_present) == (2, 1, 0)


def test_missing_required_column_raises_and_imports_nothing(con):
    with pytest.raises(ContractError) as error:
        import_directory(con, CORPUS / "missing_column")

    message = str(error.value)
    assert "orders.csv" in message and "customer_id" in message
    assert "order_id, customer_id, subscription_id (optional)" in message  # expected columns listed
    assert ImportError_ is ContractError
    counts = all_counts(con)
    assert counts["orders"] == 0 and counts["customers"] == 0


def test_optional_columns_may_be_absent(con, tmp_path):
    # missing_column/customers.csv has only the required columns
    shutil.copy(CORPUS / "missing_column" / "customers.csv", tmp_path / "customers.csv")
    import_directory(con, tmp_path)

    row = con.execute("select customer_id, first_name, country, channel_preference from raw.customers").fetchall()
    assert row == [("C001", None, None, None)]


def test_empty_files_are_reported_not_loaded(con):
    summary = import_directory(con, CORPUS / "empty")

    assert any("customers.csv" in w and "empty file" in w for w in summary.warnings)
    assert any("products.csv" in w and "no data rows" in w for w in summary.warnings)
    assert summary.rows_loaded == 0 and summary.rows_quarantined == 0
    assert all(count == 0 for count in all_counts(con).values())


def test_latin1_file_is_read_as_latin1_with_a_warning(con):
    summary = import_directory(con, CORPUS / "latin1")

    assert any("customers.csv" in w and "Latin-1" in w for w in summary.warnings)
    assert ids(con, "customers", "first_name") == ["José", "Zoë"]


def test_a_non_utf8_row_in_a_utf8_file_is_quarantined(con):
    summary = import_directory(con, CORPUS / "mixed_encoding")

    assert ids(con, "customers", "first_name") == ["Björn", "José", "Zoë"]
    assert "not valid UTF-8" in quarantine(con, "customers")[3]
    assert not any("Latin-1" in w for w in summary.warnings)


def test_no_source_files_is_an_error(con, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ContractError, match="no source files"):
        import_directory(con, tmp_path)


def test_gzip_and_several_files_per_table(con, tmp_path):
    source = (CORPUS / "bad_rows" / "customers.csv").read_bytes()
    with gzip.open(tmp_path / "customers_2024.csv.gz", "wb") as f:
        f.write(source)
    lines = source.decode().splitlines()
    (tmp_path / "customers_2025.csv").write_text(
        "\n".join([lines[0], lines[1], "C009,ida@example.com,Ida,2025-01-02 00:00:00,DE,,true,,"]) + "\n"
    )
    summary = import_directory(con, tmp_path)

    assert ids(con, "customers", "customer_id") == ["C001", "C002", "C008", "C009"]
    files, customers = summary.by_table()["customers"]
    assert files == 2 and customers.already_present == 1  # C001 again in the 2025 file


def test_parquet_bad_rows_are_quarantined(con, tmp_path):
    contract.create_raw_schema(con)
    con.execute(
        "insert into raw.customers values ('C001', 'ana@example.com', 'Ana', '2024-01-05', 'DE', null, true, null)"
    )
    con.execute(
        f"""
        copy (select * from (values
            ('E1', 'C001', 'login',  timestamptz '2024-03-01 12:00:00+02', '{{}}'),
            ('E2', 'C001', 'dance',  timestamptz '2024-03-02 12:00:00+00', null),
            ('E3', 'C404', 'skip',   timestamptz '2024-03-03 12:00:00+00', '{{"subscription_id": "S1"}}'),
            ('E4', 'C001', 'pause',  null, null)
        ) t(event_id, customer_id, event_type, occurred_at, properties))
        to '{tmp_path / "portal_events.parquet"}' (format parquet)
        """
    )
    summary = import_directory(con, tmp_path)

    assert ids(con, "portal_events", "event_id") == ["E1"]
    assert con.execute("select occurred_at::varchar from raw.portal_events").fetchone()[0] == "2024-03-01 10:00:00"
    reasons = quarantine(con, "portal_events")
    assert "event_type: expected one of" in reasons[2]
    assert "customer_id: 'C404' has no match" in reasons[3]
    assert "occurred_at: required value is missing" in reasons[4]
    assert summary.by_table()["portal_events"][1].rows_read == 4


def test_row_numbers_stay_right_in_a_large_file(con, tmp_path):
    rows = 100_000
    with open(tmp_path / "products.csv", "w") as f:
        f.write("product_id,name,category,price,active,subscription_eligible\n")
        for i in range(1, rows + 1):
            if i == 40_000:
                f.write(f'P{i},"Multi\nline name",coffee,12.00,true,true\n')
            elif i == 50_000:
                f.write(f"P{i},Too,many,columns,12.00,true,true\n")
            elif i == 99_999:
                f.write(f"P{i},Bad price,coffee,abc,true,true\n")
            else:
                f.write(f"P{i},Blend {i},coffee,12.00,true,true\n")
    summary = import_directory(con, tmp_path)

    reasons = quarantine(con, "products")
    assert sorted(reasons) == [50_000, 99_999]
    assert "malformed CSV row" in reasons[50_000] and "price" in reasons[99_999]
    assert summary.rows_loaded == rows - 2
    assert con.execute("select name from raw.products where product_id = 'P40000'").fetchone()[0] == "Multi\nline name"


# A handful of hand-written rows, one per table shape that matters.
ROUND_TRIP_ROWS = {
    "customers": [
        "('C001', 'ana@example.com', 'Ana', '2024-01-05 10:00:00', 'DE', 'Europe/Berlin', true, 'email')",
        "('C002', 'ben@example.com', null, '2024-01-06 11:30:00.250', null, null, false, null)",
    ],
    "products": [
        "('P001', 'House Blend, 250g', 'coffee', 14.00, true, true)",
        "('P002', 'The \"Big\" Grinder', 'equipment', 149.99, false, false)",
    ],
    "subscriptions": [
        "('S001', 'C001', 'P001', 'single_bag', 'active', 28, 12.60, '2024-02-01', null, null, '2030-01-01', false)",
        "('S002', 'C002', 'P001', 'family', 'cancelled', 14, 37.80, '2024-02-03', '2024-04-01', 'price', null, true)",
    ],
    "orders": [
        "('O001', 'C001', 'S001', '2024-02-01', 'fulfilled', 12.60, null, '2024-02-02', '2024-02-05')",
        "('O002', 'C002', null, '2024-02-10', 'refunded', 0.00, 'WELCOME10', null, null)",
    ],
    "order_items": ["('O001', 'P001', 1, 12.60, false)", "('O002', 'P002', 2, 149.99, true)"],
    "portal_events": [
        "('E1', 'C001', 'skip', '2024-02-20 08:00:00', '{\"subscription_id\": \"S001\", \"order_id\": \"O001\"}')"
    ],
    "support_tickets": [
        "('T1', 'C001', '2024-02-03 10:00:00', 'email', 'delivery_delay', 'solved', '2024-02-04', 5, "
        "'Hi there!\nWhere is my order, please? \"Thanks\"')",
    ],
}


@pytest.mark.parametrize("file_format", ["csv", "parquet"])
def test_round_trip_export_then_import_gives_identical_rows(tmp_path, file_format):
    source = duckdb.connect(str(tmp_path / "source.duckdb"))
    contract.create_raw_schema(source)
    for table, rows in ROUND_TRIP_ROWS.items():
        source.execute(f"insert into raw.{table} values {', '.join(rows)}")
    export = tmp_path / "export"
    export.mkdir()
    for table in ROUND_TRIP_ROWS:
        options = "header" if file_format == "csv" else "format parquet"
        source.execute(f"copy raw.{table} to '{export / f'{table}.{file_format}'}' ({options})")

    target = duckdb.connect(str(tmp_path / "target.duckdb"))
    summary = import_directory(target, export)

    assert summary.rows_quarantined == 0, target.execute("select * from raw.raw_quarantine").fetchall()
    for table in ROUND_TRIP_ROWS:
        query = f"select * from raw.{table} order by all"
        assert target.execute(query).fetchall() == source.execute(query).fetchall(), table
    source.close()
    target.close()


def _import_created_at(con, tmp_path, values: list[str]) -> dict[str, str]:
    """Import one customer per `created_at` text; customer_id -> created_at as stored (UTC)."""
    lines = ["customer_id,email,created_at,marketing_opt_in"]
    lines += [f"C{i},c{i}@example.com,{value},true" for i, value in enumerate(values, 1)]
    (tmp_path / "customers.csv").write_text("\n".join(lines) + "\n")
    import_directory(con, tmp_path)
    rows = con.execute("select customer_id, created_at::varchar from raw.customers").fetchall()
    return dict(rows)


def test_an_offset_after_a_space_is_converted_to_utc(con, tmp_path):
    # Shopify's and Rails' exports write `2024-03-05 22:00:00 -0500`; DuckDB only parses the
    # offset without the space, so these rows were quarantined as "expected a timestamp".
    stored = _import_created_at(con, tmp_path, ["2024-03-05 22:00:00 -0500", "2024-03-05 22:00:00 +02:00"])

    assert quarantine(con, "customers") == {}
    assert stored == {"C1": "2024-03-06 03:00:00", "C2": "2024-03-05 20:00:00"}


def test_a_named_time_zone_is_converted_to_utc_not_dropped(con, tmp_path):
    # DuckDB's TIMESTAMP cast ignores a trailing word: 22:00 New York was stored as 22:00 UTC,
    # and 10 PM as 10:00.
    stored = _import_created_at(con, tmp_path, [
        "2024-03-05 22:00:00 America/New_York", "2024-03-05 22:00:00 UTC", "2024-03-05 22:00:00 Mars/Olympus",
        "2024-03-05 10:00:00 PM"])

    assert stored == {"C1": "2024-03-06 03:00:00", "C2": "2024-03-05 22:00:00"}
    reasons = quarantine(con, "customers")
    assert sorted(reasons) == [3, 4] and all("created_at: expected a timestamp" in r for r in reasons.values())


def test_an_unclosed_quote_that_swallows_the_rest_of_the_file_is_an_error(con, tmp_path):
    # Past the sniffer's sample DuckDB reads everything after an unclosed quote as that one
    # value: one "malformed row" was quarantined and the 4,999 rows after it silently dropped.
    with open(tmp_path / "products.csv", "w") as f:
        f.write("product_id,name,category,price,active,subscription_eligible\n")
        for i in range(1, 30_001):
            name = '"Big Grinder' if i == 25_000 else f"Blend {i}"
            f.write(f"P{i},{name},coffee,12.00,true,true\n")

    with pytest.raises(ContractError, match=r"products.csv: row 25000 opens a quoted value that is never closed"):
        import_directory(con, tmp_path)
    assert all_counts(con)["products"] == 0


def test_a_stray_quote_inside_a_row_quarantines_only_that_row(con, tmp_path):
    with open(tmp_path / "products.csv", "w") as f:
        f.write("product_id,name,category,price,active,subscription_eligible\n")
        for i in range(1, 30_001):
            name = '"Big" Grinder' if i == 25_000 else f"Blend {i}"
            f.write(f"P{i},{name},coffee,12.00,true,true\n")
    summary = import_directory(con, tmp_path)

    assert summary.rows_loaded == 29_999
    assert "unterminated quote" in quarantine(con, "products")[25_000]


@pytest.mark.parametrize("bad_row, problem", [
    ('P3,"Big Grinder,equipment,149.99,true,false', "row 3 opens a quoted value that is never closed"),
    ('P3,"Big" Grinder,equipment,149.99,true,false', "row 3: a quoted value must be followed by ','"),
])
def test_a_broken_quote_in_a_small_file_names_the_row(con, tmp_path, bad_row, problem):
    # Within the sniffer's sample DuckDB refuses the whole file with its sniffer dump (dialect
    # search space, strict_mode advice): the user could not tell which row to fix.
    rows = ["product_id,name,category,price,active,subscription_eligible",
            "P1,House Blend,coffee,14.00,true,true", "P2,Decaf,coffee,14.00,true,true", bad_row,
            "P4,Espresso,coffee,15.00,true,true"]
    (tmp_path / "products.csv").write_text("\n".join(rows) + "\n")

    with pytest.raises(ContractError) as error:
        import_directory(con, tmp_path)
    assert f"products.csv: cannot be read as CSV: {problem}" in str(error.value)
    assert "sniffing" not in str(error.value)


def test_mixed_line_endings_are_named(con, tmp_path):
    (tmp_path / "products.csv").write_bytes(
        b"product_id,name,category,price,active,subscription_eligible\r\n"
        b"P1,House Blend,coffee,14.00,true,true\r\nP2,Decaf,coffee,14.00,true,true\n")

    with pytest.raises(ContractError, match=r"products.csv: cannot be read as CSV: it mixes Windows \(CRLF\) and "
                                            r"Unix \(LF\) line endings"):
        import_directory(con, tmp_path)


def test_a_column_named_twice_in_the_header_is_refused(con, tmp_path):
    # DuckDB reads the second `email` as `email_1`, which was then ignored as an unknown column: which
    # of the two held the real addresses was never asked.
    folder = tmp_path / "dup"
    folder.mkdir()
    (folder / "customers.csv").write_text(
        "customer_id,email,first_name,created_at,country,timezone,marketing_opt_in,email,channel_preference\n"
        "C1,old@example.com,Ann,2024-01-01 10:00:00,US,UTC,true,ann@example.com,email\n")
    with pytest.raises(ContractError, match="email appear more than once in the header"):
        import_directory(con, folder)
    assert con.execute("select count(*) from information_schema.tables where table_schema = 'raw' "
                       "and table_name = 'customers'").fetchone()[0] == 0 or all_counts(con)["customers"] == 0

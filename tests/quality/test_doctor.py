"""`nextbest doctor` lists every check with its status and, for failures, what to do; exit 1 when one blocks."""

from __future__ import annotations

import argparse

import duckdb

from dagster_project.quality.commands import register


def _doctor(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="nextbest")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["doctor", *argv])
    return args.func(args)


def test_doctor_on_a_store_with_orphaned_orders(store, capsys):
    con = duckdb.connect(str(store))
    con.execute("update raw.orders set customer_id = 'C_GHOST' where order_id = (select min(order_id) from raw.orders)")
    con.close()

    code = _doctor()
    out = capsys.readouterr().out

    assert code == 1
    assert f"Data-quality checks on {store}" in out
    assert "FAIL (blocking)  ERROR customer_id_references_customers" in out
    assert "1 row(s) of raw.orders have a customer_id with no match in raw.customers.customer_id" in out
    assert "-> raw.orders.customer_id values with no raw.customers row are orphans" in out
    assert "C_GHOST" in out  # an example row
    assert "ok               ERROR order_id_unique" in out  # passing checks are listed too
    assert "skip" in out and "customer_context does not exist yet" in out
    assert "1 blocking failure(s)" in out.splitlines()[-1]


def test_doctor_exits_0_when_only_warnings_fail(store, capsys, monkeypatch):
    from dagster_project.quality import summary
    from dagster_project.quality.outcomes import Outcome

    warning = Outcome("raw.payments", "amount_max", "WARN", "failed", "raw.payments.amount: 1 of 9 rows are above 10000",
                      "check for cents exported as units")
    monkeypatch.setattr(summary, "collect_outcomes", lambda con: [warning])
    assert _doctor("--markdown", "--db", str(store)) == 0
    out = capsys.readouterr().out
    assert "| | severity | table | check | finding | what to do |" in out
    assert "| ❌ | WARN | `raw.payments` | `amount_max` |" in out and "check for cents exported as units" in out
    assert "0 blocking failure(s), 1 warning(s)" in out


def test_doctor_without_warehouse(tmp_path, capsys):
    assert _doctor("--db", str(tmp_path / "missing.duckdb")) == 2
    assert "No warehouse at" in capsys.readouterr().err


def test_doctor_warns_of_rows_the_last_imports_quarantined(store, capsys):
    con = duckdb.connect(str(store))
    con.execute("""insert into raw.raw_quarantine values
        ('products', 'exports/products.csv', 4, 'price: expected a number like 12.50, got ''$16.00''', '{}', now()),
        ('orders', 'old/orders.csv', 9, 'order_id: empty', '{}', now() - interval 30 days)""")
    con.close()
    _doctor()
    out = capsys.readouterr().out
    assert "FAIL (warning)   WARN  quarantined_rows" in out
    assert "1 rows quarantined by imports in the last 7 days (2 in all); they are not in the raw tables" in out
    assert "got '$16.00'" in out and "exports/products.csv" in out  # the example row says which and why

"""One more day of events for a share of the customers, as a daily load would append it.

    python benchmarks/incremental_day.py DB 2026-11-25            # 2% of customers
    python benchmarks/incremental_day.py DB 2026-11-25 --share 0.05

Used by `benchmarks/scale.py` (stage "dbt build, incremental day"): after the full
build at day D, the customers picked here get events dated D + 1 in raw.email_events
(a newsletter sent, delivered, sometimes opened and clicked), raw.portal_events (a
login, sometimes a skip) and, for about a third of them, a fulfilled one-time order
(raw.orders, raw.order_items, raw.payments). The pick is a hash of the customer id,
so the same customers change on every run of the benchmark.
"""

from __future__ import annotations

import argparse
from datetime import date

import duckdb

# Parts per 10,000 of the picked customers that also do each thing (0: all of them).
SHARES = {"sent": 0, "delivered": 0, "open": 4_000, "click": 800, "login": 0, "skip": 1_000, "order": 3_300}


def append_day(con: duckdb.DuckDBPyConnection, day: date, share: float = 0.02) -> dict[str, int]:
    """Append events dated `day` for `share` of raw.customers; return rows added per table."""
    tag = day.strftime("%Y%m%d")
    con.execute("create or replace temp table picked as select customer_id from raw.customers "
                "where hash(customer_id || 'pick') % 1000000 < ? and created_at < ?",
                [int(share * 1_000_000), day])
    # Seconds into the day from the id, so events spread over it (and stay before its end).
    at = f"cast('{day.isoformat()}' as timestamp) + to_seconds(hash(customer_id || 'at') % 80000)"

    def does(kind: str) -> str:
        return f"hash(customer_id || '{kind}') % 10000 < {SHARES[kind]}" if SHARES[kind] else "true"

    before = {t: con.execute(f"select count(*) from raw.{t}").fetchone()[0]
              for t in ("email_events", "portal_events", "orders", "order_items", "payments")}
    con.execute(f"""
        insert into raw.email_events
        select 'EE-{tag}-' || customer_id || '-' || kind, customer_id, 'newsletter-{day.isoformat()}',
               'M-{tag}-' || customer_id, kind, {at} + to_seconds(step)
        from picked, (values ('sent', 0), ('delivered', 60), ('open', 3600), ('click', 3700)) as steps(kind, step)
        where kind in ('sent', 'delivered') or (kind = 'open' and {does('open')})
           or (kind = 'click' and {does('open')} and {does('click')})""")
    con.execute(f"""
        insert into raw.portal_events
        select 'PE-{tag}-' || customer_id || '-' || kind, customer_id, kind, {at} + to_seconds(step), '{{}}'
        from picked, (values ('login', 7200), ('skip', 7300)) as steps(kind, step)
        where kind = 'login' or {does('skip')}""")
    con.execute(f"""
        create or replace temp table new_orders as
        select 'O-{tag}-' || customer_id as order_id, customer_id, {at} + to_seconds(9000) as ordered_at,
               cast(18 + hash(customer_id || 'total') % 20 as decimal(12, 2)) as total
        from picked where {does('order')}""")
    con.execute("insert into raw.orders select order_id, customer_id, null, ordered_at, 'fulfilled', total, "
                "null, null, null from new_orders")
    con.execute("insert into raw.order_items select order_id, (select min(product_id) from raw.products), "
                "1, total, true from new_orders")
    con.execute("insert into raw.payments select 'PAY-' || order_id, customer_id, order_id, ordered_at, "
                "'succeeded', null, total from new_orders")
    added = {t: con.execute(f"select count(*) from raw.{t}").fetchone()[0] - n for t, n in before.items()}
    added["customers"] = con.execute("select count(*) from picked").fetchone()[0]
    return added


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("db", help="DuckDB file with the raw.* tables")
    parser.add_argument("day", type=date.fromisoformat, help="the new day (YYYY-MM-DD)")
    parser.add_argument("--share", type=float, default=0.02, help="share of customers with events that day")
    args = parser.parse_args()
    with duckdb.connect(args.db) as con:
        added = append_day(con, args.day, args.share)
    print(", ".join(f"{table}: {rows:,}" for table, rows in added.items()))


if __name__ == "__main__":
    main()

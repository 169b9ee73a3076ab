"""Re-sent raw rows: staging keeps one row per id (its furthest state), and the
"latest per customer" models pick the right row, ties broken by id.

Both go through macros/deduplicate.sql's fast paths (`mostly_unique` for the staged
ids, `many_per_key` for a customer's latest order or payment), so these are the
cases those paths must get right: a key sent more than once, keys sent once, and
two rows of a customer at the same time.
"""

from __future__ import annotations

from datetime import timedelta

import duckdb
import pytest

from tests.warehouse import handbuilt
from tests.warehouse.dbt_warehouse import load_handbuilt, new_warehouse

D = handbuilt.ANCHOR
CUSTOMER = "HB-DUP"


def _insert(con, table: str, **values) -> None:
    names = ", ".join(values)
    con.execute(f"insert into raw.{table} ({names}) values ({', '.join('?' * len(values))})", list(values.values()))


@pytest.fixture(scope="module")
def resent(tmp_path_factory):
    wh = new_warehouse(tmp_path_factory, "resent")
    load_handbuilt(wh, D)
    day = handbuilt.at(D - timedelta(days=3))
    with duckdb.connect(str(wh.path)) as con:
        _insert(con, "customers", customer_id=CUSTOMER, email="dup@example.com", first_name="Dana",
                created_at=handbuilt.at(D - timedelta(days=200)), country="DE", timezone="Europe/Berlin",
                marketing_opt_in=True, channel_preference="email")
        # the loader sent the customer again with a later created_at: the latest row wins
        _insert(con, "customers", customer_id=CUSTOMER, email="dana@example.com", first_name="Dana",
                created_at=handbuilt.at(D - timedelta(days=199)), country="DE", timezone="Europe/Berlin",
                marketing_opt_in=True, channel_preference="email")
        # one order sent three times as it was placed, shipped and delivered
        for shipped, delivered in [(None, None), (day + timedelta(days=1), None),
                                   (day + timedelta(days=1), day + timedelta(days=2))]:
            _insert(con, "orders", order_id="HB-DUP-O1", customer_id=CUSTOMER, subscription_id=None,
                    ordered_at=day - timedelta(days=30), status="fulfilled", total=20.0, discount_code=None,
                    shipped_at=shipped, delivered_at=delivered)
        # two orders placed at the same moment, sent once each: the greater order id is the latest
        for order_id, status in [("HB-DUP-O2", "fulfilled"), ("HB-DUP-O3", "skipped")]:
            _insert(con, "orders", order_id=order_id, customer_id=CUSTOMER, subscription_id=None,
                    ordered_at=day, status=status, total=20.0, discount_code=None, shipped_at=None,
                    delivered_at=None)
        # an order line sent twice: the larger quantity wins
        for quantity in (1, 3):
            _insert(con, "order_items", order_id="HB-DUP-O1", product_id="HB-P-COF1", quantity=quantity,
                    unit_price=10.0, is_one_time=True)
        # a payment sent twice, and two attempts at the same moment (the greater id is the latest)
        for status in ("failed", "failed"):
            _insert(con, "payments", payment_id="HB-DUP-PAY1", customer_id=CUSTOMER, order_id="HB-DUP-O1",
                    attempted_at=day - timedelta(days=30), status=status, failure_reason="card_declined",
                    amount=20.0)
        for payment_id, status, reason in [("HB-DUP-PAY2", "failed", "expired_card"),
                                           ("HB-DUP-PAY3", "succeeded", None)]:
            _insert(con, "payments", payment_id=payment_id, customer_id=CUSTOMER, order_id="HB-DUP-O2",
                    attempted_at=day, status=status, failure_reason=reason, amount=20.0)
    wh.build(D)
    return wh


def test_staging_keeps_one_row_per_id_in_its_furthest_state(resent):
    for table, key in [("stg_raw__customers", "customer_id"), ("stg_raw__orders", "order_id"),
                       ("stg_raw__order_items", "order_item_id"), ("stg_raw__payments", "payment_id")]:
        (counts,) = resent.rows(f"select count(*) as n, count(distinct {key}) as ids from staging.{table}")
        assert counts["n"] == counts["ids"] > 0, table
    (customer,) = resent.rows("select email from staging.stg_raw__customers where customer_id = ?", CUSTOMER)
    assert customer["email"] == "dana@example.com"
    (order,) = resent.rows("select shipped_at, delivered_at from staging.stg_raw__orders where order_id = 'HB-DUP-O1'")
    assert order["shipped_at"] is not None and order["delivered_at"] is not None
    (line,) = resent.rows("select quantity from staging.stg_raw__order_items where order_id = 'HB-DUP-O1'")
    assert line["quantity"] == 3
    # the hand-built customers' rows, each sent once, are all still there
    (orders,) = resent.rows("select count(*) as n from staging.stg_raw__orders where customer_id <> ?", CUSTOMER)
    assert orders["n"] == len(handbuilt.build(D).rows["orders"])


def test_latest_order_and_payment_break_ties_by_id(resent):
    (activity,) = resent.rows("select * from intermediate.int_customer_order_activity where customer_id = ?",
                              CUSTOMER)
    assert activity["last_order_status"] == "skipped"  # HB-DUP-O3 > HB-DUP-O2, same moment
    assert activity["lifetime_orders"] == 3
    assert activity["last_delivery_status"] == "delivered"  # HB-DUP-O1, the only one shipped
    (health,) = resent.rows("select * from intermediate.int_payment_health where customer_id = ?", CUSTOMER)
    assert health["last_payment_status"] == "succeeded"  # HB-DUP-PAY3 > HB-DUP-PAY2, same moment
    assert health["last_payment_failure_reason"] == "expired_card"  # the latest failure
    assert health["payment_attempts"] == 3  # PAY1 counted once
    assert health["payment_health"] == "recovered"

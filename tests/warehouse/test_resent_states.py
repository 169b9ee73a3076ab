"""Rows re-sent in a later state that carries no newer timestamp: an order refunded after it
shipped (the contract has no refund time), a ticket rated or closed after it was solved (same
resolved_at). Staging keeps the later state, on the first build and on a daily run after the
re-send arrives, whichever copy the loader wrote first."""

from __future__ import annotations

from datetime import timedelta

import duckdb
import pytest

from tests.warehouse import handbuilt

D = handbuilt.ANCHOR
GIFT_ORDER = "HB-OT-ADVOCATE-202412120900-1"  # 20 gift boxes at 50.00, shipped
TICKET = "HB-RESENT-T1"


def _resend(con) -> None:
    con.execute("insert into raw.orders select * replace ('refunded' as status) from raw.orders "
                "where order_id = ?", [GIFT_ORDER])
    con.execute("insert into raw.support_tickets select * replace ('closed' as status, 5 as csat) "
                "from raw.support_tickets where ticket_id = ?", [TICKET])


@pytest.fixture(scope="module")
def daily(handbuilt_warehouse, tmp_path_factory):
    """A solved, unrated ticket of HB-GIFT's built at D; the order's refund and the ticket's
    rating arrive with the next day's load and a daily run restages them."""
    wh = handbuilt_warehouse.copy(tmp_path_factory, "resent-daily")
    with duckdb.connect(str(wh.path)) as con:
        con.execute("insert into raw.support_tickets values (?, 'HB-GIFT', ?, 'chat', 'product_question', 'solved', "
                    "?, null, 'Which grind for a moka pot?')",
                    [TICKET, handbuilt.at(D - timedelta(days=10)), handbuilt.at(D - timedelta(days=9))])
    wh.build(D)
    with duckdb.connect(str(wh.path)) as con:
        _resend(con)
    result = wh.dbt("run", "--select", "+customer_context", as_of=D)
    assert result.returncode == 0, result.stdout[-4000:]
    return wh


@pytest.fixture(scope="module")
def first_build(handbuilt_warehouse, tmp_path_factory):
    """The same rows, the refund and the rating already there at the first build."""
    wh = handbuilt_warehouse.copy(tmp_path_factory, "resent-full")
    with duckdb.connect(str(wh.path)) as con:
        con.execute("insert into raw.support_tickets values (?, 'HB-GIFT', ?, 'chat', 'product_question', 'solved', "
                    "?, null, 'Which grind for a moka pot?')",
                    [TICKET, handbuilt.at(D - timedelta(days=10)), handbuilt.at(D - timedelta(days=9))])
        _resend(con)
    result = wh.dbt("run", "--select", "+customer_context", "--full-refresh", as_of=D)
    assert result.returncode == 0, result.stdout[-4000:]
    return wh


@pytest.mark.parametrize("which", ["daily", "first_build"])
def test_a_refund_resent_with_the_same_times_is_staged(which, request):
    wh = request.getfixturevalue(which)
    (order,) = wh.rows("select order_status from staging.stg_raw__orders where order_id = ?", GIFT_ORDER)
    assert order["order_status"] == "refunded"
    # 29 deliveries at 36.00; the refunded gift order earns nothing
    assert wh.context("HB-ADVOCATE")["lifetime_value"] == 29 * 36


@pytest.mark.parametrize("which", ["daily", "first_build"])
def test_a_rating_resent_with_the_same_resolution_time_is_staged(which, request):
    wh = request.getfixturevalue(which)
    (ticket,) = wh.rows("select ticket_status, csat from staging.stg_raw__support_tickets where ticket_id = ?", TICKET)
    assert (ticket["ticket_status"], ticket["csat"]) == ("closed", 5)
    assert wh.context("HB-GIFT")["avg_csat"] == 5.0

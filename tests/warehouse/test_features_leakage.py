"""customer_features is point in time: what happens after as_of_date never changes
the features at as_of_date (no leakage into training data).

A small simulated store is built once; then events after a cut-off Monday are
added and today's state columns are changed the way a loader would re-sync them
(a later cancellation, a cadence change, a refund, a ticket closed, opens,
cancel attempts, add-ons, payment failures). Features at and before the cut-off
must be identical; features after it must notice the change.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import duckdb
import pandas as pd
import pytest

from tests.warehouse.dbt_warehouse import Warehouse, new_warehouse

simulator = pytest.importorskip("dagster_project.ingest.simulator")

END = date(2025, 6, 30)
CUT = date(2025, 4, 7)  # a Monday: features at CUT use events before CUT 00:00
AFTER = datetime.combine(CUT, datetime.min.time())  # the first instant after the cut


def build_features(wh: Warehouse) -> pd.DataFrame:
    # --full-refresh: the history is rewritten months back, beyond what a daily
    # incremental run looks at (var incremental_lookback_days)
    result = wh.dbt("run", "--select", "+customer_features", "+customer_labels", "--full-refresh", as_of=END)
    assert result.returncode == 0, f"dbt run failed:\n{result.stdout[-6000:]}"
    with duckdb.connect(str(wh.path), read_only=True) as con:
        frame = con.execute("select * from analytics.customer_features").df()
    return frame.sort_values(["as_of_date", "customer_id"]).reset_index(drop=True)


def rewrite_history_after_cut(path) -> dict[str, int]:
    """Change only what happens at or after CUT; return how many rows each change touched."""
    later = AFTER + timedelta(hours=5)
    touched = {}
    with duckdb.connect(str(path)) as con:
        subscribers = [r[0] for r in con.execute(
            "select customer_id from raw.subscriptions where started_at < ? and cancelled_at is null "
            # no cadence change of their own, so the one added below is the only one
            "and customer_id not in (select customer_id from raw.portal_events where event_type = 'change_cadence') "
            "order by customer_id limit 12", [AFTER]).fetchall()]
        assert len(subscribers) >= 12, "the simulated store needs live subscribers at the cut"
        churners, cadence, busy = subscribers[:4], subscribers[4:8], subscribers[8:]
        ids = ", ".join(f"'{c}'" for c in subscribers)

        # a loader re-syncs today's state: cancellations after the cut...
        touched["cancelled"] = con.execute(
            "update raw.subscriptions set status = 'cancelled', cancelled_at = ?, cancel_reason = 'price', "
            "next_charge_at = null where customer_id in ({})".format(", ".join(f"'{c}'" for c in churners)),
            [later]).fetchone()[0]
        # ...a cadence changed after the cut (the row holds the new one, the event dates it)
        for customer in cadence:
            sub_id, days = con.execute("select subscription_id, cadence_days from raw.subscriptions "
                                       "where customer_id = ? and cancelled_at is null", [customer]).fetchone()
            con.execute("update raw.subscriptions set cadence_days = 56 where subscription_id = ?", [sub_id])
            con.execute("insert into raw.portal_events values (?, ?, 'change_cadence', ?, ?)",
                        [f"LEAK-CC-{customer}", customer, later,
                         f'{{"subscription_id": "{sub_id}", "from_days": {days}, "to_days": 56}}'])
        # ...an order placed before the cut refunded after it, tickets closed since
        touched["refunded"] = con.execute(
            f"update raw.orders set status = 'refunded' where customer_id in ({ids}) "
            "and status = 'fulfilled' and ordered_at < ?", [AFTER]).fetchone()[0]
        touched["ticket_status"] = con.execute(
            "update raw.support_tickets set status = 'closed' where created_at < ?", [AFTER]).fetchone()[0]
        # new events after the cut
        for n, customer in enumerate(busy + churners):
            con.execute("insert into raw.email_events values (?, ?, 'pb-at_risk_save-2025-04-07', ?, 'sent', ?)",
                        [f"LEAK-E{n}", customer, f"LEAK-M{n}", later])
            con.execute("insert into raw.email_events values (?, ?, 'pb-at_risk_save-2025-04-07', ?, 'open', ?)",
                        [f"LEAK-O{n}", customer, f"LEAK-M{n}", later])
            con.execute("insert into raw.email_events values (?, ?, 'pb-at_risk_save-2025-04-07', ?, 'conversion', ?)",
                        [f"LEAK-C{n}", customer, f"LEAK-M{n}", later])
            con.execute("insert into raw.portal_events values (?, ?, 'cancel_attempt', ?, '{}')",
                        [f"LEAK-P{n}", customer, later])
            con.execute("insert into raw.portal_events values (?, ?, 'pause', ?, '{}')",
                        [f"LEAK-PA{n}", customer, later])
            con.execute("insert into raw.orders values (?, ?, null, ?, 'fulfilled', 99.00, 'SAVE15', null, null)",
                        [f"LEAK-ORD{n}", customer, later])
            con.execute("insert into raw.order_items values (?, 'P001', 3, 33.00, true)", [f"LEAK-ORD{n}"])
            con.execute("insert into raw.payments values (?, ?, ?, ?, 'failed', 'card_declined', 99.00)",
                        [f"LEAK-PAY{n}", customer, f"LEAK-ORD{n}", later])
            con.execute("insert into raw.support_tickets values (?, ?, ?, 'chat', 'cancel_request', 'open', "
                        "null, null, 'Please cancel.')", [f"LEAK-T{n}", customer, later])
        touched["customers"] = len(subscribers)
    return touched


@pytest.fixture(scope="module")
def before_and_after(tmp_path_factory):
    wh = new_warehouse(tmp_path_factory, "leakage")
    with duckdb.connect(str(wh.path)) as con:
        simulator.simulate(con, customers=150, months=6, seed=11, end_date=END)
    before = build_features(wh)
    touched = rewrite_history_after_cut(wh.path)
    after = build_features(wh)
    return before, after, touched


def test_features_at_or_before_the_cut_ignore_everything_after_it(before_and_after):
    before, after, touched = before_and_after
    assert all(touched.values()), touched  # every kind of change really happened
    up_to_cut = [frame[frame["as_of_date"] <= pd.Timestamp(CUT)].reset_index(drop=True) for frame in (before, after)]
    assert len(up_to_cut[0]) > 0 and up_to_cut[0]["as_of_date"].nunique() >= 10
    pd.testing.assert_frame_equal(up_to_cut[0], up_to_cut[1])


def test_features_after_the_cut_see_the_change(before_and_after):
    before, after, _ = before_and_after
    next_week = pd.Timestamp(CUT + timedelta(days=7))
    old, new = (frame[frame["as_of_date"] == next_week].set_index("customer_id") for frame in (before, after))
    assert (new["cancel_attempts_4w"] > old["cancel_attempts_4w"]).sum() >= 8
    assert (new["add_ons_4w"] > old["add_ons_4w"]).sum() >= 8
    assert (~new["is_subscriber"] & old["is_subscriber"]).sum() >= 4  # the late cancellations count from then on

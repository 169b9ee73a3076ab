"""customer_labels on the hand-built customers, against their raw rows.

A label says what happened in the `label_window_days` (30) days from a point: here each complete
skip and churn label is recomputed from the staged orders and subscriptions, independently of
the model's SQL (which sums int_features_daily's counters over the windows).
"""

from __future__ import annotations

from datetime import timedelta

WINDOW = timedelta(days=30)


def _labels(wh) -> list[dict]:
    return wh.rows("select customer_id, as_of_date, skipped_next_order, churned from analytics.customer_labels "
                   "where is_window_complete and customer_id like 'HB-%'")


def _in_window(days: list, start) -> bool:
    return any(start <= day < start + WINDOW for day in days)


def test_skip_labels_are_the_skips_in_each_window(handbuilt_warehouse):
    skips: dict[str, list] = {}
    for r in handbuilt_warehouse.rows("select customer_id, cast(ordered_at as date) as day from staging.stg_raw__orders "
                                      "where order_status = 'skipped' and subscription_id is not null"):
        skips.setdefault(r["customer_id"], []).append(r["day"])
    labelled = [r for r in _labels(handbuilt_warehouse) if r["skipped_next_order"] is not None]
    for r in labelled:
        assert r["skipped_next_order"] == _in_window(skips.get(r["customer_id"], []), r["as_of_date"]), r
    outcomes = {r["skipped_next_order"] for r in labelled}
    assert outcomes == {True, False}  # the cadence customer skips in some windows, nobody in most


def test_churn_labels_are_the_cancellations_in_each_window(handbuilt_warehouse):
    cancels: dict[str, list] = {}
    for r in handbuilt_warehouse.rows(
            "select customer_id, cast(cancelled_at as date) as day from staging.stg_raw__subscriptions "
            "where cancelled_at is not null and coalesce(cancel_reason, '') not in ('upgraded', 'gift_ended')"):
        cancels.setdefault(r["customer_id"], []).append(r["day"])
    labelled = [r for r in _labels(handbuilt_warehouse) if r["churned"] is not None]
    for r in labelled:
        assert r["churned"] == _in_window(cancels.get(r["customer_id"], []), r["as_of_date"]), r
    assert {r["churned"] for r in labelled} == {True, False}

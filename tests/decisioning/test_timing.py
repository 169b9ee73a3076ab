"""Send times: a customer's own opens and clicks, shrunk toward the store's hours; in chunks of
customers, shrunk toward the whole store's hours exactly as when everyone is decided at once."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from dagster_project.decisioning.timing import HOURS, best_send_hours, hour_of_week

MONDAY = datetime(2026, 6, 1)  # a Monday: hour of week = hours since this midnight


def opens(by_customer: dict[str, list[int]]) -> pd.DataFrame:
    """Events at the given hours of the week."""
    rows = [(c, MONDAY + timedelta(hours=int(h))) for c, hours in by_customer.items() for h in hours]
    return pd.DataFrame(rows, columns=["customer_id", "occurred_at"])


def store_of(events: pd.DataFrame) -> np.ndarray:
    return np.bincount(hour_of_week(events["occurred_at"]), minlength=HOURS).astype(float)


def test_chunks_shrunk_toward_the_store_pick_the_hours_one_batch_picks():
    rng = np.random.default_rng(0)
    events = opens({f"C{i:02d}": list(rng.choice([9, 10, 33, 57, 130], rng.integers(0, 6))) for i in range(40)})
    customers = [f"C{i:02d}" for i in range(40)]
    whole = best_send_hours(events, customers).set_index("customer_id")
    store = store_of(events)
    halves = pd.concat([best_send_hours(events[events["customer_id"].isin(part)], part, store_counts=store)
                        for part in (customers[:20], customers[20:])]).set_index("customer_id")
    pd.testing.assert_frame_equal(halves, whole)


def test_a_quiet_customer_follows_the_store_not_the_chunk():
    events = opens({"A": [3]})
    store = np.zeros(HOURS)
    store[100] = 500.0  # the store opens at hour 100
    alone = best_send_hours(events, ["A", "NEW"]).set_index("customer_id")
    assert alone.loc["A", "send_hour_of_week"] == 3  # the chunk's only pattern is A's own
    shrunk = best_send_hours(events, ["A", "NEW"], store_counts=store).set_index("customer_id")
    assert shrunk["send_hour_of_week"].tolist() == [100, 100]  # one open does not outweigh the store
    assert shrunk.loc["NEW", "history_events"] == 0 and shrunk.loc["A", "history_events"] == 1


def test_store_counts_of_the_wrong_shape_are_refused():
    with pytest.raises(ValueError, match="expected 168 counts"):
        best_send_hours(opens({"A": [3]}), ["A"], store_counts=np.zeros(24))

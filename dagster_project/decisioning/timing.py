"""Next-best send time: per customer, the hour of the week they most often open or click.

Hour of week = weekday x 24 + hour, UTC, Monday 00:00 = 0. A customer's
opens and clicks per hour are shrunk toward the whole store's pattern
(`PRIOR_EVENTS` pseudo-events), so one open at 3 a.m. does not move anyone
and a customer with no history gets the store's best hour. Neighbouring hours
are blended (an open at 9:55 says something about 10:00).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd

HOURS = 168
PRIOR_EVENTS = 8.0  # how many of a customer's own opens/clicks it takes to outweigh the store's pattern
KERNEL = np.array([0.25, 0.5, 0.25])


def hour_of_week(timestamps: pd.Series) -> np.ndarray:
    ts = pd.to_datetime(timestamps)
    return (ts.dt.day_of_week * 24 + ts.dt.hour).to_numpy(int)


def _smooth(counts: np.ndarray) -> np.ndarray:
    padded = np.concatenate([counts[:, -1:], counts, counts[:, :1]], axis=1)
    return sum(w * padded[:, k:k + HOURS] for k, w in enumerate(KERNEL))


def best_send_hours(events: pd.DataFrame, customers, prior_events: float = PRIOR_EVENTS,
                    store_counts: np.ndarray | None = None) -> pd.DataFrame:
    """customer_id, send_hour_of_week, hour_score (posterior share of opens/clicks), history_events.

    `events`: customer_id, occurred_at of opens and clicks. `store_counts`: the store's
    opens and clicks per hour of the week (HOURS values) to shrink toward; by default the
    counts of `events`' own customers, which is the store only when `customers` is everyone
    (a chunk of customers passes the whole store's counts).
    """
    customers = pd.Index(pd.unique(np.asarray(customers, dtype=object)), name="customer_id")
    counts = np.zeros((len(customers), HOURS))
    if len(events):
        codes = customers.get_indexer(events["customer_id"])
        keep = codes >= 0
        cells = codes[keep] * HOURS + hour_of_week(events["occurred_at"])[keep]
        counts += np.bincount(cells, minlength=counts.size).reshape(counts.shape)
    if store_counts is None:
        store_counts = counts.sum(axis=0)
    elif np.shape(store_counts) != (HOURS,):
        raise ValueError(f"store_counts: expected {HOURS} counts, one per hour of the week; got shape "
                         f"{np.shape(store_counts)}")
    store = np.asarray(store_counts, dtype=float) + 1.0  # +1: every hour possible
    prior = _smooth((store / store.sum())[None, :])[0]
    n = counts.sum(axis=1, keepdims=True)
    posterior = (_smooth(counts) + prior_events * prior) / (n + prior_events)
    best = posterior.argmax(axis=1)
    return pd.DataFrame({"customer_id": customers, "send_hour_of_week": best,
                         "hour_score": posterior[np.arange(len(best)), best], "history_events": n[:, 0].astype(int)})


def next_time_at(hour: int, after: datetime) -> datetime:
    """The first moment at hour-of-week `hour` (UTC) at or after `after`."""
    start = after.replace(minute=0, second=0, microsecond=0)
    if start < after:
        start += timedelta(hours=1)
    now = start.weekday() * 24 + start.hour
    return start + timedelta(hours=(hour - now) % HOURS)

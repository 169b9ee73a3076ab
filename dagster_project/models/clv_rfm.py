"""From a transaction log to one row per customer: RFM, purchase gaps and outcomes.

A transaction log is a frame with `customer_id`, `date` (datetime64, any time
of day) and `amount`. Purchases on the same day count as one purchase with
their amounts summed, the usual convention for repeat-purchase models. Days
are whole days; the cutoff day belongs to the history.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# Windows (days before the cutoff) for the recent-activity features.
RECENT_WINDOWS = (30, 90, 180)


def end_of_history(cutoff) -> pd.Timestamp:
    """Midnight after the cutoff day: orders before it are history, orders from it on are the future.

    The cutoff is a day, whatever its time of day: 2024-06-30 and
    2024-06-30 23:59 both keep every order placed on 2024-06-30.
    """
    return pd.Timestamp(cutoff).normalize() + pd.Timedelta(days=1)


def in_history(transactions: pd.DataFrame, cutoff) -> pd.Series:
    """True for the orders placed on or before the cutoff day."""
    return transactions["date"] < end_of_history(cutoff)


def purchase_days(transactions: pd.DataFrame, until: pd.Timestamp) -> pd.DataFrame:
    """One row per customer and purchase day up to the day `until` (that whole day included), sorted.

    Columns: customer_id, day (int days since 1970-01-01), amount (day's total).
    """
    before = transactions[in_history(transactions, until)]
    day = before["date"].to_numpy().astype("datetime64[D]").astype(np.int64)
    daily = (pd.DataFrame({"customer_id": before["customer_id"].to_numpy(), "day": day,
                           "amount": before["amount"].to_numpy(dtype=float)})
             .groupby(["customer_id", "day"], sort=True, observed=True)["amount"].sum()
             .reset_index())
    return daily


def day_number(moment: pd.Timestamp) -> int:
    """Whole days since 1970-01-01 of a timestamp."""
    return int(np.datetime64(pd.Timestamp(moment).normalize().to_datetime64(), "D").astype(np.int64))


def rfm_summary(transactions: pd.DataFrame, cutoff: pd.Timestamp) -> pd.DataFrame:
    """Recency-frequency-monetary summary per customer with a purchase by `cutoff`.

    frequency: repeat purchase days; recency: days from first to last purchase;
    T: days from first purchase to the cutoff; monetary_value: mean spend of the
    repeat purchase days (0 without repeats). Also first/last purchase day,
    first-day amount and total spend (historic CLV). Indexed by customer_id.
    """
    daily = purchase_days(transactions, cutoff)
    return _summarise(daily, day_number(cutoff))


def _summarise(daily: pd.DataFrame, cutoff_day: int) -> pd.DataFrame:
    grouped = daily.groupby("customer_id", sort=False, observed=True)
    first_day = grouped["day"].min()
    last_day = grouped["day"].max()
    days = grouped["day"].size()
    total = grouped["amount"].sum()
    first_amount = grouped["amount"].first()  # daily is sorted by day
    frequency = days - 1
    repeat_spend = total - first_amount
    monetary = np.where(frequency > 0, repeat_spend / frequency.clip(lower=1), 0.0)
    return pd.DataFrame({
        "frequency": frequency.astype(float),
        "recency": (last_day - first_day).astype(float),
        "T": (cutoff_day - first_day).astype(float),
        "monetary_value": monetary,
        "first_amount": first_amount,
        "historic_spend": total,
        "first_day": first_day,
        "last_day": last_day,
    })


def customer_features(transactions: pd.DataFrame, cutoff: pd.Timestamp) -> pd.DataFrame:
    """RFM plus purchase-gap, purchase-rate and recent-activity features, as of `cutoff`.

    Gap features are NaN for customers without enough purchases; the gradient
    boosting model handles missing values natively.
    """
    daily = purchase_days(transactions, cutoff)
    cutoff_day = day_number(cutoff)
    features = _summarise(daily, cutoff_day)
    same_customer = daily["customer_id"].eq(daily["customer_id"].shift())
    daily = daily.assign(gap=daily["day"].diff().where(same_customer))
    gaps = daily.groupby("customer_id", sort=False, observed=True)["gap"]
    features["gap_mean"] = gaps.mean()
    features["gap_std"] = gaps.std()
    features["gap_last"] = gaps.last()
    features["days_since_last"] = cutoff_day - features["last_day"]
    features["overdue_ratio"] = features["days_since_last"] / features["gap_mean"]
    # Repeat purchase days per day since the first: unlike frequency, it does not grow with the log.
    features["purchase_rate"] = features["frequency"] / features["T"].clip(lower=1)
    age = cutoff_day - daily["day"]
    for window in RECENT_WINDOWS:
        recent = daily[age < window].groupby("customer_id", sort=False, observed=True)["amount"]
        features[f"purchases_{window}d"] = recent.size().reindex(features.index, fill_value=0)
        features[f"spend_{window}d"] = recent.sum().reindex(features.index, fill_value=0.0)
    return features


def outcomes_after(transactions: pd.DataFrame, cutoff: pd.Timestamp, horizon_days: int,
                   customers: pd.Index) -> pd.DataFrame:
    """What each customer did in the `horizon_days` days after the cutoff day: purchased, purchase days, spend."""
    start = end_of_history(cutoff)
    end = start + pd.Timedelta(days=horizon_days)
    window = transactions[(transactions["date"] >= start) & (transactions["date"] < end)]
    daily = purchase_days(window, end)
    grouped = daily.groupby("customer_id", sort=False, observed=True)["amount"]
    purchases = grouped.size().reindex(customers, fill_value=0)
    spend = grouped.sum().reindex(customers, fill_value=0.0)
    return pd.DataFrame({"purchased": purchases > 0, "purchases": purchases.astype(float),
                         "spend": spend.astype(float)}, index=customers)

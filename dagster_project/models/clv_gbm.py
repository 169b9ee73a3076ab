"""Gradient boosting on purchase history: will they buy in the horizon, how often, how much.

Trained time-based: features as of an earlier cutoff, labels from the horizon
that follows it, so the model learns from outcomes that are already known.
The purchase probability is calibrated (isotonic, cross-validated); purchase
count and spend use a Poisson loss since they are non-negative and mostly zero.

The booster never sees counts that grow with the length of the log
(`frequency`, `recency`, `T`, `historic_spend`): it is trained one horizon
before it scores, so at scoring time those run past anything it was trained
on, and a log that starts on a fixed day makes them mean "was already a
customer when the log began" rather than anything about the customer. It
sees rates and fixed windows instead (`purchase_rate`, `purchases_90d`, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

# Below these a boosted model would mostly memorise noise: BG/NBD alone is used.
MIN_TRAINING_CUSTOMERS = 200
MIN_CUSTOMERS_PER_CLASS = 20

# Columns of customer_features the booster does not use: bookkeeping, and counts
# that grow with the log's length (see the module docstring; BG/NBD uses them).
NOT_FEATURES = ("first_day", "last_day", "frequency", "recency", "T", "historic_spend")

# OpenMP threads for fitting boosters. On the shared 2-core dev/CI machine, 2 threads
# fitted 5-15x slower than 1 (3k and 150k rows): thread hand-off costs more
# than the per-split work saves, worse when the cores are busy.
GBM_THREADS = 1


@dataclass
class GbmModels:
    """The three fitted models and the feature columns they expect, in order."""

    purchase: CalibratedClassifierCV
    purchases: HistGradientBoostingRegressor
    spend: HistGradientBoostingRegressor
    columns: list[str]


def why_not_trainable(outcomes: pd.DataFrame) -> str | None:
    """A reason the training window is too thin for boosting, or None if it is fine."""
    n = len(outcomes)
    buyers = int(outcomes["purchased"].sum())
    if n < MIN_TRAINING_CUSTOMERS:
        return f"only {n} customers in the training window (gradient boosting needs {MIN_TRAINING_CUSTOMERS})"
    if min(buyers, n - buyers) < MIN_CUSTOMERS_PER_CLASS:
        return (f"only {min(buyers, n - buyers)} customers {'bought' if buyers < n - buyers else 'did not buy'} "
                f"in the training window (gradient boosting needs {MIN_CUSTOMERS_PER_CLASS})")
    return None


def feature_matrix(features: pd.DataFrame, columns: list[str] | None = None) -> pd.DataFrame:
    """Numeric feature columns (booleans as 0/1): `columns` in that order when given."""
    if columns is None:
        numeric = features.select_dtypes(include=["number", "bool"]).columns
        columns = [c for c in numeric if c not in NOT_FEATURES]
    return features.reindex(columns=columns).astype(float)


def train_gbm(features: pd.DataFrame, outcomes: pd.DataFrame, seed: int = 0) -> GbmModels:
    """Fit the purchase classifier and the count and spend regressors.

    `features` and `outcomes` share their index (customer_id); outcomes has
    `purchased`, `purchases` and `spend` (see `clv_rfm.outcomes_after`).
    """
    X = feature_matrix(features)
    y = outcomes.loc[X.index]
    # Early stopping on a 10% split picks the number of trees per store.
    booster = dict(learning_rate=0.06, max_iter=300, max_leaf_nodes=15, min_samples_leaf=20,
                   l2_regularization=1.0, early_stopping=True, validation_fraction=0.1,
                   n_iter_no_change=15, random_state=seed)
    with threadpool_limits(limits=GBM_THREADS, user_api="openmp"):
        # Isotonic at every size: scores are bimodal on subscription stores (subscribers
        # near 1, one-off buyers low), and a sigmoid averaged over the folds pulled the
        # subscribers' mode down (600-customer store: 0.91 predicted, 0.99 observed).
        purchase = CalibratedClassifierCV(HistGradientBoostingClassifier(**booster), method="isotonic", cv=3)
        purchase.fit(X, y["purchased"].astype(int))
        purchases = HistGradientBoostingRegressor(loss="poisson", **booster).fit(X, y["purchases"])
        spend = HistGradientBoostingRegressor(loss="poisson", **booster).fit(X, y["spend"].clip(lower=0))
    return GbmModels(purchase, purchases, spend, list(X.columns))


def predict_gbm(models: GbmModels, features: pd.DataFrame, volumes: bool = True) -> pd.DataFrame:
    """p_purchase, and with `volumes` expected purchases and spend in the horizon, per customer.

    `volumes=False` leaves the two regressors out: more than half of the trees (at 1M customers
    141 + 300 of 817), for figures only the backtest reads.
    """
    X = feature_matrix(features, models.columns)
    # Not held to GBM_THREADS: prediction splits the rows among the threads, with no hand-off per
    # split, and 50,000 customers scored in 0.66-0.86 s on two threads against 1.1 s on one.
    predicted = {"p_purchase": models.purchase.predict_proba(X)[:, 1]}
    if volumes:
        predicted["purchases"] = np.clip(models.purchases.predict(X), 0, None)
        predicted["spend"] = np.clip(models.spend.predict(X), 0, None)
    return pd.DataFrame(predicted, index=features.index)

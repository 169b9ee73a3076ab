"""Simulated stores for the CLV tests: BG/NBD stores of known parameters and a subscription store."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dagster_project.models.clv_bgnbd import BgNbdParams
from dagster_project.models.clv_gamma_gamma import GammaGammaParams
from dagster_project.models.clv_simulate import simulate_transactions

TRUE_PURCHASE = BgNbdParams(r=0.5, alpha=20.0, a=0.8, b=2.5)
TRUE_SPEND = GammaGammaParams(p=6.0, q=4.0, gamma=15.0)
STORE_END = "2024-12-31"
CUTOFF = "2024-09-30"


def bgnbd_store(customers: int, seed: int) -> pd.DataFrame:
    """Two years of orders from a BG/NBD + Gamma-Gamma store."""
    return simulate_transactions(customers, TRUE_PURCHASE, TRUE_SPEND, start="2023-01-01",
                                 end=STORE_END, acquisition_days=365, seed=seed)


@pytest.fixture(scope="session")
def big_store() -> pd.DataFrame:
    return bgnbd_store(4000, seed=1)


@pytest.fixture(scope="session")
def tiny_store() -> pd.DataFrame:
    """50 customers, the first of them buying 90 days before the cutoff."""
    return simulate_transactions(50, TRUE_PURCHASE, TRUE_SPEND, start="2024-07-01",
                                 end=STORE_END, acquisition_days=60, seed=7)


@pytest.fixture(scope="session")
def subscription_store() -> pd.DataFrame:
    """Subscribers charged every 14/30/60 days (+-2) until they cancel: not memoryless."""
    rng = np.random.default_rng(0)
    n = 1000
    first = rng.integers(0, 300, n)
    cadence = rng.choice([14, 30, 60], n)
    lifetime = rng.exponential(250, n)
    customers, days = [], []
    for cycle in range(60):
        day = first + cycle * cadence + rng.integers(-2, 3, n) * (cycle > 0)
        alive = (cycle * cadence <= lifetime) & (day < 730)
        customers.append(np.nonzero(alive)[0])
        days.append(day[alive])
    who, day = np.concatenate(customers), np.concatenate(days)
    return pd.DataFrame({"customer_id": [f"s{i}" for i in who],
                         "date": pd.Timestamp("2023-01-01") + pd.to_timedelta(day, unit="D"),
                         "amount": 20.0 + (who % 5) * 5})

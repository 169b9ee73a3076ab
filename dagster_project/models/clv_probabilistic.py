"""BG/NBD + Gamma-Gamma predictions per customer, with intervals.

Intervals come from the Laplace approximation of the parameter posterior:
the predictions are recomputed under parameter sets drawn from it, so a small
store (few customers, flat likelihood) gets wide intervals and a large store
narrow ones. They express uncertainty about the store's parameters, not the
customer's luck.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from dagster_project.models.clv_bgnbd import (BgNbdFit, BgNbdParams, expected_days_to_next_purchase,
                                              expected_purchases, fit_bgnbd, p_alive, p_purchase_within)
from dagster_project.models.clv_gamma_gamma import GammaGammaFit, expected_spend, fit_gamma_gamma

CLV_DAYS = 365
INTERVAL = (10, 90)  # percentiles: an 80% interval


@dataclass
class ProbabilisticFit:
    """The fitted purchase and spend models behind `predictions`."""

    purchase: BgNbdFit
    spend: GammaGammaFit
    predictions: pd.DataFrame


def probabilistic_predictions(features: pd.DataFrame, horizon_days: int, prior_scale: float | None = 1.0,
                              draws: int = 0, seed: int = 0) -> ProbabilisticFit:
    """Fit BG/NBD and Gamma-Gamma on `features` (from `clv_rfm`) and predict for the same customers.

    See `predict_from_fits` for the columns.
    """
    x = features["frequency"].to_numpy(float)
    purchase = fit_bgnbd(x, features["recency"].to_numpy(float), features["T"].to_numpy(float),
                         prior_scale=prior_scale)
    fallback = float(features["first_amount"].clip(lower=0).mean())
    spend = fit_gamma_gamma(x, features["monetary_value"].to_numpy(float), fallback_mean_spend=fallback,
                            prior_scale=prior_scale)
    return ProbabilisticFit(purchase=purchase, spend=spend,
                            predictions=predict_from_fits(purchase, spend, features, horizon_days, draws, seed))


def predict_from_fits(purchase: BgNbdFit, spend: GammaGammaFit, features: pd.DataFrame, horizon_days: int,
                      draws: int = 0, seed: int = 0) -> pd.DataFrame:
    """Predictions of fitted BG/NBD and Gamma-Gamma models for the customers in `features`.

    Columns: p_alive, p_purchase (>= 1 purchase in the horizon), purchases and
    spend (expected in the horizon), spend_per_purchase, clv_12m (expected
    spend in the next 365 days), days_to_next (mean wait if still active) and,
    when `draws` > 0, p_purchase_low/high and clv_12m_low/high.
    """
    x, t_x, T = (features[c].to_numpy(float) for c in ("frequency", "recency", "T"))
    monetary = features["monetary_value"].to_numpy(float)
    per_purchase = expected_spend(spend.params, x, monetary)
    point = _predict(purchase.params, x, t_x, T, horizon_days)
    frame = pd.DataFrame({
        "p_alive": p_alive(purchase.params, x, t_x, T),
        "p_purchase": point["p_purchase"],
        "purchases": point["purchases"],
        "spend": point["purchases"] * per_purchase,
        "spend_per_purchase": per_purchase,
        "clv_12m": point["purchases_12m"] * per_purchase,
        "days_to_next": expected_days_to_next_purchase(purchase.params, x, T),
    }, index=features.index)
    if draws:
        p_draws, clv_draws = [], []
        for bg, gg in zip(purchase.draws(draws, seed), spend.draws(draws, seed + 1)):
            # Only the intervals' two figures: the horizon's expected purchases would go unused.
            p_draws.append(p_purchase_within(bg, x, t_x, T, horizon_days))
            clv_draws.append(expected_purchases(bg, x, t_x, T, CLV_DAYS) * expected_spend(gg, x, monetary))
        frame["p_purchase_low"], frame["p_purchase_high"] = np.percentile(p_draws, INTERVAL, axis=0)
        frame["clv_12m_low"], frame["clv_12m_high"] = np.percentile(clv_draws, INTERVAL, axis=0)
    return frame


def _predict(params: BgNbdParams, x, t_x, T, horizon_days: int) -> dict[str, np.ndarray]:
    return {
        "p_purchase": p_purchase_within(params, x, t_x, T, horizon_days),
        "purchases": expected_purchases(params, x, t_x, T, horizon_days),
        "purchases_12m": expected_purchases(params, x, t_x, T, CLV_DAYS),
    }

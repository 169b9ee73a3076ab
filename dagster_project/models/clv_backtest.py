"""Backtest: fit on everything up to a cutoff, score against what happened after it.

The chosen model (`predict_clv`: BG/NBD, gradient boosting or a blend) and a
plain BG/NBD + Gamma-Gamma baseline (maximum likelihood, no prior, no
boosting) are fitted on the same history and scored side by side on the
customers who had bought by the cutoff.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from dagster_project.models.clv import predict_clv
from dagster_project.models.clv_metrics import score_predictions
from dagster_project.models.clv_probabilistic import probabilistic_predictions
from dagster_project.models.clv_rfm import customer_features, in_history, outcomes_after


@dataclass
class BacktestResult:
    """The JSON-ready report and one row per customer: predictions next to outcomes."""

    report: dict
    predictions: pd.DataFrame


def run_backtest(transactions: pd.DataFrame, cutoff: pd.Timestamp, horizon_days: int = 90,
                 seed: int = 0) -> BacktestResult:
    """Fit both models on transactions up to `cutoff`, score them on the next `horizon_days`."""
    cutoff = pd.Timestamp(cutoff)
    chosen = predict_clv(transactions, cutoff, horizon_days, seed=seed)
    customers = chosen.predictions.index
    baseline = probabilistic_predictions(customer_features(transactions, cutoff), horizon_days,
                                         prior_scale=None).predictions.reindex(customers)
    actual = outcomes_after(transactions, cutoff, horizon_days, customers)
    history = in_history(transactions, cutoff)
    later = transactions.loc[~history, "customer_id"]
    new_after = int(later[~later.isin(customers)].nunique())

    c = chosen.predictions
    report = {
        "cutoff": str(cutoff.date()),
        "horizon_days": horizon_days,
        "customers": int(len(customers)),
        "new_customers_after_cutoff_not_scored": new_after,
        "transactions_up_to_cutoff": int(history.sum()),
        "chosen_model": chosen.summary["method"],
        "why": chosen.summary["why"],
        "gbm_weight_purchase": chosen.summary["gbm_weight_purchase"],
        "gbm_weight_volume": chosen.summary["gbm_weight_volume"],
        "store_confidence": chosen.summary["store_confidence"],
        "models": {
            "chosen": score_predictions(c["p_purchase"], c["expected_purchases"], c["predicted_spend"], actual),
            "bgnbd_baseline": score_predictions(baseline["p_purchase"], baseline["purchases"],
                                                baseline["spend"], actual),
        },
        "validation": chosen.summary["validation"],
        "parameters": {"bgnbd": chosen.summary["bgnbd"], "gamma_gamma": chosen.summary["gamma_gamma"]},
    }
    predictions = c.assign(
        baseline_p_purchase=baseline["p_purchase"],
        baseline_expected_purchases=baseline["purchases"],
        baseline_predicted_spend=baseline["spend"],
        actual_purchased=actual["purchased"],
        actual_purchases=actual["purchases"],
        actual_spend=actual["spend"],
    )
    return BacktestResult(report=report, predictions=predictions)

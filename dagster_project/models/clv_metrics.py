"""How good are purchase and spend predictions: AUC, Brier, calibration, spend error.

Plain functions of arrays so the figures the backtest prints can be checked
by hand. Undefined figures (AUC when everyone bought, correlation of a
constant) are None, which prints as JSON null.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


def roc_auc(purchased, p) -> float | None:
    """Chance a random buyer is scored above a random non-buyer (ties count half)."""
    y = np.asarray(purchased, dtype=bool)
    if y.all() or not y.any():
        return None
    return float(roc_auc_score(y, np.asarray(p, dtype=float)))


def brier_score(purchased, p) -> float:
    """Mean squared difference between the probability and what happened (0/1)."""
    y = np.asarray(purchased, dtype=float)
    return float(np.mean((np.asarray(p, dtype=float) - y) ** 2))


def calibration_by_decile(purchased, p, bins: int = 10) -> list[dict]:
    """Customers sorted by predicted probability, cut into `bins` groups of equal size.

    Each group reports its mean predicted probability and the share that
    actually bought; a calibrated model has the two close in every group.
    """
    y = np.asarray(purchased, dtype=float)
    p = np.asarray(p, dtype=float)
    order = np.argsort(p, kind="stable")
    rows = []
    for index, members in enumerate(np.array_split(order, bins), start=1):
        if len(members) == 0:
            continue
        rows.append({"decile": index, "customers": int(len(members)),
                     "mean_predicted": float(p[members].mean()), "observed_rate": float(y[members].mean())})
    return rows


def calibration_error(deciles: list[dict]) -> float:
    """Customer-weighted mean gap between predicted and observed rate across deciles."""
    total = sum(row["customers"] for row in deciles)
    return float(sum(row["customers"] * abs(row["mean_predicted"] - row["observed_rate"])
                     for row in deciles) / total)


def correlation(a, b) -> float | None:
    """Pearson correlation, None when either side is constant."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def score_predictions(p_purchase, purchases, spend, actual) -> dict:
    """All backtest figures for one model against `actual` (purchased/purchases/spend)."""
    deciles = calibration_by_decile(actual["purchased"], p_purchase)
    return {
        "roc_auc": roc_auc(actual["purchased"], p_purchase),
        "brier_score": brier_score(actual["purchased"], p_purchase),
        "calibration_error": calibration_error(deciles),
        "calibration_by_decile": deciles,
        "spend_mae": float(np.mean(np.abs(np.asarray(spend, float) - actual["spend"].to_numpy(float)))),
        "spend_correlation": correlation(spend, actual["spend"]),
        "predicted_purchases": float(np.sum(purchases)),
        "actual_purchases": float(actual["purchases"].sum()),
        "predicted_spend": float(np.sum(spend)),
        "actual_spend": float(actual["spend"].sum()),
    }

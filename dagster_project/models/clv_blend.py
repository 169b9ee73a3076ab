"""Pick BG/NBD, gradient boosting or a blend of the two, by an internal backtest.

The training window ends one horizon before the cutoff: features as of
(cutoff - horizon), labels from (cutoff - horizon, cutoff]. Gradient boosting
learns on 70% of those customers; both models then predict the other 30%,
and the blend weight with the lowest Brier score (purchase probability) and
the lowest spend error (counts and spend) wins. The booster is then refitted
on the whole window and scores the customers as of the cutoff.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dagster_project.models.clv_gbm import predict_gbm, train_gbm, why_not_trainable
from dagster_project.models.clv_metrics import brier_score
from dagster_project.models.clv_probabilistic import probabilistic_predictions
from dagster_project.models.clv_rfm import customer_features, outcomes_after

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)  # share of gradient boosting in the blend
VALIDATION_SHARE = 0.3
# BG/NBD outputs the booster sees as features (stacking).
STACKED = ("p_alive", "p_purchase", "purchases", "spend")


@dataclass
class BlendChoice:
    """How much of gradient boosting to use and why; `scored` is None for BG/NBD only."""

    purchase_weight: float = 0.0
    volume_weight: float = 0.0
    reason: str = ""
    validation: dict = field(default_factory=dict)
    scored: pd.DataFrame | None = None
    features: list[str] = field(default_factory=list)

    @property
    def method(self) -> str:
        """bgnbd, gbm or blend: what the purchase probability came from."""
        return {0.0: "bgnbd", 1.0: "gbm"}.get(self.purchase_weight, "blend")


def with_stacked(features: pd.DataFrame, probabilistic: pd.DataFrame, extras: pd.DataFrame | None) -> pd.DataFrame:
    """Features plus BG/NBD outputs plus per-customer extras (cadence_days, skips, ...)."""
    frame = features.join(probabilistic[list(STACKED)].add_prefix("bgnbd_"))
    if extras is not None:
        frame = frame.join(extras.drop(columns=[c for c in extras.columns if c in frame.columns]))
    return frame


def choose_blend(transactions: pd.DataFrame, cutoff: pd.Timestamp, horizon_days: int,
                 scoring_features: pd.DataFrame, prior_scale: float | None,
                 training_extras: pd.DataFrame | None = None, seed: int = 0) -> BlendChoice:
    """Train and validate gradient boosting one horizon back; score `scoring_features`.

    `scoring_features` are the cutoff's features already joined with BG/NBD
    outputs and extras (see `with_stacked`).
    """
    train_cutoff = pd.Timestamp(cutoff) - pd.Timedelta(days=horizon_days)
    base = customer_features(transactions, train_cutoff)
    if base.empty:
        return BlendChoice(reason=f"no purchases before {train_cutoff.date()}, one horizon before the cutoff")
    outcomes = outcomes_after(transactions, train_cutoff, horizon_days, base.index)
    reason = why_not_trainable(outcomes)
    if reason:
        return BlendChoice(reason=reason)
    probabilistic = probabilistic_predictions(base, horizon_days, prior_scale).predictions
    features = with_stacked(base, probabilistic, training_extras)

    rng = np.random.default_rng(seed)
    held_out = rng.uniform(size=len(features)) < VALIDATION_SHARE
    fitted = train_gbm(features[~held_out], outcomes[~held_out], seed=seed)
    boosted = predict_gbm(fitted, features[held_out])
    bg = probabilistic[held_out]
    actual = outcomes[held_out]
    brier = {w: brier_score(actual["purchased"], w * boosted["p_purchase"] + (1 - w) * bg["p_purchase"])
             for w in WEIGHTS}
    spend_mae = {w: float(np.mean(np.abs(w * boosted["spend"] + (1 - w) * bg["spend"] - actual["spend"])))
                 for w in WEIGHTS}
    # min() keeps the first of equals, so ties go to the simpler BG/NBD side.
    purchase_weight = min(WEIGHTS, key=lambda w: brier[w])
    volume_weight = min(WEIGHTS, key=lambda w: spend_mae[w])
    validation = {
        "training_cutoff": str(train_cutoff.date()),
        "training_customers": int((~held_out).sum()),
        "validation_customers": int(held_out.sum()),
        "brier_by_gbm_weight": {str(w): round(v, 6) for w, v in brier.items()},
        "spend_mae_by_gbm_weight": {str(w): round(v, 4) for w, v in spend_mae.items()},
    }
    if purchase_weight == 0.0 and volume_weight == 0.0:
        return BlendChoice(reason="BG/NBD alone had the best validation scores", validation=validation)
    final = train_gbm(features, outcomes, seed=seed)
    return BlendChoice(purchase_weight=purchase_weight, volume_weight=volume_weight,
                       reason="lowest validation Brier score (purchase) and spend error (volume)",
                       validation=validation, scored=predict_gbm(final, scoring_features),
                       features=final.columns)

"""Train and evaluate one uplift model per playbook from its past randomized sends. Pure pandas in, models out.

For each playbook: customers are split into train (70%) and held-out (30%)
groups (all of a customer's assignments go together). On the training part,
K-fold cross-fitting picks the learner (T or DR) with the better
out-of-fold Qini; the pick is then scored on the held-out customers (Qini,
AUUC, uplift at top 10% / 30%, ATE with CI) and finally refitted on all rows.
A model "passes" when its held-out Qini is not below random targeting; a
model that does not pass predicts the measured average effect for everyone
(routing still works, it just cannot tell customers apart for that playbook).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dagster_project.models.uplift import LEARNERS, cross_fit_uplift, make_learner, split_customers
from dagster_project.models.uplift_data import FEATURE_LABELS, feature_columns
from dagster_project.models.uplift_metrics import ate, qini_coefficient, ranking_report

MIN_ROWS = 200  # assignments; below this a playbook's model is its measured average effect
MIN_PER_ARM = 40


@dataclass
class UpliftModel:
    """A playbook's fitted uplift model (what the registry stores)."""

    playbook: str
    goal: str
    learner: str
    columns: list[str]
    medians: dict[str, float]
    ate: dict
    metrics: dict
    passed: bool
    model: object = None
    labels: dict[str, str] = field(default_factory=lambda: dict(FEATURE_LABELS))

    def _matrix(self, features: pd.DataFrame) -> np.ndarray:
        return features.reindex(columns=self.columns).astype(float).to_numpy()

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        """Predicted uplift (change in goal probability) per row."""
        if not self.passed or self.model is None:
            return np.full(len(features), self.ate["ate"])
        return self.model.predict(self._matrix(features))

    def reasons(self, features: pd.DataFrame, top: int = 3) -> list[list[str]]:
        """Per row, the features that raise its predicted uplift most, in words.

        Contribution of a feature = prediction minus the prediction with that
        feature set to its training median (a what-if, not SHAP).
        """
        if not self.passed or self.model is None:
            return [[f"average measured effect of {self.playbook} ({self.ate['ate']:+.1%})"]] * len(features)
        X = self._matrix(features)
        base = self.model.predict(X)
        contributions = np.zeros_like(X)
        for j, column in enumerate(self.columns):
            changed = X.copy()
            changed[:, j] = self.medians.get(column, np.nan)
            # A blank (e.g. days since cancelling, for someone who never cancelled) is not a reason.
            contributions[:, j] = np.where(np.isnan(X[:, j]), 0.0, base - self.model.predict(changed))
        out = []
        for i in range(len(X)):
            order = np.argsort(-contributions[i])[:top]
            out.append([f"{self.labels.get(self.columns[j], self.columns[j])} = {_fmt(X[i, j])} "
                        f"({contributions[i, j]:+.1%} lift)" for j in order if contributions[i, j] > 0.002])
        return out


def _fmt(value: float) -> str:
    if np.isnan(value):
        return "unknown"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.2f}"


def train_playbook_model(rows: pd.DataFrame, playbook: str, seed: int = 0, folds: int = 3) -> UpliftModel:
    """Fit, select and evaluate the uplift model for one playbook's assignment rows."""
    goal = rows["goal"].iloc[0] if len(rows) else ""
    columns = [c for c in feature_columns(rows.drop(columns=["treated", "outcome"], errors="ignore"))
               if rows[c].nunique(dropna=True) > 1]
    t, y = rows["treated"].to_numpy(bool), rows["outcome"].to_numpy(float)
    overall = ate(t, y) if t.any() and (~t).any() else {"ate": 0.0}
    medians = rows[columns].median(numeric_only=True).to_dict()
    n_arm = min(int(t.sum()), int((~t).sum()))
    if len(rows) < MIN_ROWS or n_arm < MIN_PER_ARM:
        why = f"{len(rows)} assignments ({n_arm} in the smaller arm); needs {MIN_ROWS} and {MIN_PER_ARM}"
        return UpliftModel(playbook, goal, "average_effect", columns, medians, overall,
                           {"rows": len(rows), "skipped": why}, passed=False)
    X = rows[columns].astype(float).to_numpy()
    held = split_customers(rows["customer_id"], 0.3, seed)
    arms = np.where(t, "treatment", "holdout")
    # 1. Pick the learner on the training customers (out-of-fold Qini).
    fit = cross_fit_uplift(X[~held], arms[~held], y[~held], "holdout", folds=folds, seed=seed)
    oof = {name: qini_coefficient(fit.uplift[name]["treatment"], t[~held], y[~held]) for name in LEARNERS}
    learner = max(oof, key=oof.get)
    # 2. Score the pick on customers it never saw.
    model = make_learner(learner, seed=seed).fit(X[~held], t[~held], y[~held])
    heldout = ranking_report(model.predict(X[held]), t[held], y[held])
    heldout["ate"] = ate(t[held], y[held])
    passed = heldout["qini"] >= 0
    # 3. Refit on everything for scoring.
    final = make_learner(learner, seed=seed).fit(X, t, y)
    metrics = {"rows": int(len(rows)), "treated": int(t.sum()), "holdout": int((~t).sum()),
               "learner": learner, "oof_qini_train": oof, "heldout": heldout,
               "heldout_customers": int(rows.loc[held, "customer_id"].nunique()), "passed": bool(passed),
               "check": "held-out Qini >= 0 (ranking no worse than random targeting)"}
    return UpliftModel(playbook, goal, learner, columns, medians, overall, metrics, bool(passed), final)


def train_uplift_models(frame: pd.DataFrame, seed: int = 0) -> dict[str, UpliftModel]:
    """One model per playbook present in the training frame."""
    return {playbook: train_playbook_model(rows.reset_index(drop=True), playbook, seed)
            for playbook, rows in frame.groupby("playbook_id", sort=True)}

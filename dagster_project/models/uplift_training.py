"""Train and evaluate one uplift model per playbook from its past randomized sends. Pure pandas in, models out.

For each playbook: customers are split into train (70%) and held-out (30%)
groups (all of a customer's assignments go together). On the training part,
K-fold cross-fitting gives every learner (T, DR, X, interaction) an out-of-fold uplift per
row; each is calibrated against the measured effect (`calibration_slope`: does
a customer predicted to gain more really gain more?) and the learner whose
differences are most clearly real is picked. The pick is scored on the
held-out customers (Qini, AUUC, uplift at top 10% / 30%, ATE with CI) and
finally refitted on all rows.

A model "passes" when its out-of-fold calibration slope is clearly above zero
(z >= `MIN_CALIBRATION_Z`) and its held-out Qini is not below random targeting.
A passing model predicts the measured average effect plus its own differences,
shrunk by the slope where that is clearly below 1, so noise in a weak model does
not outbid another playbook's solid average. A model that does not pass predicts the
measured average effect for everyone: routing still values the playbook, it
just cannot tell customers apart for it (with past campaigns of a few thousand
sends, retention effects of a few points are usually in this case).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from joblib import delayed

from dagster_project.models.uplift import (
    DEFAULT_FOLDS, LEARNERS, cross_fit_uplift, features_used, make_learner, split_customers,
)
from dagster_project.models.uplift_data import FEATURE_LABELS, feature_columns
from dagster_project.models.uplift_metrics import Z95, ate, calibration_slope, qini_coefficient, ranking_report
from dagster_project.project import in_processes, usable_cores

MIN_ROWS = 200  # assignments; below this a playbook's model is its measured average effect
MIN_PER_ARM = 40
# How clearly the out-of-fold predictions must track the measured effect (slope / its standard error).
MIN_CALIBRATION_Z = 2.0


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
    # Predictions are ate + shrink x (model - center); center None: the model's own output (older models).
    shrink: float = 1.0
    center: float | None = None

    def _matrix(self, features: pd.DataFrame) -> np.ndarray:
        return features.reindex(columns=self.columns).astype(float).to_numpy()

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        """Predicted uplift (change in goal probability) per row."""
        if not self.passed or self.model is None:
            return np.full(len(features), self.ate["ate"])
        raw = self.model.predict(self._matrix(features))
        center = getattr(self, "center", None)  # models pickled before calibration have neither field
        if center is None:
            return raw
        return self.ate["ate"] + getattr(self, "shrink", 1.0) * (raw - center)

    def reasons(self, features: pd.DataFrame, top: int = 3) -> list[list[str]]:
        """Per row, the features that raise its predicted uplift most, in words.

        Contribution of a feature = prediction minus the prediction with that
        feature set to its training median (a what-if, not SHAP).
        """
        if not self.passed or self.model is None:
            return [[f"average measured effect of {self.playbook} ({self.ate['ate']:+.1%})"]] * len(features)
        X = self._matrix(features)
        base = self.model.predict(X)
        medians = [self.medians.get(column, np.nan) for column in self.columns]
        if hasattr(self.model, "predict_with_each"):  # a linear model: every what-if at once
            contributions = base[:, None] - self.model.predict_with_each(X, medians)
        else:
            contributions = np.zeros_like(X)
            used = features_used(self.model)
            for j in range(len(self.columns)):
                if used is None or j in used:  # no tree splits on the others: a what-if changes nothing
                    changed = X.copy()
                    changed[:, j] = medians[j]
                    contributions[:, j] = base - self.model.predict(changed)
        # A blank (e.g. days since cancelling, for someone who never cancelled) is not a reason.
        contributions[np.isnan(X)] = 0.0
        if getattr(self, "center", None) is not None:
            contributions *= getattr(self, "shrink", 1.0)
        # Rounded, and ties in column order: what-ifs computed another way differ in the last bits.
        ranks = np.argsort(-np.round(contributions, 12), axis=1, kind="stable")[:, :top]
        out = []
        for i, order in enumerate(ranks):
            out.append([f"{self.labels.get(self.columns[j], self.columns[j])} = {_fmt(X[i, j])} "
                        f"({contributions[i, j]:+.1%} lift)" for j in order if contributions[i, j] > 0.002])
        return out


def _fmt(value: float) -> str:
    if np.isnan(value):
        return "unknown"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.2f}"


def train_playbook_model(rows: pd.DataFrame, playbook: str, seed: int = 0, folds: int = DEFAULT_FOLDS) -> UpliftModel:
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
    # 1. Pick the learner on the training customers: the one whose out-of-fold differences are most clearly real.
    fit = cross_fit_uplift(X[~held], arms[~held], y[~held], "holdout", folds=folds, seed=seed)
    oof = {name: qini_coefficient(fit.uplift[name]["treatment"], t[~held], y[~held]) for name in LEARNERS}
    calibration = {name: calibration_slope(fit.uplift[name]["treatment"], t[~held], y[~held]) for name in LEARNERS}
    learner = max(LEARNERS, key=lambda name: (calibration[name]["z"], oof[name]))
    # 2. Score the pick on customers it never saw.
    model = make_learner(learner, seed=seed).fit(X[~held], t[~held], y[~held])
    heldout_uplift = model.predict(X[held])
    heldout = ranking_report(heldout_uplift, t[held], y[held])
    heldout["ate"] = ate(t[held], y[held])
    heldout["calibration"] = calibration_slope(heldout_uplift, t[held], y[held])
    picked = calibration[learner]
    passed = picked["z"] >= MIN_CALIBRATION_Z and heldout["qini"] >= 0
    # 3. Refit on everything for scoring; differences shrunk by how far they proved real.
    final = make_learner(learner, seed=seed).fit(X, t, y)
    # Shrunk only where the slope is clearly below 1 (the model overstates differences), else taken as is.
    overstated = picked["slope"] + Z95 * picked["se"] < 1
    shrink = float(min(max(picked["slope"], 0.0), 1.0)) if overstated else 1.0
    center = float(np.mean(final.predict(X)))
    metrics = {"rows": int(len(rows)), "treated": int(t.sum()), "holdout": int((~t).sum()),
               "learner": learner, "oof_qini_train": oof, "oof_calibration_train": calibration,
               "shrink": shrink, "heldout": heldout,
               "heldout_customers": int(rows.loc[held, "customer_id"].nunique()), "passed": bool(passed),
               "check": f"out-of-fold calibration slope z >= {MIN_CALIBRATION_Z} and held-out Qini >= 0 "
                        "(the predicted differences are real, and rank no worse than random targeting)"}
    return UpliftModel(playbook, goal, learner, columns, medians, overall, metrics, bool(passed), final,
                       shrink=shrink, center=center)


# Below this many training rows the playbooks are trained one after another: starting worker
# processes (each imports scikit-learn) would cost more than it saves.
PARALLEL_MIN_ROWS = 50_000


def train_uplift_models(frame: pd.DataFrame, seed: int = 0, processes: int | None = None) -> dict[str, UpliftModel]:
    """One model per playbook present in the training frame.

    Playbooks are independent, so a large frame trains them in `processes` worker processes at
    once (default: the cores this process may use; one below `PARALLEL_MIN_ROWS` rows), the largest
    first. Each model is the same as trained alone: the seeds are per playbook, not per process.
    """
    groups = {playbook: rows.reset_index(drop=True) for playbook, rows in frame.groupby("playbook_id", sort=True)}
    if processes is None:
        processes = usable_cores() if len(frame) >= PARALLEL_MIN_ROWS else 1
    largest_first = sorted(groups, key=lambda playbook: -len(groups[playbook]))
    models = in_processes([delayed(train_playbook_model)(groups[playbook], playbook, seed)
                           for playbook in largest_first], processes)
    trained = dict(zip(largest_first, models))
    return {playbook: trained[playbook] for playbook in groups}

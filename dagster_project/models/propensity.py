"""Propensity models: will a customer churn, skip, upgrade or respond to a discount in 30 days?

Pure logic, no Dagster and no warehouse: frames in, models and figures out.
Training data is `analytics.customer_features` joined to
`analytics.customer_labels` (one row per customer per weekly as_of date, built
point in time by dbt). Each outcome gets a HistGradientBoostingClassifier with
isotonic calibration, trained and evaluated on a time-based split:

    | train (older weeks) | calibrate (latest training weeks) | gap (label window) | validation (latest weeks) |

The gap keeps training labels (30 days after each as_of) from overlapping the
validation weeks. Each model is compared with the rules baseline: the segment
rule the spine used for that outcome (`rule_*` columns, evaluated at the same
as_of dates), turned into a probability by its hit rate in training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
from threadpoolctl import threadpool_limits

from dagster_project.project import usable_cores

SEED = 0
LABEL_WINDOW_DAYS = 30  # dbt var label_window_days: the gap between training and validation
VALIDATION_WEEKS = 8  # latest weeks with known outcomes held out for validation
CALIBRATION_SHARE = 0.2  # latest share of training weeks used to calibrate probabilities
CALIBRATION_BINS = 10
# Consecutive weeks of one customer are nearly the same row: a random sample of this
# many training rows learns as much and keeps a weekly retrain to seconds.
MAX_TRAINING_ROWS = 40_000
# OpenMP threads for fitting the booster. One: fitting makes many small parallel regions, and
# on a 2-core box with one other busy process two threads fitted 2-3x slower than one.
FIT_THREADS = 1
# Predicting is one large region per tree batch: every usable core (1M customers' scores 1.8x
# faster on two idle cores, no slower with one busy; OpenMP's waiting is set in the package init).
PREDICT_THREADS = usable_cores()

# Gates a new model must pass before scoring uses it (also the asset checks).
# ROC AUC floor: below 0.6 the ranking is too close to guessing to pick audiences by.
MIN_VALIDATION_AUC = 0.6
# Population stability index of a feature between the training window and now:
# 0.1-0.25 is a moderate shift, above 0.25 the customers no longer look like the ones trained on.
MAX_FEATURE_PSI = 0.25


@dataclass(frozen=True)
class Outcome:
    """One predicted outcome: its label column, score column and rules baseline."""

    name: str
    label: str  # column of customer_labels
    score: str  # column of nextbest.customer_scores
    rule: str  # column of customer_features: the segment rule that targeted it before
    description: str


OUTCOMES: dict[str, Outcome] = {o.name: o for o in (
    Outcome("churn", "churned", "p_churn", "rule_at_risk",
            "cancels a subscription in the next 30 days (active, non-gift subscribers)"),
    Outcome("skip", "skipped_next_order", "p_skip", "rule_cadence_mismatch",
            "skips a delivery due in the next 30 days (active subscribers)"),
    Outcome("upgrade", "upgraded_or_added_item", "p_upgrade", "rule_expansion",
            "upgrades the plan or adds a one-time item in the next 30 days (active subscribers)"),
    Outcome("discount_response", "converted_on_discount", "p_discount_response", "rule_at_risk",
            "converts on a discount message sent in the next 30 days (customers who get one)"),
)}

# customer_features columns that are keys, flags for the pipeline or the baselines, not model inputs.
NOT_FEATURES = {"as_of_date", "customer_id", "is_scoring_point", "rule_at_risk", "rule_cadence_mismatch",
                "rule_expansion"}


def population(frame: pd.DataFrame, outcome: str) -> pd.Series:
    """Rows the outcome applies to (scores are null elsewhere): the label's eligibility in customer_labels."""
    if outcome == "churn":
        return frame["is_subscriber"].astype(bool) & ~frame["is_gift"].astype(bool)
    if outcome in ("skip", "upgrade"):
        return frame["is_active_subscriber"].astype(bool)
    # anyone can be sent a discount message (win-back goes to cancelled customers)
    return pd.Series(True, index=frame.index)


def model_name(outcome: str) -> str:
    """The registry name of an outcome's model, e.g. `propensity_churn`."""
    return f"propensity_{outcome}"


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """The model inputs: every customer_features column but keys, flags and rule baselines."""
    return [c for c in frame.columns if c not in NOT_FEATURES and c not in {o.label for o in OUTCOMES.values()}
            and c not in {"is_window_complete", "received_discount_message"}]


def as_matrix(frame: pd.DataFrame, features: list[str]) -> np.ndarray:
    """Features as floats (booleans 0/1, missing NaN: the booster handles NaN itself)."""
    missing = [c for c in features if c not in frame.columns]
    if missing:
        raise KeyError(f"analytics.customer_features has no columns {missing}; rebuild dbt (dbt build) "
                       "or retrain the propensity models")
    return frame[features].astype("float64").to_numpy()


# --- split ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TimeSplit:
    """Weekly as_of dates of each part of a time-based split."""

    train_start: date
    train_end: date  # last as_of date the booster trains on
    calibrate_start: date  # first as_of date the calibrator fits on (<= train_end)
    validation_start: date
    validation_end: date


def time_split(dates: pd.Series, validation_weeks: int = VALIDATION_WEEKS,
               gap_days: int = LABEL_WINDOW_DAYS, calibration_share: float = CALIBRATION_SHARE) -> TimeSplit:
    """Split distinct as_of dates: validation = the latest weeks, training ends `gap_days` before it."""
    days = sorted(pd.to_datetime(dates).dt.date.unique())
    if len(days) < validation_weeks + 8:
        raise ValueError(f"only {len(days)} weekly as_of dates with known outcomes; need at least "
                         f"{validation_weeks + 8} (about {(validation_weeks + 8) // 4 + 2} months of history)")
    validation = days[-validation_weeks:]
    train = [d for d in days if (validation[0] - d).days > gap_days]
    if len(train) < 4:
        raise ValueError(f"only {len(train)} training weeks before the {gap_days}-day gap; need more history")
    calibrate_from = train[min(len(train) - 1, int(len(train) * (1 - calibration_share)))]
    return TimeSplit(train[0], train[-1], calibrate_from, validation[0], validation[-1])


# --- metrics ----------------------------------------------------------------------------------

def calibration_table(y: np.ndarray, p: np.ndarray, bins: int = CALIBRATION_BINS) -> list[dict]:
    """Mean predicted vs observed rate per equal-count bin of predictions (ties share a bin)."""
    order = np.argsort(p, kind="stable")
    if not len(order):
        return []
    # Bin by rank, each tie in the bin of its first row: splitting a tie by the rows' order would
    # show bins of the same prediction with observed rates that are only that order.
    ranked = p[order]
    first = np.searchsorted(ranked, ranked, side="left")
    bin_of = first * min(bins, len(order)) // len(order)
    table = []
    for b in np.unique(bin_of):
        chunk = order[bin_of == b]
        table.append({"customers": int(len(chunk)), "mean_predicted": float(p[chunk].mean()),
                      "observed_rate": float(y[chunk].mean())})
    return table


def classification_metrics(y, p) -> dict:
    """ROC AUC, PR AUC (average precision), Brier score, base rate and the calibration table."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    both = 0 < y.sum() < len(y)
    return {
        "rows": int(len(y)), "positives": int(y.sum()), "base_rate": float(y.mean()) if len(y) else None,
        "roc_auc": float(roc_auc_score(y, p)) if both else None,
        "pr_auc": float(average_precision_score(y, p)) if both else None,
        "brier": float(brier_score_loss(y, p)) if len(y) else None,
        "calibration": calibration_table(y, p),
    }


# --- drift ------------------------------------------------------------------------------------

@dataclass
class FeatureReference:
    """Bin edges and shares of each feature in the training window, for PSI later."""

    edges: dict[str, list[float]]
    shares: dict[str, list[float]]


def _bin_shares(values: np.ndarray, edges: list[float]) -> np.ndarray:
    # bin 0 = missing, then one bin per interval between edges
    missing = np.isnan(values)
    idx = np.where(missing, 0, 1 + np.searchsorted(np.asarray(edges), values, side="right"))
    counts = np.bincount(idx.astype(int), minlength=len(edges) + 2)
    return counts / max(len(values), 1)


def feature_reference(x: np.ndarray, features: list[str], bins: int = 10) -> FeatureReference:
    """Quantile bin edges (plus a missing bin) of each feature and the training shares in them."""
    edges, shares = {}, {}
    for i, name in enumerate(features):
        column = x[:, i]
        present = column[~np.isnan(column)]
        cuts = np.unique(np.quantile(present, np.linspace(0, 1, bins + 1)[1:-1])) if len(present) else np.array([])
        edges[name] = [float(c) for c in cuts]
        shares[name] = [float(s) for s in _bin_shares(column, edges[name])]
    return FeatureReference(edges, shares)


def psi(expected: np.ndarray, actual: np.ndarray, floor: float = 1e-4) -> float:
    """Population stability index between two share vectors: sum (a - e) * ln(a / e)."""
    e, a = np.clip(expected, floor, None), np.clip(actual, floor, None)
    return float(np.sum((a - e) * np.log(a / e)))


def feature_psi(reference: FeatureReference, x: np.ndarray, features: list[str]) -> dict[str, float]:
    """PSI of each feature of `x` against the training window's bins."""
    return {name: psi(np.asarray(reference.shares[name]), _bin_shares(x[:, i], reference.edges[name]))
            for i, name in enumerate(features)}


def drift_summary(by_feature: dict[str, float], top: int = 5) -> dict:
    """The largest PSI, the features driving it and whether it is under MAX_FEATURE_PSI."""
    ranked = sorted(by_feature.items(), key=lambda kv: kv[1], reverse=True)
    worst = ranked[0][1] if ranked else 0.0
    return {"max_psi": worst, "top_features": dict(ranked[:top]), "limit": MAX_FEATURE_PSI,
            "passed": bool(worst <= MAX_FEATURE_PSI)}


# --- training ---------------------------------------------------------------------------------

@dataclass
class PropensityModel:
    """A calibrated booster for one outcome, with what it needs to score and to check drift."""

    outcome: str
    features: list[str]
    classifier: CalibratedClassifierCV
    reference: FeatureReference
    split: TimeSplit
    training_base_rate: float

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated probability of the outcome for each row of customer_features."""
        if frame.empty:
            return np.zeros(0)
        with threadpool_limits(limits=PREDICT_THREADS):
            return self.classifier.predict_proba(as_matrix(frame, self.features))[:, 1]

    def drift(self, frame: pd.DataFrame) -> dict:
        """PSI of `frame`'s features against the training window (drift_summary)."""
        return drift_summary(feature_psi(self.reference, as_matrix(frame, self.features), self.features))


@dataclass
class TrainingResult:
    """The model, its validation figures beside the rules baseline, and the gate verdicts."""

    model: PropensityModel
    metrics: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(self.metrics["gate"]["passed"])


def rules_baseline(train_rule: np.ndarray, train_y: np.ndarray, rule: np.ndarray) -> np.ndarray:
    """The segment rule as a probability: the outcome's training rate among flagged / unflagged rows."""
    rates = {flag: float(train_y[train_rule == flag].mean()) if (train_rule == flag).any() else float(train_y.mean())
             for flag in (0.0, 1.0)}
    return np.where(rule > 0, rates[1.0], rates[0.0])


def gate(model_metrics: dict, baseline_metrics: dict, drift: dict, min_auc: float = MIN_VALIDATION_AUC) -> dict:
    """Verdicts a model must pass before scoring uses it: AUC floor, beats the rules, no large drift."""
    auc, rules_auc = model_metrics["roc_auc"], baseline_metrics["roc_auc"]
    checks = {
        "auc_floor": {"passed": auc is not None and auc >= min_auc, "roc_auc": auc, "floor": min_auc},
        "beats_rules": {"passed": auc is not None and (rules_auc is None or auc >= rules_auc),
                        "roc_auc": auc, "rules_roc_auc": rules_auc},
        "feature_drift": {"passed": drift["passed"], "max_psi": drift["max_psi"], "limit": drift["limit"],
                          "top_features": drift["top_features"]},
    }
    return {"passed": all(c["passed"] for c in checks.values()), "checks": checks}


def train_propensity(frame: pd.DataFrame, outcome: str, seed: int = SEED,
                     validation_weeks: int = VALIDATION_WEEKS, max_iter: int = 120,
                     max_rows: int = MAX_TRAINING_ROWS) -> TrainingResult:
    """Train, calibrate and validate one outcome's model on customer_features + customer_labels rows.

    `frame` has the feature columns, the outcome's label (null = not applicable,
    dropped) and its `rule_*` column. Raises ValueError with what is missing when
    there is too little history or no positive outcome to learn from. Each part of
    the split is copied out of `frame` alone (never the whole frame), so memory
    stays near the size of `frame` itself.
    """
    spec = OUTCOMES[outcome]
    known = frame[spec.label].notna().to_numpy()
    if not known.any():
        raise ValueError(f"no rows of analytics.customer_labels with a known {spec.label}; "
                         "the store needs more history")
    day = pd.to_datetime(frame["as_of_date"]).to_numpy()
    split = time_split(pd.Series(day[known]), validation_weeks)
    at = {name: np.datetime64(pd.Timestamp(value)) for name, value in split.__dict__.items()}
    features = feature_columns(frame)
    training = known & (day >= at["train_start"]) & (day <= at["train_end"])
    fit_rows = np.flatnonzero(training & (day < at["calibrate_start"]))
    if len(fit_rows) > max_rows:
        # the draw DataFrame.sample(max_rows, random_state=seed) makes, without copying the rows first
        fit_rows = fit_rows[np.random.RandomState(seed).choice(len(fit_rows), size=max_rows, replace=False)]
    calibrate = training & (day >= at["calibrate_start"])
    validation = frame.loc[known & (day >= at["validation_start"]), [*features, spec.label, spec.rule]]
    y_fit = frame[spec.label].to_numpy()[fit_rows].astype(float)
    if y_fit.sum() == 0 or y_fit.sum() == len(y_fit):
        raise ValueError(f"{spec.label} is always {bool(y_fit[0]) if len(y_fit) else 'missing'} in the training "
                         f"weeks {split.train_start}..{split.calibrate_start}; nothing to learn")

    booster = HistGradientBoostingClassifier(max_iter=max_iter, learning_rate=0.1, max_leaf_nodes=31,
                                             min_samples_leaf=40, l2_regularization=1.0, early_stopping=True,
                                             validation_fraction=0.15, n_iter_no_change=15, random_state=seed)
    calibrated = CalibratedClassifierCV(FrozenEstimator(booster), method="isotonic")
    with threadpool_limits(limits=FIT_THREADS):
        booster.fit(as_matrix(frame.iloc[fit_rows], features), y_fit)
        calibrated.fit(as_matrix(frame.loc[calibrate, features], features),
                       frame.loc[calibrate, spec.label].astype(float).to_numpy())

    # drift is measured on the outcome's population (as scored) against the latest
    # training weeks: lifetime counters grow as a store ages, so the oldest weeks would
    # flag drift that is only the calendar
    applies = population(frame, outcome).to_numpy()
    reference = feature_reference(
        as_matrix(frame.loc[applies & (day >= at["calibrate_start"]) & (day <= at["train_end"]), features], features),
        features)
    train_y = frame.loc[training, spec.label].astype(float).to_numpy()
    model = PropensityModel(outcome, features, calibrated, reference, split, float(train_y.mean()))
    y_val = validation[spec.label].astype(float).to_numpy()
    p_val = model.predict(validation)
    baseline = rules_baseline(frame.loc[training, spec.rule].astype(float).to_numpy(), train_y,
                              validation[spec.rule].astype(float).to_numpy())
    model_metrics = classification_metrics(y_val, p_val)
    baseline_metrics = classification_metrics(y_val, baseline)
    drift = model.drift(frame.loc[applies & (day >= at["validation_start"]), features])
    metrics = {
        "outcome": outcome, "label": spec.label, "rules_baseline": spec.rule,
        "split": {k: str(v) for k, v in split.__dict__.items()},
        "training_rows": int(training.sum()), "validation": model_metrics, "rules": baseline_metrics,
        "validation_drift": drift, "gate": gate(model_metrics, baseline_metrics, drift),
    }
    return TrainingResult(model, metrics)

"""Backtest uplift models on any randomized campaign export (one row per customer).

    result = run_uplift_backtest(frame, treatment="arm", control="holdout", outcome="converted")
    result.report       # JSON-ready: ATE per arm, Qini / AUUC, uplift at top 10/30%, policy values
    result.predictions  # out-of-fold uplift per arm for every row

Every column not named as treatment, outcome or value is a feature: numbers
as they are, booleans as 0/1, text one-hot (its most frequent levels);
identifier-like columns (unique text per row, `*_id` columns) are left out and
listed in the report. Input problems raise `UpliftInputError` with a message
that names the column and what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dagster_project.models.uplift import DEFAULT_FOLDS, LEARNERS, cross_fit_uplift
from dagster_project.models.uplift_metrics import aipw_scores, ate, best_arm, policy_value, qini_curve, ranking_report

MAX_LEVELS = 20  # one-hot columns per text feature; rarer levels share an "other" column
TRUE_WORDS = {"1", "1.0", "true", "t", "yes", "y"}
FALSE_WORDS = {"0", "0.0", "false", "f", "no", "n"}


class UpliftInputError(ValueError):
    """The campaign export cannot be backtested as given; the message says why."""


@dataclass
class UpliftBacktest:
    """The JSON report and the per-row out-of-fold predictions."""

    report: dict
    predictions: pd.DataFrame
    curves: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]  # arm -> learner -> Qini curve


def read_campaign_file(path: str | Path) -> pd.DataFrame:
    """A CSV or Parquet export as a DataFrame (clear errors for a missing or unreadable file; the command
    names the file before them)."""
    path = Path(path)
    if not path.is_file():
        raise UpliftInputError("no such file")
    try:
        return pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path, low_memory=False)
    except Exception as error:  # noqa: BLE001 - any parser failure is an input problem
        raise UpliftInputError(f"cannot read as {'Parquet' if path.suffix == '.parquet' else 'CSV'}: {error}")


def _require_columns(frame: pd.DataFrame, columns: dict[str, str | None]) -> None:
    for flag, column in columns.items():
        if column is not None and column not in frame.columns:
            raise UpliftInputError(f"column {column!r} (given as {flag}) is not in the file; "
                                   f"columns are: {', '.join(map(str, frame.columns))}")


def arm_labels(series: pd.Series, control: str) -> np.ndarray:
    """Arm of every row as text, with the control value spelled exactly as `control`."""
    if series.isna().any():
        rows = np.flatnonzero(series.isna().to_numpy())[:5] + 2  # +2: header line and 1-based rows
        raise UpliftInputError(f"treatment column {series.name!r} is empty on {int(series.isna().sum())} rows "
                               f"(file lines {', '.join(map(str, rows))}, ...)")
    labels = series.astype(str).to_numpy()
    if control not in set(labels):
        numeric = pd.to_numeric(series, errors="coerce")
        try:
            match = numeric.notna().all() and (numeric == float(control)).any()
        except ValueError:
            match = False
        if not match:
            values = ", ".join(sorted(set(labels))[:10])
            raise UpliftInputError(f"control value {control!r} does not occur in treatment column {series.name!r} "
                                   f"(values: {values})")
        labels = np.where(numeric.to_numpy() == float(control), control, labels)
    if len(set(labels)) < 2:
        raise UpliftInputError(f"treatment column {series.name!r} has a single arm ({control!r}); "
                               "an uplift backtest needs a control arm and at least one treated arm")
    return labels


def binary_outcome(series: pd.Series) -> np.ndarray:
    """0/1 outcome; raises for anything but two values meaning yes and no."""
    if series.isna().any():
        raise UpliftInputError(f"outcome column {series.name!r} is empty on {int(series.isna().sum())} rows")
    if pd.api.types.is_bool_dtype(series):
        return series.astype(float).to_numpy()
    words = series.astype(str).str.strip().str.lower()
    values = set(words)
    if values <= TRUE_WORDS | FALSE_WORDS:
        return words.isin(TRUE_WORDS).astype(float).to_numpy()
    examples = ", ".join(sorted(values - TRUE_WORDS - FALSE_WORDS)[:5])
    raise UpliftInputError(f"outcome column {series.name!r} must be binary (0/1, true/false, yes/no) but has "
                           f"values such as {examples}; pass an amount with --value and a 0/1 outcome")


def _reject_infinite(numbers: pd.Series, what: str) -> None:
    """Raise for an infinite number (a CSV's `inf`): no model fits it and it makes every mean NaN."""
    infinite = np.isinf(numbers.to_numpy(float))
    if infinite.any():
        rows = np.flatnonzero(infinite)[:5] + 2  # +2: header line and 1-based rows
        raise UpliftInputError(f"{what} {numbers.name!r} has an infinite number on {int(infinite.sum())} rows "
                               f"(file lines {', '.join(map(str, rows))}, ...); blank those cells or cap them")


def row_values(series: pd.Series, y: np.ndarray) -> np.ndarray:
    """The value of each row's outcome; blanks (e.g. non-converters) get the mean of the others."""
    numeric = pd.to_numeric(series, errors="coerce")
    bad = series.notna() & numeric.isna()
    if bad.any():
        raise UpliftInputError(f"value column {series.name!r} must be numeric; found {series[bad].iloc[0]!r}")
    _reject_infinite(numeric, "value column")
    if numeric.isna().all():
        raise UpliftInputError(f"value column {series.name!r} is empty")
    return numeric.fillna(numeric.mean()).to_numpy(float)


def infer_features(frame: pd.DataFrame, columns: list[str] | None = None) -> tuple[pd.DataFrame, dict]:
    """Numeric feature matrix from the columns given (default all) and a description of what was used."""
    columns = list(frame.columns) if columns is None else columns
    numeric, categorical, ignored, parts = [], [], {}, []
    for column in columns:
        series = frame[column]
        name = str(column)
        if series.nunique(dropna=True) <= 1:
            ignored[name] = "constant"
            continue
        unique_per_row = series.nunique(dropna=True) == series.notna().sum()
        if unique_per_row and (name.lower() == "id" or name.lower().endswith("_id") or not
                               pd.api.types.is_numeric_dtype(series)):
            ignored[name] = "identifier (unique per row)"
            continue
        if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
            _reject_infinite(series.astype(float).rename(name), "column")
            parts.append(series.astype(float).rename(name))
            numeric.append(name)
            continue
        text = series.astype("string")
        if text.nunique() > 0.5 * len(text) and text.nunique() > 50:
            ignored[name] = "text with a different value on most rows"
            continue
        levels = text.value_counts().index[:MAX_LEVELS]
        for level in levels:
            parts.append((text == level).fillna(False).astype(float).rename(f"{name}={level}"))
        if text.nunique() > MAX_LEVELS:
            parts.append((~text.isin(levels) & text.notna()).astype(float).rename(f"{name}=other"))
        categorical.append(name)
    X = pd.concat(parts, axis=1) if parts else pd.DataFrame({"constant": np.zeros(len(frame))})
    return X.reset_index(drop=True), {"numeric": numeric, "categorical": categorical, "ignored": ignored}


def run_uplift_backtest(frame: pd.DataFrame, treatment: str, control: str, outcome: str, value: str | None = None,
                        folds: int = DEFAULT_FOLDS, seed: int = 0) -> UpliftBacktest:
    """Cross-fitted uplift backtest of every treated arm against `control`."""
    _require_columns(frame, {"--treatment": treatment, "--outcome": outcome, "--value": value})
    if frame.empty:
        raise UpliftInputError("the file has no rows")
    frame = frame.reset_index(drop=True)
    arms = arm_labels(frame[treatment], str(control))
    y = binary_outcome(frame[outcome])
    values = row_values(frame[value], y) if value else None
    sizes = pd.Series(arms).value_counts()
    if sizes.min() < 2 * folds:
        raise UpliftInputError(f"arm {sizes.idxmin()!r} has {int(sizes.min())} rows; cross-fitting with {folds} "
                               f"folds needs at least {2 * folds} per arm")
    X, described = infer_features(frame, [c for c in frame.columns if c not in (treatment, outcome, value)])
    fit = cross_fit_uplift(X, arms, y, control, folds=folds, seed=seed)
    shares = (sizes / len(arms)).to_dict()

    report_arms, curves = {}, {}
    for arm in fit.treatments:
        rows = (arms == arm) | (arms == control)
        t = arms[rows] == arm
        entry = {"ate": ate(t, y[rows])}
        if values is not None:
            entry["ate_value"] = ate(t, (y * values)[rows])
        curves[arm] = {}
        for learner in LEARNERS:
            u = fit.uplift[learner][arm].to_numpy()[rows]
            entry[learner] = ranking_report(u, t, y[rows])
            curves[arm][learner] = qini_curve(u, t, y[rows])
        report_arms[arm] = entry

    policies = {}
    targets = {"conversions": y} if values is None else {"conversions": y, "value": y * values}
    for unit, target in targets.items():
        outcomes = fit.outcomes if unit == "conversions" else fit.outcomes.mul(values, axis=0)
        scores = aipw_scores(arms, target, outcomes, shares)
        unit_policies = {"nobody": policy_value(scores, np.full(len(y), control))}
        for arm in fit.treatments:
            unit_policies[f"everyone_{arm}"] = policy_value(scores, np.full(len(y), arm), baseline=control)
        for learner in LEARNERS:
            choice = best_arm(fit.uplift[learner], control, values if unit == "value" else None)
            unit_policies[f"best_arm_{learner}"] = policy_value(scores, choice, baseline=control)
        policies[f"per_customer_{unit}"] = unit_policies

    predictions = frame[[c for c in frame.columns if c in described["ignored"]
                         and described["ignored"][c].startswith("identifier")]].copy()
    predictions.insert(0, "row", np.arange(len(frame)))
    predictions[treatment] = frame[treatment]
    predictions[outcome] = y.astype(int)
    predictions["fold"] = fit.fold
    for arm in fit.treatments:
        predictions[f"uplift_{arm}"] = fit.uplift["dr_learner"][arm].to_numpy()
        predictions[f"uplift_t_learner_{arm}"] = fit.uplift["t_learner"][arm].to_numpy()
    predictions["best_arm"] = best_arm(fit.uplift["dr_learner"], control, values)

    report = {
        "rows": int(len(frame)), "treatment": treatment, "control": str(control), "outcome": outcome, "value": value,
        "arms": {arm: int(n) for arm, n in sizes.items()}, "folds": folds, "features": described,
        "learners": {"t_learner": "one HistGradientBoosting outcome model per arm",
                     "dr_learner": "doubly robust pseudo-outcome regression (known randomized shares)"},
        "per_arm": report_arms,
        "policy_value": policies,
        "notes": "Figures are per customer; Qini/AUUC/top-k use out-of-fold predictions from K-fold "
                 "cross-fitting; policy values are AIPW estimates with 95% CIs; --predictions uses dr_learner.",
    }
    return UpliftBacktest(report=report, predictions=predictions, curves=curves)


def plot_qini(curves: dict, path: str | Path, title: str = "Qini curves (out-of-fold)") -> Path:
    """Write a PNG with every arm's Qini curve per learner and the random-targeting line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for arm, by_learner in curves.items():
        for learner, (x, q) in by_learner.items():
            step = max(1, len(x) // 500)
            ax.plot(x[::step], q[::step], label=f"{arm} · {learner}")
        ax.plot([0, 1], [0, q[-1]], linestyle="--", color="grey", linewidth=1)
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_xlabel("share of customers targeted (highest predicted uplift first)")
    ax.set_ylabel("incremental outcomes per customer")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

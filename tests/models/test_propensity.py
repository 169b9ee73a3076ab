"""Propensity training, metrics and drift as plain functions (no Dagster, no warehouse).

A synthetic weekly panel stands in for customer_features + customer_labels: churn
is planted on a few features, and the rules baseline flags only part of the
customers who churn, so a model that learns the features must beat it.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from dagster_project.models import propensity as P
from dagster_project.models.propensity_assets import predicted_value, score_customers


def weekly_panel(customers: int = 500, weeks: int = 34, seed: int = 0) -> pd.DataFrame:
    """customer_features-shaped rows with churn / skip / upgrade / discount labels planted on features."""
    rng = np.random.default_rng(seed)
    start = date(2025, 1, 6)
    rows = []
    risk = rng.normal(0, 1, customers)  # a latent trait the features reveal noisily
    for week in range(weeks):
        engagement = np.maximum(0, rng.poisson(6, customers) - 3 * (risk > 1))
        skips = rng.poisson(np.exp(0.3 * risk), customers)
        attempts = rng.binomial(1, 1 / (1 + np.exp(-(risk - 2))), customers)
        logit = -3.2 + 1.3 * risk + 0.6 * attempts
        rows.append(pd.DataFrame({
            "as_of_date": start + timedelta(weeks=week), "customer_id": [f"C{i}" for i in range(customers)],
            "is_scoring_point": False, "is_subscriber": True, "is_active_subscriber": True, "is_gift": False,
            "engagement_4w": engagement, "skips_13w": skips, "cancel_attempts_4w": attempts,
            "engagement_trend_ratio": np.exp(-0.6 * risk + rng.normal(0, 0.3, customers)),
            "tenure_days": rng.integers(30, 400, customers),
            "cadence_days": rng.choice([14, 28], customers), "average_order_value": 20.0,
            "rule_at_risk": attempts > 0, "rule_cadence_mismatch": skips >= 2, "rule_expansion": False,
            "churned": rng.random(customers) < 1 / (1 + np.exp(-logit)),
            "skipped_next_order": rng.random(customers) < 1 / (1 + np.exp(-(-2 + 0.6 * skips))),
            "upgraded_or_added_item": rng.random(customers) < 1 / (1 + np.exp(-(-2.5 + 0.2 * engagement))),
            "converted_on_discount": np.where(rng.random(customers) < 0.1,
                                              rng.random(customers) < 1 / (1 + np.exp(-risk)), None),
        }))
    return pd.concat(rows, ignore_index=True)


@pytest.fixture(scope="module")
def panel() -> pd.DataFrame:
    return weekly_panel()


@pytest.fixture(scope="module")
def churn(panel):
    return P.train_propensity(panel, "churn", max_iter=60)


def test_time_split_validates_on_the_latest_weeks_after_a_label_window_gap(panel):
    split = P.time_split(panel["as_of_date"])
    assert split.validation_end == panel["as_of_date"].max()
    assert (split.validation_end - split.validation_start).days == 7 * (P.VALIDATION_WEEKS - 1)
    assert (split.validation_start - split.train_end).days > P.LABEL_WINDOW_DAYS
    assert split.train_start <= split.calibrate_start <= split.train_end


def test_too_little_history_is_a_clear_error(panel):
    with pytest.raises(ValueError, match="weekly as_of dates"):
        P.train_propensity(panel[panel["as_of_date"] < date(2025, 3, 1)], "churn")


def test_model_beats_the_rules_baseline_with_calibrated_probabilities(churn):
    m = churn.metrics
    assert m["validation"]["roc_auc"] > 0.75 > m["rules"]["roc_auc"]
    assert m["validation"]["pr_auc"] > m["rules"]["pr_auc"]
    assert m["validation"]["brier"] < m["rules"]["brier"]
    assert churn.passed and set(m["gate"]["checks"]) == {"auc_floor", "beats_rules", "feature_drift"}
    # calibrated: across bins the predicted rate tracks the observed one
    table = m["validation"]["calibration"]
    assert 5 <= len(table) <= P.CALIBRATION_BINS  # fewer when a tied prediction spans more than a bin
    assert np.mean([abs(b["mean_predicted"] - b["observed_rate"]) for b in table]) < 0.05
    assert table[-1]["observed_rate"] > 3 * table[0]["observed_rate"]


def test_gate_fails_a_model_below_the_floor_or_the_rules():
    weak = {"roc_auc": 0.55}
    no_drift = {"passed": True, "max_psi": 0.01, "limit": P.MAX_FEATURE_PSI, "top_features": {}}
    verdict = P.gate(weak, {"roc_auc": 0.6}, no_drift)
    assert not verdict["passed"]
    assert not verdict["checks"]["auc_floor"]["passed"] and not verdict["checks"]["beats_rules"]["passed"]
    assert P.gate({"roc_auc": 0.8}, {"roc_auc": 0.6}, no_drift)["passed"]


def test_metrics_on_known_predictions():
    y = np.array([0, 0, 1, 1])
    perfect = P.classification_metrics(y, np.array([0.1, 0.2, 0.8, 0.9]))
    assert perfect["roc_auc"] == 1.0 and perfect["pr_auc"] == 1.0
    assert perfect["brier"] == pytest.approx((0.01 + 0.04 + 0.04 + 0.01) / 4)
    assert P.classification_metrics(np.zeros(3), np.full(3, 0.2))["roc_auc"] is None  # one class: no AUC


def test_psi_is_zero_for_the_same_customers_and_large_for_a_shift():
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (5000, 1))
    reference = P.feature_reference(x, ["f"])
    assert P.feature_psi(reference, rng.normal(0, 1, (5000, 1)), ["f"])["f"] < 0.02
    assert P.feature_psi(reference, rng.normal(1.5, 1, (5000, 1)), ["f"])["f"] > P.MAX_FEATURE_PSI
    missing = np.full((100, 1), np.nan)  # a feature that stopped arriving is drift too
    assert P.feature_psi(reference, missing, ["f"])["f"] > P.MAX_FEATURE_PSI


def test_scores_are_probabilities_where_the_outcome_applies(panel, churn):
    now = panel[panel["as_of_date"] == panel["as_of_date"].max()].copy()
    now.loc[now.index[:50], ["is_subscriber", "is_active_subscriber"]] = False
    table = score_customers(now, {"churn": ("propensity_churn-test", churn.model)}, pd.Timestamp("2025-11-01"))
    assert list(table.columns)[:2] == ["customer_id", "as_of_date"] and len(table) == len(now)
    assert table["p_churn"].iloc[:50].isna().all()  # not a subscriber: no churn score
    assert table["p_churn"].iloc[50:].between(0, 1).all()
    assert table["p_skip"].isna().all() and table["skip_model_version"].isna().all()  # no skip model yet
    assert (table["churn_model_version"] == "propensity_churn-test").all()
    assert (table["predicted_value_90d"].iloc[:50] == 0).all() and (table["predicted_value_90d"].iloc[50:] > 0).all()


def test_predicted_value_falls_with_churn_and_skip_risk():
    frame = pd.DataFrame({"cadence_days": [30, 30], "average_order_value": [20.0, 20.0],
                          "is_active_subscriber": [True, True]})
    values = predicted_value(frame, np.array([0.0, 0.5]), np.array([0.0, 0.5]))
    assert values[0] == pytest.approx(60.0) and values[1] == pytest.approx(15.0)


def test_tied_predictions_share_a_calibration_bin():
    """Isotonic calibration predicts a few distinct values: rows with the same prediction are one bin,
    not split by their order in the frame into bins whose observed rates are only that order."""
    y = np.r_[np.zeros(50), np.ones(50), np.zeros(80), np.ones(20)]
    p = np.r_[np.full(100, 0.5), np.full(100, 0.2)]
    table = P.calibration_table(y, p)
    assert [(b["customers"], b["mean_predicted"], b["observed_rate"]) for b in table] == [
        (100, pytest.approx(0.2), pytest.approx(0.2)), (100, pytest.approx(0.5), pytest.approx(0.5))]
    assert sum(b["customers"] for b in P.calibration_table(y, np.linspace(0, 1, 200))) == 200
    assert len(P.calibration_table(y, np.linspace(0, 1, 200))) == P.CALIBRATION_BINS

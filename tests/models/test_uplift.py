"""Uplift learners on randomized campaigns shaped like NextBest's past sends (80% treated, 20% held out)."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from dagster_project.models.uplift import LEARNERS, ColumnMedians, cross_fit_uplift, features_used, make_learner
from dagster_project.models.uplift_metrics import calibration_slope, qini_coefficient
from dagster_project.models.uplift_training import train_playbook_model, train_uplift_models


def campaign(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """Features, treated flag, outcome and the planted uplift: 0.3 for heavy add-on buyers, 0 for the rest,
    -0.08 for the least engaged (a reminder backfires), on a baseline that depends on engagement."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"add_ons_lifetime": rng.poisson(1.0, n).astype(float),
                      "engagement_4w": rng.poisson(3.0, n).astype(float),
                      "tenure_days": rng.integers(30, 900, n).astype(float),
                      "noise": rng.normal(size=n)})
    effect = np.where(X["add_ons_lifetime"] >= 2, 0.3, 0.0)
    effect = np.where(X["engagement_4w"] == 0, -0.08, effect)
    treated = rng.random(n) < 0.8
    base = 0.1 + 0.02 * X["engagement_4w"].clip(upper=8)
    y = (rng.random(n) < base + treated * effect).astype(float)
    return X, treated, y, effect


@pytest.mark.parametrize("learner", LEARNERS)
def test_every_learner_ranks_a_planted_effect_on_customers_it_never_saw(learner):
    X, t, y, _ = campaign(4000, seed=1)
    fresh, t_new, y_new, truth = campaign(3000, seed=2)
    model = make_learner(learner, seed=0).fit(X.to_numpy(), t, y)
    predicted = model.predict(fresh.to_numpy())
    assert np.corrcoef(predicted, truth)[0, 1] > 0.6
    assert qini_coefficient(predicted, t_new, y_new) > 0.5 * qini_coefficient(truth, t_new, y_new)
    # The level is right too: routing compares predicted uplift x value with a cost.
    assert abs(predicted[truth == 0.3].mean() - 0.3) < 0.08
    assert abs(predicted[truth == 0.0].mean()) < 0.05
    # Models are stored in the registry as pickles.
    again = pickle.loads(pickle.dumps(model))
    assert np.allclose(again.predict(fresh.to_numpy()), predicted)


def test_x_learner_weights_the_effect_imputed_for_the_small_holdout_most():
    X, t, y, _ = campaign(3000, seed=3)
    model = make_learner("x_learner", seed=0).fit(X.to_numpy(), t, y)
    assert model.propensity == pytest.approx(t.mean())
    rows = X.to_numpy()[:50]
    blended = (model.propensity * model.effect_models[False].predict(rows)
               + (1 - model.propensity) * model.effect_models[True].predict(rows))
    assert np.allclose(model.predict(rows), blended) and model.propensity > 0.7


def test_cross_fitting_gives_every_learner_an_out_of_fold_prediction_per_row():
    X, t, y, truth = campaign(3000, seed=4)
    fit = cross_fit_uplift(X.to_numpy(), np.where(t, "email", "holdout"), y, "holdout", folds=3, seed=0)
    assert set(fit.uplift) == set(LEARNERS) and set(fit.fold) == {0, 1, 2}
    for learner in LEARNERS:
        oof = fit.uplift[learner]["email"].to_numpy()
        assert np.isfinite(oof).all()
        assert qini_coefficient(oof, t, y) > 0, learner
        assert np.corrcoef(oof, truth)[0, 1] > 0.5, learner


def test_a_column_blank_in_one_arm_only_does_not_break_any_learner():
    # e.g. days since cancelling: blank for every customer in the (small) holdout of a campaign.
    X, t, y, _ = campaign(1500, seed=5)
    X["days_since_cancel"] = np.where(t, np.arange(len(t), dtype=float) % 40, np.nan)
    for learner in LEARNERS:
        predicted = make_learner(learner, seed=0).fit(X.to_numpy(), t, y).predict(X.to_numpy())
        assert np.isfinite(predicted).all(), learner


def test_calibration_slope_tells_real_differences_from_noise():
    X, t, y, truth = campaign(6000, seed=5)
    real = calibration_slope(truth, t, y)
    assert abs(real["slope"] - 1) < 2 * real["se"] + 0.1 and real["z"] > 4
    # Twice as spread as the truth: the slope says to halve the differences.
    assert 0.3 < calibration_slope(2 * truth, t, y)["slope"] < 0.7
    noise = calibration_slope(np.random.default_rng(0).normal(0, 0.1, len(y)), t, y)
    assert abs(noise["z"]) < 3
    # Predictions that do not vary tell nothing.
    assert calibration_slope(np.full(len(y), 0.05), t, y)["z"] == 0.0


def test_a_playbook_without_real_differences_is_routed_on_its_measured_average():
    """Same effect for everyone: no learner's differences hold up out of fold, so the model does not
    pass and predicts the measured average for every customer; a planted effect does pass."""
    rng = np.random.default_rng(6)
    n = 3000
    rows = pd.DataFrame({"customer_id": [f"C{i}" for i in range(n)], "opens_4w": rng.poisson(2.0, n).astype(float),
                         "tenure_days": rng.integers(30, 900, n).astype(float), "goal": "retained_60d"})
    rows["treated"] = (rng.random(n) < 0.8).astype(int)
    flat = rows.assign(outcome=(rng.random(n) < 0.6 + 0.05 * rows["treated"]).astype(int))
    model = train_playbook_model(flat, "at_risk_save")
    assert not model.passed
    assert np.allclose(model.predict(flat), model.ate["ate"])
    planted = rows.assign(outcome=(rng.random(n) < 0.2 + 0.4 * rows["treated"] * (rows["opens_4w"] >= 3)).astype(int))
    model = train_playbook_model(planted, "expansion")
    assert model.passed and model.metrics["oof_calibration_train"][model.learner]["z"] >= 2
    predicted = model.predict(planted)
    assert predicted[planted["opens_4w"] >= 3].mean() - predicted[planted["opens_4w"] < 3].mean() > 0.25


def test_playbooks_trained_in_worker_processes_are_the_models_trained_one_by_one():
    rng = np.random.default_rng(8)
    n = 2000
    frames = []
    for playbook, lift in (("expansion", 0.4), ("win_back", 0.0)):
        rows = pd.DataFrame({"customer_id": [f"{playbook}-{i}" for i in range(n)], "playbook_id": playbook,
                             "opens_4w": rng.poisson(2.0, n).astype(float),
                             "tenure_days": rng.integers(30, 900, n).astype(float), "goal": "addon_30d"})
        rows["treated"] = (rng.random(n) < 0.8).astype(int)
        rows["outcome"] = (rng.random(n) < 0.2 + lift * rows["treated"] * (rows["opens_4w"] >= 3)).astype(int)
        frames.append(rows)
    frame = pd.concat(frames, ignore_index=True)
    alone = train_uplift_models(frame, processes=1)
    together = train_uplift_models(frame, processes=2)
    assert list(together) == list(alone) == ["expansion", "win_back"]
    for playbook, model in alone.items():
        other = together[playbook]
        assert (other.learner, other.passed, other.metrics) == (model.learner, model.passed, model.metrics)
        assert np.array_equal(other.predict(frame), model.predict(frame))


def what_if_one_by_one(model, X: np.ndarray, values) -> np.ndarray:
    """Rows x columns: the prediction with column j set to values[j], one predict call per column."""
    out = np.empty(X.shape)
    for j, value in enumerate(values):
        changed = X.copy()
        changed[:, j] = value
        out[:, j] = model.predict(changed)
    return out


@pytest.mark.parametrize("binary", [True, False])
def test_the_linear_learner_computes_every_what_if_at_once_as_one_by_one(binary):
    X, t, y, _ = campaign(3000, seed=5)
    X = X.to_numpy(copy=True)
    X[::7, 2] = np.nan  # blanks are imputed as in predict
    model = make_learner("interaction_learner", binary=binary, seed=0).fit(X, t, y if binary else y * 30.0)
    rows, values = X[:200], [0.0, 3.0, np.nan, 9.0]  # a NaN value: a blank, imputed as predict imputes it
    assert np.allclose(model.predict_with_each(rows, values), what_if_one_by_one(model, rows, values), atol=1e-12)


@pytest.mark.parametrize("learner", ["t_learner", "x_learner", "dr_learner"])
@pytest.mark.parametrize("binary", [True, False])
def test_tree_learners_compute_every_what_if_tree_by_tree_as_one_by_one(learner, binary):
    X, t, y, _ = campaign(3000, seed=5)
    X = X.to_numpy(copy=True)
    X[::7, 2] = np.nan  # blanks go down the trees' missing-value branches, as in predict
    model = make_learner(learner, binary=binary, seed=0).fit(X, t, y if binary else y * 30.0)
    rows = X[:300]
    for values in ([0.0, 3.0, np.nan, 9.0], [np.nan] * 4):  # a NaN value: a blank, down the missing-value branch
        each = model.predict_with_each(rows, values)
        assert each.shape == rows.shape
        assert np.allclose(each, what_if_one_by_one(model, rows, values), rtol=0, atol=1e-12)
    assert not np.allclose(each, model.predict(rows)[:, None])  # the what-ifs do move predictions


@pytest.mark.parametrize("learner", ["t_learner", "x_learner", "dr_learner", "interaction_learner"])
def test_a_rows_prediction_does_not_depend_on_the_other_rows_in_the_batch(learner):
    X, t, y, _ = campaign(3000, seed=5)
    X = X.to_numpy(copy=True)
    X[::7, 2] = np.nan
    model = make_learner(learner, seed=0).fit(X, t, y)
    rows = X[:200].copy()
    rows[:, 1] = np.nan  # these rows have no value in column 1: blanks, not zeros
    together = model.predict(rows)
    assert np.allclose(together, [model.predict(rows[i:i + 1])[0] for i in range(len(rows))], rtol=0, atol=1e-12)
    mixed = np.vstack([rows, X[200:400]])  # the same rows beside others that have the value
    assert np.allclose(model.predict(mixed)[:200], together, rtol=0, atol=1e-12)
    if learner != "interaction_learner":  # the linear model's blank is its median, which may be ~0 here
        zeros = rows.copy()
        zeros[:, 1] = 0.0
        assert not np.allclose(model.predict(zeros), together)


@pytest.mark.parametrize("learner", ["t_learner", "x_learner", "dr_learner"])
def test_tree_learners_know_which_columns_they_split_on(learner):
    X, t, y, _ = campaign(3000, seed=6)
    X["constant"] = 1.0  # nothing to split on
    model = make_learner(learner, seed=0).fit(X.to_numpy(), t, y)
    used = features_used(model)
    assert used and 4 not in used and used <= {0, 1, 2, 3}
    rows = X.to_numpy()[:200]
    unused = [j for j in range(5) if j not in used]
    assert np.array_equal(what_if_one_by_one(model, rows, [7.0] * 5)[:, unused],
                          np.repeat(model.predict(rows)[:, None], len(unused), axis=1))
    assert features_used(make_learner("interaction_learner", seed=0).fit(X.to_numpy(), t, y)) is None


@pytest.mark.parametrize("learner", ["t_learner", "x_learner", "interaction_learner"])
def test_reason_codes_are_the_largest_what_ifs_whichever_way_they_are_computed(learner, monkeypatch):
    from dagster_project.models import uplift_training

    X, t, y, _ = campaign(4000, seed=7)
    rows = X.assign(customer_id=[f"C{i}" for i in range(len(X))], treated=t.astype(int), outcome=y,
                    goal="conversion")
    model = uplift_training.train_playbook_model(rows, "expansion", seed=0)
    model.passed, model.learner = True, learner
    model.model = make_learner(learner, seed=0).fit(X[model.columns].to_numpy(), t, y)
    fast = model.reasons(X.head(300))
    # The same reasons with every what-if predicted one column at a time.
    monkeypatch.setattr(uplift_training, "features_used", lambda m: None)
    monkeypatch.delattr(type(model.model), "predict_with_each")
    assert model.reasons(X.head(300)) == fast
    heavy = X.head(300)["add_ons_lifetime"].to_numpy() >= 2
    assert sum(r[0].startswith("add_ons_lifetime") for r, h in zip(fast, heavy) if h and r) > 0.5 * heavy.sum()


def test_the_linear_learner_fills_blanks_as_scikit_learns_median_imputer_did():
    """Models saved before `ColumnMedians` hold a `SimpleImputer`: the new one must fill every blank
    with the same value, and an old model must still predict."""
    from sklearn.impute import SimpleImputer

    X, t, y, _ = campaign(3000, seed=8)
    X = X.to_numpy(copy=True)
    X[::5, 1] = np.nan
    X[::2, 3] = np.nan  # an even count of values left: the median is the mean of the middle two
    X[:, 0] = 0.0  # what `_as_array` makes of a column without values
    model = make_learner("interaction_learner", seed=0).fit(X, t, y)
    sklearn_fit = SimpleImputer(strategy="median", keep_empty_features=True).fit(X)
    assert np.array_equal(model.imputer.statistics_, sklearn_fit.statistics_)
    rows = X[:300].copy()
    rows[:, 0] = np.nan  # a blank where training had none
    assert np.array_equal(model.imputer.transform(rows), sklearn_fit.transform(rows))
    blank = X[:50].copy()
    blank[:, 2] = np.nan  # a column without values (which `_as_array` spares the learner): its median is 0
    empty_fit = SimpleImputer(strategy="median", keep_empty_features=True).fit(blank)
    assert np.array_equal(ColumnMedians.fit(blank).statistics_, empty_fit.statistics_)
    assert ColumnMedians.fit(blank).statistics_[2] == 0.0
    old = pickle.loads(pickle.dumps(model))
    old.imputer = sklearn_fit
    assert np.array_equal(old.predict(rows), model.predict(rows))
    assert np.array_equal(old.predict_with_each(rows, [1.0, np.nan, 2.0, 0.5]),
                          model.predict_with_each(rows, [1.0, np.nan, 2.0, 0.5]))

"""Uplift meta-learners on scikit-learn: who is moved by a message, and by how much.

Pure functions and small picklable model classes; no database, no Dagster.

- `TLearner`: one gradient-boosted outcome model per arm; uplift = mu1(x) - mu0(x).
- `DRLearner`: doubly robust (Kennedy 2023). Outcome models are cross-fitted
  inside the training rows, the pseudo-outcome
  psi = mu1 - mu0 + t (y - mu1) / e - (1 - t) (y - mu0) / (1 - e)
  is regressed on x. In a randomized experiment the propensity e is the
  known treatment share, so psi is unbiased even where the outcome models are
  poor; the regression only has to find who differs.
- `XLearner` (Kunzel et al. 2019): each arm's rows get an imputed effect from
  the other arm's outcome model (a model that never saw them), one effect
  model per arm, blended by the treatment share. Suits past campaigns, where
  the holdout is a fifth of the treated arm: the big arm's effect model does
  most of the work and gets most of the weight.
- `InteractionLearner` (Lo 2002): one regularised logistic (or ridge) model of
  the outcome on x, the treatment and treatment x x. Smooth effects that move
  with a few features (a discount that works more the more price-sensitive the
  customer) are one coefficient each here, where boosted trees on a few
  thousand noisy rows mostly see noise.
- `cross_fit_uplift`: K-fold out-of-fold uplift per treatment arm, the basis
  for honest Qini / AUUC and policy values (`uplift_metrics.py`).


Binary outcomes use calibrated-enough boosted classifiers (log loss); the
learners take numeric feature matrices (NaN allowed).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

from dagster_project.models.clv_gbm import GBM_THREADS

LEARNERS = ("t_learner", "dr_learner", "x_learner", "interaction_learner")
DEFAULT_FOLDS = 5
# Shallow, strongly regularised trees: uplift is a small difference of two
# probabilities, and deep trees mostly fit the noise in each arm.
OUTCOME_PARAMS = dict(max_iter=60, learning_rate=0.1, max_leaf_nodes=15, min_samples_leaf=40,
                      l2_regularization=1.0)
EFFECT_PARAMS = dict(max_iter=50, learning_rate=0.08, max_leaf_nodes=8, min_samples_leaf=80,
                     l2_regularization=2.0)
# Inverse L2 strength of the interaction learner on standardised features: strong, as uplift is small.
INTERACTION_C = 0.05
# Below this many rows (or outcomes) in an arm an outcome model is the arm's mean.
MIN_ROWS_FOR_MODEL = 30


class _ConstantModel:
    """Predicts the training mean: the fallback for a sliver of data."""

    def __init__(self, value: float):
        self.value = float(value)

    def predict_proba(self, X) -> np.ndarray:
        p = np.full(len(X), self.value)
        return np.column_stack([1 - p, p])

    def predict(self, X) -> np.ndarray:
        return np.full(len(X), self.value)


def _outcome_model(X: np.ndarray, y: np.ndarray, binary: bool, seed: int):
    if len(y) < MIN_ROWS_FOR_MODEL or (binary and min(y.sum(), len(y) - y.sum()) < 5):
        return _ConstantModel(y.mean() if len(y) else 0.0)
    cls = HistGradientBoostingClassifier if binary else HistGradientBoostingRegressor
    X = _as_array(X)
    with threadpool_limits(GBM_THREADS):
        return cls(random_state=seed, **OUTCOME_PARAMS).fit(X, y)


def _predict_outcome(model, X: np.ndarray, binary: bool) -> np.ndarray:
    if binary:
        return model.predict_proba(X)[:, 1]
    return model.predict(X)


def _as_array(X) -> np.ndarray:
    X = np.array(X, dtype=float)
    # A column with no values at all (e.g. days since cancelling, among the never-cancelled)
    # breaks histogram binning; as zeros it carries the same (no) information.
    if X.ndim == 2 and len(X):
        X[:, np.isnan(X).all(axis=0)] = 0.0
    return X


def _as_rows(X) -> np.ndarray:
    """Rows to predict, as given: a blank stays blank (the trees' missing-value branch, the linear
    model's imputed median), so each row's prediction is its own whatever else is in the batch.
    (`_as_array`'s zeros are for training: a batch of rows without one column's values would
    otherwise be predicted as if they had zeros there.)"""
    return np.array(X, dtype=float)


def _with_each(model, X: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Rows x columns: `model`'s output (`_predict_outcome`: a classifier's probability, a regressor's
    prediction) for `X` with column j set to `values[j]` and the rest as they are, for every j.

    `X` as `_as_rows` makes it. A boosted model's output is a
    link of the sum of its trees, and setting column j changes only the trees that split on it: each
    tree is evaluated again once per column it splits on, not once per column of the table (at 1M
    customers, reason codes predicted every column of every routed customer with every tree).
    Another model (a constant, or boosted trees whose scikit-learn internals are not there) is
    predicted once per column.
    """
    n, p = X.shape
    if isinstance(model, _ConstantModel):
        return np.full((n, p), model.value)
    try:  # scikit-learn's own tree arrays and link, as in `features_used`: not a public API
        from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

        if model.n_trees_per_iteration_ != 1:
            raise TypeError("several trees per iteration")
        trees = [tree for iteration in model._predictors for tree in iteration]
        splits = [np.unique(tree.nodes["feature_idx"][tree.nodes["is_leaf"] == 0]) for tree in trees]
        known_categories, feature_map = model._bin_mapper.make_known_categories_bitsets()
        inverse_link = model._loss.link.inverse
        baseline = float(model._baseline_prediction[0, 0])
        X = np.ascontiguousarray(model._preprocess_X(X, reset=False))
        n_threads = _openmp_effective_n_threads()
    except (AttributeError, ImportError, KeyError, TypeError, ValueError):
        out = np.empty((n, p))
        for j in range(p):
            changed = X.copy()
            changed[:, j] = values[j]
            out[:, j] = _predict_outcome(model, changed, isinstance(model, HistGradientBoostingClassifier))
        return out

    def tree_output(i: int, rows: np.ndarray) -> np.ndarray:
        return trees[i].predict(rows, known_categories, feature_map, n_threads)

    # Each tree's output once; summed from the baseline in tree order, as `_raw_predict` sums them.
    base = [tree_output(i, X) for i in range(len(trees))]
    raw = np.full(n, baseline)
    for output in base:
        raw += output
    trees_of = {}
    for i, columns in enumerate(splits):
        for j in columns:
            trees_of.setdefault(int(j), []).append(i)
    raw_each = np.repeat(raw[:, None], p, axis=1)
    changed = X.copy()
    for j, tree_ids in trees_of.items():
        changed[:, j] = values[j]
        for i in tree_ids:
            raw_each[:, j] += tree_output(i, changed) - base[i]
        changed[:, j] = X[:, j]
    return inverse_link(raw_each)


def _effect_model(X: np.ndarray, target: np.ndarray, seed: int):
    """A shallow boosted regressor of an (imputed or pseudo-) effect on x; the mean for a sliver of rows."""
    if len(target) < MIN_ROWS_FOR_MODEL:
        return _ConstantModel(target.mean() if len(target) else 0.0)
    with threadpool_limits(GBM_THREADS):
        # _as_array: one arm's rows may have a column with no values at all.
        return HistGradientBoostingRegressor(random_state=seed, **EFFECT_PARAMS).fit(_as_array(X), target)


@dataclass
class TLearner:
    """Two outcome models, treated and control; uplift is the difference of their predictions."""

    binary: bool = True
    seed: int = 0
    models: dict = field(default_factory=dict)

    def fit(self, X, t, y) -> "TLearner":
        X, t, y = _as_array(X), np.asarray(t, bool), np.asarray(y, float)
        self.models = {arm: _outcome_model(X[t == arm], y[t == arm], self.binary, self.seed)
                       for arm in (False, True)}
        return self

    def outcomes(self, X) -> tuple[np.ndarray, np.ndarray]:
        """(mu0, mu1): predicted outcome without and with the treatment."""
        X = _as_rows(X)
        return (_predict_outcome(self.models[False], X, self.binary),
                _predict_outcome(self.models[True], X, self.binary))

    def predict(self, X) -> np.ndarray:
        mu0, mu1 = self.outcomes(X)
        return mu1 - mu0

    def predict_with_each(self, X, values) -> np.ndarray:
        """Rows x columns: `predict` with column j set to `values[j]`, for every j (`_with_each`)."""
        X, values = _as_rows(X), np.asarray(values, float)
        return _with_each(self.models[True], X, values) - _with_each(self.models[False], X, values)


@dataclass
class DRLearner:
    """Doubly robust learner with a known propensity (randomized assignment)."""

    binary: bool = True
    seed: int = 0
    inner_folds: int = 2
    propensity: float | None = None
    effect_model: object = None

    def pseudo_outcomes(self, X, t, y) -> np.ndarray:
        """psi per row, from outcome models cross-fitted so no row's psi uses a model that saw it."""
        X, t, y = _as_array(X), np.asarray(t, bool), np.asarray(y, float)
        e = float(t.mean()) if self.propensity is None else self.propensity
        self.propensity = e
        mu0, mu1 = np.zeros(len(y)), np.zeros(len(y))
        folds = StratifiedKFold(self.inner_folds, shuffle=True, random_state=self.seed)
        for train, test in folds.split(X, t.astype(int) * 2 + (y > np.median(y))):
            nuisance = TLearner(self.binary, self.seed).fit(X[train], t[train], y[train])
            mu0[test], mu1[test] = nuisance.outcomes(X[test])
        return mu1 - mu0 + t * (y - mu1) / e - (~t) * (y - mu0) / (1 - e)

    def fit(self, X, t, y) -> "DRLearner":
        psi = self.pseudo_outcomes(X, t, y)
        self.effect_model = _effect_model(_as_array(X), psi, self.seed)
        return self

    def predict(self, X) -> np.ndarray:
        return self.effect_model.predict(_as_rows(X))

    def predict_with_each(self, X, values) -> np.ndarray:
        """Rows x columns: `predict` with column j set to `values[j]`, for every j (`_with_each`)."""
        return _with_each(self.effect_model, _as_rows(X), np.asarray(values, float))


@dataclass
class XLearner:
    """X-learner: effects imputed with the other arm's outcome model, one effect model per arm, blended."""

    binary: bool = True
    seed: int = 0
    propensity: float | None = None
    effect_models: dict = field(default_factory=dict)

    def fit(self, X, t, y, outcome_models: dict | None = None) -> "XLearner":
        """`outcome_models`: {False: mu0, True: mu1} already fitted on these rows' arms (else fitted here)."""
        X, t, y = _as_array(X), np.asarray(t, bool), np.asarray(y, float)
        self.propensity = float(t.mean()) if self.propensity is None else self.propensity
        models = outcome_models or TLearner(self.binary, self.seed).fit(X, t, y).models
        # mu0 never saw a treated row and mu1 never saw a control row: each imputation is out of sample.
        d1 = y[t] - _predict_outcome(models[False], X[t], self.binary)
        d0 = _predict_outcome(models[True], X[~t], self.binary) - y[~t]
        self.effect_models = {True: _effect_model(X[t], d1, self.seed), False: _effect_model(X[~t], d0, self.seed)}
        return self

    def predict(self, X) -> np.ndarray:
        X = _as_rows(X)
        # Weight each arm's effect model by the other arm's share (Kunzel et al.): the effect
        # imputed for the small arm uses the model of the big arm, so it is the more precise one.
        e = self.propensity
        return e * self.effect_models[False].predict(X) + (1 - e) * self.effect_models[True].predict(X)

    def predict_with_each(self, X, values) -> np.ndarray:
        """Rows x columns: `predict` with column j set to `values[j]`, for every j (`_with_each`)."""
        X, values, e = _as_rows(X), np.asarray(values, float), self.propensity
        return (e * _with_each(self.effect_models[False], X, values)
                + (1 - e) * _with_each(self.effect_models[True], X, values))


@dataclass(eq=False)  # no field-wise ==: the field is an array
class ColumnMedians:
    """Fills a blank with its column's median over the training rows (0 for a column without values).

    The same statistics and filled values as scikit-learn's `SimpleImputer(strategy="median",
    keep_empty_features=True)`, which models saved before this class still hold; that one takes
    each column's median over a masked array, sorting it whole (0.8 s per fit on 97k rows x 56
    columns on a busy machine), this one a partial sort per column (0.1 s).
    """

    statistics_: np.ndarray

    @classmethod
    def fit(cls, X: np.ndarray) -> "ColumnMedians":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # "All-NaN slice": such a column's median is 0
            medians = np.nanmedian(X, axis=0) if len(X) else np.full(X.shape[1], np.nan)
        return cls(np.where(np.isnan(medians), 0.0, medians))

    def transform(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=float)  # np.where makes the copy
        return np.where(np.isnan(X), self.statistics_, X)


@dataclass
class InteractionLearner:
    """Outcome on x, t and t * x in one regularised linear model; uplift = f(x, t=1) - f(x, t=0).

    Features are imputed (median) and standardised, and clipped at 5 standard deviations
    so one extreme customer cannot dominate a coefficient.
    """

    binary: bool = True
    seed: int = 0
    C: float = INTERACTION_C
    imputer: object = None
    scale: tuple = ()
    model: object = None

    def _standardised(self, X) -> np.ndarray:
        Z = self.imputer.transform(_as_rows(X))
        mean, sd = self.scale
        return np.clip((Z - mean) / sd, -5.0, 5.0)

    def fit(self, X, t, y) -> "InteractionLearner":
        X, t, y = _as_array(X), np.asarray(t, float), np.asarray(y, float)
        self.imputer = ColumnMedians.fit(X)
        Z = self.imputer.transform(X)
        sd = Z.std(axis=0)
        self.scale = (Z.mean(axis=0), np.where(sd > 0, sd, 1.0))
        Z = self._standardised(X)
        design = np.hstack([Z, t[:, None], Z * t[:, None]])
        if self.binary and 0 < y.sum() < len(y):
            self.model = LogisticRegression(C=self.C, max_iter=2000).fit(design, y)
        elif self.binary:
            self.model = _ConstantModel(y.mean() if len(y) else 0.0)
        else:
            self.model = Ridge(alpha=1.0 / self.C).fit(design, y)
        return self

    def predict(self, X) -> np.ndarray:
        Z = self._standardised(X)
        one = np.ones((len(Z), 1))
        treated, control = np.hstack([Z, one, Z]), np.hstack([Z, 0 * one, 0 * Z])
        if self.binary:
            return self.model.predict_proba(treated)[:, 1] - self.model.predict_proba(control)[:, 1]
        return self.model.predict(treated) - self.model.predict(control)

    def predict_with_each(self, X, values) -> np.ndarray:
        """Rows x columns: the uplift `predict` gives for a row with column j set to `values[j]`
        and the rest as they are, for every j at once (each changes one term of the linear part).
        A NaN value is taken as `predict` takes a blank: as the training median."""
        Z = self._standardised(X)
        if isinstance(self.model, _ConstantModel):
            return np.zeros(Z.shape)
        mean, sd = self.scale
        values = np.asarray(values, float)
        values = np.where(np.isnan(values), self.imputer.statistics_, values)
        moved = np.clip((values - mean) / sd, -5.0, 5.0)[None, :] - Z
        coef, p = np.ravel(self.model.coef_), Z.shape[1]
        base, effect, shift = coef[:p], coef[p + 1:], coef[p] + np.ravel(self.model.intercept_)[0]
        control = (Z @ base + np.ravel(self.model.intercept_)[0])[:, None] + moved * base
        treated = (Z @ (base + effect) + shift)[:, None] + moved * (base + effect)
        if self.binary:
            return expit(treated) - expit(control)
        return treated - control


def make_learner(name: str, binary: bool = True, seed: int = 0, propensity: float | None = None):
    """A fresh learner by name (one of `LEARNERS`)."""
    if name == "t_learner":
        return TLearner(binary=binary, seed=seed)
    if name == "dr_learner":
        return DRLearner(binary=binary, seed=seed, propensity=propensity)
    if name == "x_learner":
        return XLearner(binary=binary, seed=seed, propensity=propensity)
    if name == "interaction_learner":
        return InteractionLearner(binary=binary, seed=seed)
    raise ValueError(f"unknown uplift learner {name!r}; expected one of {LEARNERS}")


def features_used(model) -> set[int] | None:
    """The columns a fitted learner's predictions can depend on: those its boosted trees split on
    (none for a constant); None when that is unknown (a linear model, or a future scikit-learn
    without the trees' node arrays), meaning every column.

    Changing any other column cannot change a prediction, which lets reason codes skip it.
    """
    if isinstance(model, _ConstantModel):
        return set()
    if isinstance(model, (HistGradientBoostingClassifier, HistGradientBoostingRegressor)):
        try:  # the trees' node arrays: scikit-learn's own, not a public API
            return {int(column) for trees in model._predictors for tree in trees
                    for column in tree.nodes["feature_idx"][tree.nodes["is_leaf"] == 0]}
        except (AttributeError, KeyError, TypeError):
            return None
    parts = {TLearner: lambda m: m.models.values(), XLearner: lambda m: m.effect_models.values(),
             DRLearner: lambda m: [m.effect_model]}
    for kind, inner in parts.items():
        if isinstance(model, kind):
            used = set()
            for part in inner(model):
                columns = features_used(part)
                if columns is None:
                    return None
                used |= columns
            return used
    return None


@dataclass
class CrossFit:
    """Out-of-fold predictions for every row, from K-fold cross-fitting.

    `uplift[learner]` has one column per treatment arm (uplift of that arm vs
    control for every row, whatever arm the row was in); `outcomes` has one
    column per arm including control (predicted outcome under that arm);
    `fold` is the fold each row was predicted in.
    """

    control: str
    arms: np.ndarray
    y: np.ndarray
    uplift: dict[str, pd.DataFrame]
    outcomes: pd.DataFrame
    fold: np.ndarray

    @property
    def treatments(self) -> list[str]:
        return [c for c in self.outcomes.columns if c != self.control]


def fold_assignment(arms, y, folds: int, seed: int) -> np.ndarray:
    """Fold number per row, stratified by arm and outcome so every fold sees every arm."""
    y = np.asarray(y, float)
    strata = pd.factorize(pd.Series(np.asarray(arms).astype(str)) + "|"
                          + pd.Series((y > np.median(y)).astype(int)).astype(str))[0]
    fold_of = np.empty(len(y), int)
    for k, (_, test) in enumerate(StratifiedKFold(folds, shuffle=True, random_state=seed).split(strata, strata)):
        fold_of[test] = k
    return fold_of


def cross_fit_uplift(X, arms, y, control, *, learners=LEARNERS, folds: int = DEFAULT_FOLDS,
                     binary: bool = True, seed: int = 0) -> CrossFit:
    """K-fold out-of-fold uplift of every treatment arm vs `control`, for every row.

    Each fold's rows are predicted by models trained on the other K - 1 folds:
    one outcome model per arm (the T-learner is their difference; the X-learner
    imputes effects with them) and, per treatment arm, a DR-learner fitted on
    that arm and control.
    """
    X, y = _as_array(X), np.asarray(y, float)
    arms = np.asarray(arms).astype(str)
    control = str(control)
    names = [control] + sorted(set(arms) - {control})
    fold_of = fold_assignment(arms, y, folds, seed)
    outcomes = pd.DataFrame(0.0, index=range(len(y)), columns=names)
    uplift = {name: pd.DataFrame(0.0, index=range(len(y)), columns=names[1:]) for name in learners}
    for k in range(folds):
        test, train = fold_of == k, fold_of != k
        if not test.any():
            continue
        fitted = {arm: _outcome_model(X[train & (arms == arm)], y[train & (arms == arm)], binary, seed)
                  for arm in names}
        for arm in names:
            outcomes.loc[test, arm] = _predict_outcome(fitted[arm], X[test], binary)
        for arm in names[1:]:
            if "t_learner" in learners:
                uplift["t_learner"].loc[test, arm] = outcomes.loc[test, arm] - outcomes.loc[test, control]
            rows = train & ((arms == arm) | (arms == control))
            t = arms[rows] == arm
            if "x_learner" in learners:
                # The fold's outcome models never saw the fold's rows, nor the other arm's.
                model = XLearner(binary=binary, seed=seed).fit(X[rows], t, y[rows],
                                                               {False: fitted[control], True: fitted[arm]})
                uplift["x_learner"].loc[test, arm] = model.predict(X[test])
            if "dr_learner" in learners:
                model = DRLearner(binary=binary, seed=seed).fit(X[rows], t, y[rows])
                uplift["dr_learner"].loc[test, arm] = model.predict(X[test])
            if "interaction_learner" in learners:
                model = InteractionLearner(binary=binary, seed=seed).fit(X[rows], t, y[rows])
                uplift["interaction_learner"].loc[test, arm] = model.predict(X[test])
    return CrossFit(control, arms, y, uplift, outcomes, fold_of)


def split_customers(ids, test_share: float = 0.3, seed: int = 0) -> np.ndarray:
    """True for rows whose customer is held out for evaluation (all rows of a customer go together)."""
    ids = pd.Series(np.asarray(ids).astype(str))
    unique = ids.unique()
    rng = np.random.default_rng(seed)
    held = set(unique[rng.random(len(unique)) < test_share])
    return ids.isin(held).to_numpy()


__all__ = ["TLearner", "DRLearner", "XLearner", "InteractionLearner", "CrossFit", "cross_fit_uplift", "make_learner", "split_customers",
           "LEARNERS"]

"""Churn risk, predicted 12-month CLV and expected next order date per customer.

`fit_clv(transactions, cutoff)` fits BG/NBD (purchases) and Gamma-Gamma
(spend) with weak priors so small stores work, trains gradient boosting one
horizon back when the store is big enough, and chooses the blend of the two by
an internal backtest (`clv_blend`). `score_clv(model, transactions, day)`
scores the customers' histories up to any day with those fitted pieces, so a
saved model scores later days without a refit. `predict_clv` does both at
the cutoff. Every customer gets:

- p_purchase: probability of at least one purchase in the horizon (90 days by
  default, so this is Klaviyo's "churn risk" complement), with an 80% interval;
  churn_risk = 1 - p_purchase and churn_risk_band low (< 0.33) / medium / high (> 0.66)
- expected_purchases and predicted_spend in the horizon (the backtest's figures;
  scoring for `nextbest.customer_predictions` leaves them out, `volumes=False`)
- predicted_clv_12m: expected spend in the next 365 days (BG/NBD x Gamma-Gamma,
  which extrapolates beyond the horizon), with an 80% interval; historic_clv is
  what they spent so far
- expected_next_order_date: the subscription's next charge date or cadence
  when given, else the cutoff plus the mean wait of an active customer
- confidence low / medium / high: the store's size and history and the width
  of the customer's interval

Every figure of a customer depends on that customer's orders and facts alone,
but for the store's size and history behind `confidence`: a caller scoring a
store in chunks passes them (`StoreHistory`) so each chunk scores as the whole.

A cutoff is a day: every order placed on it, at any time, is history.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from dagster_project.models.clv_bgnbd import BgNbdFit
from dagster_project.models.clv_blend import BlendChoice, choose_blend, with_stacked
from dagster_project.models.clv_gamma_gamma import GammaGammaFit
from dagster_project.models.clv_gbm import predict_gbm
from dagster_project.models.clv_probabilistic import predict_from_fits, probabilistic_predictions
from dagster_project.models.clv_rfm import customer_features

LOW_RISK_BELOW = 0.33
HIGH_RISK_ABOVE = 0.66
# A store below these sizes/histories cannot get more than this confidence.
STORE_CONFIDENCE = (("low", 200, 90), ("medium", 1000, 180))  # (label, customers, history days)
# An 80% interval on p_purchase wider than this caps the customer's confidence.
INTERVAL_CONFIDENCE = (("low", 0.30), ("medium", 0.15))
LEVELS = ("low", "medium", "high")
# Bumped when ClvModel or the booster's features change: saved models of another format are retrained.
MODEL_FORMAT = 2


@dataclass
class ClvModel:
    """What `fit_clv` learned from the history up to `cutoff`; `score_clv` scores any day with it."""

    cutoff: pd.Timestamp  # the last day of the training history
    horizon_days: int
    purchase: BgNbdFit
    spend: GammaGammaFit
    choice: BlendChoice
    prior_scale: float | None
    interval_draws: int
    seed: int
    model_format: int

    @property
    def method(self) -> str:
        """bgnbd, gbm or blend: what the purchase probability comes from."""
        return self.choice.method

    def summary(self) -> dict:
        """How the model was made: method, blend weights and why, validation, fitted parameters."""
        return {
            "trained_cutoff": str(self.cutoff.date()),
            "horizon_days": self.horizon_days,
            "method": self.method,
            "gbm_weight_purchase": self.choice.purchase_weight,
            "gbm_weight_volume": self.choice.volume_weight,
            "why": self.choice.reason,
            "validation": self.choice.validation,
            "gbm_features": self.choice.features,
            "bgnbd": self.purchase.params.as_dict(),
            "gamma_gamma": self.spend.params.as_dict(),
            "gamma_gamma_customers": self.spend.n_customers,
            "prior_scale": self.prior_scale,
        }


@dataclass(frozen=True)
class StoreHistory:
    """The store-wide figures behind `confidence`, as of a scoring day."""

    customers: int  # customers with a purchase on or before the day
    history_days: int  # from the store's first purchase to the day

    @classmethod
    def of(cls, features: pd.DataFrame) -> StoreHistory:
        """The figures of the customers in `features` (`clv_rfm.customer_features`), taken as the whole store."""
        return cls(customers=int(len(features)), history_days=int(features["T"].max()))


@dataclass
class ClvResult:
    """Per-customer predictions (indexed by customer_id) and how they were made."""

    predictions: pd.DataFrame
    summary: dict


def fit_clv(transactions: pd.DataFrame, cutoff, horizon_days: int = 90, *,
            training_extras: pd.DataFrame | None = None, prior_scale: float | None = 1.0,
            interval_draws: int = 40, use_gbm: bool = True, seed: int = 0) -> ClvModel:
    """Fit on every order placed on or before the day `cutoff`.

    transactions: customer_id, date (datetime64), amount. training_extras:
    optional per-customer facts as of one horizon before the cutoff, indexed by
    customer_id; the numeric ones (cadence_days, skips, is_subscriber, ...)
    become boosting features, and scoring should pass the same columns.
    """
    cutoff = pd.Timestamp(cutoff).normalize()
    features = customer_features(transactions, cutoff)
    if features.empty:
        raise ValueError(f"no purchases on or before the cutoff {cutoff.date()}")
    probabilistic = probabilistic_predictions(features, horizon_days, prior_scale)
    if use_gbm:
        choice = choose_blend(transactions, cutoff, horizon_days, prior_scale, _numeric(training_extras), seed)
    else:
        choice = BlendChoice(reason="gradient boosting switched off")
    return ClvModel(cutoff=cutoff, horizon_days=horizon_days, purchase=probabilistic.purchase,
                    spend=probabilistic.spend, choice=choice, prior_scale=prior_scale,
                    interval_draws=interval_draws, seed=seed, model_format=MODEL_FORMAT)


def score_clv(model: ClvModel, transactions: pd.DataFrame, day=None,
              customer_extras: pd.DataFrame | None = None, store: StoreHistory | None = None,
              volumes: bool = True) -> ClvResult:
    """Predict for every customer with a purchase on or before `day` (default: the model's cutoff).

    customer_extras: per-customer facts as of `day`, indexed by customer_id:
    the numeric ones feed the booster, `next_charge_date` and `cadence_days`
    set the next order date. store: the whole store's figures when
    `transactions` holds only some of its customers (a chunk); default, those
    customers are the store. `volumes=False` leaves out expected_purchases and
    predicted_spend (and the booster's two regressors behind them), which
    `nextbest.customer_predictions` does not keep; every other figure is the same.
    """
    cutoff = pd.Timestamp(model.cutoff if day is None else day).normalize()
    features = customer_features(transactions, cutoff)
    if features.empty:
        raise ValueError(f"no purchases on or before {cutoff.date()}")
    horizon_days, choice = model.horizon_days, model.choice
    bg = predict_from_fits(model.purchase, model.spend, features, horizon_days, model.interval_draws, model.seed)
    boosted = None
    if choice.booster is not None:
        boosted = predict_gbm(choice.booster, with_stacked(features, bg, _numeric(customer_extras)), volumes)

    def blend(column: str, weight: float) -> pd.Series:
        return bg[column] if boosted is None or weight == 0.0 else weight * boosted[column] + (1 - weight) * bg[column]

    out = pd.DataFrame(index=features.index)
    out["p_purchase"] = blend("p_purchase", choice.purchase_weight)
    if model.interval_draws:
        # Parameter-uncertainty widths of BG/NBD, carried over to the blend.
        out["p_purchase_low"] = (out["p_purchase"] - (bg["p_purchase"] - bg["p_purchase_low"])).clip(0, 1)
        out["p_purchase_high"] = (out["p_purchase"] + (bg["p_purchase_high"] - bg["p_purchase"])).clip(0, 1)
    out["churn_risk"] = 1.0 - out["p_purchase"]
    out["churn_risk_band"] = churn_risk_band(out["churn_risk"])
    out["p_alive"] = bg["p_alive"]
    if volumes:
        out["expected_purchases"] = blend("purchases", choice.volume_weight)
        out["predicted_spend"] = blend("spend", choice.volume_weight)
    out["predicted_clv_12m"] = bg["clv_12m"]
    if model.interval_draws:
        out["predicted_clv_12m_low"] = bg["clv_12m_low"]
        out["predicted_clv_12m_high"] = bg["clv_12m_high"]
    out["historic_clv"] = features["historic_spend"]
    out["last_order_date"] = _date_of(features["last_day"])
    out["expected_next_order_date"] = expected_next_order_date(
        out["last_order_date"], cutoff, bg["days_to_next"], customer_extras)

    store = store or StoreHistory.of(features)
    summary = scoring_summary(model, cutoff, store)
    width = (out["p_purchase_high"] - out["p_purchase_low"]) if model.interval_draws else None
    out["confidence"] = customer_confidence(summary["store_confidence"], width, index=out.index)
    out["method"] = model.method
    out["horizon_days"] = horizon_days
    return ClvResult(predictions=out, summary=summary)


# A scoring worker process's model, as-of date and store figures (`keep_for_scoring`), sent to it once.
_KEPT: dict = {}


def keep_for_scoring(model: ClvModel, day, store: StoreHistory | None) -> None:
    """In a worker process: keep what `score_kept` scores with (the model is not sent with every chunk).

    The boosters predict on one thread there: a worker per core already keeps the cores busy, and
    OpenMP threads that outnumber the cores spin (scoring at 1M took 77 s with two each, not 46).
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)  # for the rest of this worker process
    _KEPT.update(model=model, day=day, store=store)


def score_kept(chunk: tuple[pd.DataFrame, pd.DataFrame | None]) -> pd.DataFrame:
    """`score_clv`'s predictions for one chunk's (transactions, customer_extras), with what `keep_for_scoring` kept
    (the columns `nextbest.customer_predictions` keeps: `volumes=False`)."""
    return score_clv(_KEPT["model"], chunk[0], _KEPT["day"], chunk[1], _KEPT["store"], volumes=False).predictions


def scoring_summary(model: ClvModel, day, store: StoreHistory) -> dict:
    """How a store is scored on `day`: cutoff, the store's customers, history and confidence, the model's summary."""
    return {"cutoff": str(pd.Timestamp(day).date()), "customers": store.customers,
            "history_days": store.history_days,
            "store_confidence": store_confidence(store.customers, store.history_days), **model.summary()}


def predict_clv(transactions: pd.DataFrame, cutoff, horizon_days: int = 90, *,
                customer_extras: pd.DataFrame | None = None, training_extras: pd.DataFrame | None = None,
                prior_scale: float | None = 1.0, interval_draws: int = 40, use_gbm: bool = True,
                seed: int = 0) -> ClvResult:
    """Fit on the history up to the day `cutoff` and score the same day (`fit_clv`, then `score_clv`).

    training_extras defaults to customer_extras, fine for slowly changing
    facts like cadence.
    """
    model = fit_clv(transactions, cutoff, horizon_days,
                    training_extras=customer_extras if training_extras is None else training_extras,
                    prior_scale=prior_scale, interval_draws=interval_draws, use_gbm=use_gbm, seed=seed)
    return score_clv(model, transactions, cutoff, customer_extras)


def churn_risk_band(churn_risk: pd.Series) -> pd.Series:
    """low below 0.33, high above 0.66, medium in between (inclusive)."""
    band = np.where(churn_risk < LOW_RISK_BELOW, "low", np.where(churn_risk > HIGH_RISK_ABOVE, "high", "medium"))
    return pd.Series(band, index=churn_risk.index)


def store_confidence(customers: int, history_days: int) -> str:
    """The best confidence a store of this size and history can support."""
    for label, min_customers, min_days in STORE_CONFIDENCE:
        if customers < min_customers or history_days < min_days:
            return label
    return "high"


def customer_confidence(store_level: str, interval_width: pd.Series | None, index: pd.Index) -> pd.Series:
    """Per customer: the lower of the store's level and what the interval width allows."""
    rank = np.full(len(index), LEVELS.index(store_level))
    if interval_width is not None:
        allowed = np.full(len(index), LEVELS.index("high"))
        for label, wider_than in reversed(INTERVAL_CONFIDENCE):
            allowed = np.where(interval_width.to_numpy() > wider_than, LEVELS.index(label), allowed)
        rank = np.minimum(rank, allowed)
    return pd.Series(np.asarray(LEVELS)[rank], index=index)


def expected_next_order_date(last_order: pd.Series, cutoff: pd.Timestamp, days_to_next: pd.Series,
                             extras: pd.DataFrame | None) -> pd.Series:
    """Next charge date or cadence for subscribers, else cutoff + mean wait if active."""
    guess = cutoff.normalize() + pd.to_timedelta(np.ceil(days_to_next.to_numpy()), unit="D")
    result = pd.Series(guess, index=last_order.index)
    if extras is None:
        return result
    extras = extras.reindex(last_order.index)
    if "cadence_days" in extras:
        cadence = pd.to_numeric(extras["cadence_days"], errors="coerce")
        ok = cadence > 0
        elapsed = (cutoff.normalize() - last_order).dt.days
        steps = np.floor(elapsed / cadence) + 1  # first cycle date after the cutoff
        by_cadence = last_order + pd.to_timedelta((steps * cadence).where(ok, 0), unit="D")
        result = result.where(~ok, by_cadence)
    if "next_charge_date" in extras:
        charge = pd.to_datetime(extras["next_charge_date"], errors="coerce").dt.tz_localize(None).dt.normalize()
        result = result.where(~(charge >= cutoff.normalize()), charge)
    return result


def _numeric(extras: pd.DataFrame | None) -> pd.DataFrame | None:
    if extras is None:
        return None
    return extras.select_dtypes(include=["number", "bool"])


def _date_of(day: pd.Series) -> pd.Series:
    return pd.to_datetime(day.to_numpy().astype("datetime64[D]")).to_series(index=day.index)

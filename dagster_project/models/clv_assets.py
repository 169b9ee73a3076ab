"""The `customer_predictions` asset (group `models`): churn risk, 12-month CLV and next order date.

Weekly retrain, daily scoring, in one asset and one job. Every run scores
every customer with a fulfilled order as of the as-of date (`NEXTBEST_AS_OF`,
else today) and replaces `nextbest.customer_predictions`. Whether it first
trains a new model is decided per run:

- it retrains when no model is registered, when the latest one is
  `MAX_MODEL_AGE_DAYS` or more older than the as-of date (so the daily
  `daily_personalization` job retrains once a week by itself), when the as-of
  date falls before the model's training window ends (replaying an earlier
  day must not use a model that saw later data), or when run config says
  `retrain: true` (the `clv_retrain` job);
- retraining calls `fit_clv` (BG/NBD + Gamma-Gamma, gradient boosting,
  blend picked by an internal backtest), backtests the same recipe one
  horizon back, and registers the fitted `ClvModel` with method, blend
  weights, backtest figures and how many orders it read in
  `nextbest.model_registry`; a registered model saved in an older format
  (`clv.MODEL_FORMAT`) is retrained too. Training reads at most
  `MAX_TRAINING_ORDERS` orders: beyond that, every order of a stable sample
  of customers chosen in the warehouse (`read_key_sample`), so fitting does
  not grow with the store; scoring still reads every customer's orders;
- otherwise the latest registered `ClvModel` scores today's histories with
  its fitted parameters and booster (`score_clv`), so predictions move
  with customers' orders but not with a refit, and every row names the
  `model_version` that made it.

A retrain costs a few seconds on the 8,000-customer demo store, so the weekly
rhythm is about stable, traceable scores rather than compute. Subscription
facts (live subscription, cadence, skips in the last 90 days, cancellations)
are computed point-in-time from staging at both the scoring date and one
horizon back, so the booster never trains on facts from after its window;
`analytics.customer_context` supplies the next charge date.
"""

# No `from __future__ import annotations`: Dagster reads the config and resource annotations.
import base64
import io
from datetime import date, datetime, timedelta, timezone

import dagster as dg
import pandas as pd
from pydantic import Field

from dagster_project.project import default_as_of
from dagster_project.models import registry
from dagster_project.models.clv import MODEL_FORMAT, ClvModel, fit_clv, predict_clv, score_clv
from dagster_project.models.clv_metrics import score_predictions
from dagster_project.models.clv_probabilistic import probabilistic_predictions
from dagster_project.models.clv_rfm import customer_features, outcomes_after
from dagster_project.resources.warehouse import DuckDBWarehouse, KeySample, WarehouseInterface, read_key_sample

MODEL_NAME = "clv"
PREDICTIONS_TABLE = "nextbest.customer_predictions"
HORIZON_DAYS = 90  # p_purchase_90d: Klaviyo's churn-risk window
MAX_MODEL_AGE_DAYS = 7  # weekly retrain
INTERVAL_DRAWS = 40
SEED = 0
# Training reads at most this many fulfilled orders; past it, every order of a stable sample of
# customers. ~100k customers at ~9 orders each: BG/NBD's four parameters are pinned down far
# tighter than a prediction can show, and the blend's backtest gets 100x MIN_VALIDATION_CUSTOMERS.
# A 10k-customer store (~90k orders) is read whole.
MAX_TRAINING_ORDERS = 1_000_000

# Asset-check floors on the backtest (fit one horizon back, score the last 90 days).
# AUC: a random buyer should outrank a random non-buyer at least 70% of the time, or
# the churn bands are close to guessing.
MIN_BACKTEST_AUC = 0.70
# Mean gap between predicted and observed purchase rate across deciles: above 5 points
# a "40% likely to buy" stops meaning roughly 40 of 100 such customers buy. A miss is a
# warning: the ranking (and so the bands' order) can still be sound.
MAX_CALIBRATION_ERROR = 0.05

# nextbest.customer_predictions, column by column (described in models/README.md).
PREDICTION_COLUMNS = {
    "customer_id": "varchar not null",
    "as_of_date": "date not null",
    "p_purchase_90d": "double",
    "p_purchase_90d_low": "double",
    "p_purchase_90d_high": "double",
    "churn_risk": "double",
    "churn_risk_band": "varchar",
    "predicted_clv_12m": "double",
    "predicted_clv_12m_low": "double",
    "predicted_clv_12m_high": "double",
    "expected_next_order_date": "date",
    "historic_clv": "double",
    "confidence": "varchar",
    "method": "varchar",
    "model_version": "varchar not null",
    "scored_at": "timestamp not null",
}
PREDICTIONS_DDL = (f"create or replace table {PREDICTIONS_TABLE} (\n"
                   + ",\n".join(f"    {name} {kind}" for name, kind in PREDICTION_COLUMNS.items()) + "\n)")
OUTPUT = {"p_purchase": "p_purchase_90d", "p_purchase_low": "p_purchase_90d_low",
          "p_purchase_high": "p_purchase_90d_high"}


# --- inputs ---------------------------------------------------------------------------------

ORDERS_SQL = """
select customer_id, ordered_at as date, cast(order_total as double) as amount
from staging.stg_raw__orders
where order_status = 'fulfilled' and ordered_at < ?
"""

# One row per customer with a subscription started before the end of the day `?`.
# A pause cannot be dated from the subscriptions table, so a paused one counts as live
# (as in int_subscriptions_as_of); 'upgraded' is a plan change, not a cancellation.
FACTS_SQL = """
with subscriptions as (
    select *, cancelled_at is null or cancelled_at >= $day_end as is_live
    from staging.stg_raw__subscriptions
    where started_at < $day_end
),
ranked as (
    select *, row_number() over (partition by customer_id
                                 order by case when is_live then 0 else 1 end, started_at desc) as rank
    from subscriptions
),
skips as (
    select customer_id, count(*) as skips_90d
    from staging.stg_raw__orders
    where order_status = 'skipped' and ordered_at >= $window_start and ordered_at < $day_end
    group by customer_id
),
cancellations as (
    select customer_id, count(*) as cancellations
    from subscriptions
    where not is_live and coalesce(cancel_reason, '') <> 'upgraded'
    group by customer_id
)
select ranked.customer_id,
       case when ranked.is_live then 1 else 0 end as is_subscriber,
       case when ranked.is_live then ranked.cadence_days end as cadence_days,
       coalesce(skips.skips_90d, 0) as skips_90d,
       coalesce(cancellations.cancellations, 0) as cancellations
from ranked
left join skips on ranked.customer_id = skips.customer_id
left join cancellations on ranked.customer_id = cancellations.customer_id
where ranked.rank = 1
"""


def load_orders(con, as_of: date) -> pd.DataFrame:
    """Fulfilled orders up to the end of `as_of`: customer_id, date, amount."""
    return con.execute(ORDERS_SQL, [pd.Timestamp(as_of) + pd.Timedelta(days=1)]).df()


def load_training_orders(warehouse: WarehouseInterface, as_of: date,
                         max_orders: int | None = None) -> tuple[pd.DataFrame, KeySample]:
    """The orders to train on, as `load_orders`: all of them, or every order of a stable sample of
    customers when there are more than `max_orders` (MAX_TRAINING_ORDERS)."""
    return read_key_sample(warehouse, ORDERS_SQL, "customer_id",
                           MAX_TRAINING_ORDERS if max_orders is None else max_orders,
                           [pd.Timestamp(as_of) + pd.Timedelta(days=1)])


def subscription_facts(con, day: date) -> pd.DataFrame:
    """is_subscriber, cadence_days, skips_90d, cancellations per customer at the end of `day`."""
    day_end = pd.Timestamp(day) + pd.Timedelta(days=1)
    frame = con.execute(FACTS_SQL, {"day_end": day_end,
                                    "window_start": day_end - pd.Timedelta(days=HORIZON_DAYS)}).df()
    return frame.set_index("customer_id").astype(float)


def next_charge_dates(con) -> tuple[pd.DataFrame, set]:
    """next_charge_date per customer from `analytics.customer_context`, and the as-of dates it was built for."""
    frame = con.execute("select customer_id, as_of_date, next_charge_date from analytics.customer_context").df()
    built_for = set(pd.to_datetime(frame["as_of_date"]).dt.date.dropna())
    dates = pd.to_datetime(frame.set_index("customer_id")["next_charge_date"])
    return dates.to_frame(), built_for


# --- training: fit_clv, backtest, register -------------------------------------------------

def backtest(transactions: pd.DataFrame, facts_at, as_of: date) -> dict:
    """Fit the same recipe one horizon before `as_of`, score it on the days since, beside plain BG/NBD.

    `facts_at(day)` returns subscription facts at the end of `day`. Returns
    {"evaluated": False, "why": ...} when there is no history before the backtest cutoff.
    """
    cutoff_day = as_of - timedelta(days=HORIZON_DAYS)
    cutoff = pd.Timestamp(cutoff_day)
    features = customer_features(transactions, cutoff)
    if features.empty:
        return {"evaluated": False, "why": f"no orders before {cutoff_day}, {HORIZON_DAYS} days before the as-of date"}
    chosen = predict_clv(transactions, cutoff, HORIZON_DAYS, customer_extras=facts_at(cutoff_day),
                         training_extras=facts_at(cutoff_day - timedelta(days=HORIZON_DAYS)),
                         interval_draws=0, seed=SEED)
    baseline = probabilistic_predictions(features, HORIZON_DAYS, prior_scale=None).predictions
    actual = outcomes_after(transactions, cutoff, HORIZON_DAYS, features.index)
    c = chosen.predictions
    return {
        "evaluated": True, "cutoff": str(cutoff_day), "customers": int(len(features)),
        "method": chosen.summary["method"],
        "chosen": score_predictions(c["p_purchase"], c["expected_purchases"], c["predicted_spend"], actual),
        "bgnbd_baseline": score_predictions(baseline["p_purchase"], baseline["purchases"], baseline["spend"], actual),
    }


def retrain_reason(record: registry.RegisteredModel | None, as_of: date, forced: bool) -> str | None:
    """Why this run must train a new model, or None to score with the registered one."""
    if forced:
        return "retrain requested in run config"
    if record is None:
        return "no model registered yet"
    trained_for = record.training_window_end
    if as_of < trained_for:
        return f"as-of date {as_of} is before the registered model's window end {trained_for}"
    if (as_of - trained_for).days >= MAX_MODEL_AGE_DAYS:
        return f"registered model is {(as_of - trained_for).days} days old (retrain every {MAX_MODEL_AGE_DAYS})"
    return None


def is_current(model) -> bool:
    """Was this registered artifact saved by the current `fit_clv` (same `ClvModel` format)?"""
    return isinstance(model, ClvModel) and getattr(model, "model_format", None) == MODEL_FORMAT


def calibration_plot_markdown(figures: dict) -> str:
    """Predicted vs observed purchase rate by decile (backtest), as markdown with an embedded PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
    for name, style in (("chosen", "o-"), ("bgnbd_baseline", "s--")):
        deciles = figures[name]["calibration_by_decile"]
        ax.plot([d["mean_predicted"] for d in deciles], [d["observed_rate"] for d in deciles], style,
                label=f"{name} (AUC {figures[name]['roc_auc'] or 0:.2f})")
    ax.set(xlabel=f"predicted p(purchase in {HORIZON_DAYS}d)", ylabel="observed share that bought",
           xlim=(0, 1), ylim=(0, 1), title=f"Backtest from {figures['cutoff']}")
    ax.legend(loc="upper left", fontsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return f"![calibration by decile](data:image/png;base64,{encoded})"


# --- Dagster ---------------------------------------------------------------------------------

class CustomerPredictionsConfig(dg.Config):
    """Whether this run trains a new model before scoring."""

    retrain: bool = Field(default=False, description=(
        f"Train and register a new model even if the latest is younger than {MAX_MODEL_AGE_DAYS} days."))


@dg.asset(
    group_name="models",
    deps=[dg.AssetKey("stg_raw__orders"), dg.AssetKey("stg_raw__subscriptions"), dg.AssetKey("customer_context")],
    description=f"Churn risk, 12-month CLV and next order date per customer with orders ({PREDICTIONS_TABLE}).",
)
def customer_predictions(context: dg.AssetExecutionContext, config: CustomerPredictionsConfig,
                         warehouse: DuckDBWarehouse) -> dg.MaterializeResult:
    """Score every customer with a fulfilled order; retrain first when the model is due (module docstring)."""
    as_of = date.fromisoformat(default_as_of())
    with warehouse.connect() as con:
        facts_cache = {day: subscription_facts(con, day) for day in
                       (as_of, as_of - timedelta(days=HORIZON_DAYS), as_of - timedelta(days=2 * HORIZON_DAYS))}
        charges, built_for = next_charge_dates(con)
    record = registry.latest_model(warehouse, MODEL_NAME)
    if built_for and built_for != {as_of}:
        context.log.warning(f"analytics.customer_context was built for {sorted(built_for)}, not {as_of}; "
                            "next charge dates before the as-of date are ignored")
    no_orders = f"staging.stg_raw__orders has no fulfilled orders on or before {as_of}; nothing to score"

    reason = retrain_reason(record, as_of, config.retrain)
    if not reason:
        _, model = registry.load_latest(warehouse, MODEL_NAME)
        if not is_current(model):
            reason = f"registered model {record.version} was saved in an older format"
    if reason:
        context.log.info(f"training a new {MODEL_NAME} model: {reason}")
        training, sample = load_training_orders(warehouse, as_of)
        context.log.info(f"training: {sample.describe('fulfilled orders')} "
                         f"(cap MAX_TRAINING_ORDERS={MAX_TRAINING_ORDERS:,})")
        if training.empty:
            raise ValueError(no_orders)
        facts_then = facts_cache[as_of - timedelta(days=HORIZON_DAYS)]
        model = fit_clv(training, as_of, HORIZON_DAYS, training_extras=facts_then, interval_draws=INTERVAL_DRAWS,
                        seed=SEED)
        figures = backtest(training, facts_cache.__getitem__, as_of)
        window_start = training["date"].min().date()
        del training  # scoring reads every customer's orders next; the sample need not stay too

    with warehouse.connect() as con:
        transactions = load_orders(con, as_of)
    if transactions.empty:
        raise ValueError(no_orders)
    extras = facts_cache[as_of].join(charges, how="outer")
    result = score_clv(model, transactions, as_of, extras)
    if reason:
        metrics = {"backtest": figures, "training": {k: v for k, v in result.summary.items() if k != "gbm_features"},
                   "training_read": sample.as_dict()}
        version = registry.register_model(
            warehouse, MODEL_NAME, model, training_window_start=window_start, training_window_end=as_of,
            features=result.summary["gbm_features"], metrics=metrics, method=model.method, notes=reason)
        record_metrics = metrics
    else:
        version, record_metrics = record.version, record.metrics or {}
        context.log.info(f"scored with registered model {version}")
    predictions = result.predictions

    table = to_table(predictions, as_of, version, datetime.now(timezone.utc).replace(tzinfo=None))
    write_predictions(warehouse, table)
    return dg.MaterializeResult(metadata=predictions_metadata(table, record_metrics, version, reason))


def to_table(predictions: pd.DataFrame, as_of: date, version: str, scored_at: datetime) -> pd.DataFrame:
    """The rows of `nextbest.customer_predictions`, in its column order."""
    frame = predictions.rename(columns=OUTPUT).rename_axis("customer_id").reset_index()
    frame["as_of_date"] = as_of
    frame["expected_next_order_date"] = pd.to_datetime(frame["expected_next_order_date"]).dt.date
    frame["model_version"] = version
    frame["scored_at"] = scored_at
    return frame[list(PREDICTION_COLUMNS)]


def write_predictions(warehouse: WarehouseInterface, table: pd.DataFrame) -> None:
    """Replace the contents of `nextbest.customer_predictions` with `table` in one transaction.

    The table is (re)built first when missing or when its columns are not PREDICTION_COLUMNS
    (an older release's); that DDL runs on its own, as Snowflake commits before any DDL.
    """
    schema, name = PREDICTIONS_TABLE.split(".")
    columns = (list(warehouse.read_df(f"select * from {PREDICTIONS_TABLE} where 1 = 0").columns)
               if warehouse.table_exists(schema, name) else None)
    if columns != list(PREDICTION_COLUMNS):
        warehouse.execute(f"create schema if not exists {schema}")
        warehouse.execute(PREDICTIONS_DDL)
    warehouse.write_df(schema, name, table[list(PREDICTION_COLUMNS)], mode="replace")


def predictions_metadata(table: pd.DataFrame, metrics: dict, version: str, retrained: str | None) -> dict:
    """Counts by band and confidence, the backtest figures and the calibration plot."""
    figures = metrics.get("backtest", {})
    metadata = {
        "customers": dg.MetadataValue.int(len(table)),
        "model_version": dg.MetadataValue.text(version),
        "retrained": dg.MetadataValue.text(retrained or "no: scored with the registered model"),
        "method": dg.MetadataValue.text(str(table["method"].iloc[0]) if len(table) else ""),
        "by_churn_risk_band": dg.MetadataValue.json(_counts(table["churn_risk_band"])),
        "by_confidence": dg.MetadataValue.json(_counts(table["confidence"])),
        "predicted_clv_12m_total": dg.MetadataValue.float(float(table["predicted_clv_12m"].sum())),
    }
    if "training_read" in metrics:
        metadata["training_read"] = dg.MetadataValue.json(metrics["training_read"])
    if figures.get("evaluated"):
        for model in ("chosen", "bgnbd_baseline"):
            metadata[f"backtest_{model}"] = dg.MetadataValue.json(
                {k: v for k, v in figures[model].items() if k != "calibration_by_decile"})
        metadata["calibration_plot"] = dg.MetadataValue.md(calibration_plot_markdown(figures))
    else:
        metadata["backtest"] = dg.MetadataValue.text(figures.get("why", "not run"))
    return metadata


def _counts(column: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in column.value_counts().items()}


def _scoring_model_figures(warehouse: DuckDBWarehouse) -> tuple[str | None, dict]:
    """The model version in `nextbest.customer_predictions` and its registered backtest figures."""
    versions = warehouse.read_df(f"select distinct model_version from {PREDICTIONS_TABLE}")["model_version"].tolist()
    record = registry.latest_model(warehouse, MODEL_NAME)
    if record is None or versions != [record.version]:
        return (versions[0] if versions else None), {}
    return record.version, (record.metrics or {}).get("backtest", {})


def _floor_check(warehouse: DuckDBWarehouse, figure: str, limit: float, higher_is_better: bool,
                 severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR) -> dg.AssetCheckResult:
    version, figures = _scoring_model_figures(warehouse)
    if not figures.get("evaluated"):
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN, metadata={
            "model_version": str(version), "why": figures.get("why", "no backtest recorded for this model")})
    value = figures["chosen"][figure]
    passed = value is not None and (value >= limit if higher_is_better else value <= limit)
    return dg.AssetCheckResult(passed=bool(passed), severity=severity, metadata={
        "model_version": version, figure: value, "limit": limit, "backtest_cutoff": figures["cutoff"],
        "bgnbd_baseline": figures["bgnbd_baseline"][figure]})


@dg.asset_check(asset=customer_predictions, description=f"Backtest ROC AUC is at least {MIN_BACKTEST_AUC}.")
def predictions_auc_floor(warehouse: DuckDBWarehouse) -> dg.AssetCheckResult:
    """Does the model rank next-90-day buyers above non-buyers well enough to band them?"""
    return _floor_check(warehouse, "roc_auc", MIN_BACKTEST_AUC, higher_is_better=True)


@dg.asset_check(asset=customer_predictions,
                description=f"Backtest calibration error is at most {MAX_CALIBRATION_ERROR}.")
def predictions_calibration(warehouse: DuckDBWarehouse) -> dg.AssetCheckResult:
    """Do predicted purchase probabilities match the share that bought, decile by decile?"""
    return _floor_check(warehouse, "calibration_error", MAX_CALIBRATION_ERROR, higher_is_better=False,
                        severity=dg.AssetCheckSeverity.WARN)


clv_retrain = dg.define_asset_job(
    name="clv_retrain",
    selection=[customer_predictions],
    config={"ops": {"customer_predictions": {"config": {"retrain": True}}}},
    description="Train, backtest and register a new CLV model now, then rescore every customer.",
)

assets = [customer_predictions]
asset_checks = [predictions_auc_floor, predictions_calibration]
jobs = [clv_retrain]
# No schedule of its own: the daily job retrains once the model is MAX_MODEL_AGE_DAYS old.
schedules: list[dg.ScheduleDefinition] = []

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
  `nextbest.model_registry` before scoring (a run that then fails to score
  leaves a registered model the next run scores with); a registered model
  saved in an older format (`clv.MODEL_FORMAT`) is retrained too. Training
  reads at most `MAX_TRAINING_ORDERS` orders: beyond that, every order (and
  the subscription facts) of a stable sample of customers chosen in the
  warehouse (`read_key_sample`), so fitting does not grow with the store;
- otherwise the latest registered `ClvModel` scores today's histories with
  its fitted parameters and booster (`score_clv`), so predictions move
  with customers' orders but not with a refit, and every row names the
  `model_version` that made it.

Scoring works a chunk of `batch_rows` customers at a time (`NEXTBEST_BATCH_ROWS`,
a range of customer ids), so memory follows the chunk, not the store: the day's
fulfilled orders and subscription facts are copied once into scratch tables
(`clv_inputs.scoring_inputs`), then each range's orders, facts and next charge
dates are read, scored and staged in the warehouse (from `PARALLEL_MIN_CUSTOMERS`
customers, scored in a worker process per core while this one reads the next range
and stages the last), and the staged rows replace the table in one transaction at
the end, so readers (and a run that fails half-way) see the old predictions or all
the new ones. A customer's figures
depend on their own history alone, but for `confidence`, which also weighs the
store's size and history: those are read once for the whole store
(`clv.StoreHistory`), so a chunk scores exactly as one batch would.

A retrain costs a few seconds on the 8,000-customer demo store, so the weekly
rhythm is about stable, traceable scores rather than compute. Subscription
facts (live subscription, cadence, skips in the last 90 days, cancellations)
are computed point-in-time from staging at both the scoring date and one
horizon back, so the booster never trains on facts from after its window;
`analytics.customer_context` supplies the next charge date. All reads are SQL
both DuckDB and Snowflake run, through the warehouse's `read_df`.
"""

# No `from __future__ import annotations`: Dagster reads the config and resource annotations.
import base64
import io
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Iterable, Iterator

import dagster as dg
import pandas as pd
from joblib import delayed
from pydantic import Field

from dagster_project.project import (WAREHOUSE_RUN_TAGS, default_as_of, in_processes, mapped_in_workers,
                                      usable_cores)
from dagster_project.models import registry
from dagster_project.models.clv import (MODEL_FORMAT, ClvModel, StoreHistory, fit_clv, keep_for_scoring, predict_clv,
                                        score_clv, score_kept, scoring_summary)
from dagster_project.models.clv_metrics import score_predictions
from dagster_project.models.clv_inputs import (ORDERS_SQL, ScoringInputs, context_days, scoring_inputs,
                                               subscription_facts)
from dagster_project.models.clv_probabilistic import probabilistic_predictions
from dagster_project.models.clv_rfm import customer_features, end_of_history, outcomes_after
from dagster_project.resources.warehouse import (DuckDBWarehouse, KeyRange, KeySample, WarehouseInterface, column_names,
                                                 read_key_sample)

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
PARALLEL_MIN_ORDERS = 100_000  # from this many training orders, the fit and its backtest run at once

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


# --- training: a bounded read, fit_clv, backtest, register ---------------------------------
# What scoring reads, and how, is in clv_inputs.py.

def load_training_orders(warehouse: WarehouseInterface, as_of: date,
                         max_orders: int | None = None) -> tuple[pd.DataFrame, KeySample]:
    """The orders to train on, as `clv_inputs.load_orders`: all of them, or every order of a stable
    sample of customers when there are more than `max_orders` (MAX_TRAINING_ORDERS)."""
    return read_key_sample(warehouse, ORDERS_SQL, "customer_id",
                           MAX_TRAINING_ORDERS if max_orders is None else max_orders,
                           [end_of_history(as_of)])


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


@dataclass
class PredictionCounts:
    """What the run's metadata reports about every chunk's rows, added up chunk by chunk."""

    customers: int = 0
    method: str = ""
    by_churn_risk_band: Counter = field(default_factory=Counter)
    by_confidence: Counter = field(default_factory=Counter)
    predicted_clv_12m_total: float = 0.0

    def add(self, table: pd.DataFrame) -> None:
        """Count one chunk's rows of `nextbest.customer_predictions` (`to_table`)."""
        if table.empty:
            return
        self.customers += len(table)
        self.method = self.method or str(table["method"].iloc[0])
        # Counted in pandas: iterating a chunk's Arrow strings one by one took ~2.5 s of a 1M-customer run.
        self.by_churn_risk_band.update(table["churn_risk_band"].astype(str).value_counts(dropna=False).to_dict())
        self.by_confidence.update(table["confidence"].astype(str).value_counts(dropna=False).to_dict())
        self.predicted_clv_12m_total += float(table["predicted_clv_12m"].sum())


@dg.asset(
    group_name="models",
    deps=[dg.AssetKey("stg_raw__orders"), dg.AssetKey("stg_raw__subscriptions"), dg.AssetKey("customer_context")],
    description=f"Churn risk, 12-month CLV and next order date per customer with orders ({PREDICTIONS_TABLE}).",
)
def customer_predictions(context: dg.AssetExecutionContext, config: CustomerPredictionsConfig,
                         warehouse: DuckDBWarehouse) -> dg.MaterializeResult:
    """Score every customer with a fulfilled order, a chunk at a time; retrain first when the model is due
    (module docstring)."""
    as_of = date.fromisoformat(default_as_of())
    built_for = context_days(warehouse)
    if built_for and built_for != {as_of}:
        context.log.warning(f"analytics.customer_context was built for {sorted(built_for)}, not {as_of}; "
                            "next charge dates before the as-of date are ignored")
    # kept_open: a few transactions per chunk, each of which would open the file again.
    with warehouse.kept_open(), scoring_inputs(warehouse, as_of) as inputs:
        store = inputs.store(warehouse)
        if store is None:
            raise ValueError(f"staging.stg_raw__orders has no fulfilled orders on or before {as_of}; nothing to score")
        model, version, metrics, reason = model_for_run(warehouse, as_of, store, config.retrain, context.log)
        scored_at = datetime.now(timezone.utc).replace(tzinfo=None)
        counts = PredictionCounts()

        def tables() -> Iterable[pd.DataFrame]:
            for predictions in scored_chunks(warehouse, inputs, model, store, context.log):
                table = to_table(predictions, as_of, version, scored_at)
                counts.add(table)
                yield table

        write_predictions(warehouse, tables())
    return dg.MaterializeResult(metadata=predictions_metadata(counts, metrics, version, reason))


def model_for_run(warehouse: WarehouseInterface, as_of: date, store: StoreHistory, retrain: bool,
                  log) -> tuple[ClvModel, str, dict, str | None]:
    """The model to score with, its version and registry metrics, and why it was trained (None: the registered one).

    A new model is registered before any customer is scored: a run that then fails leaves a model
    the next run scores with, without training again.
    """
    record = registry.latest_model(warehouse, MODEL_NAME)
    reason = retrain_reason(record, as_of, retrain)
    if not reason:
        _, model = registry.load_latest(warehouse, MODEL_NAME)
        if is_current(model):
            log.info(f"scored with registered model {record.version}")
            return model, record.version, record.metrics or {}, None
        reason = f"registered model {record.version} was saved in an older format"
    log.info(f"training a new {MODEL_NAME} model: {reason}")
    model, metrics, window_start = train(warehouse, as_of, store, log)
    version = registry.register_model(
        warehouse, MODEL_NAME, model, training_window_start=window_start, training_window_end=as_of,
        features=model.choice.features, metrics=metrics, method=model.method, notes=reason)
    return model, version, metrics, reason


def train(warehouse: WarehouseInterface, as_of: date, store: StoreHistory, log) -> tuple[ClvModel, dict, date]:
    """Fit and backtest a new model on the orders up to `as_of` (or a sample of customers'): the model, its
    registry metrics, and the first day of its training window."""
    training, sample = load_training_orders(warehouse, as_of)
    log.info(f"training: {sample.describe('fulfilled orders')} (cap MAX_TRAINING_ORDERS={MAX_TRAINING_ORDERS:,})")
    if training.empty:
        raise ValueError(f"staging.stg_raw__orders has no fulfilled orders on or before {as_of}; nothing to train on")
    # Subscription facts one and two horizons back (fit and backtest), for the sampled customers only.
    facts = {day: subscription_facts(warehouse, day, sample=sample)
             for day in (as_of - timedelta(days=HORIZON_DAYS), as_of - timedelta(days=2 * HORIZON_DAYS))}
    fit = delayed(fit_clv)(training, as_of, HORIZON_DAYS, training_extras=facts[as_of - timedelta(days=HORIZON_DAYS)],
                           interval_draws=INTERVAL_DRAWS, seed=SEED)
    tested = delayed(backtest)(training, facts.__getitem__, as_of)
    # The fit and its backtest are independent: on a large history, two worker processes at once
    # (at 100k customers, 975k orders, ~16 and ~19 s). Seeded, so the model is the same either way.
    model, backtested = in_processes([fit, tested], usable_cores() if len(training) >= PARALLEL_MIN_ORDERS else 1)
    summary = {k: v for k, v in scoring_summary(model, as_of, store).items() if k != "gbm_features"}
    metrics = {"backtest": backtested, "training": summary, "training_read": sample.as_dict()}
    return model, metrics, training["date"].min().date()


def read_chunk(warehouse: WarehouseInterface, inputs: ScoringInputs,
               chunk: KeyRange) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One chunk's orders and subscription facts (`score_clv`'s transactions and extras), in one snapshot."""
    with warehouse.transaction() as tx:  # one connection, one snapshot, reads only
        return inputs.read(tx, chunk)


# From this many customers, in two chunks or more, chunks are scored in worker processes (one per
# core) while this process reads the next chunk and stages the last one's rows. Scoring (BG/NBD's
# interval draws, the boosters) is ~30 of the 46 s a day's scoring takes at 1M customers on one core.
PARALLEL_MIN_CUSTOMERS = 50_000


def scored_chunks(warehouse: WarehouseInterface, inputs: ScoringInputs, model: ClvModel, store: StoreHistory,
                  log) -> Iterator[pd.DataFrame]:
    """Each chunk's `score_clv` predictions, in chunk order: in a worker process per core from
    PARALLEL_MIN_CUSTOMERS customers on, else here. The same predictions either way."""
    chunks = inputs.chunks(warehouse, warehouse.batch_rows)
    processes = usable_cores()

    def read() -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
        for i, chunk in enumerate(chunks):
            log.info(f"chunk {i}: {chunk.rows} customers")
            yield read_chunk(warehouse, inputs, chunk)

    if processes > 1 and len(chunks) > 1 and sum(c.rows for c in chunks) >= PARALLEL_MIN_CUSTOMERS:
        yield from mapped_in_workers(score_kept, read(), processes, setup=keep_for_scoring,
                                     setup_args=(model, inputs.as_of, store))
        return
    for transactions, extras in read():
        yield score_clv(model, transactions, inputs.as_of, extras, store, volumes=False).predictions


def to_table(predictions: pd.DataFrame, as_of: date, version: str, scored_at: datetime) -> pd.DataFrame:
    """The rows of `nextbest.customer_predictions`, in its column order."""
    frame = predictions.rename(columns=OUTPUT).rename_axis("customer_id").reset_index()
    frame["as_of_date"] = as_of
    frame["expected_next_order_date"] = pd.to_datetime(frame["expected_next_order_date"]).dt.date
    frame["model_version"] = version
    frame["scored_at"] = scored_at
    return frame[list(PREDICTION_COLUMNS)]


def ensure_predictions_table(warehouse: WarehouseInterface) -> None:
    """Create `nextbest.customer_predictions`, or rebuild it (empty) when its columns are not PREDICTION_COLUMNS
    (an older release's). The DDL runs on its own, as Snowflake commits before any DDL."""
    schema, name = PREDICTIONS_TABLE.split(".")
    columns = (column_names(warehouse, PREDICTIONS_TABLE)
               if warehouse.table_exists(schema, name) else None)
    if columns != list(PREDICTION_COLUMNS):
        warehouse.execute(f"create schema if not exists {schema}")
        warehouse.execute(PREDICTIONS_DDL)


def write_predictions(warehouse: WarehouseInterface, chunks: Iterable[pd.DataFrame] | pd.DataFrame) -> int:
    """Make `nextbest.customer_predictions` hold exactly the rows of `chunks` (or of one DataFrame); rows written.

    Each chunk is staged in the warehouse as it comes (memory holds one); the table's rows are
    replaced in one transaction at the end, so an error before then leaves the old rows in place.
    """
    if isinstance(chunks, pd.DataFrame):
        chunks = [chunks]
    ensure_predictions_table(warehouse)
    schema, name = PREDICTIONS_TABLE.split(".")
    return warehouse.replace_in_chunks(schema, name, chunks, PREDICTION_COLUMNS)


def predictions_metadata(counts: PredictionCounts, metrics: dict, version: str, retrained: str | None) -> dict:
    """Counts by band and confidence over every chunk, the backtest figures and the calibration plot."""
    figures = metrics.get("backtest", {})
    metadata = {
        "customers": dg.MetadataValue.int(counts.customers),
        "model_version": dg.MetadataValue.text(version),
        "retrained": dg.MetadataValue.text(retrained or "no: scored with the registered model"),
        "method": dg.MetadataValue.text(counts.method),
        "by_churn_risk_band": dg.MetadataValue.json(dict(counts.by_churn_risk_band.most_common())),
        "by_confidence": dg.MetadataValue.json(dict(counts.by_confidence.most_common())),
        "predicted_clv_12m_total": dg.MetadataValue.float(counts.predicted_clv_12m_total),
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
    tags=WAREHOUSE_RUN_TAGS,
)

assets = [customer_predictions]
asset_checks = [predictions_auc_floor, predictions_calibration]
jobs = [clv_retrain]
# No schedule of its own: the daily job retrains once the model is MAX_MODEL_AGE_DAYS old.
schedules: list[dg.ScheduleDefinition] = []

"""Propensity models and `nextbest.customer_scores` as Dagster assets (group `models`).

One asset per outcome (`churn_propensity_model`, `skip_propensity_model`,
`upgrade_propensity_model`, `discount_response_propensity_model`) trains on
`analytics.customer_features` + `analytics.customer_labels` (propensity.py) and
registers the model in `nextbest.model_registry` with its validation figures,
the rules baseline, the gate verdicts and how much history it read. Training
reads at most `MAX_TRAINING_READ_ROWS` rows: beyond that, a stable sample of
whole customers chosen in the warehouse (`read_key_sample`), so memory does not
grow with the store; the models one run trains share one read (`training_rows`).
Retraining is weekly: the `propensity_retrain` job (Mondays, config `retrain: true`)
trains every model; the daily job only trains when no model has passed its gate yet (the
first run on a new store), so daily runs keep the registered models.

`customer_scores` then scores every customer at the scoring point (the day
after `as_of`) with the newest version of each model that passed its gate and
learned no outcome after `as_of` (scoring an earlier date retrains rather than
use a later model), and replaces `nextbest.customer_scores`, which dbt reads (source
`nextbest.customer_scores`) to assign at_risk / cadence_mismatch / expansion.
It reads and scores `batch_rows` customers at a time (`NEXTBEST_BATCH_ROWS`),
staging each chunk's scores in the warehouse, and swaps them in with one
transaction: readers see the old scores or the new ones. The table is created
even when there is nothing to score, so dbt never finds it missing after this
asset has run.
"""

import base64
import io
from datetime import date, datetime, timedelta, timezone
from typing import Iterable

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from dagster_project.models import registry
from dagster_project.models.propensity import (LABEL_WINDOW_DAYS, MAX_FEATURE_PSI, MIN_VALIDATION_AUC, OUTCOMES,
                                               PropensityModel, model_name, population, train_propensity)
from dagster_project.project import WAREHOUSE_RUN_TAGS, default_as_of, run_memo
from dagster_project.resources.warehouse import (DuckDBWarehouse, KeySample, WarehouseInterface, column_names,
                                                 read_key_sample)

SCORES_SCHEMA, SCORES_NAME = "nextbest", "customer_scores"
SCORES_TABLE = f"{SCORES_SCHEMA}.{SCORES_NAME}"
METHOD = "hist_gradient_boosting+isotonic"
VALUE_HORIZON_DAYS = 90

# nextbest.customer_scores, column by column (described in the dbt source, _nextbest__sources.yml).
SCORE_COLUMNS = {
    "customer_id": "varchar not null",
    "as_of_date": "date not null",
    "p_churn": "double",
    "p_skip": "double",
    "p_upgrade": "double",
    "p_discount_response": "double",
    "predicted_value_90d": "double",
    "churn_model_version": "varchar",
    "skip_model_version": "varchar",
    "upgrade_model_version": "varchar",
    "discount_response_model_version": "varchar",
    "scored_at": "timestamp not null",
}
SCORES_DDL = (f"create table if not exists {SCORES_TABLE} (\n"
              + ",\n".join(f"    {name} {kind}" for name, kind in SCORE_COLUMNS.items()) + "\n)")

# Training reads at most this many customer-weeks; past it, a stable sample of whole customers
# (all their weeks, so the time split still holds). The booster fits on MAX_TRAINING_ROWS of them;
# the rest calibrate and validate: 800k rows are 10-16k customers' histories, 80k+ validation rows
# (AUC to about +-0.01). Training peaks at ~1.4 KB a row read (measured at 10k customers), so
# ~1.5 GB whatever the store's size; a 10k-customer store (~0.5M rows) is still read whole.
MAX_TRAINING_READ_ROWS = 800_000
TRAINING_SQL = """
select features.*, labels.* exclude (as_of_date, customer_id)
from analytics.customer_features as features
inner join analytics.customer_labels as labels
    on features.as_of_date = labels.as_of_date and features.customer_id = labels.customer_id
where labels.is_window_complete
"""
SCORING_SQL = "select * from analytics.customer_features where is_scoring_point"
# Drift compares the last four weeks of points (a whole monthly campaign cycle, so the
# calendar's phase does not read as drift) with the training window; read as a sample like training.
# Weekly points only, like training: the scoring point covers every customer, the weekly points
# the dbt training sample (var training_customers), a different population above that size.
RECENT_SQL = """
select {columns} from analytics.customer_features
where as_of_date > (select max(as_of_date) from analytics.customer_features) - interval '28 day'
  and not is_scoring_point
"""
# The columns `population` reads, besides a model's features.
POPULATION_COLUMNS = ("is_subscriber", "is_gift", "is_active_subscriber")
# Drift reads fewer rows than training: a bin of 1% still holds 2,000 of them, and PSI needs no
# more. At 1M customers (1M recent rows) 800k rows took 4.5 s per model, 200k 2.2 s, and the
# largest PSI moved in the third decimal (0.151 both ways).
MAX_DRIFT_READ_ROWS = 200_000


# --- registry: the newest version that passed its gate -----------------------------------------

def learned_after(record: registry.RegisteredModel, as_of: date) -> bool:
    """True when a version learned from outcomes after `as_of`: its training weeks' labels (the
    LABEL_WINDOW_DAYS after each) run past it, as when an earlier as-of date is scored (NEXTBEST_AS_OF)."""
    end = record.training_window_end
    return end is None or end + timedelta(days=LABEL_WINDOW_DAYS) > as_of


def newest_passing(warehouse: WarehouseInterface, name: str,
                   as_of: date | None = None) -> registry.RegisteredModel | None:
    """The most recently trained version of `name` whose gate passed (metrics.gate.passed), or None;
    with `as_of`, only versions that learned nothing after it (`learned_after`)."""
    for record in registry.registered_versions(warehouse, name):
        if (record.metrics or {}).get("gate", {}).get("passed") and (as_of is None
                                                                      or not learned_after(record, as_of)):
            return record
    return None


def retrain_reason(forced: bool, passing: registry.RegisteredModel | None) -> str | None:
    """Why this run trains, or None to keep the registered model (weekly retrain is the job's)."""
    if forced:
        return "retrain requested (weekly propensity_retrain job or run config)"
    if passing is None:
        return "no registered version has passed its checks yet (on outcomes up to the as-of date)"
    return None


def run_as_of() -> date:
    """The as-of date of this run (`NEXTBEST_AS_OF`, else today), as dbt builds customer_features for."""
    return date.fromisoformat(default_as_of())


# --- metadata ---------------------------------------------------------------------------------

def calibration_plot_markdown(metrics: dict) -> str:
    """Predicted vs observed rate per bin on the validation weeks, model and rules, as an embedded PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
    top = max([b["mean_predicted"] for b in metrics["validation"]["calibration"]]
              + [b["observed_rate"] for b in metrics["validation"]["calibration"]] + [0.05])
    ax.plot([0, top], [0, top], color="grey", linestyle=":", label="perfect calibration")
    for part, style, label in (("validation", "o-", "model"), ("rules", "s--", "rules baseline")):
        table = metrics[part]["calibration"]
        auc = metrics[part]["roc_auc"]
        ax.plot([b["mean_predicted"] for b in table], [b["observed_rate"] for b in table], style,
                label=f"{label} (ROC AUC {auc:.2f})" if auc is not None else label)
    ax.set(xlabel=f"predicted p({metrics['label']})", ylabel="observed rate",
           title=f"{metrics['outcome']}: validation {metrics['split']['validation_start']}"
                 f"..{metrics['split']['validation_end']}")
    ax.legend(loc="upper left", fontsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return f"![calibration](data:image/png;base64,{encoded})"


def model_metadata(version: str | None, metrics: dict | None, retrained: str | None) -> dict:
    """Figures a marketer or engineer reads on the asset: metrics beside the rules, gate, plot."""
    metadata = {"model_version": dg.MetadataValue.text(version or "none"),
                "retrained": dg.MetadataValue.text(retrained or "no: kept the registered model")}
    if not metrics:
        return metadata
    headline = ("roc_auc", "pr_auc", "brier", "base_rate", "rows", "positives")
    metadata["validation"] = dg.MetadataValue.json({k: metrics["validation"][k] for k in headline})
    metadata["rules_baseline"] = dg.MetadataValue.json({k: metrics["rules"][k] for k in headline})
    for key in ("roc_auc", "pr_auc", "brier"):
        value = metrics["validation"][key]
        if value is not None:
            metadata[f"validation_{key}"] = dg.MetadataValue.float(float(value))
    metadata["gate"] = dg.MetadataValue.json(metrics["gate"])
    metadata["split"] = dg.MetadataValue.json(metrics["split"])
    if "training_read" in metrics:
        metadata["training_read"] = dg.MetadataValue.json(metrics["training_read"])
    metadata["calibration_table"] = dg.MetadataValue.md(
        "| predicted | observed | customers |\n|---|---|---|\n" + "\n".join(
            f"| {b['mean_predicted']:.3f} | {b['observed_rate']:.3f} | {b['customers']} |"
            for b in metrics["validation"]["calibration"]))
    metadata["calibration_plot"] = dg.MetadataValue.md(calibration_plot_markdown(metrics))
    return metadata


# --- the model assets -------------------------------------------------------------------------

class PropensityModelConfig(dg.Config):
    """Whether this run trains a new version before scoring."""

    retrain: bool = Field(default=False, description=(
        "Train and register a new version now. The weekly propensity_retrain job sets it; daily runs "
        "train only when no version has passed its checks yet."))


def load_training_frame(warehouse: WarehouseInterface,
                        max_rows: int | None = None) -> tuple[pd.DataFrame, KeySample]:
    """customer_features joined to customer_labels, rows whose label window is over: all of them, or
    a stable sample of whole customers when there are more than `max_rows` (MAX_TRAINING_READ_ROWS)."""
    # In a fixed order: the booster's random subset of rows is then the same at every run.
    return read_key_sample(warehouse, TRAINING_SQL, "customer_id",
                           MAX_TRAINING_READ_ROWS if max_rows is None else max_rows,
                           order_by=("customer_id", "as_of_date"))


# The run's memo (`run_memo`) key of the training rows (`load_training_frame`): read by the first
# model a run trains, taken by the others it will train, dropped once the last of them had it.
TRAINING_READ = "training_read"


def training_rows(warehouse: WarehouseInterface, run_id: str, outcome: str,
                  retrain: bool) -> tuple[pd.DataFrame, KeySample]:
    """`load_training_frame`, read once per run for every model the run trains: the same rows a read
    of their own would give (the marts do not change during a run, the order is fixed), at 1M
    customers ~6.5 s per model. `train_propensity` only copies parts out of the frame.

    The models expected to train (the first reader's `retrain`, else those without a passing
    version) decide when the frame is let go; a guess that proves wrong costs a read or the frame's
    memory until the run ends, never other rows.
    """
    memo = run_memo(run_id)
    kept = memo.get(TRAINING_READ)
    if kept is None:
        frame, sample = load_training_frame(warehouse)
        left = {o for o in OUTCOMES if retrain or newest_passing(warehouse, model_name(o), run_as_of()) is None}
        kept = memo[TRAINING_READ] = {"frame": frame, "sample": sample, "left": left}
    _hand_out(memo, TRAINING_READ, outcome)
    return kept["frame"], kept["sample"]


def _hand_out(memo: dict, key: str, outcome: str) -> None:
    """`outcome` has had the run memo's `key`: drop it once every outcome still waiting (`left`) had it."""
    memo[key]["left"].discard(outcome)
    if not memo[key]["left"]:
        del memo[key]


def build_model_asset(outcome: str) -> dg.AssetsDefinition:
    """The asset that trains and registers one outcome's model."""
    spec, name = OUTCOMES[outcome], model_name(outcome)

    @dg.asset(
        name=f"{outcome}_propensity_model",
        group_name="models",
        deps=[dg.AssetKey("customer_features"), dg.AssetKey("customer_labels")],
        description=f"Calibrated probability that a customer {spec.description}; registered as `{name}`.",
    )
    def _model(context: dg.AssetExecutionContext, config: PropensityModelConfig,
               warehouse: DuckDBWarehouse) -> dg.MaterializeResult:
        passing = newest_passing(warehouse, name, run_as_of())
        reason = retrain_reason(config.retrain, passing)
        if reason is None:
            context.log.info(f"keeping {passing.version} (trained {passing.trained_at:%Y-%m-%d})")
            return dg.MaterializeResult(metadata=model_metadata(passing.version, passing.metrics, None))
        context.log.info(f"training {name}: {reason}")
        frame, sample = training_rows(warehouse, context.run_id, outcome, config.retrain)
        context.log.info(f"{sample.describe('training rows')} (cap MAX_TRAINING_READ_ROWS={MAX_TRAINING_READ_ROWS:,})")
        try:
            result = train_propensity(frame, outcome)
        except ValueError as error:
            # too little history is a state of the store, not a failure of the run
            context.log.warning(f"{name} not trained: {error}")
            return dg.MaterializeResult(metadata={
                **model_metadata(passing.version if passing else None, passing.metrics if passing else None, None),
                "not_trained": dg.MetadataValue.text(str(error)),
                "training_read": dg.MetadataValue.json(sample.as_dict())})
        result.metrics["training_read"] = sample.as_dict()
        split = result.model.split
        version = registry.register_model(
            warehouse, name, result.model, training_window_start=split.train_start,
            training_window_end=split.train_end, features=result.model.features, metrics=result.metrics,
            method=METHOD, notes=reason)
        verdict = "passed" if result.passed else "FAILED (scoring keeps the previous passing version)"
        context.log.info(f"registered {version}: gate {verdict}")
        return dg.MaterializeResult(metadata=model_metadata(version, result.metrics, reason))

    return _model


# The run's memo (`run_memo`) key of the drift checks' sample of the last four weeks, read once per
# run for every model's check: its columns, the rows, the sample's description and the outcomes
# whose check has not had it yet.
DRIFT_SAMPLE = "drift_sample"


def recent_sample(warehouse: WarehouseInterface, run_id: str, outcome: str,
                  wanted: set[str]) -> tuple[pd.DataFrame, KeySample]:
    """The drift sample (`RECENT_SQL`, a stable sample of at most MAX_DRIFT_READ_ROWS rows) with the
    columns of `wanted` that the mart has.

    The first drift check of a run reads the columns every registered model needs, and the other
    models' checks in the run take theirs from it: the same rows a read of their own would give
    (the mart does not change during a run, the sample is by key), at 1M customers 1.9 s per model.
    Only the model's columns are read (80 columns took 2.2 s). Dropped once every outcome had it.
    """
    have = column_names(warehouse, "analytics.customer_features")
    wanted = wanted & set(have)
    memo = run_memo(run_id)
    kept = memo.get(DRIFT_SAMPLE)
    if kept is None or not wanted <= kept["columns"]:
        needed = set(wanted)
        for other in OUTCOMES:
            record = registry.latest_model(warehouse, model_name(other))
            if record is not None and isinstance(record.features, list):
                needed |= set(record.features)
        columns = [c for c in have if c in needed]
        frame, sample = read_key_sample(warehouse, RECENT_SQL.format(columns=", ".join(columns)), "customer_id",
                                        MAX_DRIFT_READ_ROWS)
        kept = memo[DRIFT_SAMPLE] = {"columns": set(columns), "frame": frame, "sample": sample, "left": set(OUTCOMES)}
    _hand_out(memo, DRIFT_SAMPLE, outcome)
    return kept["frame"][[c for c in kept["frame"].columns if c in wanted]], kept["sample"]


def build_model_checks(model_asset: dg.AssetsDefinition, outcome: str) -> list[dg.AssetChecksDefinition]:
    """AUC floor, beats the rules baseline and feature drift (PSI) for the newest version of a model."""
    name = model_name(outcome)

    def newest(warehouse: DuckDBWarehouse) -> registry.RegisteredModel | None:
        return registry.latest_model(warehouse, name)

    def verdict(record: registry.RegisteredModel | None, check: str) -> dg.AssetCheckResult:
        if record is None or not record.metrics:
            return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN,
                                       metadata={"why": f"no version of {name} registered yet"})
        found = record.metrics["gate"]["checks"][check]
        return dg.AssetCheckResult(passed=bool(found["passed"]), metadata={
            "model_version": record.version, **{k: v for k, v in found.items() if k != "passed"
                                                  and not isinstance(v, dict)}})

    @dg.asset_check(asset=model_asset, name=f"{outcome}_auc_floor",
                    description=f"Validation ROC AUC of the newest version is at least {MIN_VALIDATION_AUC}.")
    def auc_floor(warehouse: DuckDBWarehouse) -> dg.AssetCheckResult:
        return verdict(newest(warehouse), "auc_floor")

    @dg.asset_check(asset=model_asset, name=f"{outcome}_beats_rules",
                    description="Validation ROC AUC of the newest version is at least the segment rule's.")
    def beats_rules(warehouse: DuckDBWarehouse) -> dg.AssetCheckResult:
        return verdict(newest(warehouse), "beats_rules")

    @dg.asset_check(asset=model_asset, name=f"{outcome}_feature_drift",
                    description=f"Features of the last four weeks vs the training window: largest PSI at most "
                                f"{MAX_FEATURE_PSI}.")
    def feature_drift(context, warehouse: DuckDBWarehouse) -> dg.AssetCheckResult:
        loaded = registry.load_latest(warehouse, name)
        if loaded is None:
            return verdict(None, "feature_drift")
        record, model = loaded
        recent, sample = recent_sample(warehouse, context.run.run_id, outcome,
                                       {"customer_id", *model.features, *POPULATION_COLUMNS})
        recent = recent[population(recent, outcome)]
        if recent.empty:
            return dg.AssetCheckResult(passed=True, metadata={"why": "nobody to score"})
        drift = model.drift(recent)
        return dg.AssetCheckResult(passed=drift["passed"], metadata={
            "model_version": record.version, "max_psi": drift["max_psi"], "limit": drift["limit"],
            "top_features": dg.MetadataValue.json(drift["top_features"]),
            "customers_compared": dg.MetadataValue.json(sample.as_dict())})

    return [auc_floor, beats_rules, feature_drift]


# --- scores -----------------------------------------------------------------------------------

def predicted_value(features: pd.DataFrame, p_churn: np.ndarray, p_skip: np.ndarray,
                    horizon_days: int = VALUE_HORIZON_DAYS) -> np.ndarray:
    """Expected revenue in the next `horizon_days`: deliveries due x average order x kept and not skipped.

    A rough value for weighing messages, 0 for customers without an active subscription.
    """
    cadence = features["cadence_days"].astype(float).to_numpy()
    order_value = features["average_order_value"].astype(float).fillna(0.0).to_numpy()
    active = features["is_active_subscriber"].astype(bool).to_numpy()
    deliveries = np.where(active & (cadence > 0), horizon_days / np.where(cadence > 0, cadence, 1.0), 0.0)
    keep = 1.0 - np.nan_to_num(p_churn, nan=0.0)
    receive = 1.0 - np.nan_to_num(p_skip, nan=0.0)
    return deliveries * order_value * keep * receive


def score_customers(features: pd.DataFrame, models: dict[str, tuple[str, PropensityModel]],
                    scored_at: datetime) -> pd.DataFrame:
    """Rows of nextbest.customer_scores: each outcome's probability where it applies (null elsewhere)."""
    table = pd.DataFrame({"customer_id": features["customer_id"].astype(str).to_numpy(),
                          "as_of_date": pd.to_datetime(features["as_of_date"]).dt.date.to_numpy()})
    for outcome, spec in OUTCOMES.items():
        values = np.full(len(features), np.nan)
        version = None
        if outcome in models and len(features):
            version, model = models[outcome]
            applies = population(features, outcome).to_numpy()
            if applies.any():
                values[applies] = model.predict(features[applies])
        table[spec.score] = values
        table[f"{outcome}_model_version"] = version
    table["predicted_value_90d"] = predicted_value(features, table["p_churn"].to_numpy(),
                                                   table["p_skip"].to_numpy()) if len(features) else []
    table["scored_at"] = scored_at
    return table[list(SCORE_COLUMNS)]


def scoring_models(warehouse: WarehouseInterface,
                   as_of: date | None = None) -> tuple[dict[str, tuple[str, PropensityModel]], list[str]]:
    """outcome -> (version, model) of the newest version that passed its gate (and, with `as_of`, learned
    nothing after it); and the outcomes without one."""
    models, missing = {}, []
    for outcome in OUTCOMES:
        record = newest_passing(warehouse, model_name(outcome), as_of)
        if record is None:
            missing.append(outcome)
            continue
        models[outcome] = (record.version, record.load(base_dir=warehouse.artifact_dir()))
    return models, missing


def write_scores(warehouse: WarehouseInterface, chunks: Iterable[pd.DataFrame]) -> int:
    """Make nextbest.customer_scores hold exactly the rows of `chunks`; rows written.

    Each chunk is staged as it comes (memory holds one); the table is swapped in one
    transaction at the end, and created first if missing (even with nothing to score).
    """
    warehouse.execute(f"create schema if not exists {SCORES_SCHEMA}")
    warehouse.execute(SCORES_DDL)
    return warehouse.replace_in_chunks(SCORES_SCHEMA, SCORES_NAME, chunks, SCORE_COLUMNS)


MODEL_ASSETS = {outcome: build_model_asset(outcome) for outcome in OUTCOMES}


@dg.asset(
    group_name="models",
    deps=[dg.AssetKey("customer_features"), *(a.key for a in MODEL_ASSETS.values())],
    description=f"Churn, skip, upgrade and discount-response probabilities and 90-day value per customer "
                f"({SCORES_TABLE}), from the newest model versions that passed their checks.",
)
def customer_scores(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse) -> dg.MaterializeResult:
    """Score the scoring point of analytics.customer_features and replace nextbest.customer_scores."""
    models, missing = scoring_models(warehouse, run_as_of())
    if missing:
        context.log.warning(f"no passing model for {missing}: those scores are null and segments use "
                            "behaviour rules alone")
    scored_at = datetime.now(timezone.utc).replace(tzinfo=None)
    # Running sums for the mean of each score (nulls left out, as pandas' mean does).
    sums = {spec.score: [0.0, 0] for spec in OUTCOMES.values()}

    def chunks() -> Iterable[pd.DataFrame]:
        if not warehouse.table_exists("analytics", "customer_features"):
            return
        for i, features in enumerate(warehouse.iter_batches(SCORING_SQL, warehouse.batch_rows)):
            context.log.info(f"chunk {i}: {len(features)} customers")
            table = score_customers(features, models, scored_at)
            for score, total in sums.items():
                total[0] += float(table[score].sum())
                total[1] += int(table[score].notna().sum())
            yield table

    written = write_scores(warehouse, chunks())
    return dg.MaterializeResult(metadata={
        "customers": dg.MetadataValue.int(written),
        "model_versions": dg.MetadataValue.json({o: v for o, (v, _) in models.items()}),
        "without_model": dg.MetadataValue.json(missing),
        "mean_scores": dg.MetadataValue.json({
            score: (total / count if count else None) for score, (total, count) in sums.items()}),
    })


propensity_retrain = dg.define_asset_job(
    name="propensity_retrain",
    selection=list(MODEL_ASSETS.values()),
    config={"ops": {a.op.name: {"config": {"retrain": True}} for a in MODEL_ASSETS.values()}},
    description="Train, validate and register a new version of every propensity model (weekly).",
    tags=WAREHOUSE_RUN_TAGS,
)

propensity_retrain_schedule = dg.ScheduleDefinition(
    name="propensity_retrain_schedule",
    job=propensity_retrain,
    cron_schedule="0 3 * * 1",  # Mondays 03:00 UTC, before the daily 05:00 run scores with it
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)

assets = [*MODEL_ASSETS.values(), customer_scores]
asset_checks = [check for outcome, asset in MODEL_ASSETS.items() for check in build_model_checks(asset, outcome)]
jobs = [propensity_retrain]
# Daily scoring runs in daily_personalization (customer_scores is one of its assets).
schedules = [propensity_retrain_schedule]

"""Propensity models and `nextbest.customer_scores` as Dagster assets (group `models`).

One asset per outcome (`churn_propensity_model`, `skip_propensity_model`,
`upgrade_propensity_model`, `discount_response_propensity_model`) trains on
`analytics.customer_features` + `analytics.customer_labels` (propensity.py) and
registers the model in `nextbest.model_registry` with its validation figures,
the rules baseline and the gate verdicts. Retraining is weekly: the
`propensity_retrain` job (Mondays, config `retrain: true`) trains every
model; the daily job only trains when no model has passed its gate yet (the
first run on a new store), so daily runs keep the registered models.

`customer_scores` then scores every customer at the scoring point (the day
after `as_of`) with the newest version of each model that passed its gate and
replaces `nextbest.customer_scores`, which dbt reads (source
`nextbest.customer_scores`) to assign at_risk / cadence_mismatch / expansion.
The table is created even when there is nothing to score, so dbt never finds
it missing after this asset has run.
"""

import base64
import io
import json
from datetime import datetime, timezone

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from dagster_project.models import registry
from dagster_project.models.propensity import (MAX_FEATURE_PSI, MIN_VALIDATION_AUC, OUTCOMES, PropensityModel,
                                               model_name, population, train_propensity)
from dagster_project.resources.warehouse import DuckDBWarehouse, replace_table_rows

SCORES_TABLE = "nextbest.customer_scores"
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

TRAINING_SQL = """
select features.*, labels.* exclude (as_of_date, customer_id)
from analytics.customer_features as features
inner join analytics.customer_labels as labels
    on features.as_of_date = labels.as_of_date and features.customer_id = labels.customer_id
where labels.is_window_complete
"""
SCORING_SQL = "select * from analytics.customer_features where is_scoring_point"
# Drift compares the last four weeks of points (a whole monthly campaign cycle, so the
# calendar's phase does not read as drift) with the training window.
RECENT_SQL = """
select * from analytics.customer_features
where as_of_date > (select max(as_of_date) from analytics.customer_features) - interval 28 day
"""


# --- registry: the newest version that passed its gate -----------------------------------------

def newest_passing(con, name: str) -> registry.RegisteredModel | None:
    """The most recently trained version of `name` whose gate passed (metrics.gate.passed), or None."""
    if registry.latest_model(con, name) is None:
        return None
    rows = con.execute(f"select {', '.join(registry.COLUMNS)} from {registry.REGISTRY_TABLE} "
                       "where model_name = ? order by trained_at desc, version desc", [name]).fetchall()
    for row in rows:
        record = dict(zip(registry.COLUMNS, row))
        metrics = json.loads(record["metrics"]) if record["metrics"] else {}
        if metrics.get("gate", {}).get("passed"):
            record["features"] = json.loads(record["features"]) if record["features"] else None
            record["metrics"] = metrics
            return registry.RegisteredModel(**record)
    return None


def retrain_reason(forced: bool, passing: registry.RegisteredModel | None) -> str | None:
    """Why this run trains, or None to keep the registered model (weekly retrain is the job's)."""
    if forced:
        return "retrain requested (weekly propensity_retrain job or run config)"
    if passing is None:
        return "no registered version has passed its checks yet"
    return None


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


def load_training_frame(warehouse: DuckDBWarehouse) -> pd.DataFrame:
    """customer_features joined to customer_labels, rows whose label window is over."""
    with warehouse.connect(read_only=True) as con:
        return con.execute(TRAINING_SQL).df()


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
        with warehouse.connect(read_only=True) as con:
            passing = newest_passing(con, name)
        reason = retrain_reason(config.retrain, passing)
        if reason is None:
            context.log.info(f"keeping {passing.version} (trained {passing.trained_at:%Y-%m-%d})")
            return dg.MaterializeResult(metadata=model_metadata(passing.version, passing.metrics, None))
        context.log.info(f"training {name}: {reason}")
        try:
            result = train_propensity(load_training_frame(warehouse), outcome)
        except ValueError as error:
            # too little history is a state of the store, not a failure of the run
            context.log.warning(f"{name} not trained: {error}")
            return dg.MaterializeResult(metadata={
                **model_metadata(passing.version if passing else None, passing.metrics if passing else None, None),
                "not_trained": dg.MetadataValue.text(str(error))})
        split = result.model.split
        with warehouse.connect() as con:
            version = registry.register_model(
                con, name, result.model, training_window_start=split.train_start,
                training_window_end=split.train_end, features=result.model.features, metrics=result.metrics,
                method=METHOD, notes=reason)
        verdict = "passed" if result.passed else "FAILED (scoring keeps the previous passing version)"
        context.log.info(f"registered {version}: gate {verdict}")
        return dg.MaterializeResult(metadata=model_metadata(version, result.metrics, reason))

    return _model


def build_model_checks(model_asset: dg.AssetsDefinition, outcome: str) -> list[dg.AssetChecksDefinition]:
    """AUC floor, beats the rules baseline and feature drift (PSI) for the newest version of a model."""
    name = model_name(outcome)

    def newest(warehouse: DuckDBWarehouse) -> registry.RegisteredModel | None:
        with warehouse.connect(read_only=True) as con:
            return registry.latest_model(con, name)

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
    def feature_drift(warehouse: DuckDBWarehouse) -> dg.AssetCheckResult:
        with warehouse.connect(read_only=True) as con:
            loaded = registry.load_latest(con, name)
            if loaded is None:
                return verdict(None, "feature_drift")
            record, model = loaded
            recent = con.execute(RECENT_SQL).df()
        recent = recent[population(recent, outcome)]
        if recent.empty:
            return dg.AssetCheckResult(passed=True, metadata={"why": "nobody to score"})
        drift = model.drift(recent)
        return dg.AssetCheckResult(passed=drift["passed"], metadata={
            "model_version": record.version, "max_psi": drift["max_psi"], "limit": drift["limit"],
            "top_features": dg.MetadataValue.json(drift["top_features"])})

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


def write_scores(con, table: pd.DataFrame) -> None:
    """Replace the contents of nextbest.customer_scores with `table` in one transaction."""
    replace_table_rows(con, SCORES_TABLE, SCORES_DDL, table)


MODEL_ASSETS = {outcome: build_model_asset(outcome) for outcome in OUTCOMES}


@dg.asset(
    group_name="models",
    deps=[dg.AssetKey("customer_features"), *(a.key for a in MODEL_ASSETS.values())],
    description=f"Churn, skip, upgrade and discount-response probabilities and 90-day value per customer "
                f"({SCORES_TABLE}), from the newest model versions that passed their checks.",
)
def customer_scores(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse) -> dg.MaterializeResult:
    """Score the scoring point of analytics.customer_features and replace nextbest.customer_scores."""
    with warehouse.connect(read_only=True) as con:
        has_features = con.execute(
            "select count(*) from information_schema.tables where table_schema = 'analytics' "
            "and table_name = 'customer_features'").fetchone()[0]
        features = con.execute(SCORING_SQL).df() if has_features else pd.DataFrame()
        models, missing = {}, []
        for outcome in OUTCOMES:
            record = newest_passing(con, model_name(outcome))
            if record is None:
                missing.append(outcome)
                continue
            models[outcome] = (record.version, record.load(base_dir=registry.warehouse_dir(con)))
    if missing:
        context.log.warning(f"no passing model for {missing}: those scores are null and segments use "
                            "behaviour rules alone")
    if features.empty:
        features = pd.DataFrame(columns=["customer_id", "as_of_date", "cadence_days", "average_order_value",
                                         "is_active_subscriber", "is_subscriber", "is_gift"])
    table = score_customers(features, models, datetime.now(timezone.utc).replace(tzinfo=None))
    with warehouse.connect() as con:
        write_scores(con, table)
    return dg.MaterializeResult(metadata={
        "customers": dg.MetadataValue.int(len(table)),
        "model_versions": dg.MetadataValue.json({o: v for o, (v, _) in models.items()}),
        "without_model": dg.MetadataValue.json(missing),
        "mean_scores": dg.MetadataValue.json({
            spec.score: (None if table[spec.score].isna().all() else float(table[spec.score].mean()))
            for spec in OUTCOMES.values()}),
    })


propensity_retrain = dg.define_asset_job(
    name="propensity_retrain",
    selection=list(MODEL_ASSETS.values()),
    config={"ops": {a.op.name: {"config": {"retrain": True}} for a in MODEL_ASSETS.values()}},
    description="Train, validate and register a new version of every propensity model (weekly).",
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

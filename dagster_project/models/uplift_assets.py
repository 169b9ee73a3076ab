"""The `uplift_models` asset (group `models`): one uplift model per playbook, from past sends and holdouts.

Training rows are `nextbest.assignments` whose goal window has closed by the
as-of date, with point-in-time features at `assigned_at` and the goal read
from raw.* after it (`uplift_data.py`); models and held-out evaluation in
`uplift_training.py`. Each playbook's model is registered as
`uplift_<playbook>` in `nextbest.model_registry` with its held-out Qini, AUUC,
uplift at top 10% / 30% and whether it passed its check.

Weekly retrain: a run trains only when no model is registered yet, the newest
is `MAX_MODEL_AGE_DAYS` or more older than the as-of date, or config says
`retrain: true` (the `uplift_retrain` job), so the daily job can include this
asset cheaply. Routing uses the newest version that passed its check
(`newest_passing`).

The asset and its check read and register through the warehouse resource, so
they run on DuckDB and on Snowflake alike; the helpers also take a DuckDB
connection (scripts such as `benchmarks/decision_quality.py`, tests).
"""


from contextlib import contextmanager
from datetime import date, datetime
from typing import Iterator

import dagster as dg
import duckdb
import pandas as pd
from pydantic import Field

from dagster_project.project import WAREHOUSE_RUN_TAGS, default_as_of
from dagster_project.models import registry
from dagster_project.messaging.briefs import BriefSet, load_briefs
from dagster_project.models.uplift_data import playbook_goals, training_frame
from dagster_project.models.uplift_training import UpliftModel, train_uplift_models
from dagster_project.resources.warehouse import DuckDBWarehouse, WarehouseInterface, session_on

MAX_MODEL_AGE_DAYS = 7


def model_name(playbook: str) -> str:
    return f"uplift_{playbook}"


class UpliftModelsConfig(dg.Config):
    """When to retrain."""

    retrain: bool = Field(default=False, description="Retrain even when this week's models exist.")
    as_of: str | None = Field(default=None, description="YYYY-MM-DD; default NEXTBEST_AS_OF or today.")


def newest_passing(warehouse, playbook: str,
                   as_of: date | None = None) -> tuple[registry.RegisteredModel, UpliftModel] | None:
    """The newest registered model of a playbook that passed its check, else the newest one, else None.

    With `as_of` (the day routed), only models whose sends' goal windows closed by then: routing a past
    day (a backfill) must not use a model that learned from later sends, even one that passed.
    `warehouse`: the warehouse resource (either engine), or a DuckDB connection (scripts, tests).
    """
    with _registry_handle(warehouse) as handle:
        records = registry.registered_versions(handle, model_name(playbook))
        base_dir = registry.warehouse_dir(handle) if records else None
    if as_of is not None:
        records = [r for r in records if r.training_window_end is not None and r.training_window_end <= as_of]
    if not records:
        return None
    chosen = next((r for r in records if (r.metrics or {}).get("passed")), records[0])
    return chosen, chosen.load(base_dir=base_dir)


@contextmanager
def _registry_handle(source: WarehouseInterface | duckdb.DuckDBPyConnection) -> Iterator:
    """What the registry functions are handed: the warehouse resource as it is; for a DuckDB connection, a
    cursor of its own (`registry.warehouse_dir` leaves a fetchone() result open on the connection it gets)."""
    if isinstance(source, WarehouseInterface):
        yield source
        return
    cur = source.cursor()
    try:
        yield cur
    finally:
        cur.close()


def _latest_models(source) -> dict[str, registry.RegisteredModel | None]:
    """The newest registered model of every playbook with a brief (None where there is none), in one read."""
    playbooks = sorted(load_briefs().playbooks)
    with session_on(source) as tx:
        return {p: registry.latest_model(tx, model_name(p)) for p in playbooks}


def needs_training(con, as_of: date) -> bool:
    """True when no playbook has a model yet, the last training is a week old, or a model was
    trained on data after `as_of`.

    The playbooks are trained together, by the age of the newest training: a playbook without past
    sends (a new brief) gets its first model at the next weekly training. Asking for every playbook
    to have a model retrained all of them every day while one had nothing to learn from.
    `con`: the warehouse resource (either engine) or a DuckDB connection.
    """
    ends = [latest.training_window_end for latest in _latest_models(con).values() if latest is not None]
    if not ends or any(end is None or end > as_of for end in ends):
        return True
    return (as_of - max(ends)).days >= MAX_MODEL_AGE_DAYS


def train_and_register(con, as_of: date, seed: int = 0, briefs: BriefSet | None = None) -> dict[str, dict]:
    """Train the model of every playbook with a brief (default `load_briefs()`), each on its goal, on
    assignments closed by `as_of`, and register them.

    `con`: the warehouse resource (either engine) or a DuckDB connection (scripts, tests).
    """
    goals = playbook_goals(briefs or load_briefs())
    frame = training_frame(con, datetime.combine(as_of, datetime.min.time()), goals=goals)
    if frame.empty:
        return {}
    models = train_uplift_models(frame, seed=seed)
    summary = {}
    for playbook, model in models.items():
        rows = frame[frame["playbook_id"] == playbook]
        with _registry_handle(con) as handle:
            version = registry.register_model(
                handle, model_name(playbook), model,
                training_window_start=pd.Timestamp(rows["assigned_at"].min()).date(), training_window_end=as_of,
                features=model.columns, metrics={**model.metrics, "ate": model.ate, "goal": model.goal},
                method=f"{model.learner} (HistGradientBoosting), goal {model.goal}",
                notes=f"held-out customers: 30%; check: {model.metrics.get('check', 'average effect only')}")
        heldout = model.metrics.get("heldout", {})
        summary[playbook] = {"version": version, "rows": model.metrics.get("rows"), "learner": model.learner,
                             "passed": model.passed, "ate": round(model.ate.get("ate", 0.0), 4),
                             "shrink": model.metrics.get("shrink"),
                             "heldout_qini": heldout.get("qini"), "heldout_auuc": heldout.get("auuc"),
                             "top10_uplift": heldout.get("uplift_top_10pct", {}).get("uplift"),
                             "top30_uplift": heldout.get("uplift_top_30pct", {}).get("uplift")}
    return summary


@dg.asset(
    group_name="models",
    deps=[dg.AssetKey("customer_context")],
    kinds={"duckdb", "scikit-learn"},
    description="Uplift per playbook (T/DR/X/interaction learners) from past sends and holdouts, in nextbest.model_registry.",
)
def uplift_models(context: dg.AssetExecutionContext, config: UpliftModelsConfig,
                  warehouse: DuckDBWarehouse) -> dg.MaterializeResult:
    as_of = date.fromisoformat(config.as_of or default_as_of())
    if not (config.retrain or needs_training(warehouse, as_of)):
        context.log.info("uplift models are younger than a week; not retraining")
        return dg.MaterializeResult(metadata={"retrained": False})
    summary = train_and_register(warehouse, as_of)
    table = pd.DataFrame(summary).T.reset_index(names="playbook")
    return dg.MaterializeResult(metadata={
        "retrained": True, "playbooks": len(summary),
        "passed": sum(bool(s["passed"]) for s in summary.values()),
        "models": dg.MetadataValue.md(table.to_markdown(index=False) if len(table) else "no assignments yet"),
    })


@dg.asset_check(asset=uplift_models, description="Every playbook with past sends has a model that passed its check.")
def uplift_models_pass(warehouse: DuckDBWarehouse) -> dg.AssetCheckResult:
    status = {p: (m.metrics or {}).get("passed") for p, m in _latest_models(warehouse).items() if m is not None}
    failing = sorted(p for p, ok in status.items() if not ok)
    return dg.AssetCheckResult(passed=not failing, severity=dg.AssetCheckSeverity.WARN,
                               metadata={"failing": ", ".join(failing) or "none", "models": len(status)})


uplift_retrain = dg.define_asset_job("uplift_retrain", selection=[uplift_models],
                                     config={"ops": {"uplift_models": {"config": {"retrain": True}}}},
                                     description="Retrain every playbook's uplift model and register new versions.",
                                     tags=WAREHOUSE_RUN_TAGS)
uplift_retrain_schedule = dg.ScheduleDefinition(
    name="uplift_retrain_weekly", job=uplift_retrain, cron_schedule="0 4 * * 1",  # Mondays before the daily run
    execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.STOPPED)

assets = [uplift_models]
asset_checks = [uplift_models_pass]
jobs = [uplift_retrain]
schedules = [uplift_retrain_schedule]

"""Delivery in Dagster: approve a batch from the UI, export approved batches, chart the lift.

- `approve_batch` (job): records an approval or rejection from run config, like
  `nextbest approve` / `nextbest reject`.
- `esp_export` (asset, group `delivery`): re-checks the batch's approval and that the raw
  sources behind its playbook are fresh enough for the brief, queues its sendable drafts
  in the outbox and sends them exactly once (`outbox.py`, `sender.py`).
  The `approved_batches_sensor` (sensors.py) launches `export_approved_batch` per approval.
- `campaign_lift` (asset, group `measurement`): the lift per playbook from the dbt mart
  `campaign_performance`, as a markdown table and (with matplotlib) a chart.
- `nextbest/assignments` (external asset spec): the table that mart reads.
"""

# No `from __future__ import annotations`: Dagster reads the config and resource annotations.
import base64
import io
import math
from typing import Literal

import dagster as dg
import pandas as pd
from pydantic import Field

from dagster_project.delivery import approvals
from dagster_project.delivery.esp.base import EspResource
from dagster_project.delivery.outbox import OUTBOX, enqueue_batch, naive_utc, next_due_at, state_counts, utcnow
from dagster_project.delivery.sender import ExportSummary, run_export
from dagster_project.messaging.briefs import BriefError, load_briefs
from dagster_project.project import WAREHOUSE_RUN_TAGS
from dagster_project.quality.freshness import stale_playbooks
from dagster_project.ingest.contract import NEXTBEST_SCHEMA
from dagster_project.resources.warehouse import DuckDBWarehouse, WarehouseInterface, WarehouseSession

CAMPAIGN_PERFORMANCE = "analytics.campaign_performance"
# The columns of campaign_performance the lift is pooled from (the mart has many more).
LIFT_COLUMNS = ("playbook_id", "goal", "campaign_id", "control_arm", "window_complete", "treated_customers",
                "treated_conversions", "control_customers", "control_conversions")
Z95 = 1.959963984540054


# --- approval from the UI -----------------------------------------------------------------

class ApprovalDecisionConfig(dg.Config):
    """One decision on one batch, as a marketer would give it on the command line."""

    batch: str = Field(description="Batch id, <playbook>-<run date>, e.g. at_risk_save-2026-06-30 (`nextbest review`).")
    by: str = Field(description="Who decides (name or email); recorded in nextbest.approvals.")
    decision: Literal["approve", "reject"] = Field(  # type: ignore[valid-type]
        default="approve", description="approve (the sensor then exports the batch) or reject.")
    note: str = Field(default="", description="A note with an approval; the reason, required, with a rejection.")


@dg.op(description="Append an approval or rejection of a batch to nextbest.approvals.")
def record_approval(context: dg.OpExecutionContext, config: ApprovalDecisionConfig,
                    warehouse: DuckDBWarehouse) -> dg.Output[str]:
    """Record the decision; a clear failure when the batch is unknown, empty, or a reason is missing."""
    try:
        ttl = approvals.approval_ttl()
        approval = approvals.record_decision(warehouse, config.batch, config.decision, config.by, config.note,
                                             source="dagster")
    except approvals.ApprovalError as error:
        raise dg.Failure(description=f"Cannot {config.decision} {config.batch}: {error}") from None
    context.log.info(f"{approval.decision} {approval.batch_id} by {approval.decided_by}")
    metadata = {"batch": approval.batch_id, "decision": approval.decision, "by": approval.decided_by,
                "drafts": approval.drafts_total, "sendable": approval.drafts_sendable,
                "drafts_hash": approval.drafts_hash}
    if approval.decision == "approved":
        metadata["valid_until_utc"] = f"{approval.decided_at + ttl:%Y-%m-%d %H:%M}"
    return dg.Output(approval.approval_id, metadata=metadata)


@dg.job(description="Approve or reject a batch of drafts (run config: batch, by, decision, note).",
        tags=WAREHOUSE_RUN_TAGS)
def approve_batch():
    record_approval()


# --- export ---------------------------------------------------------------------------------

class EspExportConfig(dg.Config):
    """Which batch to send; without one, every batch whose approval holds, plus anything due."""

    batch: str | None = Field(default=None, description=(
        "Approved batch to send, e.g. at_risk_save-2026-06-30. Empty: queue every batch whose approval "
        "holds and send whatever is due in the outbox (retries, quiet-hours deferrals)."))
    workers: int = Field(default=8, description="Parallel sends (the ESP's rate limit still applies).")
    max_wait_seconds: float = Field(default=30.0, description="Wait this long for retries due soon; later ones "
                                                              "stay queued for the next run.")


def _summary_metadata(summary: ExportSummary, remaining: dict[str, int]) -> dict:
    return {
        "sent": summary.sent, "duplicates_skipped_by_esp": summary.duplicates, "retrying": summary.retried,
        "dead": summary.dead, "suppressed": summary.suppressed, "deferred": summary.deferred,
        "reconciled_after_crash": summary.reconciled, "requeued_after_crash": summary.requeued_after_crash,
        "claimed_by_another_export": summary.claimed_elsewhere,
        "seconds": dg.MetadataValue.float(round(summary.seconds, 3)),
        "sends_per_second": dg.MetadataValue.float(round(summary.sends_per_second, 2)),
        **{f"outbox_{state}": count for state, count in remaining.items()},
        "outbox_by_state": dg.MetadataValue.json(remaining),
    }


@dg.asset(
    group_name="delivery",
    deps=[dg.AssetKey("message_drafts")],
    kinds={"duckdb", "python"},
    description="Approved batches sent to the ESP exactly once through nextbest.outbox.",
)
def esp_export(context: dg.AssetExecutionContext, config: EspExportConfig, warehouse: DuckDBWarehouse,
               esp: EspResource) -> dg.MaterializeResult:
    """Re-check the approval, queue the batch's sendable drafts, send, and report counts per state."""
    now = utcnow()
    try:
        ttl = approvals.approval_ttl()
    except approvals.ApprovalError as error:
        raise dg.Failure(description=str(error)) from None
    try:
        # DuckDB keeps the file open for the whole export: no other process changes the drafts meanwhile.
        with warehouse.kept_open():
            checks, skipped, drafts = _approved_drafts(warehouse, config.batch, now, ttl)
            queued = already = 0
            for check in checks:
                result = enqueue_batch(warehouse, check.batch_id, drafts[check.batch_id], now)
                queued, already = queued + result.queued, already + result.already_in_outbox
                context.log.info(f"{check.batch_id}: {check.reason}; {result.queued} queued, "
                                 f"{result.already_in_outbox} already in the outbox")
            summary = run_export(warehouse, esp, batch_id=config.batch, workers=config.workers,
                                 max_wait_seconds=config.max_wait_seconds, log=context.log.info)
            remaining = state_counts(warehouse, config.batch)
            waiting_until = next_due_at(warehouse, config.batch) if summary.deferred else None
    finally:
        esp.close()
    if waiting_until is not None:
        # Nothing sends them by itself: the next export does (export_due_hourly, or the next approval's).
        context.log.warning(f"{summary.deferred} messages wait for the recipients' quiet hours to end (the first "
                            f"at {waiting_until:%Y-%m-%d %H:%M} UTC); the next esp_export run after that sends them "
                            "(the export_due_hourly schedule runs one every hour)")
    if summary.dead:
        context.log.warning(f"{summary.dead} messages dead-lettered; see nextbest.outbox.last_error")
    metadata = {
        "esp": esp.esp_name,
        "batches": dg.MetadataValue.json([c.batch_id for c in checks]),
        "approvals": dg.MetadataValue.md("\n".join(f"- `{c.batch_id}`: {c.reason}" for c in checks) or "_none_"),
        "queued": queued, "already_in_outbox": already,
        **_summary_metadata(summary, remaining),
    }
    if skipped:
        metadata["not_exported"] = dg.MetadataValue.md("\n".join(f"- {c.reason}" for c in skipped))
    return dg.MaterializeResult(metadata=metadata)


def _approved_drafts(warehouse: DuckDBWarehouse, batch: str | None, now, ttl) -> tuple[list, list, dict]:
    """The approval checks that hold (and, without a batch, those that no longer do) and the sendable
    drafts of each batch whose approval holds. One transaction, so the drafts read are those the
    approvals' hashes cover. A `dg.Failure` when `batch` is not approved or its data is stale."""
    with warehouse.transaction() as tx:
        if batch:
            check = approvals.check_approval(tx, batch, now, ttl)
            if not check.ok:
                raise dg.Failure(description=f"Not exporting {batch}: {check.reason}", metadata={"batch": batch})
            checks, skipped = [check], []
        else:
            checks, skipped = _approved_batches(tx, now, ttl)
        drafts = {check.batch_id: approvals.sendable_drafts(tx, check.batch_id) for check in checks}
        _refuse_stale(tx, drafts, batch)
    return checks, skipped, drafts


def _refuse_stale(tx: WarehouseSession, drafts: dict[str, pd.DataFrame], batch: str | None) -> None:
    """Fail before anything is queued or sent when a playbook about to be sent (the batches' and,
    without a batch, whatever waits in the outbox) has raw sources older than its brief allows."""
    playbooks = {str(p) for frame in drafts.values() for p in frame["playbook_id"].unique()}
    if tx.exists(NEXTBEST_SCHEMA, "outbox"):
        # Only marketing messages have briefs; profile updates carry no playbook to check.
        where = ("kind = 'message' and destination = 'esp' and state in ('queued', 'failed', 'sending')"
                 + (" and batch_id = ?" if batch else ""))
        waiting = tx.read_df(f"select distinct playbook_id from {OUTBOX} where {where}", [batch] if batch else [])
        playbooks |= {str(p) for p in waiting["playbook_id"]}
    if not playbooks:
        return
    try:
        briefs = load_briefs()
        stale = stale_playbooks(tx, [briefs.get(p) for p in sorted(playbooks)])
    except BriefError as error:
        raise dg.Failure(description=f"Not exporting: cannot check the data behind these messages: {error}") from None
    if stale:
        what = batch or ", ".join(sorted(b for b, f in drafts.items() if set(f["playbook_id"]) & set(stale))) \
            or "messages waiting in the outbox"
        raise dg.Failure(
            description=f"Not exporting {what}: the data behind it is stale.\n" + "\n".join(map(str, stale.values())),
            metadata={"batch": batch or "", "stale_playbooks": dg.MetadataValue.json(sorted(stale))})


def _approved_batches(tx: WarehouseSession, now, ttl) -> tuple[list, list]:
    """Checks of every batch whose latest decision is an approval: those that hold, and the rest
    (changed drafts; long-expired approvals are left out of the report)."""
    holding, failing = [], []
    latest: dict[str, approvals.Approval] = {}
    for decision in approvals.decisions(tx):
        latest[decision.batch_id] = decision
    for batch_id, decision in sorted(latest.items()):
        if decision.decision != "approved":
            continue
        check = approvals.check_approval(tx, batch_id, now, ttl)
        if check.ok:
            holding.append(check)
        elif check.expires_at is None or check.expires_at > naive_utc(now) - ttl:
            failing.append(check)
    return holding, failing


export_approved_batch = dg.define_asset_job(
    "export_approved_batch",
    selection=dg.AssetSelection.assets(esp_export),
    description="Send one approved batch (run config names it); launched by approved_batches_sensor.",
    tags=WAREHOUSE_RUN_TAGS,
)


# --- lift -----------------------------------------------------------------------------------

def read_performance(warehouse: WarehouseInterface) -> pd.DataFrame:
    """The rows of campaign_performance the lift needs, one per campaign and control arm."""
    performance = warehouse.read_df(f"select {', '.join(LIFT_COLUMNS)} from {CAMPAIGN_PERFORMANCE} "
                                    "order by playbook_id, campaign_id, control_arm")
    # Counts can arrive as decimals (NUMBER(38,0) on Snowflake, HUGEINT sums on DuckDB); pooling wants ints.
    counts = [c for c in LIFT_COLUMNS if c.endswith(("_customers", "_conversions"))]
    return performance.astype({c: "int64" for c in counts}) if len(performance) else performance


def playbook_lift(performance: pd.DataFrame, control_arm: str = "holdout") -> pd.DataFrame:
    """Lift per playbook over its finished campaigns (goal windows over), pooled, with a 95% CI.

    Same interval as the mart (Agresti-Caffo difference of proportions) on the pooled counts.
    """
    done = performance[(performance["control_arm"] == control_arm) & performance["window_complete"].astype(bool)]
    if done.empty:
        return pd.DataFrame(columns=["playbook_id", "goal", "campaigns", "treated", "control", "treated_rate",
                                     "control_rate", "lift", "ci_low", "ci_high"])
    pooled = done.groupby(["playbook_id", "goal"], as_index=False).agg(
        campaigns=("campaign_id", "nunique"), treated=("treated_customers", "sum"),
        control=("control_customers", "sum"), x1=("treated_conversions", "sum"), x0=("control_conversions", "sum"))
    rows = []
    for r in pooled.itertuples(index=False):
        n1, n0, x1, x0 = int(r.treated), int(r.control), int(r.x1), int(r.x0)
        p1 = x1 / n1 if n1 else math.nan
        p0 = x0 / n0 if n0 else math.nan
        a1, a0 = (x1 + 1) / (n1 + 2), (x0 + 1) / (n0 + 2)
        se = math.sqrt(a1 * (1 - a1) / (n1 + 2) + a0 * (1 - a0) / (n0 + 2))
        low, high = (a1 - a0 - Z95 * se, a1 - a0 + Z95 * se) if n0 and n1 else (math.nan, math.nan)
        rows.append({"playbook_id": r.playbook_id, "goal": r.goal, "campaigns": int(r.campaigns), "treated": n1,
                     "control": n0, "treated_rate": p1, "control_rate": p0, "lift": p1 - p0,
                     "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows).sort_values("lift", ascending=False).reset_index(drop=True)


def lift_table_markdown(lift: pd.DataFrame) -> str:
    """The lift table as markdown, one row per playbook."""
    if lift.empty:
        return "_No finished campaigns with a holdout yet._"
    lines = ["| playbook | goal | campaigns | treated | holdout | treated rate | holdout rate | lift (pp) "
             "| 95% CI (pp) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in lift.itertuples(index=False):
        lines.append(f"| {r.playbook_id} | {r.goal} | {r.campaigns} | {r.treated:,} | {r.control:,} | "
                     f"{r.treated_rate:.1%} | {r.control_rate:.1%} | {100 * r.lift:+.1f} | "
                     f"[{100 * r.ci_low:+.1f}, {100 * r.ci_high:+.1f}] |")
    return "\n".join(lines)


def lift_chart_png(lift: pd.DataFrame) -> bytes | None:
    """A horizontal bar chart of lift with its 95% CI per playbook (PNG), or None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    if lift.empty:
        return None
    data = lift.iloc[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(data) + 1.2), dpi=100)
    err = [100 * (data["lift"] - data["ci_low"]).clip(lower=0), 100 * (data["ci_high"] - data["lift"]).clip(lower=0)]
    ax.barh(data["playbook_id"], 100 * data["lift"], xerr=err, color="#4C78A8", capsize=3)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("lift vs randomized holdout, percentage points (95% CI)")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


@dg.asset(
    group_name="measurement",
    deps=[dg.AssetKey("campaign_performance")],
    kinds={"duckdb", "python"},
    description="Lift per playbook against the randomized holdout (from campaign_performance), charted.",
)
def campaign_lift(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse) -> dg.MaterializeResult:
    """Pool each playbook's finished campaigns and show lift with its 95% CI (DuckDB or Snowflake)."""
    performance = read_performance(warehouse)
    with warehouse.transaction() as tx:
        unsent = approvals.never_exported_campaigns(tx)
    left_out = performance["campaign_id"].isin(unsent) if len(performance) else pd.Series(dtype=bool)
    if left_out.any():
        # Routed, then never approved (or rejected, or never drafted): treated and holdout alike got nothing.
        context.log.info(f"left out {performance.loc[left_out, 'campaign_id'].nunique()} campaigns never sent")
        performance = performance[~left_out]
    lift = playbook_lift(performance)
    metadata = {
        "campaigns_not_sent": int(len(unsent)),
        "campaigns": int(performance["campaign_id"].nunique()) if len(performance) else 0,
        "finished_campaigns": int(performance.loc[performance["window_complete"].astype(bool), "campaign_id"].nunique())
        if len(performance) else 0,
        "lift_by_playbook": dg.MetadataValue.md(lift_table_markdown(lift)),
    }
    png = lift_chart_png(lift)
    if png:
        encoded = base64.b64encode(png).decode()
        metadata["lift_chart"] = dg.MetadataValue.md(f"![lift per playbook](data:image/png;base64,{encoded})")
    context.log.info(f"campaign_lift: {len(lift)} playbooks with finished campaigns")
    return dg.MaterializeResult(metadata=metadata)


# nextbest.assignments as Dagster sees it: the dbt source campaign_performance reads. It is
# written outside dbt (routing_decisions, and the demo simulator for past campaigns); declared
# here so it has a group instead of showing up as an undefined upstream in `default`.
campaign_assignments = dg.AssetSpec(
    key=["nextbest", "assignments"],
    group_name="decisioning",
    kinds={"duckdb"},
    description="Who was assigned to which playbook campaign, in which arm (treatment / holdout / global_holdout).",
)

assets = [esp_export, campaign_lift, campaign_assignments]
jobs = [approve_batch, export_approved_batch]
# Sends that waited (quiet hours, a retry's backoff) go out with the next export; this one runs every hour
# without a batch: it queues every batch whose approval holds and sends whatever has come due.
export_due_schedule = dg.ScheduleDefinition(
    name="export_due_hourly", job=export_approved_batch, cron_schedule="15 * * * *", execution_timezone="UTC",
    run_config={"ops": {"esp_export": {"config": {}}}}, default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Every hour: send what has come due in the outbox (quiet-hours deferrals, retries) and any "
                "approved batch not sent yet.")
schedules = [export_due_schedule]

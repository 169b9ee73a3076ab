"""`approved_batches_sensor`: every new approval becomes one run of `esp_export` for its batch.

Each tick opens the DuckDB file read-only for a moment, reads the approvals
recorded since its cursor (`nextbest.approvals.seq`), and requests an
`export_approved_batch` run per batch whose approval holds (not expired, not
rejected since, drafts unchanged). The run key is the batch id, so Dagster
never starts a second run for it even if the cursor is lost; a later
re-approval of the same batch (say after its drafts changed) is that batch's
approval number n and gets the key `<batch>#approval-<n>`. When a running job
holds the file (DuckDB: one writer per file) the tick is skipped and the same
approvals are read on the next one. On Snowflake the tick reads in one short
transaction of the warehouse resource.
"""

# No `from __future__ import annotations`: Dagster reads the config and resource annotations.
from pathlib import Path

import dagster as dg
import duckdb

from dagster_project.delivery import approvals
from dagster_project.delivery.assets import export_approved_batch
from dagster_project.resources.warehouse import DuckDBSession, DuckDBWarehouse, WarehouseSession

TICK_SECONDS = 30


def run_key_for(batch_id: str, approval_number: int) -> str:
    """The run key of a batch's n-th approval: the batch id itself for the first."""
    return batch_id if approval_number <= 1 else f"{batch_id}#approval-{approval_number}"


def export_requests(tx: WarehouseSession, after_seq: int) -> tuple[list[dg.RunRequest], list[str], int]:
    """Run requests for approvals recorded after `after_seq`, notes on the ones skipped, the new cursor."""
    new = approvals.decisions(tx, after_seq=after_seq)
    if not new:
        return [], [], after_seq
    latest = {}
    for decision in new:  # in seq order: the last decision per batch wins
        latest[decision.batch_id] = decision
    requests, skipped = [], []
    for batch_id, decision in sorted(latest.items(), key=lambda item: item[1].seq):
        check = approvals.check_approval(tx, batch_id)  # a rejection is never ok: it is reported
        if not check.ok:
            skipped.append(check.reason)
            continue
        number = sum(d.decision == "approved" for d in approvals.decisions(tx, batch_id) if d.seq <= decision.seq)
        requests.append(dg.RunRequest(
            run_key=run_key_for(batch_id, number),
            run_config={"ops": {"esp_export": {"config": {"batch": batch_id}}}},
            tags={"nextbest/batch": batch_id, "nextbest/approval_id": decision.approval_id,
                  "nextbest/approved_by": decision.decided_by},
        ))
    return requests, skipped, max(d.seq for d in new)


@dg.sensor(
    job=export_approved_batch,
    minimum_interval_seconds=TICK_SECONDS,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Exports each newly approved batch once (run key = batch id). Switch on to send approved batches.",
)
def approved_batches_sensor(context: dg.SensorEvaluationContext, warehouse: DuckDBWarehouse):
    """Request one export run per new approval that holds; skip the tick if the warehouse is busy."""
    after = int(context.cursor or 0)
    if not isinstance(warehouse, DuckDBWarehouse):  # Snowflake: no file to keep free
        with warehouse.transaction() as tx:
            requests, skipped, cursor = export_requests(tx, after)
        return _result(context, requests, skipped, cursor)
    path = Path(warehouse.path)
    if not path.exists():
        return dg.SkipReason(f"no warehouse at {path} yet")
    try:
        # Read-only and closed straight away: an export or the daily job may need to write.
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as error:
        return dg.SkipReason(f"warehouse {path} is busy (a running job holds it); trying again next tick: "
                             f"{str(error).splitlines()[0][:200]}")
    try:
        requests, skipped, cursor = export_requests(DuckDBSession(con), after)
    finally:
        con.close()
    return _result(context, requests, skipped, cursor)


def _result(context: dg.SensorEvaluationContext, requests: list[dg.RunRequest], skipped: list[str],
            cursor: int) -> dg.SensorResult:
    for reason in skipped:
        context.log.info(f"not exporting: {reason}")
    if not requests:
        return dg.SensorResult(skip_reason=dg.SkipReason(
            "; ".join(skipped) if skipped else "no new approvals"), cursor=str(cursor))
    return dg.SensorResult(run_requests=requests, cursor=str(cursor))


sensors = [approved_batches_sensor]

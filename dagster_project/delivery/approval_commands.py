"""Approval commands for the `nextbest` CLI: `review [BATCH]`, `approve BATCH`, `reject BATCH`.

    nextbest review                                  batches, their drafts and approval state
    nextbest review at_risk_save-2026-06-30          counts, blocked drafts with reasons, a sample
    nextbest approve at_risk_save-2026-06-30 --by ana --note "checked offers"
    nextbest reject at_risk_save-2026-06-30 --by ana --reason "wrong discount"

Decisions are appended to `nextbest.approvals`; the `approved_batches_sensor`
then exports approved batches (see `approvals.py` for when an approval holds).
The warehouse is the one `NEXTBEST_WAREHOUSE` names (DuckDB, or Snowflake); `--db`
picks the DuckDB file.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Iterator

from dagster_project.project import DUCKDB_HELP

if TYPE_CHECKING:
    from dagster_project.resources.warehouse import WarehouseInterface, WarehouseSession

BATCH_HELP = "a batch id from `nextbest review`: <playbook>-<run date>, e.g. at_risk_save-2026-06-30"
DB_HELP = f"{DUCKDB_HELP}; when given, used even if NEXTBEST_WAREHOUSE=snowflake"


def register(subparsers) -> None:
    """Add `review`, `approve` and `reject` to the `nextbest` parser."""
    review = subparsers.add_parser("review", help="show a batch of drafts for approval (or list batches)")
    review.add_argument("batch", nargs="?", help=BATCH_HELP + "; omit to list batches")
    review.add_argument("--sample", type=int, default=5, help="random drafts to show (default 5)")
    review.add_argument("--seed", type=int, default=None, help="seed of the random sample, to show the same one again")
    review.add_argument("--db", default=None, help=DB_HELP)
    review.set_defaults(func=cmd_review)

    approve = subparsers.add_parser("approve", help="approve a batch for sending (recorded in nextbest.approvals)")
    approve.add_argument("batch", help=BATCH_HELP)
    approve.add_argument("--by", required=True, help="who approves (name or email)")
    approve.add_argument("--note", default=None, help="optional note kept with the approval")
    approve.add_argument("--db", default=None, help=DB_HELP)
    approve.set_defaults(func=cmd_approve)

    reject = subparsers.add_parser("reject", help="reject a batch (recorded in nextbest.approvals)")
    reject.add_argument("batch", help=BATCH_HELP)
    reject.add_argument("--by", required=True, help="who rejects (name or email)")
    reject.add_argument("--reason", required=True, help="what is wrong, for whoever fixes the drafts")
    reject.add_argument("--db", default=None, help=DB_HELP)
    reject.set_defaults(func=cmd_reject)


def _warehouse(args: argparse.Namespace) -> WarehouseInterface:
    """The warehouse resource: DuckDB at `--db` when given, else the one `NEXTBEST_WAREHOUSE` names.

    Raises FileNotFoundError for a DuckDB file that does not exist: these commands write, and
    opening a mistyped path would create an empty warehouse and record the decision or events there.
    """
    from dagster_project.resources.warehouse import command_warehouse

    return command_warehouse(args.db, must_exist=True)


@contextmanager
def _reading(warehouse: WarehouseInterface) -> Iterator[WarehouseSession]:
    """A session for reading; on DuckDB a read-only connection, so reviewers never block each other."""
    from dagster_project.resources.warehouse import DuckDBSession, DuckDBWarehouse, connect_duckdb

    if not isinstance(warehouse, DuckDBWarehouse):
        with warehouse.transaction() as tx:
            yield tx
        return
    con = connect_duckdb(warehouse.path, read_only=True)
    try:
        yield DuckDBSession(con)
    finally:
        con.close()


def _shown(value, blank: str = "-") -> str:
    """A text cell as a reviewer reads it: `blank` for a missing one (None, or NaN from a column of blanks)."""
    return blank if value is None or (isinstance(value, float) and value != value) or value == "" else str(value)


def _indent(text: str, prefix: str = "    ") -> str:
    return textwrap.indent(str(text).strip(), prefix)


def delivery_state(tx: WarehouseSession, batch_id: str) -> str:
    """Where a batch's messages are in the outbox ("sent 10, queued 1"), or "" before any was queued."""
    from dagster_project.delivery.outbox import state_counts

    if not tx.exists("nextbest", "outbox"):
        return ""
    counts = state_counts(tx, batch_id, kind="message")
    return ", ".join(f"{state} {n}" for state, n in counts.items() if n)


def render_batches(tx: WarehouseSession) -> str:
    """The batch list: drafts per status and where each batch stands."""
    from dagster_project.delivery.approvals import check_approval, known_batches

    batches = known_batches(tx, limit=50)
    if batches.empty:
        return "No drafts yet: materialize message_drafts (`nextbest demo`) first."
    lines = [f"{'batch':<36} {'drafts':>7} {'sendable':>9} {'blocked':>8}  approval"]
    for row in batches.itertuples(index=False):
        check = check_approval(tx, row.batch_id)
        state = check.reason if check.ok else (
            "awaiting approval" if check.approval is None else f"not approved: {check.reason}")
        delivered = delivery_state(tx, row.batch_id)
        lines.append(f"{row.batch_id:<36} {row.total:>7} {row.sendable:>9} {row.blocked:>8}  {state}"
                     + (f"; outbox: {delivered}" if delivered else ""))
    lines.append("\n`nextbest review BATCH` shows one batch; `nextbest approve BATCH --by NAME` approves it.")
    return "\n".join(lines)


def render_review(review, delivered: str = "") -> str:
    """One batch for a reviewer: counts, where its messages are (`delivered`: `delivery_state`), every
    blocked draft with its reason, a random sample."""
    s = review.summary
    out = [f"Batch {s.batch_id}  (playbook {s.playbook_id}, run date {s.run_date})",
           f"  drafts {s.total}: " + ", ".join(f"{k} {v}" for k, v in review.by_status.items()),
           f"  approval: {review.check.reason}"]
    out += [f"  outbox: {delivered or 'nothing queued yet (the export queues an approved batch)'}", ""]
    out.append(f"Blocked drafts ({len(review.blocked)}), not sent even if the batch is approved:")
    if review.blocked.empty:
        out.append("  none")
    for row in review.blocked.itertuples(index=False):
        out.append(f"  {row.customer_id}: {row.block_reason}")
    out.append("")
    out.append(f"Random sample of sendable drafts ({len(review.sample)}):")
    for row in review.sample.itertuples(index=False):
        out += ["", f"--- {row.customer_id} · {row.angle} · offer {_shown(row.offer_id)} · CTA {row.cta}",
                f"    Subject: {row.subject}", f"    Preheader: {_shown(row.preheader, '')}", _indent(row.body)]
    out += ["", f"Approve: nextbest approve {s.batch_id} --by NAME [--note ...]",
            f"Reject:  nextbest reject {s.batch_id} --by NAME --reason ..."]
    return "\n".join(out)


def cmd_review(args: argparse.Namespace) -> int:
    from dagster_project.delivery.approvals import ApprovalError, review_batch

    with ExitStack() as stack:
        try:
            tx = stack.enter_context(_reading(_warehouse(args)))
        except Exception as error:  # noqa: BLE001 - shown to the user as is
            print(f"Cannot open the warehouse: {error}", file=sys.stderr)
            return 2
        try:
            if not args.batch:
                print(render_batches(tx))
                return 0
            review = review_batch(tx, args.batch, sample_size=max(0, args.sample), seed=args.seed)
            if review is None:
                if args.batch.startswith("service_reply-"):
                    print(f"{args.batch} holds support replies (nextbest.service_reply_drafts): they are not approved "
                          "as a batch but read ticket by ticket: `nextbest service-context --customer ID` shows a "
                          "customer's.")
                    return 2
                print(f"Batch {args.batch!r} has no drafts.\n\n{render_batches(tx)}")
                return 2
            print(render_review(review, delivery_state(tx, args.batch)))
            return 0
        except ApprovalError as error:
            print(f"Cannot review: {error}", file=sys.stderr)
            return 2


def _decide(args: argparse.Namespace, decision: str, note: str | None) -> int:
    from dagster_project.delivery.approvals import ApprovalError, approval_ttl, latest_decision, record_decision

    try:
        ttl = approval_ttl()
        warehouse = _warehouse(args)
    except Exception as error:  # noqa: BLE001 - shown to the user as is
        print(f"Cannot {decision} {args.batch}: {error}", file=sys.stderr)
        return 2
    try:
        with _reading(warehouse) as tx:
            before = latest_decision(tx, args.batch)
        approval = record_decision(warehouse, args.batch, decision, args.by, note, source="cli")
    except ApprovalError as error:
        print(f"Cannot {decision} {args.batch}: {error}", file=sys.stderr)
        return 2
    if before is not None:  # the decision this one replaces: a reviewer overruling another sees whose
        what = "approval" if before.decision == "approved" else "rejection"
        print(f"Replaces the {what} by {before.decided_by} at {before.decided_at:%Y-%m-%d %H:%M} UTC"
              + (f": {before.note}" if before.note else ""))
    if approval.decision == "approved":
        until = approval.decided_at + ttl
        print(f"Approved {approval.batch_id} by {approval.decided_by}: {approval.drafts_sendable} drafts will be "
              f"sent ({approval.drafts_total - approval.drafts_sendable} blocked stay unsent). Send it with "
              f"`nextbest export {approval.batch_id}`, or let approved_batches_sensor (switched on in Dagster) "
              f"export it; the approval holds until {until:%Y-%m-%d %H:%M} UTC and only while the drafts stay "
              "as they are.")
    else:
        print(f"Rejected {approval.batch_id} by {approval.decided_by}: {approval.note}. Nothing is sent.")
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    return _decide(args, "approve", args.note)


def cmd_reject(args: argparse.Namespace) -> int:
    return _decide(args, "reject", args.reason)

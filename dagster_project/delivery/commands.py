"""Delivery commands for the `nextbest` CLI: `export [BATCH]`, `lift`, `ingest-events FILE` and `serve-webhooks`.

`export` runs the `export_approved_batch` job in this process (what the approval sensor launches).
The other two write ESP events through the warehouse resource `NEXTBEST_WAREHOUSE` names (DuckDB at
`NEXTBEST_DUCKDB_PATH` or `--db`, or Snowflake from the `SNOWFLAKE_*` variables), picked the
way `nextbest review` / `approve` pick it.
"""

from __future__ import annotations

import argparse
import os
import sys

from dagster_project.delivery.approval_commands import DB_HELP, _warehouse

WEBHOOK_SECRET_ENV = {"nextbest": "NEXTBEST_WEBHOOK_SECRET", "customerio": "CUSTOMERIO_WEBHOOK_SIGNING_KEY",
                      "hubspot": "HUBSPOT_CLIENT_SECRET", "klaviyo": "KLAVIYO_WEBHOOK_SECRET"}


def register(subparsers) -> None:
    """Add the delivery subcommands to the `nextbest` parser."""
    export = subparsers.add_parser(
        "export", help="send approved batches to the ESP now (the export_approved_batch job, as the approval sensor "
                       "runs it); exactly once, whatever was sent before is not sent again")
    export.add_argument("batch", nargs="?", default=None,
                        help="an approved batch, e.g. at_risk_save-2026-06-30; without one, every batch whose "
                             "approval holds, and whatever waited (quiet hours, retries)")
    export.add_argument("--db", default=None, help=DB_HELP)
    export.set_defaults(func=cmd_export)

    lift = subparsers.add_parser(
        "lift", help="did it work? each playbook's lift against its holdout over finished campaigns (campaign_lift)")
    lift.add_argument("--db", default=None, help=DB_HELP)
    lift.set_defaults(func=cmd_lift)

    ingest = subparsers.add_parser("ingest-events", help="load a JSONL/CSV file of ESP events into raw.email_events")
    ingest.add_argument("file", help="JSONL (.jsonl/.ndjson/.json) or CSV with event_id, customer_id, campaign_id, "
                                     "message_id, event_type, occurred_at")
    ingest.add_argument("--db", default=None, help=DB_HELP)
    ingest.set_defaults(func=cmd_ingest_events)

    serve = subparsers.add_parser("serve-webhooks", help="receive signed ESP webhooks into raw.email_events")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8787)
    serve.add_argument("--db", default=None, help=DB_HELP)
    serve.set_defaults(func=cmd_serve_webhooks)


def _open_warehouse(args: argparse.Namespace):
    """The warehouse a command works on, or None after saying why it cannot be opened."""
    try:
        return _warehouse(args)
    except Exception as error:  # noqa: BLE001 - shown to the user as is
        print(f"Cannot open the warehouse: {error}", file=sys.stderr)
        return None


def cmd_export(args: argparse.Namespace) -> int:
    """Materialize `esp_export` here (the asset of `export_approved_batch`) on the warehouse `--db` or the
    environment names, to the ESP `NEXTBEST_ESP` names; exit 1 when the export refuses or fails."""
    warehouse = _open_warehouse(args)
    if warehouse is None:
        return 2
    import dagster as dg

    from dagster_project.delivery.assets import esp_export
    from dagster_project.delivery.esp import esp_from_env
    from dagster_project.project import WAREHOUSE_RUN_TAGS, dagster_instance

    try:
        esp = esp_from_env()
    except ValueError as error:
        print(f"Cannot export: {error}", file=sys.stderr)
        return 2
    result = dg.materialize(
        [esp_export], resources={"warehouse": warehouse, "esp": esp}, instance=dagster_instance(),
        raise_on_error=False,
        run_config={"ops": {"esp_export": {"config": {"batch": args.batch} if args.batch else {}}},
                    "loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        tags={**WAREHOUSE_RUN_TAGS, "nextbest/started_by": "nextbest export"})
    if not result.success:
        failure = next((e for e in result.all_events if e.is_step_failure), None)
        error = failure.event_specific_data.error if failure is not None else None
        print(f"Nothing exported: {(getattr(error, 'message', None) or 'the export run failed').strip()}",
              file=sys.stderr)
        return 1
    meta = {k: v.value for k, v in result.asset_materializations_for_node("esp_export")[0].metadata.items()}
    print(f"Exported to {meta.get('esp')}: {', '.join(meta.get('batches') or []) or 'no approved batch'}")
    print(f"  queued {meta.get('queued', 0)}, already in the outbox {meta.get('already_in_outbox', 0)}, "
          f"sent {meta.get('sent', 0)}, deferred {meta.get('deferred', 0)} (quiet hours), "
          f"suppressed {meta.get('suppressed', 0)}, dead {meta.get('dead', 0)}")
    if meta.get("not_exported"):
        print(f"  not exported:\n{meta['not_exported']}")
    return 0


def cmd_lift(args: argparse.Namespace) -> int:
    """Print `campaign_lift`'s table: finished campaigns pooled per playbook, with what is left out and why."""
    from dagster_project.delivery.approval_commands import _reading
    from dagster_project.delivery.approvals import never_exported_campaigns
    from dagster_project.delivery.assets import CAMPAIGN_PERFORMANCE, lift_table_markdown, playbook_lift, read_performance

    warehouse = _open_warehouse(args)
    if warehouse is None:
        return 2
    with _reading(warehouse) as tx:
        if not tx.exists(*CAMPAIGN_PERFORMANCE.split(".")):
            print(f"No {CAMPAIGN_PERFORMANCE} yet: run the pipeline (`nextbest demo`, or the "
                  "daily_personalization job) first", file=sys.stderr)
            return 2
        performance = read_performance(tx)
        unsent = never_exported_campaigns(tx)
    holdout = performance[performance["control_arm"] == "holdout"]
    never = holdout["campaign_id"].isin(unsent)
    running = ~never & ~holdout["window_complete"].astype(bool)
    print(lift_table_markdown(playbook_lift(performance[~performance["campaign_id"].isin(unsent)])))
    finished, provisional, not_sent = (holdout.loc[rows, "campaign_id"].nunique()
                                       for rows in (~never & ~running, running, never))
    print(f"\nCampaigns: {finished} finished (pooled above), {provisional} still inside their goal window "
          f"(provisional, left out: see {CAMPAIGN_PERFORMANCE}), {not_sent} never sent (left out).")
    return 0


def cmd_ingest_events(args: argparse.Namespace) -> int:
    from dagster_project.delivery.events import ingest_events_file

    warehouse = _open_warehouse(args)
    if warehouse is None:
        return 2
    try:
        summary = ingest_events_file(warehouse, args.file)
    except (FileNotFoundError, ValueError) as error:
        print(f"Cannot ingest {args.file}: {error}", file=sys.stderr)
        return 2
    print(f"{args.file}: {summary.read} events read, {summary.inserted} new, "
          f"{summary.duplicates} already stored, {summary.quarantined} quarantined (see raw.raw_quarantine)")
    return 0


def cmd_serve_webhooks(args: argparse.Namespace) -> int:
    from dagster_project.delivery.events import make_webhook_server

    secrets = {source: os.environ[var] for source, var in WEBHOOK_SECRET_ENV.items() if os.environ.get(var)}
    if not secrets:
        print("No webhook secret configured: set " + " and/or ".join(WEBHOOK_SECRET_ENV.values()), file=sys.stderr)
        return 2
    warehouse = _open_warehouse(args)
    if warehouse is None:
        return 2
    try:
        server = make_webhook_server(warehouse, secrets, args.host, args.port)
    except (OSError, OverflowError) as error:  # port taken, out of range, or an address not of this machine
        print(f"Cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 2
    host, port = server.server_address[:2]
    print(f"Receiving webhooks on http://{host}:{port}/webhooks/{{{','.join(sorted(secrets))}}} (Ctrl-C to stop)",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0

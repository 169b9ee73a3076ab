"""Delivery commands for the `nextbest` CLI: `ingest-events FILE` and `serve-webhooks`.

Both write ESP events through the warehouse resource `NEXTBEST_WAREHOUSE` names (DuckDB at
`NEXTBEST_DUCKDB_PATH` or `--db`, or Snowflake from the `SNOWFLAKE_*` variables), picked the
way `nextbest review` / `approve` pick it.
"""

from __future__ import annotations

import argparse
import sys
import os

from dagster_project.delivery.approval_commands import DB_HELP, _warehouse

WEBHOOK_SECRET_ENV = {"nextbest": "NEXTBEST_WEBHOOK_SECRET", "customerio": "CUSTOMERIO_WEBHOOK_SIGNING_KEY",
                      "hubspot": "HUBSPOT_CLIENT_SECRET", "klaviyo": "KLAVIYO_WEBHOOK_SECRET"}


def register(subparsers) -> None:
    """Add the delivery subcommands to the `nextbest` parser."""
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


def cmd_ingest_events(args: argparse.Namespace) -> int:
    from dagster_project.delivery.events import ingest_events_file

    try:
        warehouse = _warehouse(args)
    except Exception as error:  # noqa: BLE001 - shown to the user as is
        print(f"Cannot open the warehouse: {error}", file=sys.stderr)
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
    try:
        warehouse = _warehouse(args)
    except Exception as error:  # noqa: BLE001 - shown to the user as is
        print(f"Cannot open the warehouse: {error}", file=sys.stderr)
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

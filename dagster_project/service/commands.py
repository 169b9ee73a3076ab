"""`nextbest service-context` and `nextbest save-offer-choice`: the agent view and agent discretion.

The agent view includes the customer's predictions (churn risk band, 12-month CLV, next order
date) once `customer_predictions` has run; without them it shows everything else.

    nextbest service-context --customer C00000042 [--json]
    nextbest save-offer-choice --recommendation save_offer:portal:E1 --option pause_instead --agent maria

Both read and write through the same functions the service assets use: a DuckDB file by default
(`--db`, else NEXTBEST_DUCKDB_PATH), or Snowflake with `NEXTBEST_WAREHOUSE=snowflake` and no `--db`.

Exit codes: 0 done, 2 bad input (unknown customer, option not allowed, no warehouse).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable


def register(subparsers) -> None:
    """Add the service subcommands to the `nextbest` parser."""
    view = subparsers.add_parser("service-context", help="print a customer's agent view (customer_service_context)")
    view.add_argument("--customer", required=True, help="customer id")
    view.add_argument("--json", action="store_true",
                      help="print the row (and latest save offer and predictions) as JSON")
    view.add_argument("--db", default=None, help="DuckDB file (default: NEXTBEST_DUCKDB_PATH)")
    view.set_defaults(func=run)

    choose = subparsers.add_parser("save-offer-choice", help="log an agent's choice of another allowed save offer")
    choose.add_argument("--recommendation", required=True, help="recommendation id (see service-context)")
    choose.add_argument("--option", required=True, help="option id the agent gives instead")
    choose.add_argument("--agent", required=True, help="who chose it")
    choose.add_argument("--note", default=None)
    choose.add_argument("--db", default=None, help="DuckDB file (default: NEXTBEST_DUCKDB_PATH)")
    choose.set_defaults(func=run_choice)


def _open(args, read_only: bool) -> tuple[Any, Callable[[], None]]:
    """(a source the service readers take, how to release it): see `command_source`.

    Raises FileNotFoundError for a DuckDB file that does not exist, also when writing: a mistyped
    path would otherwise become a new, empty warehouse.
    """
    from dagster_project.resources.warehouse import command_source

    _, source, close = command_source(args.db, read_only=read_only, must_exist=True)
    return source, close


def run(args: argparse.Namespace) -> int:
    """Print the agent view of one customer."""
    from dagster_project.messaging.briefs import BriefError
    from dagster_project.service.context import (customers_like, latest_reply_drafts, latest_save_recommendation,
                                                 load_predictions, load_service_context, render_agent_view,
                                                 render_reply_drafts, store_currency)

    try:
        source, close = _open(args, read_only=True)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        rows = load_service_context(source, [args.customer])
        save = latest_save_recommendation(source, args.customer)
        predictions = load_predictions(source, args.customer)
        replies = latest_reply_drafts(source, args.customer)
        alike = [] if args.customer in rows else customers_like(source, args.customer)
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        close()
    row = rows.get(args.customer)
    if row is None:
        print(f"error: no customer {args.customer!r} in analytics.customer_service_context"
              + (f"; did you mean {' or '.join(map(repr, alike))}? (ids are case-sensitive)" if alike else ""),
              file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"context": row, "save_offer": save, "predictions": predictions, "reply_drafts": replies},
                         indent=2, default=str))
    else:
        try:
            currency = store_currency()
        except BriefError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(render_agent_view(row, save, predictions, currency) + (render_reply_drafts(replies) if replies else ""))
    return 0


def run_choice(args: argparse.Namespace) -> int:
    """Record an agent's pick among the options the customer qualifies for."""
    from dagster_project.service.save_offers import record_agent_choice

    if not args.agent.strip():
        print("error: say who chose the offer: --agent NAME (recorded in nextbest.save_offer_choices)",
              file=sys.stderr)
        return 2
    try:
        source, close = _open(args, read_only=False)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        choice = record_agent_choice(source, args.recommendation, args.option, args.agent, args.note)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        close()
    print(f"Logged: {choice['agent_id']} gives {choice['chosen_option_id']} "
          f"(recommended {choice['recommended_option_id']}) for {choice['customer_id']}")
    return 0

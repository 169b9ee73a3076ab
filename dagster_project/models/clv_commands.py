"""`nextbest clv-backtest`: how well would CLV predictions have done on your own data?

    nextbest clv-backtest orders.csv --customer customer_id --date ordered_at \\
        --amount total --cutoff 2024-06-30 [--horizon-days 90] [--predictions out.csv]

Prints the backtest report as JSON on stdout. Input problems go to stderr
with exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dagster_project.models.clv_data import ClvInputError, check_cutoff, parse_cutoff, read_transaction_file


def register(subparsers) -> None:
    """Add the `clv-backtest` command to the `nextbest` parser."""
    command = subparsers.add_parser(
        "clv-backtest", help="backtest churn risk and CLV predictions on a transaction log",
        description="Fit on orders up to --cutoff, score against the --horizon-days after it, print JSON.")
    command.add_argument("file", help="CSV or Parquet file, one row per order")
    command.add_argument("--customer", required=True, help="column with the customer id")
    command.add_argument("--date", required=True, help="column with the order date or timestamp")
    command.add_argument("--amount", required=True, help="column with the order value")
    command.add_argument("--cutoff", required=True, help="last day of the history, YYYY-MM-DD")
    command.add_argument("--horizon-days", type=int, default=90, help="days scored after the cutoff (default 90)")
    command.add_argument("--predictions", default=None, help="write per-customer predictions to this CSV")
    command.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the backtest; 0 on success, 2 when the input cannot be used."""
    from dagster_project.models.clv_backtest import run_backtest  # scikit-learn loads only when needed

    try:
        if args.horizon_days <= 0:
            raise ClvInputError(f"--horizon-days must be a positive number of days, got {args.horizon_days}")
        cutoff = parse_cutoff(args.cutoff)
        if args.predictions and not Path(args.predictions).resolve().parent.is_dir():
            # checked before the backtest runs, not after minutes of fitting
            raise ClvInputError(f"--predictions {args.predictions}: folder {Path(args.predictions).resolve().parent} "
                                "does not exist")
        transactions = read_transaction_file(args.file, args.customer, args.date, args.amount)
        if transactions.empty:
            raise ClvInputError(f"{args.file}: no rows")
        warnings = check_cutoff(transactions, cutoff, args.horizon_days)
    except ClvInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    result = run_backtest(transactions, cutoff, args.horizon_days)
    report = {"file": str(args.file), **result.report, "warnings": warnings}
    print(json.dumps(report, indent=2))
    if args.predictions:
        result.predictions.to_csv(args.predictions, index_label="customer_id", float_format="%.6g")
        print(f"wrote {len(result.predictions)} customer predictions to {args.predictions}", file=sys.stderr)
    return 0

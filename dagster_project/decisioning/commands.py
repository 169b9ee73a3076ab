"""`nextbest uplift-backtest`: would targeting by predicted uplift have beaten sending to everyone?

    nextbest uplift-backtest campaign.csv --treatment arm --control holdout \\
        --outcome converted [--value order_value] [--predictions out.csv]

Works on any randomized campaign export with one row per customer; every
other column is a feature. Prints the report as JSON on stdout; with
`--predictions`, writes out-of-fold uplift per row and arm plus a Qini curve
PNG beside it (`out_qini.png`). Input problems go to stderr with exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers) -> None:
    """Add the `uplift-backtest` command to the `nextbest` parser."""
    command = subparsers.add_parser(
        "uplift-backtest", help="backtest uplift models on a randomized campaign export",
        description="K-fold cross-fitted T-, DR-, X- and interaction learners; prints ATE, Qini, AUUC, top-k uplift, policy values.")
    command.add_argument("file", help="CSV or Parquet file, one row per customer")
    command.add_argument("--treatment", required=True, help="column with the arm each customer was assigned")
    command.add_argument("--control", required=True, help="the treatment column's value for the control arm")
    command.add_argument("--outcome", required=True, help="column with the binary outcome (0/1, true/false)")
    command.add_argument("--value", default=None, help="column with the value of each customer's outcome")
    command.add_argument("--predictions", default=None, help="write out-of-fold uplift per row to this CSV")
    command.add_argument("--folds", type=int, default=5, help="cross-fitting folds (default 5)")
    command.add_argument("--seed", type=int, default=0, help="seed for folds and models (default 0)")
    command.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the backtest; 0 on success, 2 when the input cannot be used."""
    # scikit-learn and matplotlib load only when the command runs.
    from dagster_project.models.uplift_backtest import (UpliftInputError, plot_qini, read_campaign_file,
                                                        run_uplift_backtest)

    try:
        if args.folds < 2:
            raise UpliftInputError(f"--folds must be at least 2, got {args.folds}")
        if args.predictions and not Path(args.predictions).resolve().parent.is_dir():
            # checked before the backtest runs, not after minutes of fitting
            raise UpliftInputError(f"--predictions {args.predictions}: folder "
                                   f"{Path(args.predictions).resolve().parent} does not exist")
        frame = read_campaign_file(args.file)
        result = run_uplift_backtest(frame, args.treatment, args.control, args.outcome, args.value,
                                     folds=args.folds, seed=args.seed)
    except UpliftInputError as error:
        print(f"error: {args.file}: {error}", file=sys.stderr)
        return 2
    report = {"file": str(args.file), **result.report}
    if args.predictions:
        out = Path(args.predictions)
        result.predictions.to_csv(out, index=False, float_format="%.6g")
        png = plot_qini(result.curves, out.with_name(f"{out.stem}_qini.png"))
        report["predictions_file"], report["qini_plot"] = str(out), str(png)
        print(f"wrote {len(result.predictions)} rows to {out} and the Qini curve to {png}", file=sys.stderr)
    print(json.dumps(report, indent=2, default=float))
    return 0

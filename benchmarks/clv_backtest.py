"""Wall time and peak memory of the CLV backtest on a 1M-transaction log.

    python benchmarks/clv_backtest.py                      # 1,000,000 transactions
    python benchmarks/clv_backtest.py --transactions 200000

The log is drawn from a BG/NBD + Gamma-Gamma store (vectorised, a few
seconds), written to Parquet, and scored by the same code path as
`nextbest clv-backtest FILE ...` in this process. Peak memory is the process's
maximum resident set size from getrusage; CPU seconds and the load
average are printed too, since wall time suffers on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dagster_project.models import clv_commands  # noqa: E402
from dagster_project.models.clv_bgnbd import BgNbdParams  # noqa: E402
from dagster_project.models.clv_gamma_gamma import GammaGammaParams  # noqa: E402
from dagster_project.models.clv_simulate import simulate_transactions  # noqa: E402

# About 5.5 purchase days per customer over two years with these parameters.
PURCHASE = BgNbdParams(r=0.5, alpha=20.0, a=0.8, b=2.5)
SPEND = GammaGammaParams(p=6.0, q=4.0, gamma=15.0)
ROWS_PER_CUSTOMER = 5.3


def peak_rss_mib() -> float:
    """Maximum resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """User + system CPU time of this process (wall time suffers on a busy machine)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=1_000_000)
    parser.add_argument("--cutoff", default="2024-09-30")
    parser.add_argument("--seed", type=int, default=42)
    options = parser.parse_args()

    started = time.perf_counter()
    customers = int(options.transactions / ROWS_PER_CUSTOMER)
    log = simulate_transactions(customers, PURCHASE, SPEND, start="2023-01-01", end="2024-12-31", seed=options.seed)
    simulated = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "orders.parquet"
        log.to_parquet(path, index=False)
        rows = len(log)
        del log
        rss_before = peak_rss_mib()
        cpu_before = cpu_seconds()
        args = argparse.Namespace(file=str(path), customer="customer_id", date="date", amount="amount",
                                  cutoff=options.cutoff, horizon_days=90, predictions=str(Path(folder) / "p.csv"))
        report_started = time.perf_counter()
        with open(Path(folder) / "report.json", "w") as out:
            stdout, sys.stdout = sys.stdout, out
            try:
                code = clv_commands.run(args)
            finally:
                sys.stdout = stdout
        wall = time.perf_counter() - report_started
        cpu = cpu_seconds() - cpu_before
        report = json.loads((Path(folder) / "report.json").read_text())
    if code != 0:
        print(f"backtest failed with exit code {code}")
        return code
    summary = {
        "machine": f"{platform.machine()} {platform.python_version()}",
        "transactions": rows,
        "customers_scored": report["customers"],
        "simulate_seconds": round(simulated, 1),
        "backtest_wall_seconds": round(wall, 1),
        "backtest_cpu_seconds": round(cpu, 1),
        "load_average_1min": round(os.getloadavg()[0], 1),
        "peak_rss_mib_before_backtest": round(rss_before),
        "peak_rss_mib": round(peak_rss_mib()),
        "chosen_model": report["chosen_model"],
        "figures": {name: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in figures.items()
                           if k != "calibration_by_decile"} for name, figures in report["models"].items()},
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

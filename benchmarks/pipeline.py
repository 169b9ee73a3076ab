"""Wall time and peak memory of simulate, dbt build and `nextbest demo`.

    python benchmarks/pipeline.py                 # 8,000 and 100,000 subscribers
    python benchmarks/pipeline.py --sizes 8000    # one size

Each stage runs as its own process on a fresh DuckDB file, so its peak
resident memory (from the kernel's rusage of that child) is its own.
Target: `nextbest demo` at 8,000 subscribers under 2 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run_stage(name: str, argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run one stage; return (wall seconds, peak RSS MiB). Fails loudly on a non-zero exit."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{name} failed:\n{output[-5000:]}")
    return wall, usage.ru_maxrss / 1024  # ru_maxrss is KiB on Linux


def bench(customers: int, months: int):
    """Yield (stage, wall s, peak MiB) for each stage as it finishes."""
    with tempfile.TemporaryDirectory(prefix="nextbest-bench-") as tmp:
        env = {**os.environ, "NEXTBEST_DUCKDB_PATH": str(Path(tmp) / "bench.duckdb")}
        sim = [str(BIN / "nextbest"), "simulate", "--customers", str(customers), "--months", str(months)]
        yield ("simulate", *run_stage("simulate", sim, env))
        dbt = [str(BIN / "dbt"), "build", "--project-dir", "dbt", "--profiles-dir", "dbt", "--quiet"]
        yield ("dbt build (no scores yet)", *run_stage("dbt build", dbt, env))
        # The README's first command on an empty warehouse: simulate + the whole job.
        fresh = {**env, "NEXTBEST_DUCKDB_PATH": str(Path(tmp) / "fresh.duckdb")}
        demo = [str(BIN / "nextbest"), "demo", "--customers", str(customers), "--months", str(months)]
        yield ("nextbest demo (empty warehouse)", *run_stage("demo", demo, fresh))
        yield ("nextbest demo (raw present)", *run_stage("demo", [str(BIN / "nextbest"), "demo"], fresh))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[8_000, 100_000])
    parser.add_argument("--months", type=int, default=18)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{'subscribers':>12}  {'stage':<28} {'wall s':>8} {'peak MiB':>9}")
    for size in args.sizes:
        for stage, wall, peak in bench(size, args.months):
            print(f"{size:>12,}  {stage:<28} {wall:>8.1f} {peak:>9.0f}", flush=True)


if __name__ == "__main__":
    main()

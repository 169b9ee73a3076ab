"""Wall time and peak memory per stage at 10k, 100k and 1M subscribers on DuckDB.

    python benchmarks/scale.py                          # 10,000 / 100,000 / 1,000,000
    python benchmarks/scale.py --sizes 10000 100000     # some sizes
    python benchmarks/scale.py --keep DIR               # keep the warehouse files in DIR
    python benchmarks/scale.py --dbt-only               # simulate, dbt build, incremental day
    python benchmarks/scale.py --dbt-only --direct-sql  # ... and the direct SQL replay

Stages, each its own process (the assets of a day: one job run) on its own copy of the
warehouse, so each peak resident memory is the stage's own (the kernel's rusage of that
child, or the sampled sum of its process tree when that is larger: steps with worker
processes):
  simulate      `nextbest simulate` into a fresh file (raw.*)
  dbt build     models, snapshots and tests, as the `warehouse` assets run them
  dbt build, incremental day
                the next day's run on a copy of that warehouse: 2% of the customers
                get events on the day the full build had no data for yet
                (benchmarks/incremental_day.py), the as_of moves on a day, and
                `dbt build` runs again; its share of the full build is printed
  <asset>       every other materializable asset in `definitions.py` (models,
                decisioning, messaging, ...) in one job run, one process, as the
                `daily_personalization` job runs them (in-process executor); a row
                per asset: its steps (the asset and its checks) and the largest
                sampled memory of the process tree while they ran
  daily: ...    the next day's whole run on a copy of what those left: the same 2%
                of customers with events, `dbt build` and every asset at the next
                as_of (models kept, drafts cached); its share of the full pipeline
  direct SQL    the same compiled SQL (from that build's manifest, in its run order,
                tests included) in one DuckDB connection on a copy of the raw data:
                what dbt's own overhead is measured against (last, as it is long)
Targets (issue 7, 2 cores / 24 GiB): 1M end to end without simulation < 15 min, peak
< 8 GiB; dbt build within 1.5x of direct SQL; a daily incremental run in which 2% of
customers changed under 15% of a full run. Results: benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb

from incremental_day import append_day

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from dagster_project.resources.warehouse import memory_limit  # noqa: E402  (this checkout's package)
BIN = Path(sys.executable).parent
SKIP_GROUPS = {"ingest", "warehouse"}  # raw data comes from `simulate`, dbt models from `dbt build`
STEP_MARK = "step: "  # `--materialize` prints a line per step, this and JSON


def tree_usage(root: int) -> tuple[int, float]:
    """(resident bytes, CPU seconds) of process `root` and every process under it, summed (Linux
    /proc). The CPU seconds include those of children already waited for (cutime, cstime)."""
    parent, rss, cpu, page = {}, {}, {}, os.sysconf("SC_PAGE_SIZE")
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    stat = handle.read()
            except OSError:  # gone meanwhile
                continue
            fields = stat[stat.rfind(")") + 2:].split()  # after the command name (which may hold spaces)
            parent[int(entry)], rss[int(entry)] = int(fields[1]), int(fields[21]) * page
            cpu[int(entry)] = sum(int(f) for f in fields[11:15]) / tick  # utime, stime, cutime, cstime
    children: dict[int, list[int]] = {}
    for pid, ppid in parent.items():
        children.setdefault(ppid, []).append(pid)
    total, seconds, stack = 0, 0.0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        seconds += cpu.get(pid, 0.0)
        stack.extend(children.get(pid, []))
    return total, seconds


def run_stage(name: str, argv: list[str], env: dict[str, str],
              samples: list[tuple[float, int, float]] | None = None) -> tuple[float, float, str]:
    """Run one stage; return (wall seconds, peak RSS MiB, output). Exits loudly on failure.

    The peak is the larger of the kernel's rusage of the stage (its largest single process) and
    the sum over its process tree sampled every 0.25 s (a step that works in worker processes).
    `samples`, when given, gets each (epoch seconds, tree bytes, tree CPU seconds) sampled."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sampled = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.25):
            rss, cpu = tree_usage(proc.pid)
            sampled[0] = max(sampled[0], rss)
            if samples is not None:
                samples.append((time.time(), rss, cpu))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output = proc.stdout.read()
    done.set()
    sampler.join()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{name} failed:\n{output[-6000:]}")
    return wall, max(usage.ru_maxrss / 1024, sampled[0] / 2**20), output  # ru_maxrss is KiB on Linux


def direct_sql(db: str, target: str) -> None:
    """Replay a dbt build's compiled SQL in one DuckDB connection, in the build's order."""
    import duckdb

    manifest = json.loads((Path(target) / "manifest.json").read_text())
    order = [r["unique_id"] for r in json.loads((Path(target) / "run_results.json").read_text())["results"]]
    # The memory cap dbt's profile sets (NEXTBEST_DUCKDB_MEMORY_LIMIT): without it, at 1M the replay
    # ran DuckDB out of memory at 80% of RAM (18.8 GiB) where dbt spills to disk.
    con = duckdb.connect(db)
    con.execute(f"set memory_limit = '{memory_limit()}'")
    for unique_id in order:
        node = manifest["nodes"][unique_id]
        sql = node.get("compiled_code")
        if not sql:
            continue
        if node["resource_type"] == "test":
            con.execute(f"select count(*) from ({sql}) as failures").fetchone()
            continue
        relation = f'"{node["schema"]}"."{node.get("alias") or node["name"]}"'
        kind = "view" if node["config"]["materialized"] == "view" else "table"
        con.execute(f'create schema if not exists "{node["schema"]}"')
        # The build already made this relation; drop it so both kinds of replace work.
        con.execute(f"drop view if exists {relation}")
        con.execute(f"drop table if exists {relation}")
        # No hook changes how a full build runs: the incremental pre-hooks render nothing then.
        con.execute(f"create {kind} {relation} as {sql}")
    con.close()


def other_assets() -> list[str]:
    """Materializable assets outside `ingest` and `warehouse`, in dependency order."""
    from dagster_project.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = []
    for key in graph.toposorted_asset_keys:
        node = graph.get(key)
        if node.is_materializable and node.group_name not in SKIP_GROUPS:
            keys.append(key.to_user_string())
    return keys


def materialize(keys: list[str]) -> None:
    """Materialize these assets in one job run, in one process, as a scheduled run of the
    `daily_personalization` job does (the in-process executor; their upstream tables are already
    in the warehouse). Prints a JSON line per step: its asset, start, end and duration."""
    import dagster as dg

    from dagster_project.definitions import defs

    job = defs.resolve_implicit_global_asset_job_def()
    instance = dg.DagsterInstance.ephemeral()
    result = job.execute_in_process(asset_selection=[dg.AssetKey.from_user_string(k) for k in keys],
                                    instance=instance, raise_on_error=False)
    if not result.success:
        failures = [str(e.event_specific_data.error) for e in result.all_events if e.is_step_failure]
        sys.exit(f"materializing {', '.join(keys)} failed:\n" + "\n".join(failures)[-6000:])
    # Each step's asset: what it materialized, or the asset its check evaluated.
    asset_of, started = {}, {}
    for entry in instance.all_logs(result.run_id):
        event = entry.dagster_event
        if event is None:
            continue
        if event.is_step_start:
            started[event.step_key] = entry.timestamp
        elif event.event_type_value in ("ASSET_MATERIALIZATION", "ASSET_CHECK_EVALUATION"):
            data = event.event_specific_data
            key = data.materialization.asset_key if hasattr(data, "materialization") else data.asset_key
            asset_of.setdefault(event.step_key, key.to_user_string())
        elif event.is_step_success:
            print(STEP_MARK + json.dumps({"step": event.step_key, "asset": asset_of.get(event.step_key, event.step_key),
                                          "start": started[event.step_key], "end": entry.timestamp,
                                          "seconds": event.event_specific_data.duration_ms / 1000}), flush=True)


def bench(customers: int, months: int, work: Path, print_row, dbt_only: bool = False,
          direct_sql_too: bool = False) -> None:
    # PYTHONPATH: run this checkout's package (e.g. a snapshot copy), not whichever is installed.
    # The file sinks write under `work` too: in the checkout's data/ they grew run after run, and
    # each export first reads the send ids already in its file.
    env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DO_NOT_TRACK": "1", "PYTHONPATH": str(REPO),
           "NEXTBEST_OUTBOX_FILE": str(work / "outbox.jsonl"), "NEXTBEST_HELPDESK_FILE": str(work / "helpdesk.jsonl")}
    # The replay's file has the build's file name (in its own folder): compiled SQL names the database.
    raw, built, direct = work / "simulated.duckdb", work / "built.duckdb", work / "replay" / "built.duckdb"
    direct.parent.mkdir(exist_ok=True)
    # The store ends at the start of `day` (UTC), the day the full build runs at.
    day = datetime.now(timezone.utc).date()
    wall, peak, _ = run_stage("simulate", [sys.executable, "-m", "dagster_project.cli", "simulate", "--customers", str(customers),
                                           "--months", str(months), "--end-date", day.isoformat(), "--db", str(raw)], env)
    print_row(customers, "simulate", wall, peak)
    shutil.copyfile(raw, built)
    target = work / "target"
    dbt_wall, peak, _ = run_stage("dbt build", dbt_build(work, target, day, first=True),
                                  {**env, "NEXTBEST_DUCKDB_PATH": str(built)})
    print_row(customers, "dbt build", dbt_wall, peak)
    incremental_day(customers, work, built, day, dbt_wall, env, print_row)
    if not dbt_only:
        full = assets(customers, built, dbt_wall, env, print_row)
        daily_pipeline(customers, work, built, day, full, env, print_row)
    if dbt_only and not direct_sql_too:
        return
    # Last, so the pipeline's own figures are in even if this long replay is cut short.
    shutil.copyfile(raw, direct)
    direct_wall, peak, _ = run_stage("direct SQL", [sys.executable, __file__, "--direct", str(direct), str(target)],
                                     {**env, "NEXTBEST_DUCKDB_PATH": str(direct)})
    print_row(customers, "direct SQL (same compiled SQL)", direct_wall, peak,
              f"dbt build / direct = {dbt_wall / direct_wall:.2f}x")
    direct.unlink()


def assets(customers: int, built: Path, dbt_wall: float, env: dict[str, str], print_row) -> tuple[float, float]:
    """Every other asset in one job run; then the end-to-end totals.

    Returns (end to end: dbt build + the job run's wall, steps only: dbt build + its steps summed)."""
    wall, steps = run_assets(customers, {**env, "NEXTBEST_DUCKDB_PATH": str(built)}, print_row, "asset ")
    print_row(customers, "end to end without simulate", dbt_wall + wall, float("nan"),
              "dbt build + one job run of every other asset")
    print_row(customers, "end to end, steps only", dbt_wall + steps, float("nan"),
              "dbt build + the job's steps, without its process start and imports")
    print_row(customers, "warehouse file", float("nan"), built.stat().st_size / 2**20, "(MiB on disk)")
    return dbt_wall + wall, dbt_wall + steps


def run_assets(customers: int, env: dict[str, str], print_row, label: str) -> tuple[float, float]:
    """Materialize every asset `other_assets` lists in one job run (one process); a row per asset
    (its steps: the asset and its checks), then (the run's wall, its steps summed).

    An asset's peak is the largest sampled memory of the run's process tree while its steps ran;
    what earlier steps left allocated in the process counts, as it does in a scheduled run."""
    listed = subprocess.run([sys.executable, __file__, "--list-assets"], env=env, cwd=REPO, capture_output=True,
                            text=True, check=True)
    keys = json.loads(listed.stdout.strip().splitlines()[-1])
    samples: list[tuple[float, int, float]] = []
    wall, peak, output = run_stage(f"{label}job run", [sys.executable, __file__, "--materialize", *keys], env, samples)
    steps = [json.loads(line[len(STEP_MARK):]) for line in output.splitlines() if line.startswith(STEP_MARK)]
    by_asset: dict[str, dict] = {}
    for step in steps:
        # Samples are 0.25 s apart: a step shorter than that takes the next one.
        during = [rss for at, rss, _ in samples if step["start"] <= at <= step["end"] + 0.25]
        mine = by_asset.setdefault(step["asset"], {"seconds": 0.0, "peak": 0, "steps": 0, "cpu": 0.0})
        mine["seconds"] += step["seconds"]
        mine["peak"] = max(mine["peak"], max(during, default=0))
        mine["steps"] += 1
        mine["cpu"] += cpu_at(samples, step["end"]) - cpu_at(samples, step["start"])
    for key in [*(k for k in keys if k in by_asset), *(k for k in by_asset if k not in keys)]:
        mine = by_asset[key]
        # Cores: CPU seconds of the process tree per wall second (2.0 is both cores busy throughout).
        cores = f", {mine['cpu'] / mine['seconds']:.1f} cores" if mine["seconds"] >= 2 else ""
        print_row(customers, f"{label}{key}", mine["seconds"], mine["peak"] / 2**20,
                  f"{mine['steps']} step{'s' if mine['steps'] > 1 else ''}{cores}")
    total_cpu = samples[-1][2] if samples else float("nan")
    print_row(customers, f"{label}one job run of these", wall, peak,
              f"one process, start and imports included, {total_cpu / wall:.1f} cores")
    return wall, sum(step["seconds"] for step in steps)


def cpu_at(samples: list[tuple[float, int, float]], at: float) -> float:
    """The process tree's CPU seconds as last sampled at or before epoch second `at` (0 before any)."""
    before = [cpu for when, _, cpu in samples if when <= at]
    return before[-1] if before else 0.0


def daily_pipeline(customers: int, work: Path, built: Path, day, full: tuple[float, float], env: dict[str, str],
                   print_row, share: float = 0.02) -> None:
    """The next day's whole daily run on a copy of what the full pipeline left: `share` of the
    customers get events on `day` (as in `incremental_day`), then `dbt build` and every asset run
    at the next as_of, as the `daily_personalization` job would (no retraining: the models are a
    day old). Its steps' share of the full pipeline's is printed."""
    folder = work / "daily"
    folder.mkdir(exist_ok=True)
    copy = folder / "built.duckdb"
    shutil.copyfile(built, copy)
    for sink in ("outbox.jsonl", "helpdesk.jsonl"):  # what the file sinks were sent on the first day
        if (work / sink).exists():
            shutil.copyfile(work / sink, folder / sink)
    with duckdb.connect(str(copy)) as con:
        added = append_day(con, day, share)
    as_of = day + timedelta(days=1)
    env = {**env, "NEXTBEST_DUCKDB_PATH": str(copy), "NEXTBEST_AS_OF": as_of.isoformat(),
           "NEXTBEST_OUTBOX_FILE": str(folder / "outbox.jsonl"), "NEXTBEST_HELPDESK_FILE": str(folder / "helpdesk.jsonl")}
    dbt_wall, peak, _ = run_stage("daily: dbt build", dbt_build(folder, folder / "target", as_of), env)
    print_row(customers, "daily: dbt build", dbt_wall, peak, f"{added['customers']:,} customers with new events")
    wall, steps = run_assets(customers, env, print_row, "daily: ")
    print_row(customers, "daily run, end to end", dbt_wall + wall, float("nan"),
              f"{(dbt_wall + wall) / full[0]:.0%} of the full pipeline end to end")
    print_row(customers, "daily run, steps only", dbt_wall + steps, float("nan"),
              f"{(dbt_wall + steps) / full[1]:.0%} of the full pipeline's steps only")
    copy.unlink()


def dbt_build(work: Path, target: Path, as_of, first: bool = False) -> list[str]:
    """The `dbt build` command line at `as_of` (dbt's files under `work`, compiled SQL in `target`).

    `first`: the warehouse's first build, whose tests check every row (`daily_test_days: 0`), as the
    `nextbest_dbt_models` asset runs it; a daily run tests the last `daily_test_days` days.
    """
    dbt_vars = {"as_of": as_of.isoformat(), **({"daily_test_days": 0} if first else {})}
    return [str(BIN / "dbt"), "build", "--project-dir", str(REPO / "dbt"), "--profiles-dir", str(REPO / "dbt"), "--quiet",
            "--target-path", str(target), "--log-path", str(work / "logs"), "--vars", json.dumps(dbt_vars)]


def incremental_day(customers: int, work: Path, built: Path, day, full_wall: float, env: dict[str, str],
                    print_row, share: float = 0.02) -> None:
    """The next day's `dbt build` on a copy of the built warehouse: `share` of the customers
    get events on `day`, the as_of moves from `day` to the day after."""
    folder = work / "incremental"
    folder.mkdir(exist_ok=True)
    copy = folder / "built.duckdb"  # not a schema's name (raw, staging, ...): DuckDB would confuse them
    shutil.copyfile(built, copy)
    with duckdb.connect(str(copy)) as con:
        added = append_day(con, day, share)
    wall, peak, _ = run_stage("dbt build, incremental day", dbt_build(folder, folder / "target", day + timedelta(days=1)),
                              {**env, "NEXTBEST_DUCKDB_PATH": str(copy)})
    print_row(customers, "dbt build, incremental day", wall, peak,
              f"{wall / full_wall:.0%} of the full build; {added['customers']:,} customers with "
              f"{sum(n for table, n in added.items() if table != 'customers'):,} new raw rows")
    copy.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--months", type=int, default=18)
    parser.add_argument("--keep", type=Path, default=None, help="keep the warehouse files under this folder")
    parser.add_argument("--dbt-only", action="store_true",
                        help="only simulate, dbt build and the incremental day (no assets, no direct SQL)")
    parser.add_argument("--direct-sql", action="store_true",
                        help="with --dbt-only: also replay the build's compiled SQL directly")
    parser.add_argument("--record", type=Path, default=None,
                        help="also append each row to this file as it comes (e.g. benchmarks/RESULTS.md)")
    parser.add_argument("--direct", nargs=2, metavar=("DB", "TARGET"), help=argparse.SUPPRESS)
    parser.add_argument("--materialize", metavar="ASSET", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--list-assets", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.direct:
        return direct_sql(*args.direct)
    if args.materialize:
        return materialize(args.materialize)
    if args.list_assets:
        return print(json.dumps(other_assets()))

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    print(f"machine: {cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, {platform.system()} {platform.release()}, "
          f"Python {platform.python_version()}")
    print(f"{'subscribers':>12}  {'stage':<40} {'wall s':>8} {'peak MiB':>9}")

    def print_row(size: int, stage: str, wall: float, peak: float, note: str = "") -> None:
        wall_s = f"{wall:>8.1f}" if wall == wall else f"{'':>8}"
        peak_s = f"{peak:>9.0f}" if peak == peak else f"{'':>9}"
        row = f"{size:>12,}  {stage:<40} {wall_s} {peak_s}  {note}".rstrip()
        print(row, flush=True)
        if args.record:
            with args.record.open("a") as out:
                out.write(row + "\n")

    for size in args.sizes:
        if args.keep:
            work = args.keep / f"scale-{size}"
            work.mkdir(parents=True, exist_ok=True)
            bench(size, args.months, work, print_row, args.dbt_only, args.direct_sql)
        else:
            with tempfile.TemporaryDirectory(prefix=f"nextbest-scale-{size}-") as tmp:
                bench(size, args.months, Path(tmp), print_row, args.dbt_only, args.direct_sql)


if __name__ == "__main__":
    main()

"""Where things are: the repository, the dbt project and the embedded warehouse file.

The dbt profile and the Dagster warehouse resource both read
`NEXTBEST_DUCKDB_PATH`, so it gets its default here, once, before either runs.
"""

from __future__ import annotations

import functools
import gc
import os
import shutil
import subprocess
import sys
from collections import deque
from contextlib import contextmanager
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator

from filelock import FileLock

REPO_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = REPO_ROOT / "dbt"
DEFAULT_DUCKDB_PATH = REPO_ROOT / "data" / "warehouse.duckdb"
# Help text for every command's --db option.
DUCKDB_HELP = "DuckDB file (default: NEXTBEST_DUCKDB_PATH, else data/warehouse.duckdb)"
# DuckDB names a file's catalog after its stem; a stem equal to one of our schema
# names makes `nextbest.x` or `raw.x` ambiguous, so such file names are refused.
RESERVED_STEMS = {"raw", "staging", "intermediate", "analytics", "nextbest", "sim_truth"}

# One default for both readers of the variable (dbt's profile and the resource),
# made absolute because dbt runs inside dbt/ while Python runs wherever it was started.
os.environ["NEXTBEST_DUCKDB_PATH"] = str(
    Path(os.environ.get("NEXTBEST_DUCKDB_PATH") or DEFAULT_DUCKDB_PATH).expanduser().resolve()
)


def default_as_of() -> str:
    """`NEXTBEST_AS_OF` (YYYY-MM-DD) when set, else today (UTC): the same rule as dbt's var `as_of`.

    A ValueError naming the variable when it holds anything else: every reader (the commands, the
    assets) gets the one check here, not a traceback from wherever the date is first parsed.
    """
    as_of = os.environ.get("NEXTBEST_AS_OF")
    if not as_of:
        return datetime.now(timezone.utc).date().isoformat()
    try:
        date.fromisoformat(as_of)
    except ValueError:
        raise ValueError(f"NEXTBEST_AS_OF={as_of!r} is not a date; use YYYY-MM-DD, e.g. 2026-06-30") from None
    return as_of


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity, not the machine's count)."""
    return len(os.sched_getaffinity(0))


def in_processes(calls: list, processes: int) -> list:
    """Run joblib `delayed(...)` calls: in up to `processes` loky worker processes when that is more
    than one (and there is more than one call), else here, one after another. Results in call order."""
    if min(processes, len(calls)) > 1:
        from joblib import Parallel

        return Parallel(n_jobs=min(processes, len(calls)), backend="loky")(calls)
    return [call(*args, **kwargs) for call, args, kwargs in calls]


def mapped_in_workers(work: Callable, items: Iterable, processes: int, setup: Callable | None = None,
                      setup_args: tuple = ()) -> Iterator:
    """`work(item)` for each of `items`, in their order, in `processes` spawned worker processes.

    `items` is read lazily: at most one item per worker plus one more is in flight, so while the
    workers compute, this process reads the next (a chunk of customers from the warehouse, which
    only this process may open) and memory holds a few items, not all. `setup(*setup_args)` runs
    once in each worker first (e.g. to keep a model there instead of sending it with every item).
    `work` and `setup` must be module-level functions (they are pickled by name).
    """
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    in_flight: deque = deque()
    with ProcessPoolExecutor(max_workers=processes, mp_context=get_context("spawn"), initializer=setup,
                             initargs=setup_args) as pool:
        for item in items:
            in_flight.append(pool.submit(work, item))
            if len(in_flight) > processes:
                yield in_flight.popleft().result()
        while in_flight:
            yield in_flight.popleft().result()


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a chunk of customers is worked on.

    A chunk makes millions of small container objects (facts, rows, verdicts), and each few hundred
    allocations set off a collection that walks them all again: at 100k customers that was over half
    of building context packs. Reference counting still frees everything acyclic at once; cycles made
    meanwhile wait for the next collection after the chunk.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# What one run's steps computed for its later steps, in this process: the run id and the values.
_RUN_MEMO: dict = {"run_id": None, "values": {}}


def run_memo(run_id: str) -> dict:
    """A dict of values a run's steps keep for its later steps in this process (the in-process
    executor runs them all here), empty for a new run: another run's values are dropped when a
    new run first asks, so at most one run's are held."""
    if _RUN_MEMO["run_id"] != run_id:
        _RUN_MEMO.update(run_id=run_id, values={})
    return _RUN_MEMO["values"]


def positive_int_env(name: str, default: int, unit: str) -> int:
    """A whole number of `unit` (at least 1) from env var `name` (`_` and `,` allowed), else `default`;
    a ValueError naming the variable and what it expects when it holds anything else."""
    raw = os.environ.get(name, "").strip().replace("_", "").replace(",", "")
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{name}={os.environ[name]!r}: expected a whole number of {unit}, at least 1 "
                         f"(default {default:,})")
    return int(raw)


def duckdb_path() -> Path:
    """The DuckDB file the pipeline reads and writes (`NEXTBEST_DUCKDB_PATH`)."""
    path = Path(os.environ["NEXTBEST_DUCKDB_PATH"]).expanduser().resolve()
    check_duckdb_file_name(path)
    return path


def sink_file_default(name: str) -> Path:
    """Where a file sink (the `file` ESP, the helpdesk file) writes by default: beside the DuckDB
    warehouse, so two warehouses never share one (a shared file would take another store's send ids for
    sends already made); on Snowflake, the repository's `data/`."""
    if os.environ.get("NEXTBEST_WAREHOUSE", "").strip().lower() == "snowflake":
        return DEFAULT_DUCKDB_PATH.parent / name
    return Path(os.environ.get("NEXTBEST_DUCKDB_PATH") or DEFAULT_DUCKDB_PATH).expanduser().resolve().parent / name


def check_duckdb_file_name(path: Path) -> None:
    """Refuse file names whose catalog would clash with a NextBest schema."""
    if path.stem.lower() in RESERVED_STEMS:
        raise ValueError(
            f"NEXTBEST_DUCKDB_PATH={path}: DuckDB would name this database {path.stem!r}, the same as "
            f"a NextBest schema, which makes table names ambiguous. Use another file name, "
            f"e.g. {path.with_name('warehouse.duckdb')}"
        )


def dbt_target() -> str:
    """The dbt target: `duckdb` (default) or `snowflake`.

    `NEXTBEST_DBT_TARGET` wins; otherwise it follows `NEXTBEST_WAREHOUSE`, so one
    variable moves both dbt and the Python assets' warehouse resource.
    """
    # Read as `build_warehouse()` reads it (trimmed, any case): the profile's outputs are lower case.
    return (os.environ.get("NEXTBEST_DBT_TARGET")
            or os.environ.get("NEXTBEST_WAREHOUSE", "").strip().lower() or "duckdb")


# The run tag of every job that writes the warehouse, valued by engine. DuckDB lets one process write its
# file at a time: `dagster.yaml` at the repository root (the instance settings `dagster dev` reads there)
# lets one `nextbest/warehouse: duckdb` run go at a time and queues the others, so the daily job, a
# retrain and an export the approval sensor starts never fight for the file. Snowflake runs are not held.
WAREHOUSE_RUN_TAG = "nextbest/warehouse"
WAREHOUSE_RUN_TAGS = {WAREHOUSE_RUN_TAG: os.environ.get("NEXTBEST_WAREHOUSE", "").strip().lower() or "duckdb"}


# Where `dbt parse` writes the manifest the asset graph is read from (DbtProject's default target path).
MANIFEST_PATH = DBT_PROJECT_DIR / "target" / "manifest.json"


@functools.cache
def _dbt_project():
    from dagster_dbt import DbtProject

    return DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR, target=dbt_target())


def __getattr__(name: str):
    """`dbt_project` (dagster-dbt's DbtProject of dbt/), made on first use: importing dagster-dbt takes ~2 s,
    which every `nextbest` command (an agent's `service-context` lookup) would otherwise pay at start."""
    if name != "dbt_project":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return _dbt_project()


def dagster_instance():
    """The Dagster instance a command runs jobs on: the persistent one when DAGSTER_HOME is set (runs show
    in `dagster dev`), else an ephemeral one."""
    import dagster as dg

    return dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()


def _newest_source_mtime(project_dir: Path) -> float:
    watched = [project_dir / "dbt_project.yml", project_dir / "profiles.yml"]
    for folder in ("models", "macros", "tests", "seeds", "snapshots"):
        watched.extend((project_dir / folder).rglob("*"))
    return max((p.stat().st_mtime for p in watched if p.is_file()), default=0.0)


def ensure_manifest() -> Path:
    """Parse the dbt project when its manifest is missing or older than its sources.

    `dagster dev`, the CLI and the tests all load the asset graph from
    `dbt/target/manifest.json`; a fresh clone has none, so it is built on first use.
    """
    return parse_when_stale(DBT_PROJECT_DIR, MANIFEST_PATH)


def parse_when_stale(project_dir: Path, manifest: Path) -> Path:
    """`dbt parse` `project_dir` unless `manifest` is newer than every source; one process at a time.

    Processes that start together (a webserver and a daemon, test workers) would each parse
    and write the manifest while another reads it; a file lock lets the first parse and the
    others find its manifest fresh.
    """
    if _fresh(manifest, project_dir):
        return manifest
    manifest.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(manifest.parent / ".nextbest-parse.lock", timeout=600):
        if _fresh(manifest, project_dir):
            return manifest
        result = subprocess.run(
            [dbt_executable(), "parse", "--project-dir", str(project_dir),
             "--profiles-dir", str(project_dir), "--target", dbt_target(), "--quiet"],
            capture_output=True, text=True, cwd=project_dir,
        )
        if result.returncode != 0 or not manifest.exists():
            raise RuntimeError(
                f"`dbt parse` failed for {project_dir} (exit {result.returncode}):\n"
                f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
            )
    return manifest


def _fresh(manifest: Path, project_dir: Path) -> bool:
    return manifest.exists() and manifest.stat().st_mtime >= _newest_source_mtime(project_dir)


def dbt_executable() -> str:
    """The `dbt` next to this Python (works in a venv that is not activated), else PATH's."""
    beside = Path(sys.executable).parent / "dbt"
    if beside.exists():
        return str(beside)
    found = shutil.which("dbt")
    if not found:
        raise RuntimeError("No `dbt` executable found; install NextBest with `pip install -e .`")
    return found

"""`nextbest.model_registry`: which model was trained when, on what, how well, and where it is.

Append-only: every training run adds one row and never changes an old one,
so any prediction's `model_version` can be traced to its training window,
features, backtest figures and artifact. Artifacts are joblib files in a
`models/` folder next to the DuckDB file (`<duckdb dir>/models/<version>.joblib`;
on Snowflake, the project's `data/models/`); the row keeps the file's absolute
path and sha256, and loading refuses a file that has changed since it was
registered. Rows written before paths were absolute hold paths relative to the
DuckDB file's folder, and still load.

Every function takes the warehouse resource (either engine, through its
`read_df` / `write_df` / `transaction()` interface) or, for scripts and tests,
a DuckDB connection.

joblib files are pickles: load only artifacts from a folder you trust. The
sha256 catches a file that was overwritten or corrupted, not a forged row.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import joblib
import pandas as pd

from dagster_project.project import DEFAULT_DUCKDB_PATH
from dagster_project.resources.warehouse import WarehouseInterface, session_on

REGISTRY_SCHEMA, REGISTRY_NAME = "nextbest", "model_registry"
REGISTRY_TABLE = f"{REGISTRY_SCHEMA}.{REGISTRY_NAME}"

# Plain types and statements so the same DDL runs on DuckDB and Snowflake.
REGISTRY_DDL = f"""
create table if not exists {REGISTRY_TABLE} (
    model_name varchar not null,
    version varchar not null,
    trained_at timestamp not null,
    training_window_start date,
    training_window_end date,
    features varchar,
    metrics varchar,
    method varchar,
    artifact_path varchar,
    artifact_sha256 varchar,
    notes varchar
)
"""

COLUMNS = ("model_name", "version", "trained_at", "training_window_start", "training_window_end", "features",
           "metrics", "method", "artifact_path", "artifact_sha256", "notes")
_DATE_COLUMNS = ("trained_at", "training_window_start", "training_window_end")
VERSIONS_SQL = (f"select {', '.join(COLUMNS)} from {REGISTRY_TABLE} "
                "where model_name = ? order by trained_at desc, version desc")
# Where artifacts go when the warehouse has no folder of its own (Snowflake): the project's data/.
DEFAULT_ARTIFACT_DIR = DEFAULT_DUCKDB_PATH.parent


class ModelArtifactError(RuntimeError):
    """A registered artifact is missing or no longer matches the sha256 recorded for it."""


@dataclass(frozen=True)
class RegisteredModel:
    """One row of `nextbest.model_registry`, with `features` and `metrics` parsed from JSON."""

    model_name: str
    version: str
    trained_at: datetime
    training_window_start: date | None
    training_window_end: date | None
    features: list | dict | None
    metrics: dict | None
    method: str | None
    artifact_path: str | None
    artifact_sha256: str | None
    notes: str | None

    def load(self, base_dir: str | Path | None = None) -> Any:
        """The artifact, after checking its sha256 (relative paths of older rows resolve against `base_dir`)."""
        if not self.artifact_path:
            raise ModelArtifactError(f"model {self.version} in {REGISTRY_TABLE} has no artifact")
        # Without a recorded sha256 nothing shows the file is the one registered (and joblib unpickles it).
        if not self.artifact_sha256:
            raise ModelArtifactError(f"model {self.version} in {REGISTRY_TABLE} has no sha256 recorded for its "
                                     f"artifact {self.artifact_path}; retrain to register a new version")
        path = Path(self.artifact_path)
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        return load_artifact(path, self.artifact_sha256, version=self.version)


def registered_model(row: dict) -> RegisteredModel:
    """A `model_registry` row as either engine's `read_df` gives it (timestamps, NaN for null) as a RegisteredModel."""
    row = {k: (None if not isinstance(v, (list, dict)) and pd.isna(v) else v) for k, v in row.items()}
    for key in ("training_window_start", "training_window_end"):
        if isinstance(row[key], datetime):
            row[key] = row[key].date()
    if isinstance(row["trained_at"], pd.Timestamp):
        row["trained_at"] = row["trained_at"].to_pydatetime()
    row["features"] = json.loads(row["features"]) if row["features"] else None
    row["metrics"] = json.loads(row["metrics"]) if row["metrics"] else None
    return RegisteredModel(**row)


# --- where the registry lives -----------------------------------------------------------------

def ensure_registry(warehouse) -> None:
    """Create schema `nextbest` and the registry table if they do not exist (DDL, outside any transaction)."""
    for statement in (f"create schema if not exists {REGISTRY_SCHEMA}", REGISTRY_DDL):
        warehouse.execute(statement)


def warehouse_dir(warehouse) -> Path | None:
    """The folder of the DuckDB file behind `warehouse` (None for Snowflake or an in-memory DuckDB)."""
    if isinstance(warehouse, WarehouseInterface):
        return warehouse.artifact_dir()
    row = warehouse.execute(
        "select path from duckdb_databases() where database_name = current_database()").fetchone()
    return Path(row[0]).resolve().parent if row and row[0] else None


def models_dir(warehouse) -> Path:
    """Where artifacts are saved: `<duckdb dir>/models/`, or `data/models/` for a warehouse without a folder."""
    base = warehouse_dir(warehouse)
    if base is None:
        if not isinstance(warehouse, WarehouseInterface):
            raise ModelArtifactError("an in-memory DuckDB has no folder for model artifacts; pass `folder=`")
        base = DEFAULT_ARTIFACT_DIR
    return base / "models"


# --- artifacts --------------------------------------------------------------------------------

def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_artifact(path: str | Path, sha256: str | None, version: str = "") -> Any:
    """joblib-load `path`, refusing it when it is missing or its sha256 differs from `sha256`."""
    path = Path(path)
    label = f"model {version} " if version else ""
    if not path.is_file():
        raise ModelArtifactError(
            f"{label}artifact {path} is missing (recorded in {REGISTRY_TABLE}); "
            "retrain to register a new version")
    if sha256 is not None:
        actual = file_sha256(path)
        if actual != sha256:
            raise ModelArtifactError(
                f"{label}artifact {path} has changed since it was registered: sha256 is {actual}, "
                f"{REGISTRY_TABLE} recorded {sha256}; restore the file or retrain to register a new version")
    return joblib.load(path)


# --- writing and reading rows -----------------------------------------------------------------

def register_model(warehouse, model_name: str, artifact: Any, *, training_window_start: date | None,
                   training_window_end: date | None, features: list | dict | None = None,
                   metrics: dict | None = None, method: str | None = None, notes: str | None = None,
                   folder: str | Path | None = None, trained_at: datetime | None = None) -> str:
    """Save `artifact` with joblib, append its row and return its version.

    The version is `<model_name>-<UTC time of training>-<first 8 of the sha256>`,
    e.g. `clv-20261125T050012Z-3f9a1c2e`. `folder` defaults to `models_dir(warehouse)`;
    the row records the artifact's absolute path. On a warehouse resource the row is
    written with `write_df` in a transaction of its own.
    """
    ensure_registry(warehouse)
    trained_at = (trained_at or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(tzinfo=None)
    folder = Path(folder) if folder is not None else models_dir(warehouse)
    folder.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{model_name}-", suffix=".joblib")
    os.close(handle)
    try:
        joblib.dump(artifact, temporary)
        sha256 = file_sha256(temporary)
        # Microseconds: a retrain that yields the same artifact within a second is still a new version.
        version = f"{model_name}-{trained_at:%Y%m%dT%H%M%S%fZ}-{sha256[:8]}"
        path = (folder / f"{version}.joblib").resolve()
        if path.exists() or _version_taken(warehouse, version):
            raise ValueError(f"model version {version} is already in {REGISTRY_TABLE}; "
                             "the registry is append-only; register it with a later trained_at")
        os.chmod(temporary, 0o644)  # mkstemp makes it owner-only; artifacts are as readable as the warehouse
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    row = pd.DataFrame([(model_name, version, trained_at, training_window_start, training_window_end,
                         _json(features), _json(metrics), method, str(path), sha256, notes)], columns=list(COLUMNS))
    # Every column typed (text, timestamps): a column holding only None has no type to stage it by.
    row = row.astype({c: "string" for c in COLUMNS if c not in _DATE_COLUMNS})
    row[list(_DATE_COLUMNS)] = row[list(_DATE_COLUMNS)].apply(pd.to_datetime)
    try:
        with session_on(warehouse) as tx:
            tx.write_df(REGISTRY_SCHEMA, REGISTRY_NAME, row)
    except BaseException:
        path.unlink(missing_ok=True)  # no row, no artifact: a failed registration leaves nothing behind
        raise
    return version


def _version_taken(warehouse, version: str) -> bool:
    with session_on(warehouse) as tx:
        found = tx.read_df(f"select count(*) as n from {REGISTRY_TABLE} where version = ?", [version])
    return int(found.iloc[0, 0]) > 0


def registered_versions(warehouse, model_name: str) -> list[RegisteredModel]:
    """Every registered version of `model_name`, newest first (none when nothing is registered)."""
    with session_on(warehouse) as tx:
        if not tx.exists(REGISTRY_SCHEMA, REGISTRY_NAME):
            return []
        rows = tx.read_df(VERSIONS_SQL, [model_name])
    return [registered_model(row) for row in rows.to_dict("records")]


def latest_model(warehouse, model_name: str) -> RegisteredModel | None:
    """The most recently trained version of `model_name`, or None if none is registered."""
    versions = registered_versions(warehouse, model_name)
    return versions[0] if versions else None


def load_latest(warehouse, model_name: str) -> tuple[RegisteredModel, Any] | None:
    """The latest registered version of `model_name` and its checked artifact, or None."""
    record = latest_model(warehouse, model_name)
    if record is None:
        return None
    return record, record.load(base_dir=warehouse_dir(warehouse))


def _json(value) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, default=str)

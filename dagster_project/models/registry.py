"""`nextbest.model_registry`: which model was trained when, on what, how well, and where it is.

Append-only: every training run adds one row and never changes an old one,
so any prediction's `model_version` can be traced to its training window,
features, backtest figures and artifact. Artifacts are joblib files in a
`models/` folder next to the DuckDB file (`<duckdb dir>/models/<version>.joblib`);
the row keeps the file's sha256, and loading refuses a file that has changed
since it was registered.

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

REGISTRY_TABLE = "nextbest.model_registry"

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
        """The artifact, after checking its sha256 (relative paths resolve against `base_dir`)."""
        if not self.artifact_path:
            raise ModelArtifactError(f"model {self.version} in {REGISTRY_TABLE} has no artifact")
        path = Path(self.artifact_path)
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        return load_artifact(path, self.artifact_sha256, version=self.version)


def ensure_registry(con) -> None:
    """Create schema `nextbest` and the registry table if they do not exist."""
    con.execute("create schema if not exists nextbest")
    con.execute(REGISTRY_DDL)


def warehouse_dir(con) -> Path | None:
    """The folder of the DuckDB file behind `con` (None for an in-memory database)."""
    row = con.execute(
        "select path from duckdb_databases() where database_name = current_database()").fetchone()
    return Path(row[0]).resolve().parent if row and row[0] else None


def models_dir(con) -> Path:
    """`<duckdb dir>/models/`, where artifacts are saved."""
    base = warehouse_dir(con)
    if base is None:
        raise ModelArtifactError("an in-memory DuckDB has no folder for model artifacts; pass `folder=`")
    return base / "models"


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


def register_model(con, model_name: str, artifact: Any, *, training_window_start: date | None,
                   training_window_end: date | None, features: list | dict | None = None,
                   metrics: dict | None = None, method: str | None = None, notes: str | None = None,
                   folder: str | Path | None = None, trained_at: datetime | None = None) -> str:
    """Save `artifact` with joblib, append its row and return its version.

    The version is `<model_name>-<UTC time of training>-<first 8 of the sha256>`,
    e.g. `clv-20261125T050012Z-3f9a1c2e`. `folder` defaults to
    `<duckdb dir>/models/`; artifacts inside the DuckDB file's folder are
    recorded by relative path so the folder can be moved as a whole.
    """
    ensure_registry(con)
    trained_at = (trained_at or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(tzinfo=None)
    folder = Path(folder) if folder is not None else models_dir(con)
    folder.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{model_name}-", suffix=".joblib")
    os.close(handle)
    try:
        joblib.dump(artifact, temporary)
        sha256 = file_sha256(temporary)
        # Microseconds: a retrain that yields the same artifact within a second is still a new version.
        version = f"{model_name}-{trained_at:%Y%m%dT%H%M%S%fZ}-{sha256[:8]}"
        taken = con.execute(f"select count(*) from {REGISTRY_TABLE} where version = ?", [version]).fetchone()[0]
        path = folder / f"{version}.joblib"
        if taken or path.exists():
            raise ValueError(f"model version {version} is already in {REGISTRY_TABLE}; "
                             "the registry is append-only; register it with a later trained_at")
        os.chmod(temporary, 0o644)  # mkstemp makes it owner-only; artifacts are as readable as the warehouse
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    base = warehouse_dir(con)
    recorded = path.resolve()
    if base is not None and recorded.is_relative_to(base):
        recorded = recorded.relative_to(base)
    row = (model_name, version, trained_at, training_window_start, training_window_end,
           _json(features), _json(metrics), method, str(recorded), sha256, notes)
    con.execute(f"insert into {REGISTRY_TABLE} ({', '.join(COLUMNS)}) values ({', '.join('?' * len(COLUMNS))})",
                list(row))
    return version


def latest_model(con, model_name: str) -> RegisteredModel | None:
    """The most recently trained version of `model_name`, or None if none is registered."""
    exists = con.execute(
        "select count(*) from information_schema.tables where table_schema = 'nextbest' "
        "and table_name = 'model_registry'").fetchone()[0]
    if not exists:
        return None
    row = con.execute(
        f"select {', '.join(COLUMNS)} from {REGISTRY_TABLE} where model_name = ? "
        "order by trained_at desc, version desc limit 1", [model_name]).fetchone()
    if row is None:
        return None
    record = dict(zip(COLUMNS, row))
    record["features"] = json.loads(record["features"]) if record["features"] else None
    record["metrics"] = json.loads(record["metrics"]) if record["metrics"] else None
    return RegisteredModel(**record)


def load_latest(con, model_name: str) -> tuple[RegisteredModel, Any] | None:
    """The latest registered version of `model_name` and its checked artifact, or None."""
    record = latest_model(con, model_name)
    if record is None:
        return None
    return record, record.load(base_dir=warehouse_dir(con))


def _json(value) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, default=str)

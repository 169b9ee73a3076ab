"""`nextbest.model_registry`: append-only rows, artifacts next to the warehouse by absolute path, sha256
checked on load; the same through a DuckDB connection and through the warehouse resource."""

from __future__ import annotations

from datetime import date, datetime, timezone

import duckdb
import pytest

from dagster_project.models.registry import (ModelArtifactError, latest_model, load_latest, models_dir,
                                             register_model, registered_versions)
from dagster_project.resources.warehouse import DuckDBWarehouse


@pytest.fixture
def con(tmp_path):
    connection = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    yield connection
    connection.close()


def register(con, artifact, when: datetime) -> str:
    return register_model(con, "clv", artifact, training_window_start=date(2026, 1, 1),
                          training_window_end=date(2026, 6, 30), features=["frequency", "recency"],
                          metrics={"backtest": {"roc_auc": 0.8}}, method="bgnbd", trained_at=when)


def test_registering_appends_a_version_and_keeps_the_old_rows(con, tmp_path):
    assert latest_model(con, "clv") is None
    first = register(con, {"weights": [1, 2]}, datetime(2026, 6, 30, 5, 0, tzinfo=timezone.utc))
    before = con.execute("select * from nextbest.model_registry").fetchall()
    second = register(con, {"weights": [3, 4]}, datetime(2026, 7, 7, 5, 0, tzinfo=timezone.utc))

    assert first.startswith("clv-20260630T050000000000Z-") and second.startswith("clv-20260707T050000000000Z-")
    rows = con.execute("select * from nextbest.model_registry order by trained_at").fetchall()
    assert rows[0] == before[0] and len(rows) == 2  # the first row is untouched
    record = latest_model(con, "clv")
    assert record.version == second and record.method == "bgnbd"
    assert record.metrics == {"backtest": {"roc_auc": 0.8}} and record.features == ["frequency", "recency"]
    assert record.artifact_path == str(tmp_path.resolve() / "models" / f"{second}.joblib")  # absolute
    assert (tmp_path / "models" / f"{second}.joblib").is_file() and models_dir(con) == tmp_path / "models"
    assert load_latest(con, "clv")[1] == {"weights": [3, 4]}
    assert latest_model(con, "propensity") is None


def test_a_changed_or_missing_artifact_is_refused_with_its_path(con, tmp_path):
    version = register(con, {"weights": [1, 2]}, datetime(2026, 6, 30, 5, 0, tzinfo=timezone.utc))
    artifact = tmp_path / "models" / f"{version}.joblib"
    artifact.write_bytes(artifact.read_bytes() + b"tampered")
    with pytest.raises(ModelArtifactError, match="has changed since it was registered") as error:
        load_latest(con, "clv")
    assert str(artifact) in str(error.value) and version in str(error.value)
    artifact.unlink()
    with pytest.raises(ModelArtifactError, match="is missing"):
        load_latest(con, "clv")


def test_the_same_version_cannot_be_registered_twice(con):
    when = datetime(2026, 6, 30, 5, 0, tzinfo=timezone.utc)
    register(con, {"weights": [1]}, when)
    with pytest.raises(ValueError, match="append-only"):
        register(con, {"weights": [1]}, when)
    assert con.execute("select count(*) from nextbest.model_registry").fetchone()[0] == 1


def test_the_warehouse_resource_registers_and_reads_what_a_connection_does(tmp_path):
    wh = DuckDBWarehouse(path=str(tmp_path / "warehouse.duckdb"))
    assert latest_model(wh, "clv") is None and registered_versions(wh, "clv") == []
    first = register(wh, {"weights": [1]}, datetime(2026, 6, 30, 5, 0, tzinfo=timezone.utc))
    second = register(wh, {"weights": [2]}, datetime(2026, 7, 7, 5, 0, tzinfo=timezone.utc))
    assert [r.version for r in registered_versions(wh, "clv")] == [second, first]  # newest first
    record, model = load_latest(wh, "clv")
    assert model == {"weights": [2]} and record.artifact_path == str(tmp_path.resolve() / "models" / f"{second}.joblib")
    assert record.training_window_start == date(2026, 1, 1) and record.trained_at == datetime(2026, 7, 7, 5, 0)
    assert record.metrics == {"backtest": {"roc_auc": 0.8}} and record.notes is None
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    try:
        assert latest_model(con, "clv") == record  # the same row, read through a plain connection
    finally:
        con.close()


def test_rows_with_paths_relative_to_the_warehouse_folder_still_load(con, tmp_path):
    version = register(con, {"weights": [1]}, datetime(2026, 6, 30, 5, 0, tzinfo=timezone.utc))
    con.execute("update nextbest.model_registry set artifact_path = ?", [f"models/{version}.joblib"])  # older rows
    assert load_latest(con, "clv")[1] == {"weights": [1]}
    assert load_latest(DuckDBWarehouse(path=str(tmp_path / "warehouse.duckdb")), "clv")[1] == {"weights": [1]}


def test_a_registration_whose_row_fails_leaves_no_artifact(con, tmp_path, monkeypatch):
    register(con, {"weights": [1]}, datetime(2026, 6, 30, 5, 0, tzinfo=timezone.utc))

    def refuse(*args, **kwargs):
        raise RuntimeError("warehouse went away")

    monkeypatch.setattr("dagster_project.resources.warehouse.WarehouseSession.write_df", refuse)
    with pytest.raises(RuntimeError, match="went away"):
        register(con, {"weights": [2]}, datetime(2026, 7, 7, 5, 0, tzinfo=timezone.utc))
    assert len(list((tmp_path / "models").glob("*.joblib"))) == 1
    assert con.execute("select count(*) from nextbest.model_registry").fetchone()[0] == 1


def test_an_artifact_without_a_recorded_sha256_is_refused(con, tmp_path):
    """A row whose sha256 is missing cannot show its file is the one registered: loading refuses it."""
    version = register(con, {"weights": [1]}, datetime(2026, 6, 30, 5, 0, tzinfo=timezone.utc))
    con.execute("update nextbest.model_registry set artifact_sha256 = null")
    (tmp_path / "models" / f"{version}.joblib").write_bytes(b"not the registered file")
    with pytest.raises(ModelArtifactError, match="no sha256") as error:
        load_latest(con, "clv")
    assert version in str(error.value)

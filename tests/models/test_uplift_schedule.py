"""When the uplift models are retrained: weekly, by the newest training, whatever playbooks have a model."""

from __future__ import annotations

from datetime import date, timedelta

import duckdb

from dagster_project.models import registry
from dagster_project.models.uplift_assets import model_name, needs_training
from dagster_project.models.uplift_data import GOALS

TRAINED = date(2026, 6, 1)


def register(con, folder, playbooks, end: date) -> None:
    for playbook in playbooks:
        registry.register_model(con, model_name(playbook), {"playbook": playbook}, training_window_start=date(2026, 1, 1),
                                training_window_end=end, folder=folder)


def test_a_playbook_without_a_model_waits_for_the_weekly_training(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    assert needs_training(con, TRAINED)  # nothing registered yet
    # A training run registers every playbook with past sends; win_back had none.
    register(con, tmp_path, [p for p in GOALS if p != "win_back"], TRAINED)
    for days in range(1, 7):
        assert not needs_training(con, TRAINED + timedelta(days=days)), days
    assert needs_training(con, TRAINED + timedelta(days=7))
    # A playbook whose newest model is older than the others' does not hold the rest to its age.
    register(con, tmp_path, ["win_back"], TRAINED - timedelta(days=30))
    assert not needs_training(con, TRAINED + timedelta(days=3))
    # Deciding a day before the newest training's data ends (a backfill) trains for that day.
    assert needs_training(con, TRAINED - timedelta(days=1))


def test_routing_an_earlier_day_never_picks_a_model_trained_on_later_sends(tmp_path):
    """A backfill retrains for its day (needs_training); if that model fails its check, the fallback is
    the measured average of the same days' sends, not an older-registered model that saw later sends."""
    from datetime import datetime

    from dagster_project.models.uplift_assets import newest_passing

    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    backfill = TRAINED - timedelta(days=31)
    registry.register_model(con, model_name("expansion"), {"later": True}, training_window_start=date(2026, 1, 1),
                            training_window_end=TRAINED, metrics={"passed": True}, folder=tmp_path,
                            trained_at=datetime(2026, 6, 1, 4))
    registry.register_model(con, model_name("expansion"), {"later": False}, training_window_start=date(2026, 1, 1),
                            training_window_end=backfill, metrics={"passed": False}, folder=tmp_path,
                            trained_at=datetime(2026, 6, 2, 4))
    assert newest_passing(con, "expansion")[1] == {"later": True}  # today: the newest that passed
    record, model = newest_passing(con, "expansion", as_of=backfill)
    assert model == {"later": False} and record.training_window_end == backfill
    assert newest_passing(con, "expansion", as_of=backfill - timedelta(days=1)) is None


def test_a_store_without_past_sends_trains_nothing_and_goes_on(tmp_path):
    """A store's own data before its first routed day has no nextbest.assignments: the asset
    succeeds with no models (it failed on the missing table, and the daily job stopped there)."""
    import dagster as dg

    from dagster_project.ingest.contract import create_raw_schema
    from dagster_project.models.uplift_assets import uplift_models
    from dagster_project.resources.warehouse import DuckDBWarehouse

    path = tmp_path / "own.duckdb"
    with duckdb.connect(str(path)) as con:
        create_raw_schema(con)
    result = dg.materialize([uplift_models], resources={"warehouse": DuckDBWarehouse(path=str(path))},
                            run_config={"ops": {"uplift_models": {"config": {"as_of": "2026-06-01"}}}})
    assert result.success
    metadata = result.asset_materializations_for_node("uplift_models")[0].metadata
    assert metadata["playbooks"].value == 0 and "no assignments yet" in metadata["models"].value

"""Wiring of the propensity assets: the dbt split keeps the graph acyclic, the retrain
job and schedule exist, and scoring picks the newest version that passed its checks."""

from __future__ import annotations

from datetime import date, datetime

import dagster as dg
import duckdb
import pandas as pd

from dagster_project.models import registry
from dagster_project.models import propensity_assets as pa
from dagster_project.resources import build_dbt_resource, build_warehouse
from dagster_project.warehouse.assets import nextbest_dbt_models, nextbest_dbt_scored_models


def test_dbt_then_scoring_then_dbt_is_one_acyclic_graph(duckdb_file):
    defs = dg.Definitions(assets=[nextbest_dbt_models, nextbest_dbt_scored_models, *pa.assets],
                          asset_checks=pa.asset_checks, jobs=pa.jobs, schedules=pa.schedules,
                          resources={"warehouse": build_warehouse(), "dbt": build_dbt_resource()})
    graph = defs.resolve_asset_graph()
    key = dg.AssetKey
    assert key("customer_features") in nextbest_dbt_models.keys
    assert key("customer_segments") in nextbest_dbt_scored_models.keys
    assert key("customer_scores") in graph.get(key("customer_segments")).parent_keys
    assert key("customer_features") in graph.get(key("customer_scores")).parent_keys
    assert {key(f"{o}_propensity_model") for o in ("churn", "skip", "upgrade", "discount_response")} <= set(
        graph.get(key("customer_scores")).parent_keys)
    assert all(graph.get(k).group_name == "models" for k in (key("customer_scores"), key("churn_propensity_model")))
    retrain = defs.resolve_job_def("propensity_retrain")
    assert retrain is not None and pa.propensity_retrain_schedule.cron_schedule == "0 3 * * 1"
    assert len(pa.asset_checks) == 12


def test_scoring_uses_the_newest_version_that_passed(tmp_path):
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    name = "propensity_churn"
    assert pa.newest_passing(con, name) is None
    window = {"training_window_start": date(2025, 1, 6), "training_window_end": date(2025, 6, 30)}
    good = registry.register_model(con, name, {"model": 1}, metrics={"gate": {"passed": True}},
                                   trained_at=datetime(2025, 7, 7, 3), **window)
    registry.register_model(con, name, {"model": 2}, metrics={"gate": {"passed": False}},
                            trained_at=datetime(2025, 7, 14, 3), **window)
    assert registry.latest_model(con, name).version != good  # the newest failed its checks...
    chosen = pa.newest_passing(con, name)
    assert chosen.version == good and chosen.load(base_dir=tmp_path) == {"model": 1}  # ...so scoring keeps this
    assert pa.retrain_reason(False, chosen) is None
    assert "no registered version" in pa.retrain_reason(False, None)
    assert "requested" in pa.retrain_reason(True, chosen)


def test_scores_table_is_created_before_dbt_reads_it(tmp_path):
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    nobody = pd.DataFrame(columns=["customer_id", "as_of_date", "cadence_days", "average_order_value",
                                   "is_active_subscriber", "is_subscriber", "is_gift"])
    pa.write_scores(con, pa.score_customers(nobody, {}, datetime(2025, 7, 1)))
    columns = [r[0] for r in con.execute("describe nextbest.customer_scores").fetchall()]
    assert columns == list(pa.SCORE_COLUMNS)
    assert con.execute("select count(*) from nextbest.customer_scores").fetchone()[0] == 0

"""Wiring of the propensity assets: the dbt split keeps the graph acyclic, the retrain
job and schedule exist, scoring picks the newest version that passed its checks, and
scores a few customers at a time exactly as in one batch, swapping the table in at once;
training reads at most a capped, stable sample of whole customers and records it."""

from __future__ import annotations

import hashlib
import math
from datetime import date, datetime
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from dagster_project.models import propensity, registry
from dagster_project.models import propensity_assets as pa
from dagster_project.resources import build_dbt_resource, build_warehouse
from dagster_project.models.propensity import population
from dagster_project.resources.warehouse import DuckDBWarehouse, read_key_sample
from dagster_project.warehouse.assets import nextbest_dbt_models, nextbest_dbt_scored_models
from tests.spies import rows_per_batch

CUSTOMERS = 50
WINDOW = {"training_window_start": date(2025, 1, 6), "training_window_end": date(2025, 6, 30)}


class StubModel:
    """Stands in for a PropensityModel: a fixed logistic curve of one feature, row by row."""

    def __init__(self, column: str, scale: float, explode_on: str | None = None):
        self.column, self.scale, self.explode_on = column, scale, explode_on

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        if self.explode_on is not None and (frame["customer_id"] == self.explode_on).any():
            raise RuntimeError(f"model failed on {self.explode_on}")
        return 1.0 / (1.0 + np.exp(-frame[self.column].astype(float) / self.scale))


def features_store(path, customers: int = CUSTOMERS) -> None:
    """analytics.customer_features: a scoring point per customer plus an older week that is not scored."""
    con = duckdb.connect(str(path))
    con.execute("create schema analytics")
    con.execute(f"""create table analytics.customer_features as
        select 'C' || lpad(i::varchar, 4, '0') as customer_id, d as as_of_date, d = date '2025-07-07' as is_scoring_point,
               (i % 3) * 14 + 14 as cadence_days, 20.0 + i % 7 as average_order_value, i % 5 <> 0 as is_subscriber,
               i % 5 <> 0 and i % 4 <> 0 as is_active_subscriber, i % 11 = 0 as is_gift, i % 9 as skips_90d
        from range({customers}) t(i), (values (date '2025-06-30'), (date '2025-07-07')) w(d)""")
    con.close()


def register(path, outcome: str, model, passed: bool = True, at: datetime = datetime(2025, 7, 7, 3)) -> str:
    con = duckdb.connect(str(path))
    try:
        return registry.register_model(con, f"propensity_{outcome}", model, metrics={"gate": {"passed": passed}},
                                       trained_at=at, **WINDOW)
    finally:
        con.close()


def scores(path) -> pd.DataFrame:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute("select * exclude (scored_at) from nextbest.customer_scores order by customer_id").df()
    finally:
        con.close()


def score(path, batch_rows: int, instance: dg.DagsterInstance | None = None) -> dg.ExecuteInProcessResult:
    return dg.materialize([pa.customer_scores], resources={"warehouse": DuckDBWarehouse(path=str(path),
                                                                                         batch_rows=batch_rows)},
                          instance=instance or dg.DagsterInstance.ephemeral(), raise_on_error=False)


@pytest.fixture
def scored_store(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    features_store(path)
    register(path, "churn", StubModel("skips_90d", 3.0))
    register(path, "skip", StubModel("cadence_days", 20.0))
    return path


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
    wh = DuckDBWarehouse(path=str(tmp_path / "warehouse.duckdb"))
    name = "propensity_churn"
    assert pa.newest_passing(wh, name) is None
    window = {"training_window_start": date(2025, 1, 6), "training_window_end": date(2025, 6, 30)}
    good = registry.register_model(con, name, {"model": 1}, metrics={"gate": {"passed": True}},
                                   trained_at=datetime(2025, 7, 7, 3), **window)
    registry.register_model(con, name, {"model": 2}, metrics={"gate": {"passed": False}},
                            trained_at=datetime(2025, 7, 14, 3), **window)
    assert registry.latest_model(con, name).version != good  # the newest failed its checks...
    chosen = pa.newest_passing(wh, name)
    assert chosen.version == good and chosen.load(base_dir=tmp_path) == {"model": 1}  # ...so scoring keeps this
    assert pa.retrain_reason(False, chosen) is None
    assert "no registered version" in pa.retrain_reason(False, None)
    assert "requested" in pa.retrain_reason(True, chosen)


def test_scores_table_is_created_before_dbt_reads_it(tmp_path):
    nobody = pd.DataFrame(columns=["customer_id", "as_of_date", "cadence_days", "average_order_value",
                                   "is_active_subscriber", "is_subscriber", "is_gift"])
    wh = DuckDBWarehouse(path=str(tmp_path / "warehouse.duckdb"))
    assert pa.write_scores(wh, [pa.score_customers(nobody, {}, datetime(2025, 7, 1))]) == 0
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    columns = [r[0] for r in con.execute("describe nextbest.customer_scores").fetchall()]
    assert columns == list(pa.SCORE_COLUMNS)
    assert con.execute("select count(*) from nextbest.customer_scores").fetchone()[0] == 0


def test_chunks_of_seven_customers_score_as_one_batch(scored_store, monkeypatch):
    assert score(scored_store, 1_000_000).success
    whole = scores(scored_store)
    sizes = rows_per_batch(monkeypatch, DuckDBWarehouse)
    instance = dg.DagsterInstance.ephemeral()
    result = score(scored_store, 7, instance)
    assert result.success
    chunked = scores(scored_store)
    pd.testing.assert_frame_equal(chunked, whole)
    assert len(chunked) == CUSTOMERS and chunked["p_churn"].notna().any() and chunked["p_upgrade"].isna().all()
    assert len(sizes) == math.ceil(CUSTOMERS / 7) and max(sizes) <= 7  # never more than a chunk in memory
    logged = [e.user_message for e in instance.all_logs(result.run_id)]
    assert "chunk 0: 7 customers" in logged and "chunk 7: 1 customers" in logged
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert meta["customers"].value == CUSTOMERS
    assert meta["mean_scores"].value["p_churn"] == pytest.approx(whole["p_churn"].mean())


def test_a_failed_chunk_leaves_the_old_scores_in_place(scored_store):
    assert score(scored_store, 7).success
    before = scores(scored_store)
    # A newer churn model that fails on a customer of the fourth chunk, after three were staged.
    register(scored_store, "churn", StubModel("skips_90d", 1.0, explode_on="C0024"), at=datetime(2025, 7, 8, 3))
    assert not score(scored_store, 7).success
    pd.testing.assert_frame_equal(scores(scored_store), before)
    con = duckdb.connect(str(scored_store), read_only=True)
    assert con.execute("select count(*) from information_schema.tables where table_name like 'nb_stage_%'"
                       ).fetchone()[0] == 0
    con.close()


# --- training reads a bounded, stable sample of whole customers --------------------------------

LABELS = ("churned", "skipped_next_order", "upgraded_or_added_item", "converted_on_discount")
COMPLETE_WEEKS = 30  # of weekly_panel's 34: the last four weeks' label windows are still open


def training_store(path, customers: int = 200) -> int:
    """analytics.customer_features + customer_labels from the synthetic weekly panel; rows to train on."""
    from tests.models.test_propensity import weekly_panel

    panel = weekly_panel(customers)
    weeks = sorted(panel["as_of_date"].unique())
    features = panel.drop(columns=list(LABELS))
    labels = panel[["as_of_date", "customer_id", *LABELS]].assign(
        is_window_complete=panel["as_of_date"].isin(weeks[:COMPLETE_WEEKS]),
        received_discount_message=panel["converted_on_discount"].notna())
    con = duckdb.connect(str(path))
    con.execute("create schema analytics")
    con.execute("create table analytics.customer_features as select * from features")
    con.execute("create table analytics.customer_labels as select * from labels")
    con.close()
    return customers * COMPLETE_WEEKS


def md5_bucket(customer_id: str) -> str:
    return hashlib.md5(customer_id.encode()).hexdigest()[:4]


def test_training_reads_at_most_the_cap_of_whole_customers_the_same_each_time(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    total = training_store(path)
    wh = DuckDBWarehouse(path=str(path))
    frame, sample = pa.load_training_frame(wh, max_rows=2_000)
    assert 0 < len(frame) <= 2_000 and sample.rows_read == len(frame) and not sample.complete
    assert (sample.rows_available, sample.keys_available) == (total, 200)
    assert (frame.groupby("customer_id").size() == COMPLETE_WEEKS).all()  # every week of a customer, or none
    assert frame["customer_id"].nunique() == sample.keys_read
    # The rule is md5 of the customer id, so Snowflake picks the same customers; the next retrain too.
    assert all(md5_bucket(c) < sample.below for c in frame["customer_id"].unique())
    again, _ = pa.load_training_frame(wh, max_rows=2_000)
    pd.testing.assert_frame_equal(again, frame)
    larger, _ = pa.load_training_frame(wh, max_rows=4_000)
    assert set(frame["customer_id"]) < set(larger["customer_id"])  # a bigger cap adds customers, keeps these
    result = propensity.train_propensity(frame, "churn", max_iter=30)
    assert result.metrics["validation"]["rows"] > 0 and result.model.predict(frame.head(5)).shape == (5,)


def test_a_store_under_the_cap_is_read_whole(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    total = training_store(path)
    wh = DuckDBWarehouse(path=str(path))
    frame, sample = pa.load_training_frame(wh, max_rows=total)
    assert sample.complete and sample.rows_read == sample.rows_available == total
    whole = wh.read_df(pa.TRAINING_SQL).sort_values(["customer_id", "as_of_date"], ignore_index=True)
    pd.testing.assert_frame_equal(frame, whole)  # the rows read before sampling, in a fixed order


def test_a_retrain_records_what_it_read_in_the_registry(tmp_path, monkeypatch):
    path = tmp_path / "warehouse.duckdb"
    total = training_store(path, customers=400)
    monkeypatch.setattr(pa, "MAX_TRAINING_READ_ROWS", 6_000)
    monkeypatch.setattr(pa, "MAX_DRIFT_READ_ROWS", 500)
    wh = DuckDBWarehouse(path=str(path))
    asset = pa.MODEL_ASSETS["churn"]
    checks = [c for c in pa.asset_checks if asset.key in {k.asset_key for k in c.check_keys}]
    result = dg.materialize([asset, *checks], resources={"warehouse": wh}, instance=dg.DagsterInstance.ephemeral(),
                            run_config={"ops": {asset.op.name: {"config": {"retrain": True}}}})
    assert result.success
    record = registry.latest_model(wh, "propensity_churn")
    read = record.metrics["training_read"]
    assert read["sampled"] and read["rows_read"] <= 6_000 and read["rows_available"] == total
    assert read["keys_available"] == 400 and 0 < read["keys_read"] < 400
    assert Path(record.artifact_path).is_absolute() and record.load() is not None
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert meta["training_read"].value == read
    drift = {c.check_name: c for c in result.get_asset_check_evaluations()}["churn_feature_drift"]
    compared = drift.metadata["customers_compared"].value
    assert compared["sampled"] and 0 < compared["rows_read"] <= 500 < compared["rows_available"]
    # The check reads only the model's columns; every column gives the same PSI.
    whole, _ = read_key_sample(wh, pa.RECENT_SQL.format(columns="*"), "customer_id", 500)
    model = record.load()
    assert drift.metadata["max_psi"].value == model.drift(whole[population(whole, "churn")])["max_psi"]


def test_the_models_and_drift_checks_of_one_run_read_their_rows_once(tmp_path, monkeypatch):
    """Two models and their drift checks in one run: one read of the training rows and one of the drift
    sample, the same models and PSI as reads of their own."""
    path = tmp_path / "warehouse.duckdb"
    training_store(path, customers=400)
    monkeypatch.setattr(pa, "MAX_DRIFT_READ_ROWS", 500)
    wh = DuckDBWarehouse(path=str(path))
    assets = [pa.MODEL_ASSETS["churn"], pa.MODEL_ASSETS["skip"]]
    checks = [c for c in pa.asset_checks if {a.key for a in assets} & {k.asset_key for k in c.check_keys}]
    reads: list[str] = []
    real = pa.read_key_sample

    def counting(warehouse, sql, *args, **kwargs):
        reads.append(sql)
        return real(warehouse, sql, *args, **kwargs)

    monkeypatch.setattr(pa, "read_key_sample", counting)
    run_config = {"ops": {a.op.name: {"config": {"retrain": True}} for a in assets}}
    result = dg.materialize([*assets, *checks], resources={"warehouse": wh}, instance=dg.DagsterInstance.ephemeral(),
                            run_config=run_config)
    assert result.success
    recent_reads = [sql for sql in reads if "- interval '28 day'" in sql]
    assert len(recent_reads) == 1
    assert reads.count(pa.TRAINING_SQL) == 1
    own_rows, _ = real(wh, pa.TRAINING_SQL, "customer_id", pa.MAX_TRAINING_READ_ROWS,
                       order_by=("customer_id", "as_of_date"))
    for outcome in ("churn", "skip"):
        registered = registry.latest_model(wh, pa.model_name(outcome)).metrics["validation"]
        assert registered == propensity.train_propensity(own_rows, outcome).metrics["validation"]
    drifts = {c.check_name: c for c in result.get_asset_check_evaluations() if c.check_name.endswith("_feature_drift")}
    assert set(drifts) == {"churn_feature_drift", "skip_feature_drift"}
    for outcome in ("churn", "skip"):
        model = registry.latest_model(wh, pa.model_name(outcome)).load()
        columns = ", ".join(["customer_id", *model.features, *pa.POPULATION_COLUMNS])
        own, _ = real(wh, pa.RECENT_SQL.format(columns=columns), "customer_id", 500)
        expected = model.drift(own[population(own, outcome)])["max_psi"]
        assert drifts[f"{outcome}_feature_drift"].metadata["max_psi"].value == expected


def test_the_training_rows_of_a_run_are_let_go_once_every_model_it_trains_had_them(tmp_path, monkeypatch):
    path = tmp_path / "warehouse.duckdb"
    training_store(path)
    wh = DuckDBWarehouse(path=str(path))
    reads = []
    real = pa.load_training_frame
    monkeypatch.setattr(pa, "load_training_frame", lambda warehouse: reads.append(1) or real(warehouse))
    outcomes = list(propensity.OUTCOMES)
    first, _ = pa.training_rows(wh, "run-1", outcomes[0], retrain=True)
    for outcome in outcomes[1:]:
        assert pa.TRAINING_READ in pa.run_memo("run-1")
        assert pa.training_rows(wh, "run-1", outcome, retrain=True)[0] is first
    assert pa.TRAINING_READ not in pa.run_memo("run-1") and len(reads) == 1
    pa.training_rows(wh, "run-2", outcomes[0], retrain=True)  # another run reads its own
    assert len(reads) == 2


def test_a_model_trained_on_outcomes_after_the_as_of_date_is_neither_kept_nor_scored_with(scored_store, monkeypatch):
    """Scoring an earlier as-of date (NEXTBEST_AS_OF) must not use a model whose training labels come
    from after it (the CLV and uplift models retrain in that case too)."""
    wh = DuckDBWarehouse(path=str(scored_store))
    name = "propensity_churn"
    # WINDOW ends 2025-06-30: its labels run to 30 days after that.
    assert pa.newest_passing(wh, name, as_of=date(2025, 6, 1)) is None
    assert pa.newest_passing(wh, name, as_of=date(2025, 7, 15)) is None
    assert pa.newest_passing(wh, name, as_of=date(2025, 8, 15)) is not None
    assert pa.newest_passing(wh, name) is not None  # no as-of date: every version
    monkeypatch.setenv("NEXTBEST_AS_OF", "2025-06-01")
    assert score(scored_store, batch_rows=100).success
    table = scores(scored_store)
    assert table["p_churn"].isna().all() and table["churn_model_version"].isna().all()
    monkeypatch.setenv("NEXTBEST_AS_OF", "2025-08-15")
    assert score(scored_store, batch_rows=100).success
    assert scores(scored_store)["p_churn"].notna().any()

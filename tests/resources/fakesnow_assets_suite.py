"""Scoring and routing on the Snowflake resource, against fakesnow, chunk by chunk.

Run by `test_snowflake.py` in the fakesnow virtualenv, like `fakesnow_suite.py`. The
same small store goes into fakesnow and into a DuckDB file; `customer_scores` and
`routing_decisions` run on Snowflake in chunks of 7 customers and on DuckDB in one
batch, and must write the same rows.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta

import dagster as dg
import fakesnow
import joblib
import numpy as np
import pandas as pd
import pytest
from fakesnow.cursor import FakeSnowflakeCursor

from dagster_project.decisioning.assets import routing_decisions
from dagster_project.ingest.assets import raw_sources
from dagster_project.ingest.contract import create_raw_schema
from dagster_project.models import registry
from dagster_project.models.propensity_assets import customer_scores
from dagster_project.models.uplift_training import UpliftModel
from dagster_project.resources.snowflake import STAGE_PREFIX, SnowflakeWarehouse
from dagster_project.resources.warehouse import DuckDBWarehouse, build_warehouse
from tests.raw_frames import contract_frame
from tests.resources.fakesnow_suite import ENV, _fetch_arrow_batches
from tests.spies import rows_per_batch

CUSTOMERS = 40
CHUNK = 7
RUN_DATE = date(2026, 6, 1)


class LogisticStub:
    """A propensity model stand-in: a fixed logistic curve of one feature, row by row."""

    def __init__(self, column: str, scale: float):
        self.column, self.scale = column, scale

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-frame[self.column].astype(float) / self.scale))


class LinearUplift:
    """An uplift learner stand-in: predicted uplift linear in the feature matrix."""

    def __init__(self, weights: list[float]):
        self.weights = np.asarray(weights)

    def predict(self, X: np.ndarray) -> np.ndarray:
        # Column by column, not a matrix product: BLAS may sum a big and a small matrix in different orders.
        X = np.nan_to_num(X)
        return sum(X[:, j] * w for j, w in enumerate(self.weights))


def ids() -> list[str]:
    return [f"C{i:04d}" for i in range(CUSTOMERS)]


def store_tables() -> dict[tuple[str, str], pd.DataFrame]:
    """The raw, mart and nextbest tables scoring and routing read, as DataFrames."""
    customers = ids()
    n = len(customers)
    i = np.arange(n)
    weeks = [RUN_DATE - timedelta(days=7 * w) for w in (2, 1, 0)]  # the last one is the scoring point
    features = pd.DataFrame([{
        # A Timestamp, not a date: fakesnow's write_pandas would store a date object as text.
        "customer_id": c, "as_of_date": pd.Timestamp(week), "is_scoring_point": week == weeks[-1],
        "cadence_days": float(14 + 14 * (k % 3)), "average_order_value": 20.0 + k % 7,
        "is_subscriber": k % 5 != 0, "is_active_subscriber": k % 5 != 0 and k % 4 != 0, "is_gift": k % 11 == 0,
        "skips_90d": float((k + w) % 4), "opens_30d": float((k * 3 + w) % 6), "tenure_days": float(30 + 20 * k),
    } for k, c in enumerate(customers) for w, week in enumerate(weeks)])
    raw_customers = pd.DataFrame({
        "customer_id": customers, "email": [f"{c.lower()}@example.com" for c in customers],
        "first_name": [f"Name{k}" for k in i], "created_at": [datetime(2025, 1, 1) + timedelta(days=int(k)) for k in i],
        "country": "US", "timezone": "UTC", "marketing_opt_in": i % 9 != 4, "channel_preference": "email"})
    events = []
    for k, c in enumerate(customers):
        for e in range(k % 5):
            kind = "open" if e % 2 == 0 else "click"
            events.append((f"E{k}-{e}", c, kind, datetime(2026, 5, 4, 6) + timedelta(hours=int(7 * k + 13 * e))))
        if k % 13 == 6:
            events.append((f"U{k}", c, "unsubscribe", datetime(2026, 5, 20, 9)))
    email_events = pd.DataFrame(events, columns=["event_id", "customer_id", "event_type", "occurred_at"])
    email_events["campaign_id"], email_events["message_id"] = None, None
    segments = pd.DataFrame([(c, s) for k, c in enumerate(customers)
                             for s in (["onboarding"] if k % 3 == 0 else []) + (["win_back"] if k % 4 == 1 else [])],
                            columns=["customer_id", "segment"])
    tags = pd.DataFrame({"customer_id": customers, "live_subscriber": i % 5 != 0, "high_ltv": i % 6 == 2})
    predictions = pd.DataFrame({"customer_id": customers[::3], "predicted_clv_12m": 40.0 + 5.0 * i[::3]})
    assignments = pd.DataFrame({
        "assignment_id": [f"as-old-{c}" for c in customers[:6]], "campaign_id": "pb-onboarding-2026-05-25",
        "playbook_id": "onboarding", "customer_id": customers[:6], "assigned_at": datetime(2026, 5, 25),
        "arm": "treatment", "message_id": None})
    # An order the day before: routing, like drafting, routes only playbooks whose data is fresh enough.
    orders = contract_frame("orders", [("O1", customers[0], None, datetime.combine(RUN_DATE, datetime.min.time())
                                        - timedelta(hours=12), "fulfilled", 14.0, None, None, None)])
    return {("analytics", "customer_features"): features, ("raw", "customers"): raw_customers, ("raw", "orders"): orders,
            ("raw", "email_events"): email_events, ("analytics", "customer_segments"): segments,
            ("analytics", "customer_tags"): tags, ("nextbest", "customer_predictions"): predictions,
            ("nextbest", "assignments"): assignments}


def registry_rows(folder) -> pd.DataFrame:
    """Registered models: two propensity stand-ins and an uplift model per playbook, artifacts in `folder`."""
    models = {"propensity_churn": (LogisticStub("skips_90d", 3.0), {"gate": {"passed": True}}),
              "propensity_skip": (LogisticStub("cadence_days", 20.0), {"gate": {"passed": True}})}
    for k, playbook in enumerate(("onboarding", "win_back", "at_risk_save", "cadence_mismatch", "expansion",
                                  "re_engagement", "high_ltv_recovery")):
        uplift = UpliftModel(playbook, "goal", "t_learner", ["opens_30d", "tenure_days"],
                             {"opens_30d": 2.0, "tenure_days": 400.0}, {"ate": 0.02}, {"passed": True}, True,
                             LinearUplift([0.01 * (k + 1), 0.0001 * (3 - k)]))
        models[f"uplift_{playbook}"] = (uplift, {"passed": True})
    rows = []
    for name, (model, metrics) in models.items():
        path = folder / f"{name}.joblib"
        joblib.dump(model, path)
        rows.append({"model_name": name, "version": f"{name}-test", "trained_at": datetime(2026, 5, 31, 3),
                     "training_window_start": date(2026, 1, 5), "training_window_end": date(2026, 5, 31),
                     "features": None, "metrics": json.dumps(metrics), "method": "stub", "artifact_path": str(path),
                     "artifact_sha256": registry.file_sha256(path), "notes": None})
    return pd.DataFrame(rows)


def load(warehouse, folder) -> None:
    for (schema, table), frame in store_tables().items():
        warehouse.write_df(schema, table, frame)
    # The registry's own DDL (date columns), as the pipeline makes it: fakesnow's write_pandas would create a
    # table from the frame's Python dates as VARCHAR, which real Snowflake infers as DATE.
    registry.ensure_registry(warehouse)
    warehouse.write_df("nextbest", "model_registry", registry_rows(folder))


@pytest.fixture
def engines(monkeypatch, tmp_path):
    """(Snowflake resource on fakesnow with 7-customer chunks, DuckDB resource in one batch), same store."""
    for name, value in {**ENV, "NEXTBEST_BATCH_ROWS": str(CHUNK)}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(FakeSnowflakeCursor, "fetch_arrow_batches", _fetch_arrow_batches, raising=False)
    batches = rows_per_batch(monkeypatch, SnowflakeWarehouse)
    duck = DuckDBWarehouse(path=str(tmp_path / "w.duckdb"), batch_rows=1_000_000)
    load(duck, tmp_path)
    with fakesnow.patch():
        snow = build_warehouse()
        assert isinstance(snow, SnowflakeWarehouse)
        load(snow.process_config_and_initialize(), tmp_path)
        yield snow, duck, batches


def materialize(asset, warehouse, config: dict | None = None) -> dg.ExecuteInProcessResult:
    return dg.materialize([asset], resources={"warehouse": warehouse}, instance=dg.DagsterInstance.ephemeral(),
                          run_config={"ops": {asset.op.name: {"config": config}}} if config else None)


def read(warehouse, sql: str) -> pd.DataFrame:
    """Rows with engine-neutral values: blanks as None, dates and times as pandas Timestamps."""
    resolved = warehouse.process_config_and_initialize() if isinstance(warehouse, SnowflakeWarehouse) else warehouse
    frame = resolved.read_df(sql).astype(object)
    frame = frame.where(frame.notna(), None)
    return frame.map(lambda v: pd.Timestamp(v) if isinstance(v, (date, datetime)) else v)


def leftovers(snow: SnowflakeWarehouse) -> int:
    return int(read(snow, f"select count(*) as n from information_schema.tables where upper(table_name) like "
                          f"'{STAGE_PREFIX}%'").iloc[0, 0])


def test_scoring_in_chunks_on_snowflake_writes_what_duckdb_writes_in_one_batch(engines):
    snow, duck, batches = engines
    assert materialize(customer_scores, snow).success
    assert materialize(customer_scores, duck).success
    columns = ("customer_id, as_of_date, p_churn, p_skip, p_upgrade, p_discount_response, predicted_value_90d, "
               "churn_model_version, skip_model_version")
    on_snowflake = read(snow, f"select {columns} from nextbest.customer_scores order by customer_id")
    on_duckdb = read(duck, f"select {columns} from nextbest.customer_scores order by customer_id")
    assert len(on_snowflake) == CUSTOMERS and on_snowflake["p_churn"].notna().any()
    pd.testing.assert_frame_equal(on_snowflake, on_duckdb, check_dtype=False)
    assert batches and max(batches) <= CHUNK and len(batches) == -(-CUSTOMERS // CHUNK)
    assert leftovers(snow) == 0
    # A rerun replaces the table: still one row per customer.
    assert materialize(customer_scores, snow).success
    assert int(read(snow, "select count(*) as n from nextbest.customer_scores").iloc[0, 0]) == CUSTOMERS


def test_routing_in_chunks_on_snowflake_appends_what_duckdb_appends_in_one_batch(engines):
    snow, duck, batches = engines
    config = {"as_of": RUN_DATE.isoformat()}
    result = materialize(routing_decisions, snow, config)
    assert result.success
    assert materialize(routing_decisions, duck, config).success
    columns = ("decision_id, run_date, customer_id, decision, playbook_id, arm, goal, expected_uplift, expected_value, "
               "exploration, alternatives, reason, reason_codes, model_version, send_hour_of_week, send_at, "
               "campaign_id, assignment_id, goal_value")
    on_snowflake = read(snow, f"select {columns} from nextbest.routing_decisions order by customer_id")
    on_duckdb = read(duck, f"select {columns} from nextbest.routing_decisions order by customer_id")
    assert len(on_snowflake) and {"send", "suppressed"} <= set(on_snowflake["decision"])
    pd.testing.assert_frame_equal(on_snowflake, on_duckdb, check_dtype=False)
    assigned = "select count(*) as n from nextbest.assignments where assigned_at = '2026-06-01 00:00:00'"
    assert int(read(snow, assigned).iloc[0, 0]) == on_snowflake["arm"].notna().sum() > 0
    assert int(read(snow, assigned).iloc[0, 0]) == int(read(duck, assigned).iloc[0, 0])
    assert max(batches) <= CHUNK and len(batches) > 1
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert meta["appended"].value == len(on_snowflake)
    # Append-only: the same run date again appends nothing.
    again = materialize(routing_decisions, snow, config)
    assert again.get_asset_materialization_events()[0].materialization.metadata["appended"].value == 0
    assert len(read(snow, "select decision_id from nextbest.routing_decisions")) == len(on_snowflake)
    assert leftovers(snow) == 0


def test_raw_sources_observe_snowflake_and_never_write_its_raw_tables(engines):
    snow, _, _ = engines
    missing = dg.materialize([raw_sources], resources={"warehouse": snow}, instance=dg.DagsterInstance.ephemeral(),
                             raise_on_error=False)
    assert not missing.success
    assert "raw.subscriptions" in str(missing.get_step_failure_events()[0].event_specific_data.error)
    create_raw_schema(snow.process_config_and_initialize())  # the tables this store has no rows for
    result = materialize(raw_sources, snow)  # mode auto: existing, on Snowflake
    observed = {event.asset_key.path[-1]: event.materialization.metadata
                for event in result.get_asset_materialization_events()}
    assert observed["customers"]["dagster/row_count"].value == CUSTOMERS
    assert observed["customers"]["newest_record"].value == str(datetime(2025, 1, 1) + timedelta(days=CUSTOMERS - 1))
    assert observed["orders"]["dagster/row_count"].value == 1
    assert observed["orders"]["newest_record"].value == str(datetime(2026, 5, 31, 12))
    assert observed["payments"]["dagster/row_count"].value == 0 and observed["payments"]["newest_record"].value == "none"
    refused = dg.materialize([raw_sources], resources={"warehouse": snow}, instance=dg.DagsterInstance.ephemeral(),
                             run_config={"ops": {"raw_sources": {"config": {"mode": "simulate"}}}},
                             raise_on_error=False)
    assert not refused.success
    assert "NEXTBEST_WAREHOUSE=snowflake" in str(refused.get_step_failure_events()[0].event_specific_data.error)
    assert read(snow, "select count(*) as n from raw.customers").iloc[0, 0] == CUSTOMERS  # nothing replaced

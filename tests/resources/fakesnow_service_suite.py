"""The service assets on the Snowflake resource, against fakesnow, chunk by chunk.

Run by `test_snowflake.py` in the fakesnow virtualenv, like `fakesnow_drafts_suite.py`. The
same small store (tests/service/store.py: the raw contract tables and the dbt relations the
service assets read) goes into fakesnow and into a DuckDB file; `save_offer_recommendations`,
`service_reply_drafts` and `service_context_export` run on Snowflake in chunks of 4 customers
and on DuckDB in one batch, and must write the same rows: recommendations and assignments,
reply drafts, and outbox rows with the same property bodies, sent once to each file sink.
"""

from __future__ import annotations

import json

import fakesnow
import pandas as pd
import pytest
from fakesnow.cursor import FakeSnowflakeCursor

from dagster_project.resources.snowflake import SnowflakeSession, SnowflakeWarehouse
from dagster_project.resources.warehouse import DuckDBWarehouse, build_warehouse
from dagster_project.service.assets import save_offer_recommendations, service_context_export, service_reply_drafts
from tests.resources.fakesnow_assets_suite import leftovers, materialize, read
from tests.resources.fakesnow_suite import ENV, _fetch_arrow_batches
from tests.service import store
from tests.spies import customers_per_read

CHUNK = 4
CONFIG = {"as_of": store.AS_OF}


@pytest.fixture
def engines(monkeypatch, tmp_path):
    """(Snowflake resource on fakesnow with 4-customer chunks, DuckDB resource in one batch, customers per read)."""
    for name, value in {**ENV, "NEXTBEST_BATCH_ROWS": str(CHUNK), "NEXTBEST_AS_OF": store.AS_OF}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("NEXTBEST_ESP", raising=False)
    monkeypatch.delenv("NEXTBEST_HELPDESK_WEBHOOK_URL", raising=False)
    monkeypatch.setattr(FakeSnowflakeCursor, "fetch_arrow_batches", _fetch_arrow_batches, raising=False)
    held = customers_per_read(monkeypatch, SnowflakeSession)
    duck = DuckDBWarehouse(path=str(tmp_path / "w.duckdb"), batch_rows=1_000_000)
    store.load(duck)
    with fakesnow.patch():
        snow = build_warehouse()
        assert isinstance(snow, SnowflakeWarehouse)
        store.load(snow.process_config_and_initialize())
        held.clear()
        yield snow, duck, held


def meta(result) -> dict:
    return {k: v.value for k, v in result.get_asset_materialization_events()[0].materialization.metadata.items()}


def export(warehouse, sinks, monkeypatch) -> dict:
    sinks.mkdir(exist_ok=True)
    monkeypatch.setenv("NEXTBEST_OUTBOX_FILE", str(sinks / "esp.jsonl"))
    monkeypatch.setenv("NEXTBEST_HELPDESK_FILE", str(sinks / "helpdesk.jsonl"))
    result = materialize(service_context_export, warehouse)
    assert result.success
    return meta(result)


def sent(path) -> list[dict]:
    return sorted((json.loads(line) for line in path.read_text().splitlines()), key=lambda x: x["customer_id"])


def same(snow, duck, sql: str) -> pd.DataFrame:
    on_snowflake = read(snow, sql)
    pd.testing.assert_frame_equal(on_snowflake, read(duck, sql), check_dtype=False)
    return on_snowflake


def test_save_offers_in_chunks_on_snowflake_record_what_duckdb_records_in_one_batch(engines):
    snow, duck, held = engines
    result = materialize(save_offer_recommendations, snow, CONFIG)
    assert result.success
    assert materialize(save_offer_recommendations, duck, CONFIG).success
    assert held and max(held) <= CHUNK  # no read held more than a chunk of customers
    recommendations = same(snow, duck, store.RECOMMENDATIONS_SQL)
    assert len(recommendations) == meta(result)["recommended"] == 6
    assert set(recommendations["stated_reason"].dropna()) == {"price", "too_much_coffee", "taste"}
    assert len(same(snow, duck, store.ASSIGNMENTS_SQL)) == meta(result)["new_assignments"] == 5
    assert leftovers(snow) == 0
    again = materialize(save_offer_recommendations, snow, CONFIG)
    assert (meta(again)["recommended"], meta(again)["already_recorded"]) == (0, 6)
    assert materialize(save_offer_recommendations, snow, CONFIG).success  # the check on assignments passes too


def test_reply_drafts_in_chunks_on_snowflake_write_what_duckdb_writes_in_one_batch(engines):
    snow, duck, held = engines
    result = materialize(service_reply_drafts, snow, CONFIG)
    assert result.success
    assert materialize(service_reply_drafts, duck, CONFIG).success
    assert held and max(held) <= CHUNK
    drafts = same(snow, duck, store.REPLIES_SQL)
    assert len(drafts) == meta(result)["drafts"] > 0 and drafts["ticket_id"].is_unique
    assert "pending_review" in set(drafts["status"])
    assert leftovers(snow) == 0
    again = materialize(service_reply_drafts, snow, CONFIG)  # a rerun replaces the day's batch
    assert again.success and len(read(snow, store.REPLIES_SQL)) == len(drafts)
    assert meta(again)["cache_hits"] == int((drafts["status"] == "pending_review").sum())  # ready replies reused


def test_the_export_in_chunks_on_snowflake_queues_and_sends_what_duckdb_does(engines, tmp_path, monkeypatch):
    snow, duck, held = engines
    on_snowflake = export(snow, tmp_path / "snow", monkeypatch)
    assert held and max(held) <= CHUNK
    assert export(duck, tmp_path / "duck", monkeypatch) == on_snowflake
    outbox = same(snow, duck, store.OUTBOX_SQL)
    assert len(outbox) == 2 * store.CUSTOMERS and set(outbox["state"]) == {"sent"}
    for sink in ("esp.jsonl", "helpdesk.jsonl"):
        assert sent(tmp_path / "snow" / sink) == sent(tmp_path / "duck" / sink)
        assert [x["customer_id"] for x in sent(tmp_path / "snow" / sink)] == store.ids()
    # Exactly once, changed customers only: a rerun queues nothing, a change queues that customer.
    again = export(snow, tmp_path / "snow", monkeypatch)
    assert again["service_helpdesk"]["queued"] == again["service_profile"]["sent"] == 0
    snow.process_config_and_initialize().execute(
        "update analytics.customer_service_context set tone_preference = 'warm' where customer_id = 'C0004'")
    changed = export(snow, tmp_path / "snow", monkeypatch)
    assert changed["service_helpdesk"]["queued"] == changed["service_profile"]["sent"] == 1
    lines = [json.loads(x) for x in (tmp_path / "snow" / "helpdesk.jsonl").read_text().splitlines()]
    assert len(lines) == store.CUSTOMERS + 1 and lines[-1]["customer_id"] == "C0004"
    assert leftovers(snow) == 0

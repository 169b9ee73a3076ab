"""The service assets a few customers at a time give what one batch gives, holding a chunk at a time."""

from __future__ import annotations

import json

import dagster as dg
import pandas as pd
import pytest

from dagster_project.resources.warehouse import DuckDBSession, DuckDBWarehouse
from dagster_project.service.assets import save_offer_recommendations, service_context_export, service_reply_drafts
from dagster_project.service.export import profile_body, property_bodies
from tests.service import store
from tests.spies import customers_per_read, rows_per_batch

CHUNK = 3
CONFIG = {"as_of": store.AS_OF}


def materialize(asset, warehouse, config=None) -> dg.ExecuteInProcessResult:
    result = dg.materialize([asset], resources={"warehouse": warehouse}, instance=dg.DagsterInstance.ephemeral(),
                            run_config={"ops": {asset.op.name: {"config": config}}} if config else None)
    assert result.success
    return result


def meta(result) -> dict:
    return {k: v.value for k, v in result.get_asset_materialization_events()[0].materialization.metadata.items()}


def export(warehouse, sinks, monkeypatch) -> dict:
    monkeypatch.setenv("NEXTBEST_OUTBOX_FILE", str(sinks / "esp.jsonl"))
    monkeypatch.setenv("NEXTBEST_HELPDESK_FILE", str(sinks / "helpdesk.jsonl"))
    return meta(materialize(service_context_export, warehouse))


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def stores(tmp_path, monkeypatch):
    """(a DuckDB store chunked 3 customers at a time, the same store in one batch, customers per read, rows per batch)."""
    monkeypatch.setenv("NEXTBEST_AS_OF", store.AS_OF)
    monkeypatch.delenv("NEXTBEST_ESP", raising=False)
    monkeypatch.delenv("NEXTBEST_HELPDESK_WEBHOOK_URL", raising=False)
    chunked = DuckDBWarehouse(path=str(tmp_path / "chunked.duckdb"), batch_rows=CHUNK)
    whole = DuckDBWarehouse(path=str(tmp_path / "whole.duckdb"), batch_rows=1_000_000)
    for warehouse in (chunked, whole):
        store.load(warehouse)
    held = customers_per_read(monkeypatch, DuckDBSession)
    batches = rows_per_batch(monkeypatch, DuckDBWarehouse)
    return chunked, whole, held, batches


def test_chunks_of_three_customers_give_what_one_batch_gives(stores, tmp_path, monkeypatch):
    chunked, whole, held, batches = stores
    (tmp_path / "chunked").mkdir()
    (tmp_path / "whole").mkdir()
    offers = meta(materialize(save_offer_recommendations, chunked, CONFIG))
    replies = meta(materialize(service_reply_drafts, chunked, CONFIG))
    exported = export(chunked, tmp_path / "chunked", monkeypatch)
    assert held and max(held) <= CHUNK, "a read held more than a chunk of customers"
    assert batches and max(batches) <= CHUNK
    held.clear()
    assert meta(materialize(save_offer_recommendations, whole, CONFIG)) == offers
    assert meta(materialize(service_reply_drafts, whole, CONFIG))["drafts"] == replies["drafts"]
    assert export(whole, tmp_path / "whole", monkeypatch) == exported
    assert max(held) > CHUNK  # the one-batch run did read them all at once

    for sql in (store.OUTBOX_SQL, store.RECOMMENDATIONS_SQL, store.ASSIGNMENTS_SQL, store.REPLIES_SQL):
        pd.testing.assert_frame_equal(chunked.read_df(sql), whole.read_df(sql))
    outbox = chunked.read_df(store.OUTBOX_SQL)
    assert len(outbox) == 2 * store.CUSTOMERS and set(outbox["state"]) == {"sent"}
    recommendations = chunked.read_df(store.RECOMMENDATIONS_SQL)
    assert offers["recommended"] == len(recommendations) == 6  # C0001, C0005, ... and C0009's ticket
    assert offers["new_assignments"] == 5  # C0009's second attempt keeps the arm of the first
    # C0014 never subscribed: its cancel attempt has nothing to save.
    assert offers["no_live_subscription"] == 1 and "C0014" not in set(recommendations["customer_id"])
    assert set(recommendations["trigger_kind"]) == {"portal_cancel_attempt", "cancellation_ticket"}
    assert set(recommendations["stated_reason"].dropna()) == {"price", "too_much_coffee", "taste"}
    drafts = chunked.read_df(store.REPLIES_SQL)
    open_tickets = [t for k in range(3, store.CUSTOMERS, 3) for t in range(1 + k % 2)]
    assert len(drafts) == len(open_tickets) == replies["drafts"] and drafts["ticket_id"].is_unique
    for sink in ("esp.jsonl", "helpdesk.jsonl"):
        sent = sorted(lines(tmp_path / "chunked" / sink), key=lambda x: x["customer_id"])
        assert [x["customer_id"] for x in sent] == store.ids()
        assert sent == sorted(lines(tmp_path / "whole" / sink), key=lambda x: x["customer_id"])


def test_a_chunked_rerun_sends_nothing_and_a_change_only_that_customer(stores, tmp_path, monkeypatch):
    chunked, _, _, _ = stores
    first = export(chunked, tmp_path, monkeypatch)
    assert first["service_helpdesk"]["sent"] == store.CUSTOMERS
    again = export(chunked, tmp_path, monkeypatch)
    assert again["service_helpdesk"]["queued"] == again["service_helpdesk"]["sent"] == 0
    chunked.execute("update analytics.customer_service_context set open_tickets = 5 where customer_id = 'C0007'")
    changed = export(chunked, tmp_path, monkeypatch)
    assert changed["service_profile"]["queued"] == changed["service_helpdesk"]["sent"] == 1
    sent = lines(tmp_path / "helpdesk.jsonl")
    assert len(sent) == store.CUSTOMERS + 1 and len({x["send_id"] for x in sent}) == len(sent)
    assert sent[-1]["customer_id"] == "C0007" and sent[-1]["properties"]["nextbest_open_tickets"] == 5
    # A rerun of the reply drafts and save offers adds nothing: the day's batch is replaced, triggers are kept.
    assert meta(materialize(save_offer_recommendations, chunked, CONFIG))["recommended"] == 6
    assert meta(materialize(save_offer_recommendations, chunked, CONFIG))["already_recorded"] == 6
    materialize(service_reply_drafts, chunked, CONFIG)
    drafts = len(chunked.read_df(store.REPLIES_SQL))
    materialize(service_reply_drafts, chunked, CONFIG)
    assert len(chunked.read_df(store.REPLIES_SQL)) == drafts


def test_a_ticket_still_open_the_next_day_keeps_its_reply_unless_its_customer_changed(stores):
    chunked, _, _, _ = stores
    first = meta(materialize(service_reply_drafts, chunked, CONFIG))
    assert first["drafts"] and first["cache_hits"] == 0
    next_day = (pd.Timestamp(store.AS_OF) + pd.Timedelta(days=1)).date().isoformat()
    # C0003 writes in again about its open ticket: its pack changes, the others' do not.
    chunked.execute("update raw.support_tickets set body = body || ' Any news?' where customer_id = 'C0003'")
    again = meta(materialize(service_reply_drafts, chunked, {"as_of": next_day}))
    rows = chunked.read_df(store.REPLIES_SQL.replace(", as_of from", ", as_of, cached from"))
    day1, day2 = (rows[rows["as_of"].astype(str) == day].set_index("ticket_id") for day in (store.AS_OF, next_day))
    assert len(day1) == len(day2) == first["drafts"] == again["drafts"]
    # Reused exactly where the key (pack without the day, brief, generator) is a ready reply's of day 1:
    # not C0003's, nor C0018's, whose tenure turned 28 months overnight (a fact a reply may cite).
    ready_keys = set(day1.loc[day1["status"] == "pending_review", "cache_key"])
    assert day2["cached"].tolist() == day2["cache_key"].isin(ready_keys).tolist()
    assert again["cache_hits"] == int(day2["cached"].sum()) == len(day2) - 3
    assert not day2.loc[day2["customer_id"].isin(["C0003", "C0018"]), "cached"].any()
    kept = day2.index[day2["cached"]]
    for column in ("subject", "body", "cta", "cited_fact_ids", "status", "cache_key"):
        assert day2.loc[kept, column].equals(day1.loc[kept, column]), column
    # the cached replies' checks were judged again, each once: no verdict twice
    for verdicts in day2.loc[kept, "verdicts"]:
        checks = [v["check"] for v in json.loads(verdicts)]
        assert len(checks) == len(set(checks)) and {"delivery", "private", "staleness"} <= set(checks)


def test_bodies_built_column_by_column_match_one_customer_at_a_time():
    mart = store.tables()[("analytics", "customer_service_context")]
    for frame in (mart, mart.astype(object).where(mart.notna(), None)):  # typed, and as plain Python values
        built = property_bodies(frame).tolist()
        assert built == [profile_body(row) for row in frame.to_dict("records")]
    body = json.loads(property_bodies(mart.iloc[[4]]).iloc[0])  # C0004: no subscription, no cadence
    assert body["nextbest_cadence_days"] is None and body["nextbest_tenure_months"] == 7
    assert json.loads(property_bodies(mart.iloc[[2]]).iloc[0])["nextbest_cadence_days"] == 28  # not 28.0


def test_only_customers_whose_fields_changed_or_whose_update_died_are_read_again(stores, tmp_path, monkeypatch):
    chunked, _, held, _ = stores
    first = export(chunked, tmp_path, monkeypatch)
    assert first["service_profile"]["looked_at"] == first["service_helpdesk"]["sent"] == store.CUSTOMERS
    state = chunked.read_df("select * from nextbest.service_export_state order by playbook_id, customer_id")
    assert len(state) == 2 * store.CUSTOMERS and state["batch_id"].notna().all()
    carried = chunked.read_df("select playbook_id, customer_id, batch_id from nextbest.outbox "
                              "where kind = 'properties' order by playbook_id, customer_id")
    # each customer's state names the batch of the update that carries it
    pd.testing.assert_frame_equal(state[["playbook_id", "customer_id", "batch_id"]], carried)
    held.clear()
    again = export(chunked, tmp_path, monkeypatch)
    assert again["service_profile"]["looked_at"] == again["service_helpdesk"]["queued"] == 0
    assert not held or max(held) == 0  # nobody's context row was read

    chunked.execute("update analytics.customer_service_context set open_tickets = 5 where customer_id = 'C0007'")
    changed = export(chunked, tmp_path, monkeypatch)
    assert changed["service_profile"]["looked_at"] == 1
    assert changed["service_profile"]["queued"] == changed["service_helpdesk"]["sent"] == 1

    # An update that never arrived (dead) brings its customer back the next day, for that destination only.
    chunked.execute("update nextbest.outbox set state = 'dead' where customer_id = 'C0003' "
                    "and playbook_id = 'service_helpdesk'")
    monkeypatch.setenv("NEXTBEST_AS_OF", "2026-06-02")
    retried = export(chunked, tmp_path, monkeypatch)
    assert retried["service_helpdesk"]["looked_at"] == 1
    assert retried["service_helpdesk"]["sent"] == 1 and retried["service_profile"]["queued"] == 0
    assert lines(tmp_path / "helpdesk.jsonl")[-1]["customer_id"] == "C0003"

    # The state is a cache: without it everyone is compared again, and nothing is sent twice.
    chunked.execute("drop table nextbest.service_export_state")
    rebuilt = export(chunked, tmp_path, monkeypatch)
    assert rebuilt["service_profile"]["looked_at"] == store.CUSTOMERS
    assert rebuilt["service_profile"]["queued"] == rebuilt["service_helpdesk"]["queued"] == 0
    assert len(chunked.read_df("select * from nextbest.service_export_state")) == 2 * store.CUSTOMERS
    assert export(chunked, tmp_path, monkeypatch)["service_helpdesk"]["looked_at"] == 0

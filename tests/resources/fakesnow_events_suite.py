"""ESP events back into raw.email_events on the Snowflake resource, against fakesnow, beside DuckDB.

Run by `test_snowflake.py` in the fakesnow virtualenv, like `fakesnow_suite.py`. The same
events (NextBest's shape, HubSpot's by email, Customer.io's) go into fakesnow and into a
DuckDB file, from a file and through the signed webhook receiver: each event is stored
once, bad rows are quarantined once, a re-delivery adds nothing, and both engines end up
holding the same rows.
"""

from __future__ import annotations

import json
import threading
import time

import pandas as pd
import pytest
import requests

from dagster_project.delivery.events import ingest_events_file, make_webhook_server
from dagster_project.delivery.signing import sign, sign_hubspot
from dagster_project.ingest.contract import create_raw_schema
from dagster_project.resources.snowflake import STAGE_PREFIX, SnowflakeWarehouse
from tests.delivery.test_events import NOON, SECRET, event, hubspot_body
from tests.resources.fakesnow_quality_suite import both_engines

CUSTOMERS = [f"c{i}" for i in range(8)]


def add_customers(warehouse) -> None:
    create_raw_schema(warehouse)
    warehouse.write_df("raw", "customers", pd.DataFrame({
        "customer_id": CUSTOMERS, "email": [f"{c}@example.com" for c in CUSTOMERS],
        "first_name": [f"Name{c}" for c in CUSTOMERS], "created_at": pd.Timestamp("2025-01-01"),
        "country": "US", "timezone": "UTC", "marketing_opt_in": True, "channel_preference": "email"}))


@pytest.fixture
def engines(monkeypatch, tmp_path):
    """(Snowflake resource on fakesnow, DuckDB resource), each with the raw tables and eight customers."""
    with both_engines(monkeypatch, tmp_path, add_customers) as pair:
        yield pair


def stored(warehouse) -> list[tuple]:
    frame = warehouse.read_df("select event_id, customer_id, campaign_id, message_id, event_type, occurred_at "
                              "from raw.email_events order by event_id")
    return [(*row[:-1], str(pd.Timestamp(row[-1]))) for row in frame.itertuples(index=False, name=None)]


def quarantined(warehouse) -> list[tuple]:
    frame = warehouse.read_df("select source_table, row_number, reason from raw.raw_quarantine "
                              "order by row_number, reason")
    return list(frame.itertuples(index=False, name=None))


def leftovers(warehouse: SnowflakeWarehouse) -> int:
    """Transient staging tables still there (every transaction drops the ones it uploaded)."""
    return int(warehouse.read_df("select count(*) as n from information_schema.tables "
                                 "where upper(table_name) like ?", [STAGE_PREFIX + "%"]).iloc[0, 0])


def test_a_file_of_events_is_stored_once_on_snowflake_as_on_duckdb(engines, tmp_path):
    snow, duck = engines
    lines = [
        event(1), event(2, "clicked"), event(1),  # the same event twice in one file
        {"id": "hs-1", "type": "OPEN", "recipient": "C4@Example.com", "created": NOON * 1000,
         "emailCampaignId": 42, "sentBy": {"id": "sent-1"}},  # HubSpot names the customer by email
        {"event_id": "cio-1", "metric": "spammed", "timestamp": NOON,
         "data": {"customer_id": "c3", "delivery_id": "d1", "campaign_id": 7}},  # Customer.io
        {**event(3), "event_type": "teleported"}, {**event(4), "customer_id": "nobody"},
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\nnot json\n")

    first = [ingest_events_file(w, path) for w in engines]
    assert first[0] == first[1]
    assert (first[0].read, first[0].inserted, first[0].duplicates, first[0].quarantined) == (8, 4, 1, 3)
    assert stored(snow) == stored(duck) == [
        ("cio-1", "c3", "7", "d1", "complaint", "2026-03-10 12:00:00"),
        ("ev1", "c1", "b1", "m1", "open", "2026-03-10 12:00:00"),
        ("ev2", "c1", "b1", "m1", "click", "2026-03-10 12:00:00"),
        ("hs-1", "c4", "42", "sent-1", "open", "2026-03-10 12:00:00"),
    ]
    assert quarantined(snow) == quarantined(duck)
    assert [reason.split(": ", 1)[1] for _, _, reason in quarantined(snow)] == [
        "event_type 'teleported' is not one of sent, delivered, open, click, conversion, unsubscribe, "
        "bounce, complaint", "customer_id 'nobody' is not in raw.customers", "not JSON (Expecting value)"]

    again = [ingest_events_file(w, path) for w in engines]  # the same export loaded again
    assert again[0] == again[1]
    assert (again[0].inserted, again[0].duplicates) == (0, 5)
    assert len(stored(snow)) == len(stored(duck)) == 4
    assert len(quarantined(snow)) == len(quarantined(duck)) == 3
    assert leftovers(snow) == 0


@pytest.fixture
def receivers(engines):
    """A webhook receiver on each engine: (base URL, warehouse) pairs, Snowflake first."""
    servers = [make_webhook_server(w, {"nextbest": SECRET, "hubspot": SECRET}, port=0, tolerance=60)
               for w in engines]
    for server in servers:
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    yield [(f"http://127.0.0.1:{server.server_address[1]}", w) for server, w in zip(servers, engines)]
    for server in servers:
        server.shutdown()
        server.server_close()


def post(url: str, body: bytes, headers: dict) -> dict:
    answer = requests.post(url, data=body, headers={"Content-Type": "application/json", **headers}, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_redelivered_webhook_adds_nothing_on_snowflake_as_on_duckdb(receivers):
    hubspot = hubspot_body()  # two customers named by email, one stranger
    own = json.dumps({"events": [event(1), event(2, "bounced")]}).encode()
    answers = []
    for base, _ in receivers:
        url = base + "/webhooks/hubspot"
        now_ms = int(time.time() * 1000)
        answers.append([
            post(url, hubspot, sign_hubspot(SECRET, hubspot, url, timestamp_ms=now_ms)),
            # The ESP retrying the same events in a new (newly signed) request.
            post(url, hubspot, sign_hubspot(SECRET, hubspot, url, timestamp_ms=now_ms + 1000)),
            post(base + "/webhooks/nextbest", own, sign(SECRET, own)),
            post(base + "/webhooks/nextbest", own, sign(SECRET, own, timestamp=int(time.time()) + 1)),
        ])
    on_snowflake, on_duckdb = answers
    assert on_snowflake == on_duckdb
    assert [(a["inserted"], a["duplicates"], a["quarantined"]) for a in on_snowflake] == [
        (2, 0, 1), (0, 2, 1), (2, 0, 0), (0, 2, 0)]
    (_, snow), (_, duck) = receivers
    assert stored(snow) == stored(duck)
    assert [row[0] for row in stored(snow)] == ["ev1", "ev2", "hs-1", "hs-2"]
    assert quarantined(snow) == quarantined(duck)
    assert len(quarantined(snow)) == 1, "a re-delivered bad row is quarantined once"
    assert leftovers(snow) == 0

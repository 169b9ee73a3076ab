"""ESP events back: files and signed webhooks land in raw.email_events once per event id."""

from __future__ import annotations

import argparse
import json
import threading
import time

import duckdb
import pytest
import requests

from dagster_project.delivery import commands
from dagster_project.delivery.events import ingest_events_file, make_webhook_server
from dagster_project.delivery.signing import sign, sign_customerio

SECRET = "whsec_receiver"


def event(n: int, kind: str = "open", customer: str = "c1") -> dict:
    return {"event_id": f"ev{n}", "customer_id": customer, "campaign_id": "b1", "message_id": "m1",
            "event_type": kind, "occurred_at": "2026-03-10T12:00:00Z"}


def stored(con) -> list[tuple]:
    return con.execute("select event_id, event_type from raw.email_events order by 1").fetchall()


def test_a_file_of_events_is_ingested_once_with_bad_rows_quarantined(warehouse, tmp_path):
    path = tmp_path / "events.jsonl"
    rows = [event(1), event(2, "clicked"), event(1), {**event(3), "event_type": "teleported"},
            {**event(4), "customer_id": "nobody"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n")
    first = ingest_events_file(warehouse, path)
    assert (first.read, first.inserted, first.duplicates, first.quarantined) == (6, 2, 1, 3)
    assert stored(warehouse) == [("ev1", "open"), ("ev2", "click")]
    reasons = [r[0] for r in warehouse.execute("select reason from raw.raw_quarantine order by row_number").fetchall()]
    assert reasons[0].endswith("row 4: event_type 'teleported' is not one of sent, delivered, open, click, "
                               "conversion, unsubscribe, bounce, complaint")
    assert "row 5: customer_id 'nobody' is not in raw.customers" in reasons[1]
    assert "row 6: not JSON" in reasons[2]
    again = ingest_events_file(warehouse, path)
    assert again.inserted == 0 and len(stored(warehouse)) == 2


def test_csv_events_and_unix_timestamps(warehouse, tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("event_id,customer_id,campaign_id,message_id,event_type,occurred_at\n"
                    "ev9,c2,b1,m9,unsubscribed,1773144000\nev9,c2,b1,m9,unsubscribed,1773144000\n")
    summary = ingest_events_file(warehouse, path)
    assert (summary.inserted, summary.duplicates) == (1, 1)
    assert warehouse.execute("select occurred_at::varchar from raw.email_events").fetchall() == [("2026-03-10 12:00:00",)]


@pytest.fixture
def receiver(warehouse, tmp_path):
    db = warehouse.execute("select path from duckdb_databases() where database_name = current_database()").fetchall()[0][0]
    warehouse.close()
    server = make_webhook_server(lambda: duckdb.connect(db), {"nextbest": SECRET, "customerio": SECRET},
                                 port=0, tolerance=60)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", db
    server.shutdown()
    server.server_close()


def post(url: str, body: bytes, headers: dict) -> requests.Response:
    return requests.post(url, data=body, headers={"Content-Type": "application/json", **headers}, timeout=5)


def test_webhook_receiver_verifies_signatures_and_refuses_replays(receiver):
    base, db = receiver
    url = base + "/webhooks/nextbest"
    body = json.dumps({"events": [event(1), event(2, "bounced")]}).encode()
    headers = sign(SECRET, body)

    assert post(url, body, {}).status_code == 401  # unsigned
    assert "does not match" in post(url, body, sign("wrong", body)).json()["error"]
    assert post(url, body + b" ", headers).status_code == 401  # body changed after signing
    old = sign(SECRET, body, timestamp=int(time.time()) - 3600)
    assert "refused as a replay" in post(url, body, old).json()["error"]
    ok = post(url, body, headers)
    assert ok.status_code == 200 and ok.json()["inserted"] == 2
    assert post(url, body, headers).status_code == 409  # the same signed request again
    # The ESP retrying the same events in a new request: accepted, stored once.
    assert post(url, body, sign(SECRET, body, timestamp=int(time.time()) + 1)).json()["duplicates"] == 2
    assert post(base + "/webhooks/klaviyo", body, headers).status_code == 404
    con = duckdb.connect(db)
    assert stored(con) == [("ev1", "open"), ("ev2", "bounce")]
    con.close()


def test_customerio_reporting_webhooks_are_understood(receiver):
    base, db = receiver
    body = json.dumps({"event_id": "01HCIO", "object_type": "email", "metric": "spammed", "timestamp": 1773144000,
                       "data": {"customer_id": "c3", "delivery_id": "d1", "campaign_id": 7}}).encode()
    assert post(base + "/webhooks/customerio", body, sign(SECRET, body)).status_code == 401  # wrong scheme
    answer = post(base + "/webhooks/customerio", body, sign_customerio(SECRET, body))
    assert answer.status_code == 200 and answer.json()["inserted"] == 1
    con = duckdb.connect(db)
    assert con.execute("select customer_id, campaign_id, message_id, event_type from raw.email_events").fetchall() \
        == [("c3", "7", "d1", "complaint")]
    con.close()


def test_cli_ingest_events(warehouse, tmp_path, monkeypatch, capsys):
    db = warehouse.execute("select path from duckdb_databases() where database_name = current_database()").fetchall()[0][0]
    warehouse.close()
    monkeypatch.setenv("NEXTBEST_DUCKDB_PATH", db)
    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers())
    path = tmp_path / "e.jsonl"
    path.write_text(json.dumps(event(5)) + "\n")
    args = parser.parse_args(["ingest-events", str(path)])
    assert args.func(args) == 0
    assert "1 events read, 1 new" in capsys.readouterr().out
    args = parser.parse_args(["ingest-events", str(tmp_path / "missing.csv")])
    assert args.func(args) == 2 and "is not a file" in capsys.readouterr().out
    monkeypatch.delenv("NEXTBEST_WEBHOOK_SECRET", raising=False)
    monkeypatch.delenv("CUSTOMERIO_WEBHOOK_SIGNING_KEY", raising=False)
    args = parser.parse_args(["serve-webhooks", "--port", "0"])
    assert args.func(args) == 2 and "NEXTBEST_WEBHOOK_SECRET" in capsys.readouterr().out

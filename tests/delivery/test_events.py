"""ESP events back: files and signed webhooks land in raw.email_events once per event id.

Each ESP's signature scheme is checked: unsigned, forged, stale or replayed requests store nothing.
"""

from __future__ import annotations

import argparse
import json
import threading
import time

import pytest
import requests

from dagster_project.delivery import commands
from dagster_project.delivery.events import ingest_events_file, make_webhook_server
from dagster_project.delivery.signing import (SignatureError, sign, sign_customerio, sign_hubspot, sign_klaviyo,
                                              verify_hubspot, verify_klaviyo)
from dagster_project.resources.warehouse import DuckDBWarehouse

SECRET = "whsec_receiver"
NOON = 1773144000  # 2026-03-10 12:00:00 UTC


def event(n: int, kind: str = "open", customer: str = "c1") -> dict:
    return {"event_id": f"ev{n}", "customer_id": customer, "campaign_id": "b1", "message_id": "m1",
            "event_type": kind, "occurred_at": "2026-03-10T12:00:00Z"}


def rows(warehouse: DuckDBWarehouse, sql: str) -> list[tuple]:
    return list(warehouse.read_df(sql).itertuples(index=False, name=None))


def stored(warehouse: DuckDBWarehouse) -> list[tuple]:
    return rows(warehouse, "select event_id, event_type from raw.email_events order by 1")


def test_a_file_of_events_is_ingested_once_with_bad_rows_quarantined(warehouse, tmp_path):
    path = tmp_path / "events.jsonl"
    lines = [event(1), event(2, "clicked"), event(1), {**event(3), "event_type": "teleported"},
             {**event(4), "customer_id": "nobody"}]
    path.write_text("\n".join(json.dumps(r) for r in lines) + "\nnot json\n")
    first = ingest_events_file(warehouse, path)
    assert (first.read, first.inserted, first.duplicates, first.quarantined) == (6, 2, 1, 3)
    assert stored(warehouse) == [("ev1", "open"), ("ev2", "click")]
    reasons = [r[0] for r in rows(warehouse, "select reason from raw.raw_quarantine order by row_number")]
    assert reasons[0].endswith("row 4: event_type 'teleported' is not one of sent, delivered, open, click, "
                               "conversion, unsubscribe, bounce, complaint")
    assert "row 5: customer_id 'nobody' is not in raw.customers" in reasons[1]
    assert "row 6: not JSON" in reasons[2]
    again = ingest_events_file(warehouse, path)
    assert (again.inserted, again.duplicates, again.quarantined) == (0, 3, 3)
    assert len(stored(warehouse)) == 2
    # The same bad rows of the same file are quarantined once, however often the file is loaded.
    assert len(rows(warehouse, "select reason from raw.raw_quarantine")) == 3


def test_a_duckdb_connection_still_works_and_names_customers_by_email(con, tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps({"event_id": "ev7", "email": " C7@Example.com", "campaign_id": "b1",
                                "message_id": "m7", "event_type": "open", "occurred_at": "2026-03-10T12:00:00Z"}))
    assert ingest_events_file(con, path).inserted == 1
    assert con.execute("select event_id, customer_id from raw.email_events").fetchall() == [("ev7", "c7")]


def test_csv_events_and_unix_timestamps(con, tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("event_id,customer_id,campaign_id,message_id,event_type,occurred_at\n"
                    "ev9,c2,b1,m9,unsubscribed,1773144000\nev9,c2,b1,m9,unsubscribed,1773144000\n")
    summary = ingest_events_file(con, path)
    assert (summary.inserted, summary.duplicates) == (1, 1)
    assert con.execute("select occurred_at::varchar from raw.email_events").fetchall() == [("2026-03-10 12:00:00",)]


@pytest.fixture
def receiver(warehouse):
    secrets = {source: SECRET for source in ("nextbest", "customerio", "hubspot", "klaviyo")}
    server = make_webhook_server(warehouse, secrets, port=0, tolerance=60)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", warehouse
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
    assert post(base + "/webhooks/mailchimp", body, headers).status_code == 404
    assert stored(db) == [("ev1", "open"), ("ev2", "bounce")]



def test_json_that_is_not_an_object_is_quarantined_by_row_not_a_crash(warehouse, receiver, tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(["null", json.dumps(event(1)), "42", '"open"', "[1, 2]"]) + "\n")
    summary = ingest_events_file(warehouse, path)
    assert (summary.read, summary.inserted, summary.quarantined) == (5, 1, 4)
    assert [r[0].split(": ", 1)[1] for r in rows(warehouse, "select reason from raw.raw_quarantine order by row_number")] \
        == ["not a JSON object (null)", "not a JSON object (a number)", "not a JSON object (a string)",
            "not a JSON object (an array)"]
    assert [r[0] for r in rows(warehouse, "select row_number from raw.raw_quarantine order by row_number")] == [1, 3, 4, 5]
    base, _ = receiver
    for payload in ([None, event(2)], 7):  # a webhook's array with a null in it; a body that is a bare number
        body = json.dumps(payload).encode()
        answer = post(base + "/webhooks/nextbest", body, sign(SECRET, body))
        assert answer.status_code == 200 and answer.json()["quarantined"] == 1
    assert stored(warehouse) == [("ev1", "open"), ("ev2", "open")]


def test_a_request_whose_events_could_not_be_stored_is_taken_when_the_esp_retries_it(receiver, monkeypatch):
    from dagster_project.delivery import events as events_module

    base, db = receiver
    real, calls = events_module.store_events, []

    def busy_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the warehouse file is held by a running job")
        return real(*args, **kwargs)

    monkeypatch.setattr(events_module, "store_events", busy_once)
    body = json.dumps({"events": [event(1, "unsubscribe")]}).encode()
    headers = sign(SECRET, body)
    first = post(base + "/webhooks/nextbest", body, headers)
    assert first.status_code == 503 and "retry later" in first.json()["error"]
    assert stored(db) == []
    again = post(base + "/webhooks/nextbest", body, headers)  # the ESP retries the same signed request
    assert again.status_code == 200 and again.json()["inserted"] == 1
    assert post(base + "/webhooks/nextbest", body, headers).status_code == 409  # stored now: a replay
    assert stored(db) == [("ev1", "unsubscribe")]

def test_customerio_reporting_webhooks_are_understood(receiver):
    base, db = receiver
    body = json.dumps({"event_id": "01HCIO", "object_type": "email", "metric": "spammed", "timestamp": 1773144000,
                       "data": {"customer_id": "c3", "delivery_id": "d1", "campaign_id": 7}}).encode()
    assert post(base + "/webhooks/customerio", body, sign(SECRET, body)).status_code == 401  # wrong scheme
    answer = post(base + "/webhooks/customerio", body, sign_customerio(SECRET, body))
    assert answer.status_code == 200 and answer.json()["inserted"] == 1
    assert rows(db, "select customer_id, campaign_id, message_id, event_type from raw.email_events") \
        == [("c3", "7", "d1", "complaint")]


def hubspot_body() -> bytes:
    return json.dumps([
        {"id": "hs-1", "type": "OPEN", "recipient": "C4@Example.com", "created": NOON * 1000,
         "emailCampaignId": 42, "sentBy": {"id": "sent-1"}},
        {"id": "hs-2", "type": "SPAMREPORT", "recipient": "c5@example.com", "created": NOON * 1000,
         "emailCampaignId": 42, "sentBy": {"id": "sent-2"}},
        {"id": "hs-3", "type": "CLICK", "recipient": "stranger@example.com", "created": NOON * 1000,
         "emailCampaignId": 42, "sentBy": {"id": "sent-3"}},
    ]).encode()


def test_hubspot_v3_signed_events_land_once_and_bad_requests_are_refused(receiver):
    base, db = receiver
    url = base + "/webhooks/hubspot"
    body = hubspot_body()
    now_ms = int(time.time() * 1000)

    assert post(url, body, {}).status_code == 401  # unsigned
    assert "does not match" in post(url, body, sign_hubspot("wrong", body, url)).json()["error"]
    assert post(url, body, sign_hubspot(SECRET, body, base + "/elsewhere")).status_code == 401  # other URL
    stale = sign_hubspot(SECRET, body, url, timestamp_ms=now_ms - 6 * 60 * 1000)
    assert "refused as a replay" in post(url, body, stale).json()["error"]

    headers = sign_hubspot(SECRET, body, url, timestamp_ms=now_ms)
    ok = post(url, body, headers)
    assert ok.status_code == 200 and (ok.json()["inserted"], ok.json()["quarantined"]) == (2, 1)
    assert post(url, body, headers).status_code == 409  # the same signed request again
    # HubSpot retrying the same events in a new request: accepted, nothing stored twice.
    retry = post(url, body, sign_hubspot(SECRET, body, url, timestamp_ms=now_ms + 1000)).json()
    assert (retry["inserted"], retry["duplicates"]) == (0, 2)

    assert rows(db, "select event_id, customer_id, campaign_id, message_id, event_type, cast(occurred_at as varchar) "
                    "from raw.email_events order by 1") == [
        ("hs-1", "c4", "42", "sent-1", "open", "2026-03-10 12:00:00"),
        ("hs-2", "c5", "42", "sent-2", "complaint", "2026-03-10 12:00:00"),
    ]
    reasons = rows(db, "select reason from raw.raw_quarantine")
    assert reasons and all("email 'stranger@example.com' is not in raw.customers" in r[0] for r in reasons)


def test_hubspot_signature_behind_a_proxy_uses_the_forwarded_url(receiver):
    base, db = receiver
    body = hubspot_body()
    public = "https://hooks.example.com/webhooks/hubspot"
    headers = {**sign_hubspot(SECRET, body, public), "X-Forwarded-Proto": "https",
               "X-Forwarded-Host": "hooks.example.com"}
    assert post(base + "/webhooks/hubspot", body, headers).json()["inserted"] == 2


def klaviyo_body(webhook_id: str = "wh-1") -> bytes:
    def item(event_id: str, topic: str, profile: dict) -> dict:
        return {"external_id": event_id, "topic": topic, "payload": {
            "data": {"type": "event", "id": event_id, "attributes": {
                "datetime": "2026-03-10T12:00:00+00:00",
                "event_properties": {"campaign_id": "b1", "message_id": "s1", "$message": "kmsg"}}},
            "included": [{"type": "profile", "id": "kp", "attributes": profile}]}}

    return json.dumps({"data": [
        item("kl-1", "event:klaviyo.opened_email", {"email": "c6@example.com", "external_id": "c6"}),
        item("kl-2", "event:klaviyo.clicked_email", {"email": "c7@example.com"}),  # no external id: by email
        item("kl-3", "event:klaviyo.bounced_email", {"email": "nobody@example.com"}),
    ], "meta": {"klaviyo_account_id": "acct", "klaviyo_webhook_id": webhook_id, "timestamp": "2026-03-10T12:00:01Z"}
    }).encode()


def test_klaviyo_signed_events_land_once_and_bad_requests_are_refused(receiver):
    base, db = receiver
    url = base + "/webhooks/klaviyo"
    body = klaviyo_body()
    now = int(time.time())

    assert post(url, body, {}).status_code == 401  # unsigned
    assert "does not match" in post(url, body, sign_klaviyo("wrong-secret-0123456789", body)).json()["error"]
    assert post(url, body + b" ", sign_klaviyo(SECRET, body)).status_code == 401  # body changed
    stale = sign_klaviyo(SECRET, body, timestamp=now - 3600)
    assert "refused as a replay" in post(url, body, stale).json()["error"]
    forged_id = {**sign_klaviyo(SECRET, body), "Klaviyo-Webhook-Id": "wh-other"}
    assert "differs from meta.klaviyo_webhook_id" in post(url, body, forged_id).json()["error"]

    headers = {**sign_klaviyo(SECRET, body, timestamp=now), "Klaviyo-Webhook-Id": "wh-1"}
    ok = post(url, body, headers)
    assert ok.status_code == 200 and (ok.json()["inserted"], ok.json()["quarantined"]) == (2, 1)
    assert post(url, body, headers).status_code == 409  # replay
    retry = post(url, body, sign_klaviyo(SECRET, body, timestamp=now + 1)).json()
    assert (retry["inserted"], retry["duplicates"]) == (0, 2)

    assert rows(db, "select event_id, customer_id, campaign_id, message_id, event_type, cast(occurred_at as varchar) "
                    "from raw.email_events order by 1") == [
        ("kl-1", "c6", "b1", "s1", "open", "2026-03-10 12:00:00"),
        ("kl-2", "c7", "b1", "s1", "click", "2026-03-10 12:00:00"),
    ]
    assert "email 'nobody@example.com' is not in raw.customers" in rows(db, "select reason from raw.raw_quarantine")[0][0]


def test_signature_checks_without_a_server():
    body = b'{"data": []}'
    ms = NOON * 1000
    uri = "https://hooks.example.com/webhooks/hubspot?portal=1"
    headers = sign_hubspot(SECRET, body, uri, timestamp_ms=ms)
    assert verify_hubspot(SECRET, headers, body, now=NOON + 299, uri=uri)
    # HubSpot signs the URL with `:`, `/`, `?`... decoded, so an encoded query value still verifies.
    encoded = "https://hooks.example.com/webhooks/hubspot?next=%2Fhome"
    assert verify_hubspot(SECRET, sign_hubspot(SECRET, body, "https://hooks.example.com/webhooks/"
                          "hubspot?next=/home", timestamp_ms=ms), body, now=NOON, uri=encoded)
    with pytest.raises(SignatureError, match="refused as a replay"):
        verify_hubspot(SECRET, headers, body, now=NOON + 301, uri=uri)
    with pytest.raises(SignatureError, match="method, URL and body"):
        verify_hubspot(SECRET, headers, body, now=NOON, method="PUT", uri=uri)
    with pytest.raises(SignatureError, match="X-HubSpot-Request-Timestamp"):
        verify_hubspot(SECRET, {"X-HubSpot-Signature-v3": "x"}, body, now=NOON, uri=uri)

    signed = sign_klaviyo(SECRET, body, timestamp=NOON)
    assert verify_klaviyo(SECRET, signed, body, now=NOON)
    in_ms = {**signed, "Klaviyo-Timestamp": str(NOON * 1000)}  # unit unconfirmed in the docs: ms reads too
    with pytest.raises(SignatureError, match="does not match"):  # ...but the signature covers the text sent
        verify_klaviyo(SECRET, in_ms, body, now=NOON)
    assert verify_klaviyo(SECRET, sign_klaviyo(SECRET, body, timestamp=NOON * 1000), body, now=NOON)
    with pytest.raises(SignatureError, match="missing Klaviyo-Timestamp"):
        verify_klaviyo(SECRET, {"Klaviyo-Signature": "x"}, body, now=NOON)


def test_cli_ingest_events(warehouse, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NEXTBEST_DUCKDB_PATH", warehouse.path)
    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers())
    path = tmp_path / "e.jsonl"
    path.write_text(json.dumps(event(5)) + "\n")
    args = parser.parse_args(["ingest-events", str(path)])
    assert args.func(args) == 0
    assert "1 events read, 1 new" in capsys.readouterr().out
    assert stored(warehouse) == [("ev5", "open")]
    args = parser.parse_args(["ingest-events", str(tmp_path / "missing.csv")])
    assert args.func(args) == 2 and "is not a file" in capsys.readouterr().err
    monkeypatch.delenv("NEXTBEST_WEBHOOK_SECRET", raising=False)
    monkeypatch.delenv("CUSTOMERIO_WEBHOOK_SIGNING_KEY", raising=False)
    args = parser.parse_args(["serve-webhooks", "--port", "0"])
    assert args.func(args) == 2 and "NEXTBEST_WEBHOOK_SECRET" in capsys.readouterr().err

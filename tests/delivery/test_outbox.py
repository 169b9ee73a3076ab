"""The outbox as a marketer sees it: an approved batch goes out once, failures retry then
dead-letter with a reason, and send-time checks suppress or defer messages but not profile updates."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from dagster_project.delivery.esp import FileEsp
from dagster_project.delivery.outbox import DraftError, enqueue_batch, send_id_for, state_counts
from dagster_project.delivery.policy import RetryPolicy, SendPolicy
from dagster_project.delivery.sender import run_export
from tests.delivery.conftest import add_customers, drafts, make_esp, noon_utc, ticking_noon

EARLIER = noon_utc() - timedelta(hours=1)  # drafts approved and queued an hour before the export
QUICK_RETRY = RetryPolicy(max_attempts=3, base_delay=timedelta(milliseconds=20), max_delay=timedelta(milliseconds=50))


def outbox_rows(warehouse) -> pd.DataFrame:
    return warehouse.read_df("select * from nextbest.outbox order by customer_id")


def test_send_id_is_deterministic_and_enqueue_is_idempotent(warehouse):
    assert send_id_for("b1", "c1", "p") == send_id_for("b1", "c1", "p") != send_id_for("b2", "c1", "p")
    first = enqueue_batch(warehouse, "b1", drafts("b1", ["c1", "c2", "c3"]), now=EARLIER)
    again = enqueue_batch(warehouse, "b1", drafts("b1", ["c1", "c2", "c3"]), now=EARLIER)
    assert (first.queued, again.queued, again.already_in_outbox) == (3, 0, 3)
    assert state_counts(warehouse)["queued"] == 3


def test_bad_drafts_are_refused_naming_row_and_field(warehouse):
    bad = drafts("b1", ["c1", "c2"])
    bad.loc[1, "subject"] = ""
    bad.loc[0, "batch_id"] = "other"
    with pytest.raises(DraftError) as caught:
        enqueue_batch(warehouse, "b1", bad)
    assert "draft row 1 (customer_id='c2'): subject is empty" in str(caught.value)
    assert "draft row 0" in str(caught.value) and "expected 'b1'" in str(caught.value)
    with pytest.raises(DraftError, match="lack column"):
        enqueue_batch(warehouse, "b1", bad.drop(columns=["cta"]))


def test_a_batch_is_sent_once_through_retries(warehouse, esp_server):
    server = esp_server("klaviyo")
    server.plan("429", "500", "drop", "drop_after", "hang")
    enqueue_batch(warehouse, "b1", drafts("b1", [f"c{i}" for i in range(20)]), now=EARLIER)
    summary = run_export(warehouse, make_esp("klaviyo", server), retry=QUICK_RETRY, clock=ticking_noon(),
                         max_wait_seconds=5)
    ids = {send_id_for("b1", f"c{i}", "at_risk_save") for i in range(20)}
    assert set(server.deliveries) == ids and set(server.deliveries.values()) == {1}
    assert summary.remaining["sent"] == 20 and summary.retried == 5
    attempts = warehouse.read_df("select outcome, count(*) as n from nextbest.outbox_attempts group by outcome")
    assert attempts.set_index("outcome")["n"]["retry"] == 5



def test_a_429_with_retry_after_holds_every_sender_until_then(warehouse):
    import threading
    import time
    from typing import Any, ClassVar

    from pydantic import PrivateAttr

    from dagster_project.delivery.esp import EspResource, RetryableEspError, SendResult

    class Throttled(EspResource):
        """Refuses the first send with 429 Retry-After 0.5 s; records when each send started."""

        esp_name: ClassVar[str] = "throttled"
        _starts: Any = PrivateAttr(default_factory=list)
        _refused_at: Any = PrivateAttr(default=None)
        _lock: Any = PrivateAttr(default_factory=threading.Lock)

        def send(self, message):
            with self._lock:
                self._starts.append(time.monotonic())
                first = self._refused_at is None
                if first:
                    self._refused_at = time.monotonic()
            if first:
                raise RetryableEspError("throttled: HTTP 429", status=429, retry_after=0.5)
            time.sleep(0.02)
            return SendResult(message.send_id)

        def update_profile(self, *args, **kwargs):
            raise NotImplementedError

    enqueue_batch(warehouse, "b1", drafts("b1", [f"c{i}" for i in range(12)]), now=EARLIER)
    esp = Throttled(base_url="loopback://", requests_per_second=1000.0, burst=1000.0)
    moment = noon_utc()
    summary = run_export(warehouse, esp, workers=1, retry=QUICK_RETRY, clock=lambda: moment, max_wait_seconds=0)
    after = [start - esp._refused_at for start in esp._starts[1:]]
    assert summary.sent == 11 and summary.retried == 1
    assert min(after) >= 0.45  # nobody went in the half second the ESP asked for


def test_exports_run_back_to_back_stay_within_the_rate_limit_together(warehouse, esp_server):
    import time

    server = esp_server("webhook")
    esp = make_esp("webhook", server, requests_per_second=20.0, burst=20.0)
    for batch in ("b1", "b2"):
        enqueue_batch(warehouse, batch, drafts(batch, [f"c{i}" for i in range(15)]), now=EARLIER)
    started = time.monotonic()
    sent = sum(run_export(warehouse, esp, batch_id=batch, workers=4, clock=lambda: noon_utc()).sent
               for batch in ("b1", "b2"))
    # 30 sends at 20 per second take at least 29 / 20 s, however many runs they are split into.
    assert sent == 30 and time.monotonic() - started >= 29 / 20

def test_retry_after_is_honoured(warehouse, esp_server):
    server = esp_server("webhook")
    server.plan("429")  # Retry-After: 1
    enqueue_batch(warehouse, "b1", drafts("b1", ["c1"]), now=EARLIER)
    moment = noon_utc()
    summary = run_export(warehouse, make_esp("webhook", server), retry=QUICK_RETRY, clock=lambda: moment,
                         max_wait_seconds=0)
    row = outbox_rows(warehouse).iloc[0]
    assert row.state == "failed" and "HTTP 429" in row.last_error
    assert row.next_attempt_at >= pd.Timestamp(moment.replace(tzinfo=None)) + pd.Timedelta(seconds=1)
    assert summary.sent == 0


def test_dead_letter_after_n_attempts_and_on_permanent_errors(warehouse, esp_server):
    server = esp_server("hubspot")
    server.plan("500", "500", "500")
    enqueue_batch(warehouse, "b1", drafts("b1", ["c1"]), now=EARLIER)
    run_export(warehouse, make_esp("hubspot", server), retry=QUICK_RETRY, clock=ticking_noon(),
               max_wait_seconds=5)
    row = outbox_rows(warehouse).iloc[0]
    assert (row.state, row.attempts) == ("dead", 3)
    assert row.last_error.startswith("gave up after 3 attempts; last error: hubspot: HTTP 500")
    assert not server.deliveries

    hook = esp_server("webhook")
    enqueue_batch(warehouse, "b2", drafts("b2", ["c2"]), now=EARLIER)
    run_export(warehouse, make_esp("webhook", hook, secret="not-the-receivers-secret"), batch_id="b2",
               retry=QUICK_RETRY, clock=lambda: noon_utc())
    row = outbox_rows(warehouse).set_index("batch_id").loc["b2"]
    assert (row.state, row.attempts) == ("dead", 1)
    assert row.last_error.startswith("permanent error: webhook: HTTP 401")


def test_unsubscribes_bounces_and_complaints_since_drafting_suppress_at_send_time(warehouse, esp_server):
    server = esp_server("webhook")
    enqueue_batch(warehouse, "b1", drafts("b1", ["c1", "c2", "c3", "c4", "c5"]), now=EARLIER)
    # After drafting and approval, three customers opt out one way or another, one turns marketing off.
    warehouse.execute("""insert into raw.email_events values
        ('e1', 'c1', 'old', 'm1', 'unsubscribe', '2026-03-09 08:00'),
        ('e2', 'c2', 'old', 'm2', 'bounce', '2026-03-09 09:00'),
        ('e3', 'c3', 'old', 'm3', 'complaint', '2026-03-09 10:00'),
        ('e4', 'c5', 'old', 'm5', 'open', '2026-03-09 10:00')""")
    warehouse.execute("update raw.customers set marketing_opt_in = false where customer_id = 'c4'")
    summary = run_export(warehouse, make_esp("webhook", server), clock=lambda: noon_utc())
    rows = outbox_rows(warehouse).set_index("customer_id")
    assert summary.suppressed == 4 and summary.sent == 1
    assert list(server.deliveries) == [send_id_for("b1", "c5", "at_risk_save")]
    assert rows.loc["c1", "last_error"].startswith("unsubscribe recorded in raw.email_events")
    assert rows.loc["c2", "state"] == rows.loc["c3", "state"] == "suppressed"
    assert "marketing_opt_in is false" in rows.loc["c4", "last_error"]



def test_marketing_waits_for_recorded_consent_on_every_row_of_the_customer(warehouse, esp_server):
    server = esp_server("webhook")
    # c6: consent blank; c7: a second raw row with consent blank beside one that says yes.
    warehouse.execute("update raw.customers set marketing_opt_in = null where customer_id = 'c6'")
    warehouse.execute("insert into raw.customers select * replace (null as marketing_opt_in) "
                      "from raw.customers where customer_id = 'c7'")
    enqueue_batch(warehouse, "b1", drafts("b1", ["c5", "c6", "c7"]), now=EARLIER)
    summary = run_export(warehouse, make_esp("webhook", server), clock=lambda: noon_utc())
    rows = outbox_rows(warehouse).set_index("customer_id")
    assert summary.sent == 1 and summary.suppressed == 2
    assert list(server.deliveries) == [send_id_for("b1", "c5", "at_risk_save")]
    for customer in ("c6", "c7"):
        assert rows.loc[customer, "state"] == "suppressed"
        assert rows.loc[customer, "last_error"] == "raw.customers.marketing_opt_in is empty (no consent recorded)"

def test_frequency_cap_counts_sends_across_batches(warehouse, esp_server):
    server = esp_server("webhook")
    policy = SendPolicy(max_sends_per_customer=1, cap_window=timedelta(days=3))
    enqueue_batch(warehouse, "b1", drafts("b1", ["c1"], "at_risk_save"), now=EARLIER)
    enqueue_batch(warehouse, "b2", drafts("b2", ["c1", "c2"], "expansion"), now=EARLIER)
    summary = run_export(warehouse, make_esp("webhook", server), policy=policy, clock=lambda: noon_utc())
    assert summary.sent == 2 and summary.suppressed == 1
    capped = outbox_rows(warehouse).query("state == 'suppressed'").iloc[0]
    assert capped.customer_id == "c1" and capped.last_error.startswith("frequency cap: 1 sent")


def test_quiet_hours_defer_to_the_customers_morning_not_drop(warehouse, esp_server):
    server = esp_server("webhook")
    add_customers(warehouse, 2, timezone_name="Asia/Tokyo", start=100)  # c100, c101
    enqueue_batch(warehouse, "b1", drafts("b1", ["c1", "c100"]), now=EARLIER)
    # 12:00 UTC is 21:00 in Tokyo: inside 21:00-08:00 quiet hours there, midday for UTC customers.
    summary = run_export(warehouse, make_esp("webhook", server), clock=lambda: noon_utc())
    assert (summary.sent, summary.deferred) == (1, 1)
    tokyo = outbox_rows(warehouse).set_index("customer_id").loc["c100"]
    assert tokyo.state == "queued"
    assert tokyo.next_attempt_at == pd.Timestamp("2026-03-10 23:00")  # 08:00 the next day in Tokyo
    # The next morning (Tokyo) it goes out.
    later = run_export(warehouse, make_esp("webhook", server),
                       clock=lambda: datetime(2026, 3, 10, 23, 5, tzinfo=timezone.utc))
    assert later.sent == 1 and len(server.deliveries) == 2


# --- profile updates (kind `properties`) -----------------------------------------------------------

def updates(batch_id: str, customer_ids, playbook_id: str = "service_profile", **props) -> pd.DataFrame:
    body = json.dumps({"nextbest_at_risk": True, **props}, sort_keys=True)
    return pd.DataFrame({"batch_id": batch_id, "customer_id": list(customer_ids), "playbook_id": playbook_id,
                         "body": body})


def test_profile_updates_skip_caps_opt_outs_and_quiet_hours_that_still_hold_messages(warehouse, esp_server):
    server = esp_server("webhook")
    esp = make_esp("webhook", server)
    policy = SendPolicy(max_sends_per_customer=1, cap_window=timedelta(days=3))
    add_customers(warehouse, 1, timezone_name="Asia/Tokyo", start=100)  # c100: 21:00 at noon UTC
    warehouse.execute("""insert into raw.email_events values
        ('e1', 'c1', 'old', 'm1', 'unsubscribe', '2026-03-09 08:00'),
        ('e2', 'c2', 'old', 'm2', 'bounce', '2026-03-09 09:00'),
        ('e3', 'c3', 'old', 'm3', 'complaint', '2026-03-09 10:00')""")
    warehouse.execute("update raw.customers set marketing_opt_in = false where customer_id = 'c4'")
    enqueue_batch(warehouse, "b0", drafts("b0", ["c5"]), now=EARLIER)
    run_export(warehouse, esp, batch_id="b0", policy=policy, clock=lambda: noon_utc())  # c5 is now at its cap

    everyone = ["c1", "c2", "c3", "c4", "c5", "c6", "c100"]
    enqueue_batch(warehouse, "b1", drafts("b1", everyone, "expansion"), now=EARLIER)
    enqueue_batch(warehouse, "p1", updates("p1", everyone), now=EARLIER, kind="properties")
    enqueue_batch(warehouse, "p2", updates("p2", ["c6"], "service_other", nextbest_plan="x"), now=EARLIER,
                  kind="properties")
    summary = run_export(warehouse, esp, policy=policy, clock=lambda: noon_utc())  # no batch: both kinds

    # Every profile update went out, through update_profile, whatever holds the customer's messages.
    assert set(server.profile_updates) == set(everyone) and server.profile_updates["c6"] == 2
    assert server.profiles["c1"] == {"nextbest_at_risk": True}
    # Messages: opt-outs and the capped customer suppressed, Tokyo deferred; c6's two profile
    # updates do not count towards its cap of one message.
    assert set(server.deliveries) == {send_id_for("b0", "c5", "at_risk_save"), send_id_for("b1", "c6", "expansion")}
    assert (summary.sent, summary.suppressed, summary.deferred) == (1 + 8, 5, 1)
    rows = outbox_rows(warehouse)
    assert set(rows.query("kind == 'properties'")["state"]) == {"sent"}
    messages = rows.query("kind == 'message' and batch_id == 'b1'").set_index("customer_id")
    assert messages.loc["c5", "last_error"].startswith("frequency cap: 1 sent")
    assert messages.loc["c100", "state"] == "queued"



@pytest.mark.parametrize("export_between", [False, True])
def test_a_profile_that_returns_to_an_earlier_value_in_one_batch_ends_with_it(warehouse, tmp_path, export_between):
    # Several exports in one day share the day's batch: gold, then silver, then gold again.
    path = tmp_path / "helpdesk.jsonl"
    sink = FileEsp(path=str(path))
    gold, silver = '{"tier": "gold"}', '{"tier": "silver"}'

    def queue(body: str, minutes: int):
        update = pd.DataFrame({"batch_id": ["h-1"], "customer_id": ["c1"], "playbook_id": ["p"], "body": [body]})
        summary = enqueue_batch(warehouse, "h-1", update, now=EARLIER + timedelta(minutes=minutes),
                                kind="properties", destination="helpdesk")
        if export_between:
            run_export(warehouse, sink, destination="helpdesk", clock=lambda: noon_utc() + timedelta(minutes=minutes))
        return summary

    assert [queue(body, i).queued for i, body in enumerate([gold, silver, gold])] == [1, 1, 1]
    again = queue(gold, 3)  # the same update as the latest: nothing new
    assert (again.queued, again.already_in_outbox) == (0, 1)
    run_export(warehouse, sink, destination="helpdesk", clock=lambda: noon_utc() + timedelta(minutes=5))
    sink.close()
    received = [json.loads(line)["properties"] for line in path.read_text().splitlines()]
    assert received[-1] == {"tier": "gold"}
    assert received == ([{"tier": "gold"}, {"tier": "silver"}, {"tier": "gold"}] if export_between
                        else [{"tier": "gold"}])

def test_an_export_serves_one_destination_and_can_leave_messages_alone(warehouse, esp_server, tmp_path):
    server = esp_server("webhook")
    enqueue_batch(warehouse, "b1", drafts("b1", ["c1"]), now=EARLIER)
    enqueue_batch(warehouse, "h1", updates("h1", ["c1", "c2"], "service_helpdesk"), now=EARLIER,
                  kind="properties", destination="helpdesk")
    enqueue_batch(warehouse, "p1", updates("p1", ["c2"]), now=EARLIER, kind="properties")

    only_updates = run_export(warehouse, make_esp("webhook", server), kind="properties", clock=lambda: noon_utc())
    assert only_updates.sent == 1 and set(server.profile_updates) == {"c2"} and not server.deliveries
    assert state_counts(warehouse, "b1")["queued"] == 1  # the marketing message was not touched

    run_export(warehouse, make_esp("webhook", server), clock=lambda: noon_utc())  # the ESP: never helpdesk rows
    assert len(server.deliveries) == 1 and server.profile_updates == {"c2": 1}
    assert state_counts(warehouse, "h1")["queued"] == 2

    helpdesk = FileEsp(path=str(tmp_path / "helpdesk.jsonl"))
    summary = run_export(warehouse, helpdesk, destination="helpdesk", clock=lambda: noon_utc())
    assert summary.sent == 2 and summary.remaining["sent"] == 2


def test_a_newer_profile_update_supersedes_one_still_waiting(warehouse, esp_server):
    server = esp_server("webhook")
    enqueue_batch(warehouse, "p1", updates("p1", ["c1"], nextbest_plan="single"), now=EARLIER, kind="properties")
    newer = enqueue_batch(warehouse, "p2", updates("p2", ["c1"], nextbest_plan="double"), now=EARLIER,
                          kind="properties")
    # The same batch with changed properties is a new update too (the send id covers them).
    same_day = enqueue_batch(warehouse, "p2", updates("p2", ["c1"], nextbest_plan="triple"), now=EARLIER,
                             kind="properties")
    assert (newer.superseded, same_day.queued, same_day.superseded) == (1, 1, 1)
    run_export(warehouse, make_esp("webhook", server), clock=lambda: noon_utc())
    assert server.profile_updates == {"c1": 1} and server.profiles["c1"]["nextbest_plan"] == "triple"
    assert state_counts(warehouse)["superseded"] == 2


def test_profile_updates_are_validated_naming_row_and_field(warehouse):
    bad = updates("p1", ["c1", "c2"])
    bad.loc[1, "body"] = "not json"
    with pytest.raises(DraftError, match=r"properties row 1 \(customer_id='c2'\): body is not a JSON object"):
        enqueue_batch(warehouse, "p1", bad, kind="properties")
    with pytest.raises(DraftError, match="messages go to destination 'esp'"):
        enqueue_batch(warehouse, "b1", drafts("b1", ["c1"]), destination="helpdesk")


def test_profile_bodies_are_judged_as_pythons_json_parser_judges_them():
    from dagster_project.delivery.outbox import _not_json_objects, parse_json

    # orjson first; what it refuses and Python's parser takes (NaN, lone surrogates) still passes.
    bodies = pd.Series(['{"a": 1}', '{"a": NaN}', '{"n": 123456789012345678901234567890}', '{"a": 1,}',
                        '{"a": "\\ud800"}', "[1]", "{}"])
    assert _not_json_objects(bodies).tolist() == [False, False, False, True, False, True, False]
    assert parse_json('{"a": NaN}')["a"] != parse_json('{"a": NaN}')["a"]  # NaN, through the fallback
    assert parse_json('{"send_id": "s1"}') == {"send_id": "s1"}


def test_every_bad_profile_update_in_a_batch_is_named_in_row_order(warehouse):
    bad = updates("p1", ["c1", "c2", "c3", "c4", "c5", "c6"])
    bad.loc[0, "body"] = ' {"nextbest_plan": "single"} '  # fine: JSON allows the spaces
    bad.loc[1, "body"] = "[1, 2]"
    bad.loc[2, "body"] = "{not json}"
    bad.loc[3, "body"] = "   "
    bad.loc[4, "batch_id"] = "p0"
    bad.loc[5, "playbook_id"] = None
    with pytest.raises(DraftError) as caught:
        enqueue_batch(warehouse, "p1", bad, kind="properties")
    assert str(caught.value).split("; ") == [
        "properties row 1 (customer_id='c2'): body is not a JSON object of properties",
        "properties row 2 (customer_id='c3'): body is not a JSON object of properties",
        "properties row 3 (customer_id='c4'): body is empty",
        "properties row 4 (customer_id='c5'): batch_id is 'p0', expected 'p1'",
        "properties row 5 (customer_id='c6'): playbook_id is empty",
    ]


def test_an_outbox_from_before_kinds_is_migrated_and_its_rows_are_messages(warehouse, esp_server):
    from dagster_project.delivery.outbox import OUTBOX_DDL

    old_ddl = "\n".join(line for line in OUTBOX_DDL.splitlines()
                        if not line.strip().startswith(("kind", "destination", "preheader", "offer_id")))
    warehouse.execute("create schema if not exists nextbest")
    warehouse.execute(old_ddl.replace("esp_message_id varchar,", "esp_message_id varchar"))
    warehouse.execute("""insert into nextbest.outbox (send_id, batch_id, customer_id, playbook_id, subject, body,
                             state, attempts, next_attempt_at, enqueued_at)
                         values ('old1', 'b0', 'c1', 'at_risk_save', 'Hi', 'Body', 'queued', 0,
                                 '2026-03-10 11:00', '2026-03-10 11:00')""")
    server = esp_server("webhook")
    summary = run_export(warehouse, make_esp("webhook", server), clock=lambda: noon_utc())
    row = outbox_rows(warehouse).iloc[0]
    assert (row.kind, row.destination, row.state) == ("message", "esp", "sent")
    assert summary.sent == 1 and list(server.deliveries) == ["old1"]
    assert (row.preheader, row.offer_id) == (None, None)  # added by the migration, blank for old rows

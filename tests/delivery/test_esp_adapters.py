"""Each ESP's official SDK against a loopback server speaking that ESP's API: successes,
idempotent repeats, every failure classified as retryable or permanent, and profile updates."""

from __future__ import annotations

import json

import pytest

from dagster_project.delivery.esp import FileEsp, OutboundMessage, PermanentEspError, RetryableEspError
from dagster_project.delivery.esp.base import http_error, parse_retry_after
from dagster_project.delivery.ratelimit import RateLimit, RateLimiter
from tests.delivery.conftest import make_esp

SHAPES = ["klaviyo", "customerio", "hubspot", "webhook"]


def message(n: int = 1) -> OutboundMessage:
    return OutboundMessage(send_id=f"{n:032x}", batch_id="b1", customer_id=f"c{n}", playbook_id="at_risk_save",
                           email=f"c{n}@example.com", first_name="Ada", subject="Hello", body="Body text",
                           cta="Keep my plan")


@pytest.mark.parametrize("shape", SHAPES)
def test_send_reaches_the_esp_with_the_personalised_fields(shape, esp_server):
    server = esp_server(shape)
    esp = make_esp(shape, server)
    result = esp.send(message())
    assert result.send_id == message().send_id and not result.duplicate
    assert server.deliveries == {message().send_id: 1}
    # Profile/contact upsert + event/send, or one signed POST for the webhook.
    assert server.requests == (1 if shape == "webhook" else 2)


@pytest.mark.parametrize("shape", SHAPES)
def test_a_repeat_with_the_same_idempotency_key_is_delivered_once(shape, esp_server):
    server = esp_server(shape)
    esp = make_esp(shape, server)
    esp.send(message())
    esp.send(message())
    assert server.deliveries[message().send_id] == 1
    assert server.repeats == 1


@pytest.mark.parametrize("shape", SHAPES)
def test_429_is_retryable_and_carries_retry_after(shape, esp_server):
    server = esp_server(shape)
    server.plan("429")
    with pytest.raises(RetryableEspError) as caught:
        make_esp(shape, server).send(message())
    assert caught.value.status == 429
    assert caught.value.retry_after == 1.0
    assert not server.deliveries


def test_hubspot_contact_conflict_is_an_error_not_an_email_already_sent(esp_server):
    server = esp_server("hubspot")
    server.upsert_conflict = True
    with pytest.raises(PermanentEspError) as caught:  # before: SendResult(duplicate=True), never emailed
        make_esp("hubspot", server).send(message())
    assert caught.value.status == 409 and not server.deliveries
    server.upsert_conflict = False
    esp = make_esp("hubspot", server)
    assert not esp.send(message()).duplicate and esp.send(message()).duplicate  # a repeated sendId still is one

@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("fault", ["500", "hang", "drop"])
def test_server_errors_timeouts_and_dropped_connections_are_retryable(shape, fault, esp_server):
    server = esp_server(shape)
    server.plan(fault)
    with pytest.raises(RetryableEspError) as caught:
        make_esp(shape, server).send(message())
    if fault == "500":
        assert caught.value.status == 500
    assert not server.deliveries


@pytest.mark.parametrize("shape", SHAPES)
def test_secrets_never_appear_in_errors_or_repr(shape, esp_server):
    server = esp_server(shape)
    server.plan("500")
    esp = make_esp(shape, server)
    with pytest.raises(RetryableEspError) as caught:
        esp.send(message())
    for secret in ("pk_test_secret", "cio_secret", "pat-secret", server.secret):
        assert secret not in str(caught.value)
        assert secret not in repr(esp)


def test_a_bad_request_is_permanent_and_unauthorised_too(esp_server):
    server = esp_server("webhook")
    esp = make_esp("webhook", server, secret="wrong-secret")
    with pytest.raises(PermanentEspError, match="HTTP 401"):
        esp.send(message())


def test_http_error_taxonomy():
    assert http_error("x", 429, {"retry-after": "7"}).retry_after == 7
    assert http_error("x", 503).retryable and http_error("x", 408).retryable
    assert not http_error("x", 400).retryable and not http_error("x", 404).retryable
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past: go now
    assert parse_retry_after("soon") is None


# What each ESP documents: at most n requests in any window of T seconds, for each (n, T).
DOCUMENTED_WINDOWS = {
    "klaviyo events": [(350, 1), (3500, 60)], "klaviyo profiles": [(75, 1), (750, 60)],
    "customer.io track api": [(100, 1)], "hubspot private app": [(190, 10)],
}


def request_start_times(limits, kind: str = "message", sends: int = 3000) -> dict[str, list[float]]:
    """When each request would start for callers taking sends as fast as the limiter lets them
    (a frozen clock: each send starts after the wait its reservation returns), per limit."""
    limiter = RateLimiter(limits, clock=lambda: 0.0, sleep=lambda seconds: None)
    starts = {limit.name: [] for limit in limits}
    for _ in range(sends):
        wait = limiter.reserve((limit.name, limit.cost_per_send) for limit in limits)
        for limit in limits:
            starts[limit.name].extend([wait] * int(limit.cost_per_send))
    return starts


def most_in_any_window(times: list[float], seconds: float) -> int:
    times, first, most = sorted(times), 0, 0
    for last, moment in enumerate(times):
        while moment - times[first] >= seconds - 1e-9:
            first += 1
        most = max(most, last - first + 1)
    return most


def test_documented_rate_limits_hold_in_every_window_from_a_standing_start():
    from dagster_project.delivery.esp import CustomerIoEsp, HubSpotEsp, KlaviyoEsp

    adapters = {"klaviyo": KlaviyoEsp(api_key="k"), "customer.io": CustomerIoEsp(site_id="s", api_key="k"),
                "hubspot": HubSpotEsp(access_token="t", email_id=1)}
    checked = set()
    for esp_name, esp in adapters.items():
        for limits in (esp.rate_limits(), esp.profile_update_limits()):
            starts = request_start_times(limits, sends=3000)
            for name, times in starts.items():
                for requests_allowed, seconds in DOCUMENTED_WINDOWS[f"{esp_name} {name}"]:
                    assert most_in_any_window(times, seconds) <= requests_allowed, (esp_name, name, seconds)
                checked.add(f"{esp_name} {name}")
            # ... and sends go not much slower than the tightest steady rate allows.
            allowed = min(min(n / t for n, t in DOCUMENTED_WINDOWS[f"{esp_name} {limit.name}"]) / limit.cost_per_send
                          for limit in limits)
            assert 3000 / max(max(times) for times in starts.values()) >= 0.85 * allowed, esp_name
    assert checked == set(DOCUMENTED_WINDOWS)
    (hub,) = HubSpotEsp(access_token="t", email_id=1).rate_limits()
    assert hub.cost_per_send == 2 and HubSpotEsp(access_token="t", email_id=1, upsert_contact=False) \
        .rate_limits()[0].cost_per_send == 1


def test_a_bucket_sized_as_the_window_lets_twice_the_window_through():
    """Why the limits are built with `RateLimit.windows`: capacity n refilling at n / T (HubSpot's
    190 per 10 s as burst 190 at 19/s) lets ~2n requests start in the first T seconds."""
    naive = [RateLimit("private app", 19, 190)]
    assert most_in_any_window(request_start_times(naive)["private app"], 10) > 1.9 * 190
    with pytest.raises(ValueError, match="no steady rate"):
        RateLimit.windows("tiny", [(10, 1)], burst=10)


PROPERTIES = {"nextbest_at_risk": True, "nextbest_tags": ["at_risk", "high_ltv"], "nextbest_open_tickets": 2,
              "nextbest_plan": "double_bag"}


@pytest.mark.parametrize("shape", SHAPES)
def test_update_profile_writes_the_properties_and_sends_nothing(shape, esp_server):
    server = esp_server(shape)
    esp = make_esp(shape, server)
    result = esp.update_profile("c7", "c7@example.com", PROPERTIES, esp.idempotency_key("f" * 32))
    assert not result.duplicate
    assert not server.deliveries, "a profile update must not trigger a message"
    assert server.profile_updates == {"c7": 1} and server.requests == 1
    written = server.profiles["c7"]
    if shape == "hubspot":  # HubSpot properties are strings; lists become multiple-checkbox values
        assert written == {"nextbest_at_risk": "true", "nextbest_tags": "at_risk;high_ltv",
                           "nextbest_open_tickets": "2", "nextbest_plan": "double_bag"}
    else:
        assert written == PROPERTIES


def test_webhook_profile_update_is_signed_typed_and_deduplicated(esp_server):
    server = esp_server("webhook")
    esp = make_esp("webhook", server)
    key = "a" * 32
    esp.update_profile("c7", None, PROPERTIES, key)  # the fake verifies the signature or answers 401
    assert esp.update_profile("c7", None, PROPERTIES, key).duplicate
    assert server.profile_updates == {"c7": 1} and server.repeats == 1
    from dagster_project.delivery.esp.webhook import profile_update_body

    body = json.loads(profile_update_body("c7", None, PROPERTIES, key))
    assert body["type"] == "profile_update" and body["send_id"] == key and body["properties"] == PROPERTIES


@pytest.mark.parametrize("shape", SHAPES)
def test_update_profile_failures_are_classified(shape, esp_server):
    server = esp_server(shape)
    server.plan("429")
    esp = make_esp(shape, server)
    with pytest.raises(RetryableEspError) as caught:
        esp.update_profile("c7", "c7@example.com", PROPERTIES, esp.idempotency_key("f" * 32))
    assert caught.value.retry_after == 1.0 and not server.profile_updates


def test_hubspot_needs_an_email_to_upsert_a_contact(esp_server):
    server = esp_server("hubspot")
    with pytest.raises(PermanentEspError, match="c7 has no email"):
        make_esp("hubspot", server).update_profile("c7", None, PROPERTIES, "k")
    assert server.requests == 0


def test_file_sink_writes_a_properties_line_once(tmp_path):
    path = tmp_path / "sink.jsonl"
    esp = FileEsp(path=str(path))
    esp.send(message())
    esp.update_profile("c7", "c7@example.com", PROPERTIES, "b" * 32)
    assert esp.update_profile("c7", "c7@example.com", PROPERTIES, "b" * 32).duplicate
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["kind"] for line in lines] == ["message", "properties"]
    assert lines[1]["properties"] == PROPERTIES and lines[1]["send_id"] == "b" * 32


def test_file_sink_writes_a_round_of_profile_updates_as_one_update_at_a_time_would(tmp_path):
    from dagster_project.delivery.esp.base import EspResource, ProfileUpdate

    one, many = FileEsp(path=str(tmp_path / "one.jsonl")), FileEsp(path=str(tmp_path / "many.jsonl"))
    spread = json.dumps(PROPERTIES, indent=2)  # a body queued over several lines
    updates = [ProfileUpdate("c1", "c1@example.com", json.dumps(PROPERTIES), "k1"),
               ProfileUpdate("c2", None, spread, "k2"),
               ProfileUpdate("c1", "c1@example.com", json.dumps(PROPERTIES), "k1")]  # the same key again
    # The interface's default: update_profile one at a time.
    assert [r.duplicate for r in EspResource.update_profiles(one, updates)] == [False, False, True]
    results = many.update_profiles(updates)
    assert [r.duplicate for r in results] == [False, False, True]
    assert [r.duplicate for r in many.update_profiles(updates[:1])] == [True]  # already in the file
    one.close(), many.close()
    read = [[json.loads(line) for line in (tmp_path / name).read_text().splitlines()]
            for name in ("one.jsonl", "many.jsonl")]
    assert read[0] == read[1] and len(read[1]) == 2


@pytest.mark.parametrize("block", [None, 37], ids=["whole file", "37-byte blocks"])
def test_file_sink_knows_every_send_id_already_in_its_file_whatever_wrote_the_lines(tmp_path, monkeypatch, block):
    from dagster_project.delivery.esp import file
    from dagster_project.delivery.esp.base import ProfileUpdate

    if block:  # lines longer than a block of the file read back
        monkeypatch.setattr(file, "READ_BLOCK_BYTES", block)

    path = tmp_path / "sink.jsonl"
    writer = FileEsp(path=str(path))
    writer.update_profiles([ProfileUpdate(f"c{i}", None, json.dumps(PROPERTIES), f"k{i}") for i in range(3)])
    writer.close()
    with open(path, "a") as handle:  # a line whose own object holds a send_id too (not an id of the file's)
        handle.write(json.dumps({"kind": "properties", "properties": {"send_id": "inner"}, "send_id": "outer"}) + "\n")

    def known(ids: list[str]) -> list[bool]:
        sink = FileEsp(path=str(path))  # reads the file afresh
        found = [r.duplicate for r in sink.update_profiles([ProfileUpdate("c9", None, "{}", i) for i in ids])]
        sink.close()
        return found

    # Every line ends in its send id, as profile updates are written.
    assert known(["k0", "k2", "outer", "inner"]) == [True, True, True, False]
    with open(path, "a") as handle:  # a message (sorted keys: the send id is not last), then a torn line
        handle.write(json.dumps({"kind": "message", "send_id": "m1", "subject": "Hi"}, sort_keys=True) + "\n")
        handle.write('{"kind": "properties", "send_id": "torn"\n')
    # Lines of any shape: each is parsed ("inner" is an id now: the first check wrote it).
    assert known(["k1", "inner", "m1", "torn", "outer"]) == [True, True, True, False, True]


def _reads_of(monkeypatch) -> list[int]:
    """Bytes of the sink's file each `_read_ids` call was handed, as sinks read it."""
    from dagster_project.delivery.esp import file

    read: list[int] = []
    original = file.FileEsp._read_ids

    def spy(self, lines):
        read.append(len(lines))
        return original(self, lines)

    monkeypatch.setattr(file.FileEsp, "_read_ids", spy)
    return read


def test_file_sink_reads_its_index_and_only_the_lines_after_it(tmp_path, monkeypatch):
    from dagster_project.delivery.esp.base import ProfileUpdate

    path = tmp_path / "sink.jsonl"
    writer = FileEsp(path=str(path))
    writer.update_profiles([ProfileUpdate(f"c{i}", None, json.dumps(PROPERTIES), f"k{i}") for i in range(3)])
    first_write_ended = path.stat().st_size
    writer.update_profiles([ProfileUpdate("c3", None, json.dumps(PROPERTIES), "k3")])
    writer.close()
    index = path.with_name("sink.jsonl.ids").read_text().splitlines()
    assert index == ["=k0", "=k1", "=k2", f"@{first_write_ended}", "=k3", f"@{path.stat().st_size}"]
    foreign = json.dumps({"kind": "properties", "send_id": "x9"}) + "\n"
    with open(path, "a") as handle:  # written by something that keeps no index (or crashed before it)
        handle.write(foreign)
    read = _reads_of(monkeypatch)
    sink = FileEsp(path=str(path))
    results = sink.update_profiles([ProfileUpdate("c", None, "{}", i) for i in ("k0", "k3", "x9", "k4")])
    assert [r.duplicate for r in results] == [True, True, True, False]
    assert read == [len(foreign)]  # the indexed lines were not read again
    sink.close()
    read.clear()
    again = FileEsp(path=str(path))  # the foreign line's id and k4 are in the index now
    assert [r.duplicate for r in again.update_profiles([ProfileUpdate("c", None, "{}", "x9")])] == [True]
    assert read == []
    again.close()


def test_file_sink_ignores_an_index_that_does_not_fit_its_file_and_writes_it_anew(tmp_path, monkeypatch):
    from dagster_project.delivery.esp.base import ProfileUpdate

    path = tmp_path / "sink.jsonl"
    first = FileEsp(path=str(path))
    first.update_profiles([ProfileUpdate(f"c{i}", None, json.dumps(PROPERTIES), f"k{i}") for i in range(3)])
    first.close()
    index = path.with_name("sink.jsonl.ids").read_text()
    # Another file in its place, longer than the old one, with other ids: the index does not describe it.
    path.write_text("".join(json.dumps({"kind": "properties", "customer_id": "c", "send_id": f"n{i}",
                                        "properties": PROPERTIES}) + "\n" for i in range(3)))
    path.with_name("sink.jsonl.ids").write_text(index)
    read = _reads_of(monkeypatch)
    sink = FileEsp(path=str(path))
    results = sink.update_profiles([ProfileUpdate("c", None, "{}", i) for i in ("k0", "n0", "n2")])
    assert [r.duplicate for r in results] == [False, True, True]
    assert sum(read) > 0  # read whole
    sink.close()
    assert path.with_name("sink.jsonl.ids").read_text().splitlines() == [
        "=n0", "=n1", "=n2", "=k0", f"@{path.stat().st_size}"]


def test_file_sink_reports_a_failed_write_for_each_update_and_writes_later(tmp_path):
    from dagster_project.delivery.esp.base import ProfileUpdate

    path = tmp_path / "sink.jsonl"
    path.mkdir()  # a folder where the file should be: every write fails
    esp = FileEsp(path=str(path))
    updates = [ProfileUpdate(f"c{i}", None, '{"a": 1}', f"k{i}") for i in range(3)]
    results = esp.update_profiles(updates)
    assert all(isinstance(r, PermanentEspError) and "cannot write" in str(r) for r in results)
    path.rmdir()
    assert [r.duplicate for r in esp.update_profiles(updates)] == [False] * 3
    esp.close()
    assert [json.loads(line)["send_id"] for line in path.read_text().splitlines()] == ["k0", "k1", "k2"]


def test_profile_updates_are_paced_by_the_endpoints_they_call():
    from dagster_project.delivery.esp import KlaviyoEsp

    klaviyo = KlaviyoEsp(api_key="k")
    assert [limit.name for limit in klaviyo.profile_update_limits()] == ["profiles"]  # one call, not the events API
    (configured,) = KlaviyoEsp(api_key="k", requests_per_second=10).profile_update_limits()
    assert configured.name == "configured" and configured.cost_per_send == 1

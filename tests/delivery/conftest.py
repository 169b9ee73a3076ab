"""Fixtures for delivery tests: a small warehouse with customers, and loopback ESPs."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import duckdb
import pandas as pd
import pytest

from dagster_project.delivery.esp import CustomerIoEsp, HubSpotEsp, KlaviyoEsp, WebhookEsp
from dagster_project.ingest.contract import create_raw_schema
from tests.delivery.fake_esp import FakeEsp

FAST = 0.4  # seconds: per-request timeout in tests, so a hung server costs little


def add_customers(con, n: int, timezone_name: str = "UTC", opt_in: bool = True, start: int = 0) -> None:
    rows = pd.DataFrame({
        "customer_id": [f"c{i}" for i in range(start, start + n)],
        "email": [f"c{i}@example.com" for i in range(start, start + n)],
        "first_name": [f"Name{i}" for i in range(start, start + n)],
        "created_at": pd.Timestamp("2025-01-01"),
        "country": "US",
        "timezone": timezone_name,
        "marketing_opt_in": opt_in,
        "channel_preference": "email",
    })
    con.register("new_customers", rows)
    con.execute("insert into raw.customers select * from new_customers")
    con.unregister("new_customers")


def drafts(batch_id: str, customer_ids, playbook_id: str = "at_risk_save") -> pd.DataFrame:
    return pd.DataFrame({
        "batch_id": batch_id,
        "customer_id": list(customer_ids),
        "playbook_id": playbook_id,
        "subject": "Your next bag is on us",
        "body": "Hi, we saved your favourite roast for you.",
        "cta": "Keep my subscription",
    })


@pytest.fixture
def warehouse(tmp_path):
    """A DuckDB file with the raw contract tables and 50 customers (UTC)."""
    path = tmp_path / "delivery.duckdb"
    con = duckdb.connect(str(path))
    create_raw_schema(con)
    add_customers(con, 50)
    yield con
    con.close()


def noon_utc() -> datetime:
    """A fixed time outside quiet hours for UTC customers."""
    return datetime(2026, 3, 10, 12, 0, tzinfo=timezone.utc)


def ticking_noon():
    """A clock that starts at `noon_utc()` and runs at wall speed, so backoffs come due."""
    import time

    start = time.monotonic()
    return lambda: noon_utc() + timedelta(seconds=time.monotonic() - start)


def make_esp(shape: str, server: FakeEsp, **overrides):
    """The adapter for `shape`, aimed at the loopback server, with test-speed limits."""
    common = {"base_url": server.base_url, "timeout_seconds": FAST, "requests_per_second": 2000.0, "burst": 2000.0}
    common.update(overrides)
    if shape == "klaviyo":
        return KlaviyoEsp(api_key="pk_test_secret", **common)
    if shape == "customerio":
        return CustomerIoEsp(site_id="site", api_key="cio_secret", ca_bundle=server.ca_file,
                             **{**common, "base_url": server.base_url + "/api/v1"})
    if shape == "hubspot":
        return HubSpotEsp(access_token="pat-secret", email_id=4242, **common)
    if shape == "webhook":
        return WebhookEsp(**{"secret": server.secret, **common, "base_url": server.base_url + "/hook"})
    raise ValueError(shape)


@pytest.fixture
def esp_server(tmp_path):
    """Factory: `esp_server("klaviyo")` starts a loopback ESP (TLS for Customer.io)."""
    started = []

    def start(shape: str, **kwargs) -> FakeEsp:
        tls = tmp_path / "tls" if shape == "customerio" else None
        server = FakeEsp(shape, tls_dir=tls, hang_seconds=FAST * 3, **kwargs).__enter__()
        started.append(server)
        return server

    yield start
    for server in started:
        server.__exit__(None, None, None)

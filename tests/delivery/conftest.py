"""Fixtures for delivery tests: a small warehouse (the DuckDB resource) with customers, and loopback ESPs."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import duckdb
import pandas as pd
import pytest

from dagster_project.delivery.esp import CustomerIoEsp, HubSpotEsp, KlaviyoEsp, WebhookEsp
from dagster_project.ingest.contract import create_raw_schema
from dagster_project.resources.warehouse import DuckDBWarehouse, WarehouseInterface
from tests.delivery.fake_esp import FakeEsp

FAST = 0.4  # seconds: per-request timeout in tests, so a hung server costs little


def add_customers(warehouse: WarehouseInterface, n: int, timezone_name: str = "UTC", opt_in: bool = True,
                  start: int = 0) -> None:
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
    warehouse.write_df("raw", "customers", rows)


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
def warehouse(tmp_path) -> DuckDBWarehouse:
    """The warehouse resource on a DuckDB file with the raw contract tables and 50 customers (UTC).

    It opens the file per call, so the CLI, the sensor or another process can open it between calls.
    """
    resource = DuckDBWarehouse(path=str(tmp_path / "delivery.duckdb"))
    with resource.kept_open():
        create_raw_schema(resource)
        add_customers(resource, 50)
    return resource


@pytest.fixture
def con(warehouse):
    """A DuckDB connection to the same file, for helpers that take one (events.py)."""
    connection = duckdb.connect(warehouse.path)
    yield connection
    connection.close()


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

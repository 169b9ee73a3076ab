"""A stale source stops drafting and export with a message naming the source and its age."""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb
import pytest

from dagster_project.ingest import contract
from dagster_project.quality import StaleSourceError, assert_fresh
from dagster_project.quality.freshness import (dbt_source_freshness, describe_age, freshness_outcomes,
                                               stale_playbooks)
from dagster_project.resources.warehouse import DuckDBWarehouse


@pytest.fixture
def con(tmp_path):
    con = duckdb.connect(str(tmp_path / "fresh.duckdb"))
    contract.create_raw_schema(con)
    con.execute("insert into raw.orders (order_id, customer_id, ordered_at, status, total) "
                "values ('O1', 'C1', '2026-03-01 08:00', 'fulfilled', 20)")
    con.execute("insert into raw.email_events values ('E1', 'C1', 'n', 'm', 'open', '2026-03-09 21:30')")
    yield con
    con.close()


NOW = datetime(2026, 3, 10, 6, 0)


def test_fresh_sources_pass_and_report_their_age(con):
    ages = assert_fresh(con, ["email_events"], timedelta(days=1), now=NOW)
    assert ages == {"email_events": timedelta(hours=8, minutes=30)}


def test_stale_source_raises_naming_source_and_age(con):
    with pytest.raises(StaleSourceError) as caught:
        assert_fresh(con, ["orders", "email_events"], {"orders": timedelta(days=2), "email_events": timedelta(days=1)},
                     now=NOW)
    message = str(caught.value)
    assert ("raw.orders is 8 days 22 hours old (newest ordered_at 2026-03-01 08:00 UTC, 1 row in the 1 day up to "
            "it); allowed 2 days") in message
    assert "email_events" not in message, "only the stale source is named"
    assert set(caught.value.stale) == {"orders"}


def test_an_empty_orders_source_is_stale_an_empty_optional_one_quiet(con):
    con.execute("delete from raw.orders")
    with pytest.raises(StaleSourceError, match=r"raw.orders has no rows"):
        assert_fresh(con, ["orders", "payments"], timedelta(days=7), now=NOW)
    # A store without a helpdesk or payment events has none: nothing to be stale.
    assert assert_fresh(con, ["payments", "support_tickets"], timedelta(days=7), now=NOW) == {}


def add_rows(con, table: str, times: list[datetime]) -> None:
    for i, at in enumerate(times):
        if table == "support_tickets":
            con.execute("insert into raw.support_tickets (ticket_id, customer_id, created_at, channel, topic, status) "
                        "values (?, 'C1', ?, 'email', 'billing', 'closed')", [f"T{i}", at])
        else:
            con.execute("insert into raw.orders (order_id, customer_id, ordered_at, status, total) "
                        "values (?, 'C1', ?, 'fulfilled', 20)", [f"O-{i}", at])


def test_an_old_source_is_quiet_when_its_own_pace_makes_the_silence_usual(con):
    """Five days without a ticket, past a 3-day limit: a store with a ticket every ten days
    is quiet (drafting goes on); one with two a day has a stopped loader."""
    newest = NOW - timedelta(days=5)
    add_rows(con, "support_tickets", [newest - timedelta(days=10 * i) for i in range(8)])
    assert assert_fresh(con, ["support_tickets"], timedelta(days=3), now=NOW) == {
        "support_tickets": timedelta(days=5)}
    outcome, = freshness_outcomes(con, now=NOW, limits={"support_tickets": {"error": timedelta(days=3)}})
    assert (outcome.severity, outcome.status, outcome.blocking) == ("WARN", "failed", False)
    assert "8 rows in the 70 days up to it" in outcome.message and "quiet, not stale" in outcome.message

    add_rows(con, "orders", [newest - timedelta(hours=12 * i) for i in range(60)])
    with pytest.raises(StaleSourceError) as caught:
        assert_fresh(con, ["orders", "support_tickets"], timedelta(days=3), now=NOW)
    assert set(caught.value.stale) == {"orders"}
    assert "61 rows in the 29 days 12 hours up to it" in str(caught.value)


def test_unknown_source_is_a_clear_error(con):
    with pytest.raises(KeyError, match="raw.products has no timestamp"):
        assert_fresh(con, ["products"], timedelta(days=1), now=NOW)


def test_as_of_is_the_default_now(con, monkeypatch):
    monkeypatch.setenv("NEXTBEST_AS_OF", "2026-03-02")
    assert assert_fresh(con, ["orders"], timedelta(days=1))["orders"] == timedelta(hours=16)


def test_limits_come_from_dbt_source_freshness_and_fail_past_error_after(con):
    limits = dbt_source_freshness()
    assert limits["orders"] == {"warn": timedelta(days=2), "error": timedelta(days=7)}
    by_source = {o.target: o for o in freshness_outcomes(con, now=NOW, limits=limits)}
    assert by_source["raw.orders"].blocking and "error after 7 days" in by_source["raw.orders"].message
    assert by_source["raw.email_events"].status == "passed"
    assert by_source["raw.orders"].message.endswith("(1 row in the 1 day up to it); error after 7 days")
    # No payments at all: reported, not blocking (a store may have no such source).
    assert not by_source["raw.payments"].blocking and by_source["raw.payments"].severity == "WARN"
    assert "raw.payments has no rows" in by_source["raw.payments"].message


def test_describe_age():
    assert describe_age(timedelta(days=3, hours=4, minutes=5)) == "3 days 4 hours"
    assert describe_age(timedelta(hours=1, minutes=1)) == "1 hour 1 minute"


def test_playbooks_are_judged_the_same_through_the_warehouse_resource(con, tmp_path):
    class Brief:
        def __init__(self, id, days):
            self.id, self.max_data_staleness_days = id, days

    briefs = [Brief("patient", 10), Brief("eager", 1)]
    through_connection = stale_playbooks(con, briefs, now=NOW, sources=["orders", "email_events"])
    con.close()  # the resource opens the file itself
    warehouse = DuckDBWarehouse(path=str(tmp_path / "fresh.duckdb"))
    through_resource = stale_playbooks(warehouse, briefs, now=NOW, sources=["orders", "email_events"])
    assert sorted(through_resource) == sorted(through_connection) == ["eager"]
    assert str(through_resource["eager"]) == str(through_connection["eager"])
    assert "raw.orders is 8 days 22 hours old" in str(through_resource["eager"])


def test_a_timestamp_with_time_zone_column_is_judged_in_utc(con):
    """A loader may write TIMESTAMP WITH TIME ZONE (the column_types rule accepts it): its newest row
    is an instant, compared with naive UTC now instead of failing on a tz-aware subtraction."""
    con.execute("set TimeZone = 'UTC'")
    con.execute("alter table raw.email_events alter occurred_at type timestamptz")
    con.execute("set TimeZone = 'America/New_York'")  # DuckDB hands the values back in the session's zone

    assert assert_fresh(con, ["email_events"], timedelta(days=1), now=NOW) == {
        "email_events": timedelta(hours=8, minutes=30)}
    limits = {"email_events": {"error": timedelta(days=1)}}
    by_source = {o.target: o for o in freshness_outcomes(con, now=NOW, limits=limits)}
    assert "newest row 2026-03-09 21:30 UTC" in by_source["raw.email_events"].message

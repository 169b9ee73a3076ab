"""customer_service_context on the hand-built customers: repeat issues, tone, tiers, the agent view."""

from __future__ import annotations

import argparse

import pytest

from tests.warehouse import handbuilt


@pytest.fixture(scope="module")
def rows(handbuilt_warehouse):
    found = handbuilt_warehouse.rows("select * from analytics.customer_service_context where customer_id like 'HB-%'")
    return {r["customer_id"][3:]: r for r in found}


def test_one_row_per_customer(handbuilt_warehouse, rows):
    (count,) = handbuilt_warehouse.rows("select count(*) as n from analytics.customer_context")
    assert len(handbuilt_warehouse.rows("select customer_id from analytics.customer_service_context")) == count["n"]
    assert set(rows) == set(handbuilt.SEGMENTS_AT_ANCHOR)


def test_repeat_issue_across_tickets_and_open_ticket(rows):
    brief = rows["BRIEF"]  # "Where is my order?" then "Order still not here." six days later
    assert brief["has_repeat_issue"] and brief["repeat_issue_topic"] == "delivery_delay"
    assert brief["repeat_issues_in_lookback"] == 1
    assert brief["open_tickets"] == 1 and brief["open_ticket_topics"] == "delivery_delay"
    assert brief["ticket_history"].startswith(f"{(handbuilt.ANCHOR.replace(day=24)).isoformat()} email delivery_delay open (repeat)")
    assert brief["email_tickets"] == 2 and brief["chat_tickets"] == 0
    advocate = rows["ADVOCATE"]  # two tickets on different topics, months apart
    assert not advocate["has_repeat_issue"] and advocate["repeat_issues_in_lookback"] == 0


def test_tone_learned_from_their_own_words(rows):
    assert rows["BRIEF"]["tone_preference"] == "brief"
    assert rows["ADVOCATE"]["tone_preference"] == "warm"
    assert rows["GIFT"]["tone_preference"] == "unknown"


def test_tiers_tags_and_orders(handbuilt_warehouse, rows):
    assert rows["NEW"]["tenure_tier"] == "new" and rows["ADVOCATE"]["tenure_tier"] == "long_time"
    assert rows["ADVOCATE"]["lifetime_value_tier"] == "high" and "high_ltv" in rows["ADVOCATE"]["tags_text"]
    assert rows["GIFT"]["gift_recipient"] and rows["GIFT"]["tags_text"] == "gift_recipient"
    assert rows["BRIEF"]["payment_health"] == "recovered"
    assert rows["NEW"]["recent_orders"].endswith(" delivered " + handbuilt.ANCHOR.replace(day=27).isoformat())
    assert rows["CADENCE"]["recent_orders"].count("; ") == 2  # the latest three orders
    (sub,) = handbuilt_warehouse.rows("select started_at, cancelled_at from raw.subscriptions "
                                      "where customer_id = 'HB-WINBACK'")
    assert rows["WINBACK"]["subscription_history"].endswith(
        f"started {sub['started_at'].date()}, cancelled {sub['cancelled_at'].date()} (price)")
    assert rows["ADVOCATE"]["products_tried"] == "HB-P-COF2,HB-P-GIFT"


def test_cli_prints_the_agent_view(handbuilt_warehouse, capsys):
    from dagster_project.service import commands

    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["service-context", "--customer", "HB-BRIEF", "--db", str(handbuilt_warehouse.path)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "Bruno · HB-BRIEF" in out
    assert "REPEAT ISSUE: late delivery" in out
    assert "OPEN (1)" in out and "writes brief" in out and "Next charge: " in out
    args = parser.parse_args(["service-context", "--customer", "HB-NOBODY", "--db", str(handbuilt_warehouse.path)])
    assert args.func(args) == 2
    assert "no customer 'HB-NOBODY'" in capsys.readouterr().err

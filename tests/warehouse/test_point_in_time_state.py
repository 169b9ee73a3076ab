"""State that raw rows hold "as of today", read back at a point in time.

- A subscriber paused, was cancelled while paused (no resume), and came back months later with a
  new subscription: the pause belonged to the old subscription, so the features do not call the
  new one paused (the context, from raw's status, says active).
- A ticket open on the as_of day and rated after it: the rating is not known on the as_of day.
"""

from __future__ import annotations

import json
from datetime import timedelta

import duckdb
import pytest

from dagster_project.ingest import contract
from tests.warehouse import handbuilt

D = handbuilt.ANCHOR
CID = "HB-REACT"


def _rows() -> dict[str, list[tuple]]:
    s = handbuilt.Store(as_of=D, prefix="HB-")
    coffee = "HB-P-COF1"

    def day(n):
        return D + timedelta(days=n)

    s.customer(CID, day(-300), "Rita")
    s.subscription(f"{CID}-S1", CID, coffee, day(-290), 28, 16.00, cancelled=day(-150), reason="price")
    s.cycles(CID, f"{CID}-S1", coffee, day(-290), 28, 16.00, until=day(-200))
    for event_type, when, sub in (("pause", day(-195), "S1"), ("cancel", day(-150), "S1"),
                                  ("reactivate", day(-60), "S2")):
        s.add("portal_events", event_id=f"{CID}-PE-{event_type}", customer_id=CID, event_type=event_type,
              occurred_at=handbuilt.at(when, 18), properties=json.dumps({"subscription_id": f"{CID}-{sub}"}))
    s.subscription(f"{CID}-S2", CID, coffee, day(-60), 28, 16.00)
    s.cycles(CID, f"{CID}-S2", coffee, day(-60), 28, 16.00)
    # open on the as_of day, solved and rated two days later (raw holds today's state)
    s.add("support_tickets", ticket_id="HB-GIFT-T-LATE", customer_id="HB-GIFT", created_at=handbuilt.at(day(-5), 11),
          channel="chat", topic="product_question", status="solved", resolved_at=handbuilt.at(day(2), 9), csat=5,
          body="Which grind for a moka pot?")
    return s.rows


@pytest.fixture(scope="module")
def wh(handbuilt_warehouse, tmp_path_factory):
    wh = handbuilt_warehouse.copy(tmp_path_factory, "point-in-time-state")
    with duckdb.connect(str(wh.path)) as con:
        for table, rows in _rows().items():
            marks = ", ".join("?" for _ in contract.TABLES[table].column_names)
            con.executemany(f"insert into raw.{table} values ({marks})", rows)
    # rows months back: beyond what a daily run recomputes
    result = wh.dbt("run", "--select", "+customer_features", "+customer_context", "--full-refresh", as_of=D)
    assert result.returncode == 0, result.stdout[-4000:]
    return wh


def test_a_pause_of_a_cancelled_subscription_does_not_pause_the_next_one(wh):
    assert wh.context(CID)["subscription_status"] == "active"
    rows = wh.rows("select as_of_date, is_scoring_point, is_subscriber, is_paused, is_active_subscriber "
                   "from analytics.customer_features where customer_id = ? order by as_of_date", CID)
    by_day = {r["as_of_date"]: r for r in rows}
    # paused while the first subscription ran
    paused = by_day[D - timedelta(days=189)]  # a Monday after the pause
    assert paused["is_subscriber"] and paused["is_paused"] and not paused["is_active_subscriber"]
    # the new subscription, started after the cancellation: active
    since_back = [r for r in rows if r["as_of_date"] > D - timedelta(days=60)]
    assert since_back and since_back[-1]["is_scoring_point"]
    for r in since_back:
        assert r["is_subscriber"] and not r["is_paused"] and r["is_active_subscriber"], r


def test_a_rating_given_after_the_as_of_day_is_not_known_on_it(wh):
    gift = wh.context("HB-GIFT")
    assert gift["open_tickets"] == 1  # still open on the as_of day
    assert gift["avg_csat"] is None
    (features,) = wh.rows("select avg_csat from analytics.customer_features where customer_id = 'HB-GIFT' "
                          "and is_scoring_point")
    assert features["avg_csat"] is None

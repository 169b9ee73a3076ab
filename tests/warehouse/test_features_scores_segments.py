"""customer_features on the hand-built customers, and customer_segments from scores.

The hand-built warehouse (built at D1 without any scores) must keep its segments:
with no nextbest.customer_scores the segment rules are behaviour only. Then a
scores table is written the way the `customer_scores` asset writes it, and only
the score-dependent models are rebuilt (as the second dbt step of the daily job):
scores widen at_risk and expansion, narrow cadence_mismatch, and customers without
a score - or with a score from another day - keep their behaviour segments.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb
import pytest

from dagster_project.models.propensity_assets import SCORE_COLUMNS, SCORES_DDL, SCORES_TABLE
from tests.warehouse import handbuilt

D1 = handbuilt.ANCHOR


def test_scoring_point_features_follow_the_segment_rules(handbuilt_warehouse):
    rows = {r["customer_id"][3:]: r for r in handbuilt_warehouse.rows(
        "select * from analytics.customer_features where is_scoring_point and customer_id like 'HB-%'")}
    assert set(rows) == set(handbuilt.SEGMENTS_AT_ANCHOR)
    assert {r["as_of_date"] for r in rows.values()} == {D1}
    # the point-in-time rules (the models' baseline) agree with today's segments
    for name, segments in handbuilt.SEGMENTS_AT_ANCHOR.items():
        assert rows[name]["rule_at_risk"] == ("at_risk" in segments), name
        assert rows[name]["rule_cadence_mismatch"] == ("cadence_mismatch" in segments), name
        assert rows[name]["rule_expansion"] == ("expansion" in segments), name
    assert rows["WINBACK"]["is_subscriber"] is False and rows["DORMANT"]["is_paused"] is True
    assert rows["GIFT"]["is_gift"] is True and rows["CADENCE"]["cadence_days"] == 14


@pytest.fixture(scope="module")
def scored(handbuilt_warehouse, tmp_path_factory):
    wh = handbuilt_warehouse.copy(tmp_path_factory, "scored")
    scored_at = datetime.combine(D1, datetime.min.time())
    scores = {  # customer: (as_of_date, p_churn, p_skip, p_upgrade)
        "ADVOCATE": (D1, 0.40, 0.05, 0.05),  # quiet but the churn model sees risk: at_risk
        "BRIEF": (D1, 0.02, 0.05, 0.30),  # repeat buyer the upgrade model likes: expansion
        "CADENCE": (D1, 0.02, 0.01, 0.05),  # skipped, but no more skips expected: not cadence_mismatch
        "FADING": (D1, 0.01, 0.05, 0.05),  # behaviour alone keeps them at risk
        "EXPAND": (D1, 0.01, 0.05, 0.01),  # added an item: expansion regardless of the score
        "GIFT": (D1 - timedelta(days=7), 0.90, 0.90, 0.90),  # last week's score: ignored
    }
    with duckdb.connect(str(wh.path)) as con:
        con.execute("create schema if not exists nextbest")
        con.execute(SCORES_DDL)
        for name, (day, churn, skip, upgrade) in scores.items():
            row = {"customer_id": f"HB-{name}", "as_of_date": day, "p_churn": churn, "p_skip": skip,
                   "p_upgrade": upgrade, "p_discount_response": 0.5, "predicted_value_90d": 30.0,
                   "scored_at": scored_at}
            con.execute(f"insert into {SCORES_TABLE} values ({', '.join('?' * len(SCORE_COLUMNS))})",
                        [row.get(c) for c in SCORE_COLUMNS])
    wh.build(D1, "--select", "source:nextbest.customer_scores+")
    return wh


def test_segments_from_scores_plus_behaviour(scored):
    expected = {name: set(segments) for name, segments in handbuilt.SEGMENTS_AT_ANCHOR.items()}
    expected["ADVOCATE"] = {"at_risk"}
    expected["BRIEF"] = {"expansion"}
    expected["CADENCE"] = set()
    assert scored.segments("HB-") == expected


def test_reasons_name_the_model_only_where_it_decided(scored):
    reasons = {(r["customer_id"][3:], r["segment"]): r["reason"] for r in scored.rows(
        "select * from analytics.customer_segments where customer_id like 'HB-%'")}
    assert reasons[("ADVOCATE", "at_risk")] == "The churn model gives a 40% chance of cancelling in the next 30 days"
    assert "upgrade model" in reasons[("BRIEF", "expansion")]
    assert "model" not in reasons[("FADING", "at_risk")] and "model" not in reasons[("EXPAND", "expansion")]


def test_tags_and_history_follow_the_scored_segments(scored):
    assert scored.tags("HB-ADVOCATE")["at_risk"] is True
    assert scored.tags("HB-ADVOCATE")["brand_advocate"] is False  # advocates are never at risk
    history = {(r["customer_id"][3:], r["segment"]) for r in scored.rows(
        "select * from analytics.customer_segment_history where customer_id like 'HB-%' and exited_at is null")}
    assert ("ADVOCATE", "at_risk") in history and ("CADENCE", "cadence_mismatch") not in history


def test_predicted_clv_lifts_a_customer_into_high_ltv(handbuilt_warehouse, tmp_path_factory):
    """high_ltv ranks paying customers by what they spent plus their predicted 12-month CLV;
    predictions from another day are ignored."""
    paying = [r["customer_id"] for r in handbuilt_warehouse.rows(
        "select customer_id from analytics.customer_context where lifetime_value > 0 order by lifetime_value")]
    lowest, next_lowest = paying[0], paying[1]
    assert handbuilt_warehouse.tags(lowest)["high_ltv"] is False

    wh = handbuilt_warehouse.copy(tmp_path_factory, "predicted")
    with duckdb.connect(str(wh.path)) as con:
        con.execute("create schema if not exists nextbest")
        con.execute("create table nextbest.customer_predictions "
                    "(customer_id varchar, as_of_date date, predicted_clv_12m double)")
        con.execute("insert into nextbest.customer_predictions values (?, ?, 100000), (?, ?, 100000)",
                    [lowest, D1, next_lowest, D1 - timedelta(days=7)])
    wh.build(D1, "--select", "customer_tags")
    assert wh.tags(lowest)["high_ltv"] is True
    assert wh.tags(next_lowest)["high_ltv"] is False  # last week's prediction does not count

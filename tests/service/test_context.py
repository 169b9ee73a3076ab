"""`nextbest service-context`: the agent view shows predictions when they exist and works without them."""

from __future__ import annotations

import json

import duckdb
import pytest

from dagster_project.cli import main
from dagster_project.models.clv_assets import PREDICTIONS_DDL, PREDICTIONS_TABLE
from dagster_project.service.context import load_service_context


def _store(path) -> None:
    with duckdb.connect(str(path)) as con:
        con.execute("create schema analytics")
        con.execute("""create table analytics.customer_service_context as
            select 'C001' as customer_id, 'Ana' as first_name, date '2026-11-25' as as_of_date,
                   14 as tenure_months, 210.0 as lifetime_value, 'high' as lifetime_value_tier""")


def _view(path, capsys, *extra) -> str:
    assert main(["service-context", "--customer", "C001", "--db", str(path), *extra]) == 0
    return capsys.readouterr().out


def test_agent_view_shows_predictions_when_they_exist(tmp_path, capsys):
    path = tmp_path / "store.duckdb"
    _store(path)
    without = _view(path, capsys)
    assert "Ana · C001" in without and "Predicted" not in without
    assert json.loads(_view(path, capsys, "--json"))["predictions"] is None

    with duckdb.connect(str(path)) as con:
        con.execute("create schema nextbest")
        con.execute(PREDICTIONS_DDL)
        con.execute(f"""insert into {PREDICTIONS_TABLE} (customer_id, as_of_date, p_purchase_90d, churn_risk,
            churn_risk_band, predicted_clv_12m, predicted_clv_12m_low, predicted_clv_12m_high,
            expected_next_order_date, historic_clv, confidence, model_version, scored_at)
            values ('C001', date '2026-11-25', 0.28, 0.72, 'high', 184.5, 120.0, 260.0, date '2026-12-19',
                    210.0, 'medium', 'clv_1', now())""")
    view = _view(path, capsys)
    assert "churn risk high (72% chance of no order in 90 days)" in view
    assert "predicted 12-month CLV $184.50 ($120.00-$260.00)" in view
    assert "next order, if they come back: around 2026-12-19" in view  # C001 has no subscription
    shown = json.loads(_view(path, capsys, "--json"))["predictions"]
    assert shown["churn_risk_band"] == "high" and shown["predicted_clv_12m"] == 184.5

    # The churn propensity model's score beside it: it reads behaviour (a cancel attempt) the order pattern misses.
    with duckdb.connect(str(path)) as con:
        con.execute("""create table nextbest.customer_scores as select 'C001' as customer_id,
                       date '2026-11-25' as as_of_date, 0.41 as p_churn""")
    assert "churn propensity 41% in 30 days (from their behaviour)" in _view(path, capsys)

    # Reply drafts are built from the service-context rows: the predictions never enter them.
    with duckdb.connect(str(path), read_only=True) as con:
        row = load_service_context(con, ["C001"])["C001"]
    assert not {"churn_risk_band", "predicted_clv_12m", "expected_next_order_date"} & set(row)


def test_agent_view_shows_money_in_the_store_currency(tmp_path, capsys, monkeypatch):
    """A euro store (brand voice currency_symbol "€"): the agent reads €210.00, not $210.00."""
    import shutil

    from dagster_project.messaging.briefs import BRIEFS_DIR

    briefs = tmp_path / "briefs"
    shutil.copytree(BRIEFS_DIR, briefs)
    voice = briefs / "brand_voice.yaml"
    voice.write_text(voice.read_text().replace('currency_symbol: "$"', 'currency_symbol: "€"'))
    monkeypatch.setenv("NEXTBEST_BRIEFS_DIR", str(briefs))
    path = tmp_path / "store.duckdb"
    _store(path)
    view = _view(path, capsys)
    assert "Lifetime value €210.00" in view and "$" not in view


PREDICTED = {"churn_risk": 0.02, "churn_risk_band": "low", "predicted_clv_12m": 90.0,
             "expected_next_order_date": "2026-12-19", "confidence": "high"}


@pytest.mark.parametrize("status, said", [
    ("active", "next order expected 2026-12-19"),
    ("paused", "next order: none while paused (the model expects one around 2026-12-19)"),
    ("cancelled", "next order, if they come back: around 2026-12-19"),
])
def test_the_expected_next_order_fits_the_subscription(status, said):
    from dagster_project.service.context import render_agent_view

    row = {"customer_id": "C9", "subscription_id": "S9", "subscription_status": status, "tickets_total": 1,
           "lifetime_fulfilled_orders": 1, "has_repeat_issue": True, "repeat_issue_topic": "delivery_delay",
           "repeat_issues_in_lookback": 1, "repeat_issue_topics": "delivery_delay"}
    view = render_agent_view(row, predictions=PREDICTED)
    assert said in view
    assert "over 1 order ·" in view and "  1 ticket:" in view and "(1 repeat contact:" in view
    attempted = render_agent_view({**row, "recent_cancel_attempts": 1}, predictions=PREDICTED)
    assert "does not see the cancel attempt" in attempted and "does not see" not in view
    scored = render_agent_view({**row, "recent_cancel_attempts": 1}, predictions={**PREDICTED, "p_churn_30d": 0.4})
    assert "churn propensity 40% in 30 days" in scored and "does not see" not in scored


def test_the_save_offer_names_what_each_option_gives_and_how_to_log_the_choice():
    from dagster_project.service.context import render_agent_view

    options = [{"id": "product_swap", "label": "Swap to Brazil Cerrado"},
               {"id": "longer_cycle", "label": "Every 28 days instead of every 14"},
               {"id": "pause_instead", "label": "Pause instead of cancelling"}]
    save = {"arm": "treatment", "trigger_kind": "portal_cancel_attempt", "triggered_at": "2026-11-27",
            "option_id": "product_swap", "reason": "product fatigue", "allowed_options": json.dumps(options),
            "recommendation_id": "save_offer:portal:PE1"}
    view = render_agent_view({"customer_id": "C9"}, save=save)
    assert "Recommended: product_swap (Swap to Brazil Cerrado) - product fatigue" in view
    assert "longer_cycle (Every 28 days instead of every 14), pause_instead (Pause instead of cancelling)" in view
    assert "nextbest save-offer-choice --recommendation save_offer:portal:PE1 --option ID --agent YOU" in view


def test_the_agent_view_shows_the_days_reply_drafts_for_the_customers_tickets(tmp_path, capsys):
    path = tmp_path / "store.duckdb"
    _store(path)
    assert "Reply drafts" not in _view(path, capsys)  # before the reply drafts exist
    with duckdb.connect(str(path)) as con:
        con.execute("create schema if not exists nextbest")
        con.execute("""create table nextbest.service_reply_drafts as select * from (values
            ('T1', 'C001', 'Your order', 'Hi Ana,\n\nYesterday''s words.', 'pending_review', null, date '2026-11-24'),
            ('T1', 'C001', 'Your order', 'Hi Ana,\n\nYour latest order is being prepared.', 'pending_review', null,
             date '2026-11-25'),
            ('T2', 'C001', 'Billing', 'Hi Ana', 'blocked', 'grounding: price 9.99 not in the context pack',
             date '2026-11-25'),
            ('T9', 'C002', 'Someone else', 'Hi Bo', 'pending_review', null, date '2026-11-25'))
            as t(ticket_id, customer_id, subject, body, status, block_reason, as_of)""")
    view = _view(path, capsys)
    assert "Reply drafts (2026-11-25)" in view and "    Your latest order is being prepared." in view
    assert "T2 · blocked · grounding: price 9.99 not in the context pack" in view
    assert "Yesterday" not in view and "Someone else" not in view
    assert [d["ticket_id"] for d in json.loads(_view(path, capsys, "--json"))["reply_drafts"]] == ["T1", "T2"]
    assert main(["review", "service_reply-2026-11-25", "--db", str(path)]) == 2
    assert "nextbest service-context --customer ID" in capsys.readouterr().out


def test_a_customer_id_in_the_wrong_case_is_pointed_to_the_right_one(tmp_path, capsys):
    path = tmp_path / "store.duckdb"
    _store(path)
    assert main(["service-context", "--customer", "c001", "--db", str(path)]) == 2
    assert "no customer 'c001' in analytics.customer_service_context; did you mean 'C001'?" in capsys.readouterr().err
    assert main(["service-context", "--customer", "C999", "--db", str(path)]) == 2
    assert "did you mean" not in capsys.readouterr().err

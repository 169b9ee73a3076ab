"""`nextbest service-context`: the agent view shows predictions when they exist and works without them."""

from __future__ import annotations

import json

import duckdb

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
    assert "next order expected 2026-12-19" in view
    shown = json.loads(_view(path, capsys, "--json"))["predictions"]
    assert shown["churn_risk_band"] == "high" and shown["predicted_clv_12m"] == 184.5

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

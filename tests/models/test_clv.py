"""CLV predictions and `nextbest clv-backtest`, as a store owner would check them."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest
from scipy.special import hyp2f1

from dagster_project.models import clv_commands
from dagster_project.models.clv import churn_risk_band, expected_next_order_date, fit_clv, predict_clv, score_clv
from dagster_project.models.clv_bgnbd import BgNbdParams, expected_purchases, fit_bgnbd, p_alive
from dagster_project.models.clv_gamma_gamma import fit_gamma_gamma
from dagster_project.models.clv_metrics import (brier_score, calibration_by_decile, correlation, roc_auc,
                                                score_predictions)
from dagster_project.models.clv_rfm import rfm_summary

from .conftest import CUTOFF, STORE_END, TRUE_PURCHASE, TRUE_SPEND


def run_cli(argv: list[str]) -> int:
    """Parse and run like `nextbest` does once the module is registered."""
    parser = argparse.ArgumentParser(prog="nextbest")
    clv_commands.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


# --- the models recover what generated the data ------------------------------------------

def test_bgnbd_fit_recovers_the_simulated_parameters(big_store):
    rfm = rfm_summary(big_store, pd.Timestamp(STORE_END))
    for prior_scale in (None, 1.0):  # the weak prior must not bias a big store
        fitted = fit_bgnbd(rfm["frequency"], rfm["recency"], rfm["T"], prior_scale=prior_scale).params
        for name, truth in TRUE_PURCHASE.as_dict().items():
            assert getattr(fitted, name) == pytest.approx(truth, rel=0.2), (prior_scale, name)


def test_gamma_gamma_fit_recovers_spend_per_purchase(big_store):
    rfm = rfm_summary(big_store, pd.Timestamp(STORE_END))
    fitted = fit_gamma_gamma(rfm["frequency"], rfm["monetary_value"], fallback_mean_spend=1.0).params
    assert fitted.mean_spend == pytest.approx(TRUE_SPEND.mean_spend, rel=0.05)
    for name, truth in TRUE_SPEND.as_dict().items():
        assert getattr(fitted, name) == pytest.approx(truth, rel=0.25), name


def test_expected_purchases_match_the_closed_form():
    # Fader-Hardie-Lee eq. 10 holds where a > 1; the quadrature must agree there.
    params = BgNbdParams(r=0.8, alpha=30.0, a=1.7, b=4.0)
    x, t_x, T, t = np.array([0.0, 1, 4, 12]), np.array([0.0, 20, 150, 300]), np.array([60.0, 200, 320, 330]), 90.0
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    closed = ((a + b + x - 1) / (a - 1)
              * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp2f1(r + x, b + x, a + b + x - 1, t / (alpha + T + t)))
              / (1 + (x > 0) * a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x)))
    assert expected_purchases(params, x, t_x, T, t) == pytest.approx(closed, rel=1e-6)


def test_rfm_summary_by_hand():
    log = pd.DataFrame({
        "customer_id": ["a", "a", "a", "a", "b", "c"],
        "date": pd.to_datetime(["2024-01-01 09:00", "2024-01-01 18:00", "2024-01-11", "2024-01-31",
                                "2024-01-21", "2024-02-05"], format="ISO8601"),
        "amount": [10.0, 5.0, 20.0, 30.0, 7.0, 99.0],
    })
    rfm = rfm_summary(log, pd.Timestamp("2024-01-31"))
    assert list(rfm.index) == ["a", "b"]  # c bought after the cutoff
    a = rfm.loc["a"]
    assert (a["frequency"], a["recency"], a["T"]) == (2, 30, 30)  # same-day orders are one purchase
    assert a["monetary_value"] == 25.0 and a["historic_spend"] == 65.0
    b = rfm.loc["b"]
    assert (b["frequency"], b["recency"], b["T"], b["monetary_value"]) == (0, 0, 10, 0.0)


def test_p_alive_drops_for_customers_overdue_for_their_rhythm():
    params = TRUE_PURCHASE
    recent, lapsed = p_alive(params, [10, 10], [300, 100], [310, 310])
    assert recent > 0.9 > 0.2 > lapsed


# --- the figures the backtest prints --------------------------------------------------------

def test_metrics_match_hand_computed_values():
    bought = [1, 0, 1, 0, 1]
    p = [0.9, 0.2, 0.4, 0.6, 0.8]
    # 6 buyer/non-buyer pairs; only (0.4 vs 0.6) is ranked wrongly
    assert roc_auc(bought, p) == pytest.approx(5 / 6)
    assert brier_score(bought, p) == pytest.approx((0.01 + 0.04 + 0.36 + 0.36 + 0.04) / 5)
    assert roc_auc([1, 1], [0.2, 0.3]) is None
    deciles = calibration_by_decile([0, 0, 1, 1, 0, 1, 1, 1, 0, 1], np.linspace(0.05, 0.95, 10), bins=5)
    assert [d["customers"] for d in deciles] == [2] * 5
    assert [d["observed_rate"] for d in deciles] == [0.0, 1.0, 0.5, 1.0, 0.5]
    assert deciles[0]["mean_predicted"] == pytest.approx(0.1)
    assert correlation([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert correlation([1, 1, 1], [2, 4, 6]) is None
    actual = pd.DataFrame({"purchased": [True, False], "purchases": [2.0, 0.0], "spend": [30.0, 0.0]})
    scored = score_predictions([0.7, 0.1], [1.5, 0.25], [20.0, 4.0], actual)
    assert scored["spend_mae"] == pytest.approx((10 + 4) / 2)
    assert (scored["predicted_purchases"], scored["actual_purchases"]) == (1.75, 2.0)
    assert scored["brier_score"] == pytest.approx((0.09 + 0.01) / 2)


def planted_log() -> tuple[pd.DataFrame, dict]:
    """60 customers with a known history to 2024-06-30 and known orders in the 90 days after."""
    rows = []
    for i in range(60):
        first = pd.Timestamp("2024-01-01") + pd.Timedelta(days=i)
        gap = 10 + i % 20
        day = first
        while day <= pd.Timestamp("2024-06-30"):
            rows.append((f"cust{i:02d}", day, 20.0 + i % 7))
            day += pd.Timedelta(days=gap if i % 3 else 400)  # a third buy once only
        if i % 4 == 0:  # two purchases in the horizon
            rows += [(f"cust{i:02d}", pd.Timestamp("2024-07-10"), 10.0), (f"cust{i:02d}", pd.Timestamp("2024-08-20"), 15.0)]
        elif i % 4 == 1:  # two orders on one day: one purchase
            rows += [(f"cust{i:02d}", pd.Timestamp("2024-09-01 08:00"), 20.0), (f"cust{i:02d}", pd.Timestamp("2024-09-01 17:30"), 5.0)]
    rows.append(("cust00", pd.Timestamp("2024-10-15"), 500.0))  # after the horizon: not counted
    rows.append(("newbie", pd.Timestamp("2024-07-05"), 30.0))  # first seen after the cutoff: not scored
    log = pd.DataFrame(rows, columns=["buyer", "ordered_at", "total"])
    log["ordered_at"] = log["ordered_at"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    return log, {"customers": 60, "purchases": 15 * 2 + 15 * 1, "spend": 15 * 25.0 + 15 * 25.0}


def test_backtest_on_a_planted_file_reports_hand_checkable_figures(tmp_path, capsys):
    log, truth = planted_log()
    path = tmp_path / "orders.csv"
    log.to_csv(path, index=False)
    out_csv = tmp_path / "predictions.csv"
    code = run_cli(["clv-backtest", str(path), "--customer", "buyer", "--date", "ordered_at", "--amount", "total",
                    "--cutoff", "2024-06-30", "--predictions", str(out_csv)])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["customers"] == truth["customers"]
    assert report["new_customers_after_cutoff_not_scored"] == 1
    assert report["horizon_days"] == 90 and report["warnings"] == []
    assert report["chosen_model"] == "bgnbd" and "200" in report["why"]  # too small to boost

    predictions = pd.read_csv(out_csv)
    assert len(predictions) == 60
    for name, columns in (("chosen", ("p_purchase", "expected_purchases", "predicted_spend")),
                          ("bgnbd_baseline", ("baseline_p_purchase", "baseline_expected_purchases",
                                              "baseline_predicted_spend"))):
        figures = report["models"][name]
        assert figures["actual_purchases"] == truth["purchases"]
        assert figures["actual_spend"] == pytest.approx(truth["spend"])
        p, purchases, spend = (predictions[c].to_numpy() for c in columns)
        y = predictions["actual_purchased"].to_numpy(bool)
        pairs = [(pb > pn) + 0.5 * (pb == pn) for pb in p[y] for pn in p[~y]]
        assert figures["roc_auc"] == pytest.approx(np.mean(pairs), abs=1e-6)
        assert figures["brier_score"] == pytest.approx(np.mean((p - y) ** 2), abs=1e-6)
        assert figures["spend_mae"] == pytest.approx(np.mean(np.abs(spend - predictions["actual_spend"])), rel=1e-5)
        assert figures["predicted_purchases"] == pytest.approx(purchases.sum(), rel=1e-5)
        assert sum(d["customers"] for d in figures["calibration_by_decile"]) == 60


def test_backtest_on_a_bgnbd_store_predicts_the_purchase_total(big_store):
    from dagster_project.models.clv_backtest import run_backtest

    baseline = run_backtest(big_store, pd.Timestamp(CUTOFF)).report["models"]["bgnbd_baseline"]
    assert baseline["predicted_purchases"] == pytest.approx(baseline["actual_purchases"], rel=0.1)
    assert baseline["roc_auc"] > 0.8


def test_gradient_boosting_wins_on_a_subscription_store(subscription_store):
    from dagster_project.models.clv_backtest import run_backtest

    report = run_backtest(subscription_store, pd.Timestamp("2024-09-30")).report
    assert report["chosen_model"] in {"gbm", "blend"}
    chosen, baseline = report["models"]["chosen"], report["models"]["bgnbd_baseline"]
    assert chosen["brier_score"] < baseline["brier_score"]
    assert chosen["calibration_error"] < 0.05


# --- what a store owner sees --------------------------------------------------------------

def test_a_50_customer_store_gets_predictions_with_low_confidence_and_wide_intervals(tiny_store, big_store):
    small = predict_clv(tiny_store, CUTOFF)
    large = predict_clv(big_store, CUTOFF)
    assert len(small.predictions) == 50 and small.predictions["p_purchase"].between(0, 1).all()
    assert small.summary["store_confidence"] == "low" and set(small.predictions["confidence"]) == {"low"}
    assert small.summary["method"] == "bgnbd"
    assert (large.predictions["confidence"] == "high").mean() > 0.9

    def mean_width(result, column):
        p = result.predictions
        return ((p[f"{column}_high"] - p[f"{column}_low"]) / p[column].clip(lower=1e-9)).median()

    for column in ("p_purchase", "predicted_clv_12m"):
        assert mean_width(small, column) > 3 * mean_width(large, column)
    assert (small.predictions["predicted_clv_12m_low"] <= small.predictions["predicted_clv_12m"]).all()


def test_prediction_columns_and_churn_bands(tiny_store):
    p = predict_clv(tiny_store, CUTOFF).predictions
    assert np.allclose(p["churn_risk"], 1 - p["p_purchase"])
    assert (p["expected_next_order_date"] > pd.Timestamp(CUTOFF)).all()
    bands = churn_risk_band(pd.Series([0.1, 0.33, 0.5, 0.66, 0.9]))
    assert list(bands) == ["low", "medium", "medium", "medium", "high"]


def test_subscribers_next_order_follows_their_charge_date_or_cadence():
    last = pd.Series(pd.to_datetime(["2024-06-20", "2024-06-20", "2024-06-20"]), index=["sub", "charge", "oneoff"])
    extras = pd.DataFrame({"cadence_days": [30, 30, np.nan],
                           "next_charge_date": [pd.NaT, pd.Timestamp("2024-07-25"), pd.NaT]}, index=last.index)
    dates = expected_next_order_date(last, pd.Timestamp("2024-06-30"), pd.Series([40.0, 40.0, 40.0], index=last.index),
                                     extras)
    assert dates.to_dict() == {"sub": pd.Timestamp("2024-07-20"), "charge": pd.Timestamp("2024-07-25"),
                               "oneoff": pd.Timestamp("2024-08-09")}


# --- errors a user can act on -------------------------------------------------------------

def write_orders(tmp_path, dates: list[str]) -> str:
    path = tmp_path / "orders.csv"
    pd.DataFrame({"cid": [f"c{i % 3}" for i in range(len(dates))], "when": dates,
                  "value": [10.0] * len(dates)}).to_csv(path, index=False)
    return str(path)


def backtest_args(path: str, cutoff: str = "2024-02-01") -> list[str]:
    return ["clv-backtest", path, "--customer", "cid", "--date", "when", "--amount", "value", "--cutoff", cutoff]


def test_unparseable_dates_name_the_line_and_value(tmp_path, capsys):
    path = write_orders(tmp_path, ["2024-01-01", "2024-01-05", "not a date", "2024-03-01"])
    assert run_cli(backtest_args(path)) == 2
    err = capsys.readouterr().err
    assert "line 4" in err and "'not a date'" in err and "'when'" in err


def test_a_cutoff_outside_the_data_says_where_the_data_is(tmp_path, capsys):
    path = write_orders(tmp_path, ["2024-01-01", "2024-01-05", "2024-03-01"])
    assert run_cli(backtest_args(path, cutoff="2025-01-01")) == 2
    err = capsys.readouterr().err
    assert "outside the data" in err and "2024-01-01 to 2024-03-01" in err
    assert run_cli(backtest_args(path, cutoff="someday")) == 2
    assert "is not a date" in capsys.readouterr().err


def test_missing_columns_are_named_with_the_ones_that_exist(tmp_path, capsys):
    path = write_orders(tmp_path, ["2024-01-01", "2024-03-01"])
    argv = ["clv-backtest", path, "--customer", "customer_id", "--date", "when", "--amount", "total",
            "--cutoff", "2024-02-01"]
    assert run_cli(argv) == 2
    err = capsys.readouterr().err
    assert "'customer_id', 'total'" in err and "cid, when, value" in err


def test_a_short_horizon_after_the_cutoff_is_a_warning_not_an_error(tmp_path, capsys):
    path = write_orders(tmp_path, ["2024-01-01", "2024-01-05", "2024-01-20", "2024-02-10"])
    assert run_cli(backtest_args(path)) == 0
    captured = capsys.readouterr()
    assert "only 9 of the 90 horizon days" in captured.err
    assert json.loads(captured.out)["customers"] == 3


def test_a_missing_file_and_parquet_input(tmp_path, capsys):
    assert run_cli(backtest_args(str(tmp_path / "nope.csv"))) == 2
    assert "no such file" in capsys.readouterr().err
    log, truth = planted_log()
    log["ordered_at"] = pd.to_datetime(log["ordered_at"])
    log.to_parquet(tmp_path / "orders.parquet")
    argv = ["clv-backtest", str(tmp_path / "orders.parquet"), "--customer", "buyer", "--date", "ordered_at",
            "--amount", "total", "--cutoff", "2024-06-30"]
    assert run_cli(argv) == 0
    assert json.loads(capsys.readouterr().out)["models"]["chosen"]["actual_purchases"] == truth["purchases"]


def test_the_cutoff_day_is_history_whatever_the_time_of_day(tmp_path, capsys):
    log, _ = planted_log()
    late = pd.DataFrame({"buyer": ["cust01", "newbie2"], "ordered_at": ["2024-06-30T21:15:00Z", "2024-06-30T09:00:00Z"],
                         "total": [99.0, 40.0]})
    log = pd.concat([log, late], ignore_index=True)
    path = tmp_path / "orders.csv"
    log.to_csv(path, index=False)
    argv = ["clv-backtest", str(path), "--customer", "buyer", "--date", "ordered_at", "--amount", "total",
            "--cutoff", "2024-06-30", "--predictions", str(tmp_path / "p.csv")]
    assert run_cli(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["customers"] == 61  # newbie2's only order, on the cutoff day, is history
    assert report["models"]["chosen"]["actual_spend"] == pytest.approx(750.0)  # 99.0 is not a future purchase
    rows = pd.read_csv(tmp_path / "p.csv", index_col="customer_id")
    assert rows.loc["cust01", "last_order_date"].startswith("2024-06-30")

    frame = log.assign(customer_id=log["buyer"], date=pd.to_datetime(log["ordered_at"]).dt.tz_localize(None),
                       amount=log["total"])
    for cutoff in ("2024-06-30", pd.Timestamp("2024-06-30 23:59:59"), pd.Timestamp("2024-06-30 00:00")):
        p = predict_clv(frame, cutoff, use_gbm=False, interval_draws=0).predictions
        assert "newbie2" in p.index and p.loc["cust01", "last_order_date"] == pd.Timestamp("2024-06-30"), cutoff


def test_a_fitted_model_scores_later_days_without_refitting(subscription_store):
    model = fit_clv(subscription_store, "2023-08-31", interval_draws=10)
    assert score_clv(model, subscription_store).predictions.equals(
        predict_clv(subscription_store, "2023-08-31", interval_draws=10).predictions)
    later = score_clv(model, subscription_store, "2023-10-31")
    assert later.summary["cutoff"] == "2023-10-31" and later.summary["trained_cutoff"] == "2023-08-31"
    assert later.summary["bgnbd"] == model.purchase.params.as_dict()  # same parameters, newer histories
    newcomers = subscription_store.loc[subscription_store.groupby("customer_id")["date"].transform("min")
                                       > pd.Timestamp("2023-09-01"), "customer_id"].unique()
    assert len(newcomers) and set(newcomers) <= set(later.predictions.index)


def test_predictions_are_calibrated_on_a_simulated_subscription_store(tmp_path):
    # The booster trains one horizon before it scores; on a log that starts on a fixed day,
    # counts like frequency and T ran past its training range and it under-predicted
    # long-standing subscribers (calibration error 0.070, now below 0.05).
    import datetime as dt

    import duckdb

    from dagster_project.ingest.simulator import simulate
    from dagster_project.models import clv_assets, clv_inputs

    con = duckdb.connect(str(tmp_path / "store.duckdb"))
    as_of = dt.date(2026, 6, 30)
    simulate(con, customers=600, months=9, seed=3, end_date=as_of)
    con.execute("""
        create schema staging;
        create view staging.stg_raw__orders as select customer_id, lower(status) as order_status,
            cast(total as decimal(18, 2)) as order_total, ordered_at from raw.orders;
        create view staging.stg_raw__subscriptions as select * from raw.subscriptions;
    """)
    figures = clv_assets.backtest(clv_inputs.load_orders(con, as_of),
                                  lambda day: clv_inputs.subscription_facts(con, day), as_of)
    chosen, baseline = figures["chosen"], figures["bgnbd_baseline"]
    assert chosen["calibration_error"] < clv_assets.MAX_CALIBRATION_ERROR < baseline["calibration_error"]
    assert chosen["brier_score"] < baseline["brier_score"] and chosen["roc_auc"] > 0.9


def test_subscription_facts_become_boosting_features(subscription_store):
    customers = subscription_store["customer_id"].unique()
    extras = pd.DataFrame({"cadence_days": [(14, 30, 60)[int(c[1:]) % 3] for c in customers],
                           "is_subscriber": True}, index=customers)
    result = predict_clv(subscription_store, "2024-09-30", customer_extras=extras, interval_draws=0)
    assert {"cadence_days", "is_subscriber", "bgnbd_p_alive", "overdue_ratio", "purchase_rate"} <= set(
        result.summary["gbm_features"])
    # Counts that grow with the length of the log are BG/NBD's, not the booster's.
    assert not {"frequency", "recency", "T", "historic_spend"} & set(result.summary["gbm_features"])
    assert result.summary["method"] in {"gbm", "blend"}
    assert "p_purchase_low" not in result.predictions  # no intervals asked for


def test_scoring_without_volumes_leaves_the_regressors_out_and_every_other_figure_alone(subscription_store,
                                                                                       monkeypatch):
    # nextbest.customer_predictions keeps neither expected purchases nor spend: daily scoring skips
    # the booster's two regressors (more than half of its trees at 1M customers).
    customers = subscription_store["customer_id"].unique()
    extras = pd.DataFrame({"cadence_days": [(14, 30, 60)[int(c[1:]) % 3] for c in customers],
                           "is_subscriber": True}, index=customers)
    model = fit_clv(subscription_store, "2024-06-30", training_extras=extras, interval_draws=10)
    booster = model.choice.booster
    assert booster is not None
    whole = score_clv(model, subscription_store, "2024-09-30", extras).predictions
    assert {"expected_purchases", "predicted_spend"} <= set(whole.columns)

    def never(X):
        raise AssertionError("a regressor predicted although volumes=False")

    for regressor in (booster.purchases, booster.spend):
        monkeypatch.setattr(regressor, "predict", never)
    lean = score_clv(model, subscription_store, "2024-09-30", extras, volumes=False).predictions
    pd.testing.assert_frame_equal(lean, whole.drop(columns=["expected_purchases", "predicted_spend"]))
    with pytest.raises(AssertionError, match="volumes=False"):
        score_clv(model, subscription_store, "2024-09-30", extras)


def test_expected_purchases_stay_finite_at_extreme_fits():
    # Plain maximum likelihood on tiny or regular stores can push a or b to the bounds.
    x, t_x, T = np.array([0.0, 3, 30]), np.array([0.0, 30, 300]), np.array([20.0, 50, 320])
    for a, b in ((0.5, 162000.0), (162000.0, 162000.0), (6e-6, 5.0), (162000.0, 6e-6)):
        e = expected_purchases(BgNbdParams(r=1.0, alpha=30.0, a=a, b=b), x, t_x, T, 90)
        assert np.isfinite(e).all() and (e >= 0).all(), (a, b)
    # no dropout (b huge): a Poisson buyer's (r+x) / (alpha+T) per day
    e = expected_purchases(BgNbdParams(r=1.0, alpha=30.0, a=0.5, b=162000.0), x, t_x, T, 90)
    assert e == pytest.approx((1 + x) * 90 / (30 + T), rel=1e-3)

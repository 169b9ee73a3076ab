"""`nextbest uplift-backtest` on synthetic randomized campaigns with planted effects."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dagster_project.cli import main as cli_main  # noqa: F401  (the command is wired through cli.py)
from dagster_project.decisioning import commands
from dagster_project.models.uplift_backtest import UpliftInputError, run_uplift_backtest
from dagster_project.models.uplift_metrics import qini_coefficient

PLANTED_ATE = 0.08


def campaign(n: int = 3000, seed: int = 0, arms=("holdout", "email")) -> pd.DataFrame:
    """Randomized export: 'email' works only on the price-sensitive (uplift 0.16 there, 0 elsewhere)."""
    rng = np.random.default_rng(seed)
    price_sensitive = rng.random(n) < 0.5
    tenure = rng.gamma(2.0, 6.0, n)
    plan = rng.choice(["single", "double", "family"], n)
    arm = rng.choice(list(arms), n)
    base = 0.15 + 0.1 * (plan == "family")
    effect = np.where(price_sensitive, 2 * PLANTED_ATE, 0.0)
    treated = arm != "holdout"
    converted = rng.random(n) < base + treated * effect
    return pd.DataFrame({"customer_id": [f"C{i:05d}" for i in range(n)], "arm": arm, "converted": converted.astype(int),
                         "order_value": rng.uniform(20, 60, n).round(2), "price_sensitive": price_sensitive,
                         "tenure_months": tenure.round(1), "plan": plan})


@pytest.fixture(scope="module")
def report():
    return run_uplift_backtest(campaign(), "arm", "holdout", "converted", folds=3).report


def oracle_qini(frame: pd.DataFrame) -> float:
    """The Qini of ranking by the planted effect itself, on the same noisy outcomes."""
    treated = (frame["arm"] != "holdout").to_numpy()
    return qini_coefficient(frame["price_sensitive"].astype(float), treated, frame["converted"])


def test_recovers_planted_ate_within_ci(report):
    ate = report["per_arm"]["email"]["ate"]
    assert ate["ci_low"] <= PLANTED_ATE <= ate["ci_high"]
    assert ate["ci_low"] > 0


def test_ranking_finds_planted_heterogeneity(report):
    for learner in ("t_learner", "dr_learner"):
        arm = report["per_arm"]["email"][learner]
        assert arm["qini"] > 0
        assert arm["auuc"] > arm["auuc_random"]
    dr = report["per_arm"]["email"]["dr_learner"]
    assert dr["qini"] > 0.3 * oracle_qini(campaign())
    # The top 30% are mostly price-sensitive: their uplift beats the average.
    assert dr["uplift_top_30pct"]["uplift"] > report["per_arm"]["email"]["ate"]["ate"]
    policies = report["policy_value"]["per_customer_conversions"]
    assert policies["best_arm_dr_learner"]["value"] >= policies["nobody"]["value"]
    assert report["features"]["ignored"] == {"customer_id": "identifier (unique per row)"}
    assert "plan" in report["features"]["categorical"]


def test_qini_is_zero_for_a_random_ranking():
    frame = campaign(n=4000, seed=3)
    treated = (frame["arm"] == "email").to_numpy()
    random_scores = np.random.default_rng(1).random(len(frame))
    assert abs(qini_coefficient(random_scores, treated, frame["converted"])) < 0.01


def test_command_writes_predictions_and_plot(tmp_path, capsys):
    path = tmp_path / "campaign.csv"
    campaign(n=1500, seed=2, arms=("holdout", "email", "sms")).to_csv(path, index=False)
    out = tmp_path / "uplift.csv"
    parser = __import__("argparse").ArgumentParser()
    commands.register(parser.add_subparsers())
    args = parser.parse_args(["uplift-backtest", str(path), "--treatment", "arm", "--control", "holdout",
                              "--outcome", "converted", "--value", "order_value", "--predictions", str(out),
                              "--folds", "3"])
    assert args.func(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["per_arm"]) == {"email", "sms"}
    assert {"per_customer_conversions", "per_customer_value"} <= set(report["policy_value"])
    assert {"nobody", "everyone_email", "everyone_sms", "best_arm_dr_learner"} <= set(
        report["policy_value"]["per_customer_value"])
    predictions = pd.read_csv(out)
    assert len(predictions) == 1500
    assert {"customer_id", "uplift_email", "uplift_sms", "best_arm"} <= set(predictions.columns)
    assert (tmp_path / "uplift_qini.png").stat().st_size > 1000


def _run(tmp_path, capsys, frame, *flags):
    path = tmp_path / "campaign.csv"
    frame.to_csv(path, index=False)
    parser = __import__("argparse").ArgumentParser()
    commands.register(parser.add_subparsers())
    args = parser.parse_args(["uplift-backtest", str(path), *flags])
    code = args.func(args)
    return code, capsys.readouterr().err


def test_missing_column_is_a_clear_error(tmp_path, capsys):
    code, err = _run(tmp_path, capsys, campaign(n=200), "--treatment", "group", "--control", "holdout",
                     "--outcome", "converted")
    assert code == 2 and "'group'" in err and "--treatment" in err and "columns are:" in err


def test_single_arm_is_a_clear_error(tmp_path, capsys):
    frame = campaign(n=200).assign(arm="holdout")
    code, err = _run(tmp_path, capsys, frame, "--treatment", "arm", "--control", "holdout", "--outcome", "converted")
    assert code == 2 and "single arm" in err


def test_non_binary_outcome_is_a_clear_error(tmp_path, capsys):
    code, err = _run(tmp_path, capsys, campaign(n=200), "--treatment", "arm", "--control", "holdout",
                     "--outcome", "order_value")
    assert code == 2 and "must be binary" in err and "'order_value'" in err


def test_unknown_control_value_is_a_clear_error():
    with pytest.raises(UpliftInputError, match="does not occur"):
        run_uplift_backtest(campaign(n=200), "arm", "control", "converted")


def test_tied_predictions_rank_no_better_than_random_whatever_the_row_order():
    """A model that cannot tell customers apart (every prediction equal) targets at random: Qini 0 and
    AUUC ATE / 2, even when the file happens to be sorted with the treated converters first."""
    from dagster_project.models.uplift_metrics import auuc, ate, ranking_report

    treated = np.r_[np.ones(500, bool), np.zeros(500, bool)]
    y = np.r_[np.ones(250), np.zeros(250), np.ones(100), np.zeros(400)]
    same = np.zeros(len(y))
    assert qini_coefficient(same, treated, y) == pytest.approx(0.0, abs=1e-12)
    assert auuc(same, treated, y) == pytest.approx(ate(treated, y)["ate"] / 2)
    # Two tied groups: only their order is a ranking, not the order of the rows inside each.
    two = np.r_[np.ones(250), np.zeros(250), np.ones(250), np.zeros(250)]
    shuffled = np.random.default_rng(0).permutation(len(y))
    assert qini_coefficient(two, treated, y) == pytest.approx(
        qini_coefficient(two[shuffled], treated[shuffled], y[shuffled]))
    assert ranking_report(same, treated, y)["qini"] == pytest.approx(0.0, abs=1e-12)


def test_a_top_slice_with_one_row_of_an_arm_has_no_ci_rather_than_nan():
    """The report is printed as JSON: a CI that cannot be computed is null, never NaN (not JSON)."""
    from dagster_project.models.uplift_metrics import ate, uplift_at_top

    uplift = np.arange(20, 0, -1, dtype=float)
    treated = np.r_[True, np.zeros(5, bool), np.ones(14, bool)]  # the top 30% (6 rows) hold 1 treated row
    y = np.r_[1.0, 0, 1, 0, 0, 1, np.zeros(14)]
    top = uplift_at_top(uplift, treated, y, 0.3)
    assert top["uplift"] is not None and top["ci_low"] is None and top["ci_high"] is None
    single = ate(np.array([True, False, False]), np.array([1.0, 0.0, 1.0]))
    json.dumps(single, allow_nan=False)
    assert single["ci_low"] is None and single["se"] is None


def test_the_report_of_an_arm_with_few_rows_is_strict_json():
    frame = campaign(n=600)
    frame.loc[:9, "arm"] = "sms"  # 10 rows: enough for 5 folds, too few for every top slice to hold both arms
    report = run_uplift_backtest(frame, "arm", "holdout", "converted", folds=5).report
    json.dumps(report, allow_nan=False, default=float)


@pytest.mark.parametrize("column", ["tenure_months", "order_value"])
def test_an_infinite_number_is_a_clear_error_naming_its_column(column):
    frame = campaign(n=300)
    frame.loc[3, column] = np.inf
    with pytest.raises(UpliftInputError, match=f"'{column}'.*lines 5"):
        run_uplift_backtest(frame, "arm", "holdout", "converted", value="order_value", folds=3)

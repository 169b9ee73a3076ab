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

"""Score distribution shift: each propensity's scores against its model version's first scores, by PSI."""

from __future__ import annotations

from datetime import date, datetime

import dagster as dg
import duckdb
import numpy as np
import pytest

from dagster_project.models.propensity_assets import SCORES_DDL
from dagster_project.quality.anomalies import score_shift
from dagster_project.quality.checks import build_score_shift_check
from dagster_project.quality.suites import load_anomaly_config
from dagster_project.resources import build_warehouse

CONFIG = load_anomaly_config()["score_shift"]
DAY = date(2026, 3, 9)


def _plant_scores(con, p_churn: np.ndarray, version: str = "churn-v1") -> None:
    """Replace nextbest.customer_scores with one row per churn score (other scores null)."""
    con.execute("create schema if not exists nextbest")
    con.execute(SCORES_DDL)
    con.execute("delete from nextbest.customer_scores")
    for i, p in enumerate(p_churn):
        con.execute("insert into nextbest.customer_scores (customer_id, as_of_date, p_churn, churn_model_version, "
                    "scored_at) values (?, ?, ?, ?, ?)", [f"C{i}", DAY, float(p), version, datetime(2026, 3, 9, 5)])


@pytest.fixture
def con(tmp_path):
    con = duckdb.connect(str(tmp_path / "scores.duckdb"))
    yield con
    con.close()


def _churn(outcomes):
    return {o.name: o for o in outcomes}["score_distribution_shift:p_churn"]


def test_first_scores_become_the_reference_then_shifted_scores_warn(con):
    baseline = np.random.default_rng(0).beta(2, 8, 400)
    _plant_scores(con, baseline)
    first = _churn(score_shift(con, CONFIG, record=True))
    assert first.status == "skipped" and "first scores of churn-v1 (400 customers" in first.message
    assert "recorded now as its reference" in first.message

    assert _churn(score_shift(con, CONFIG)).status == "passed"  # the same scores the next day

    _plant_scores(con, np.clip(baseline + 0.3, 0, 1))  # everyone looks far likelier to churn
    shifted = _churn(score_shift(con, CONFIG))
    assert shifted.failed and not shifted.blocking and shifted.severity == "WARN"
    assert shifted.message.startswith("p_churn PSI ")
    assert f"vs the reference of churn-v1 (its first scores, as of {DAY}; threshold 0.25)" in shifted.message
    assert float(shifted.message.split()[2]) > 0.25
    assert "propensity_retrain" in shifted.fix

    others = {o.name: o for o in score_shift(con, CONFIG)}
    assert others["score_distribution_shift:p_skip"].status == "skipped"  # no skip model yet


def test_doctor_only_compares_and_a_new_version_gets_its_own_reference(con):
    _plant_scores(con, np.random.default_rng(1).beta(2, 8, 200))
    unrecorded = _churn(score_shift(con, CONFIG))  # read-only use, as `nextbest doctor`
    assert unrecorded.status == "skipped" and "no reference recorded yet" in unrecorded.message
    score_shift(con, CONFIG, record=True)
    _plant_scores(con, np.random.default_rng(2).beta(5, 5, 200), version="churn-v2")
    assert "first scores of churn-v2" in _churn(score_shift(con, CONFIG, record=True)).message


def test_too_few_scores_are_not_judged(con):
    _plant_scores(con, np.linspace(0.1, 0.2, 10))
    assert "too few to judge" in _churn(score_shift(con, CONFIG, record=True)).message


def test_dagster_check_records_the_reference_and_warns_on_shift(duckdb_file):
    con = duckdb.connect(str(duckdb_file))
    baseline = np.random.default_rng(3).beta(2, 8, 300)
    _plant_scores(con, baseline)
    con.close()

    @dg.asset(name="customer_scores")
    def planted_scores():
        """Stands in for the propensity asset: the scores are already in the warehouse."""

    def run():
        result = dg.materialize([planted_scores, build_score_shift_check()], resources={"warehouse": build_warehouse()},
                                instance=dg.DagsterInstance.ephemeral())
        [evaluation] = result.get_asset_check_evaluations()
        return evaluation

    assert run().passed  # first run: references recorded, nothing failed
    con = duckdb.connect(str(duckdb_file))
    _plant_scores(con, np.clip(baseline * 3, 0, 1))
    con.close()
    evaluation = run()
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert "p_churn PSI" in evaluation.description and "threshold 0.25" in evaluation.description

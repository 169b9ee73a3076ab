"""Decision quality on the simulator: how much true incremental value does routing capture?

    python benchmarks/decision_quality.py                       # train on seed 42, judge on seed 7
    python benchmarks/decision_quality.py --train-seed 1 --test-seed 2 --customers 8000
    python benchmarks/decision_quality.py --train-customers 250000   # a bigger store to learn from

1. Simulates a training store (`nextbest simulate` + `nextbest demo`), trains and
   registers the uplift models on its past campaigns (`uplift_models` code path).
2. Simulates a fresh store with another seed (customers the models never saw),
   and routes it with the trained models (`routing_decisions` code path) with
   exploration and the global holdout off, so the policy itself is judged. The
   demo already routed that store on the same day; its assignments would cap
   everyone, so routing runs on a scratch copy without them.
3. Scores four policies on the same eligible customers (audience, suppression
   and frequency caps applied) with the simulator's truth (`sim_truth.uplift`,
   read here only): the oracle (best true value per customer, or nothing),
   routing (a playbook's randomized holdout counts as sent: the policy chose it),
   rule-based routing (the playbook of the customer's segment,
   `messaging.assets.SEGMENT_PLAYBOOKS`, first segment in that order, sent
   whatever it is worth, as the segment fallback does) and random (a random
   eligible playbook). A fifth line, `ceiling_true_effects_same_features`, routes on
   a model fitted to the TRUE effects of every training customer from the same
   features: the most any learner could get from these features (the rest of the
   oracle's value hangs on traits the data does not show).

Figures: incremental goal conversions (sum of true uplift over sends) and
incremental value (true uplift x goal value - cost of the send and its offer),
per policy and as a share of the oracle. Goals and costs are valued as routing
values them (`routing.goal_values` and `RoutingPolicy.cost`, in margin; a
retention goal at the customer's predicted 12-month CLV x the margin rate),
the same for every policy.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dagster_project.decisioning.assets import decide  # noqa: E402
from dagster_project.decisioning.routing import RoutingPolicy, goal_values  # noqa: E402
from dagster_project.messaging.assets import SEGMENT_PLAYBOOKS  # noqa: E402
from dagster_project.models.uplift_assets import newest_passing, train_and_register  # noqa: E402
from dagster_project.models.uplift_data import GOALS, feature_columns, point_in_time_features  # noqa: E402
from dagster_project.resources.warehouse import DuckDBWarehouse, connect_duckdb  # noqa: E402


def build_store(path: Path, customers: int, months: int, seed: int, end_date: str) -> None:
    env = {**os.environ, "NEXTBEST_DUCKDB_PATH": str(path), "NEXTBEST_AS_OF": end_date}
    subprocess.run([sys.executable, "-m", "dagster_project.cli", "simulate", "--customers", str(customers),
                    "--months", str(months), "--seed", str(seed), "--end-date", end_date, "--db", str(path)],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run([sys.executable, "-m", "dagster_project.cli", "demo", "--db", str(path)],
                   check=True, env=env, stdout=subprocess.DEVNULL)


def score(choice: pd.Series, truth: pd.DataFrame, values: pd.DataFrame, policy: RoutingPolicy) -> dict:
    """Sum of true uplift and true net value over the customers a policy sends to."""
    sent = choice.dropna()
    u = np.array([truth.at[c, p] for c, p in sent.items()]) if len(sent) else np.zeros(0)
    value = np.array([values.at[c, p] for c, p in sent.items()]) if len(sent) else np.zeros(0)
    cost = np.array([policy.cost(p) for p in sent.values])
    return {"sends": int(len(sent)), "incremental_conversions": float(u.sum()),
            "incremental_value": float((u * value - cost).sum()),
            "sends_per_playbook": {k: int(v) for k, v in sent.value_counts().sort_index().items()}}


def features_now(con, customers, as_of) -> pd.DataFrame:
    """Routing's features for `customers` at the start of `as_of` (the latest customer_features row)."""
    at = datetime.combine(as_of, datetime.min.time())
    frame = point_in_time_features(con, pd.DataFrame({"customer_id": list(customers), "anchor_at": at}))
    return frame.set_index("customer_id").reindex(list(customers))


def ceiling_uplift(train_db: Path, test_features: pd.DataFrame, as_of, playbooks) -> pd.DataFrame:
    """Uplift a model would predict had it learned the TRUE effects (sim_truth) from the same features.

    One boosted regressor per playbook on every training-store customer. What routing on these
    predictions captures is the most any learner could get from these features: the rest of the
    oracle's value hangs on traits the data does not show.
    """
    con = connect_duckdb(train_db, read_only=True)
    try:
        ids = [r[0] for r in con.execute("select customer_id from raw.customers").fetchall()]
        train = features_now(con, ids, as_of)
        truth = con.execute("select customer_id, playbook_id, true_uplift from sim_truth.uplift").df() \
            .pivot(index="customer_id", columns="playbook_id", values="true_uplift").reindex(train.index)
    finally:
        con.close()
    columns = [c for c in feature_columns(train) if train[c].nunique(dropna=True) > 1]
    predicted = {}
    for playbook in playbooks:
        model = HistGradientBoostingRegressor(max_iter=200, random_state=0)
        model.fit(train[columns].astype(float), truth[playbook])
        predicted[playbook] = model.predict(test_features.reindex(columns=columns).astype(float))
    return pd.DataFrame(predicted, index=test_features.index)


def judge_copy(test_db: Path, work: Path, as_of) -> Path:
    """A scratch copy of the judged store without the demo's own routing of `as_of` (it would cap everyone)."""
    scratch = work / f"{test_db.stem}_judged.duckdb"
    shutil.copyfile(test_db, scratch)
    con = connect_duckdb(scratch)
    try:
        tables = {r[0] for r in con.execute(
            "select table_name from information_schema.tables where table_schema = 'nextbest'").fetchall()}
        if "assignments" in tables:
            con.execute("delete from nextbest.assignments where assigned_at >= ?", [as_of])
        if "routing_decisions" in tables:
            con.execute("delete from nextbest.routing_decisions where run_date >= ?", [as_of])
    finally:
        con.close()
    return scratch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=8000, help="customers of each store")
    parser.add_argument("--train-customers", type=int, default=None,
                        help="customers of the training store (default: --customers); the judged store keeps --customers")
    parser.add_argument("--months", type=int, default=18)
    parser.add_argument("--train-seed", type=int, default=42)
    parser.add_argument("--test-seed", type=int, default=7)
    parser.add_argument("--end-date", default=datetime.now(timezone.utc).date().isoformat())
    parser.add_argument("--workdir", default=None, help="keep the two warehouses here (default: a temp folder)")
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="nextbest-decision-quality-"))
    work.mkdir(parents=True, exist_ok=True)
    as_of = datetime.fromisoformat(args.end_date).date()
    started = time.perf_counter()
    train_customers = args.train_customers or args.customers
    # Named by seed and size: a workdir reused with other sizes builds new stores, not judges old ones.
    train_db = work / f"train_{args.train_seed}_{train_customers}.duckdb"
    test_db = work / f"test_{args.test_seed}_{args.customers}.duckdb"
    for path, seed, customers in ((train_db, args.train_seed, train_customers), (test_db, args.test_seed, args.customers)):
        if not path.exists():
            print(f"simulating + building seed {seed} ({customers:,} customers) into {path}", file=sys.stderr)
            build_store(path, customers, args.months, seed, args.end_date)

    # Trained on a copy without the uplift models the demo registered: the models judged are this code's.
    trained_copy = work / f"{train_db.stem}_training.duckdb"
    shutil.copyfile(train_db, trained_copy)
    con = connect_duckdb(trained_copy)
    try:
        con.execute("delete from nextbest.model_registry where model_name like 'uplift_%'")
        trained = train_and_register(con, as_of)
        models = {p: (found[0].version, found[1]) for p in GOALS if (found := newest_passing(con, p))}
    finally:
        con.close()

    policy = RoutingPolicy(global_holdout_share=0.0, exploration_share=0.0)
    scratch = judge_copy(test_db, work, as_of)
    decisions = decide(DuckDBWarehouse(path=str(scratch)), as_of, policy, models=models)
    con = connect_duckdb(scratch, read_only=True)
    try:
        truth = con.execute("select customer_id, playbook_id, true_uplift from sim_truth.uplift").df() \
            .pivot(index="customer_id", columns="playbook_id", values="true_uplift")
        segments = con.execute("select customer_id, segment from analytics.customer_segments").df()
        clv = con.execute("select customer_id, predicted_clv_12m from nextbest.customer_predictions "
                          "where predicted_clv_12m is not null").df().drop_duplicates("customer_id", keep="last") \
            .set_index("customer_id")["predicted_clv_12m"]
        eligible_ids = decisions.loc[decisions["decision"].isin(["send", "holdout", "none"]), "customer_id"]
        test_features = features_now(con, eligible_ids, as_of)
    finally:
        con.close()
    scratch.unlink(missing_ok=True)

    eligible = decisions[decisions["decision"].isin(["send", "holdout", "none"])].set_index("customer_id")
    allowed = {c: [p for p, v in json.loads(a).items() if not isinstance(v, str) or v == "no uplift model yet"]
               for c, a in eligible["alternatives"].items()}
    routed = eligible["playbook_id"].where(eligible["decision"].isin(["send", "holdout"]))
    values = goal_values(eligible.index, {p: GOALS[p][0] for p in truth.columns if p in GOALS}, policy, clv)

    def oracle_pick(c):
        net = {p: truth.at[c, p] * values.at[c, p] - policy.cost(p) for p in allowed[c]}
        best = max(net, key=net.get)
        return best if net[best] > 0 else None

    oracle = pd.Series({c: oracle_pick(c) for c in eligible.index}, dtype=object)
    ceiling = ceiling_uplift(trained_copy, test_features, as_of, list(truth.columns))

    def ceiling_pick(c):
        net = {p: ceiling.at[c, p] * values.at[c, p] - policy.cost(p) for p in allowed[c]}
        best = max(net, key=net.get)
        return best if net[best] > 0 else None

    by_customer = segments.groupby("customer_id")["segment"].apply(set)
    rules = pd.Series({c: next((p for s, p in SEGMENT_PLAYBOOKS.items()
                                if s in by_customer.get(c, set()) and p in allowed[c]), None)
                       for c in eligible.index}, dtype=object)
    rng = np.random.default_rng(0)
    random_pick = pd.Series({c: allowed[c][rng.integers(len(allowed[c]))] for c in eligible.index}, dtype=object)

    results = {name: score(choice, truth, values, policy) for name, choice in
               (("oracle", oracle), ("routing", routed), ("rules", rules), ("random", random_pick),
                ("ceiling_true_effects_same_features", pd.Series({c: ceiling_pick(c) for c in eligible.index},
                                                                  dtype=object)))}
    base = results["oracle"]
    for name, r in results.items():
        r["share_of_oracle_conversions"] = r["incremental_conversions"] / base["incremental_conversions"]
        r["share_of_oracle_value"] = r["incremental_value"] / base["incremental_value"]
    report = {
        "train_seed": args.train_seed, "test_seed": args.test_seed, "customers": args.customers,
        "train_customers": train_customers,
        "as_of": as_of.isoformat(), "eligible_customers": int(len(eligible)),
        "models": {p: {k: v for k, v in s.items() if k != "version"} for p, s in trained.items()},
        "policies": results,
        "routing_vs_rules": {
            "conversions": results["routing"]["incremental_conversions"] / results["rules"]["incremental_conversions"] - 1,
            "value": results["routing"]["incremental_value"] / results["rules"]["incremental_value"] - 1},
        "routing_vs_random": {
            "value": results["routing"]["incremental_value"] / results["random"]["incremental_value"] - 1},
        "targets": {"routing >= 80% of oracle value": results["routing"]["share_of_oracle_value"] >= 0.8,
                    "routing >= 20% over rules (value)":
                        results["routing"]["incremental_value"] >= 1.2 * results["rules"]["incremental_value"]},
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(report, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Routing: planted effects route where they work (also when every customer is in several audiences),
nothing is sent where no playbook pays for its send, holdouts are never sent, caps hold, the global holdout
is stable, and a save is worth the margin on the customer's predicted CLV."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dagster_project.decisioning.routing import (NO_MODEL_REASON, RETENTION_GOALS, RoutingPolicy, expected_values,
                                                 frequency_capped, goal_values, in_global_holdout, route, stable_unit)
from dagster_project.decisioning.timing import best_send_hours, next_time_at
from dagster_project.models.uplift_training import train_playbook_model

GOAL_OF = {"cadence_mismatch": "cadence_changed_30d", "at_risk_save": "retained_60d"}


def past_campaign(playbook: str, n: int, seed: int, effect) -> pd.DataFrame:
    """Randomized past sends: 80% treated, goal drawn with p0 + effect(features) when treated."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"customer_id": [f"{playbook}-{i}" for i in range(n)],
                          "skip_share_last4": rng.choice([0.0, 0.25, 0.5, 0.75, 1.0], n, p=[.4, .2, .1, .15, .15]),
                          "opens_30d": rng.poisson(1.0, n).astype(float), "tenure_days": rng.integers(30, 900, n)})
    treated = rng.random(n) < 0.8
    p = 0.1 + treated * effect(frame)
    frame["treated"], frame["outcome"] = treated.astype(int), (rng.random(n) < p).astype(int)
    frame["goal"], frame["playbook_id"] = GOAL_OF[playbook], playbook
    return frame


@pytest.fixture(scope="module")
def models():
    # Cadence mismatch works strongly on customers who skip half their deliveries or more; not elsewhere.
    cadence = past_campaign("cadence_mismatch", 2500, 1,
                            lambda f: np.where(f["skip_share_last4"] >= 0.5, 0.5, 0.0))
    at_risk = past_campaign("at_risk_save", 2500, 2, lambda f: np.full(len(f), 0.05))
    return {"cadence_mismatch": train_playbook_model(cadence, "cadence_mismatch"),
            "at_risk_save": train_playbook_model(at_risk, "at_risk_save")}


def fresh_customers(n: int = 600, seed: int = 9) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"skip_share_last4": rng.choice([0.0, 0.25, 0.5, 0.75, 1.0], n),
                         "opens_30d": rng.poisson(1.0, n).astype(float), "tenure_days": rng.integers(30, 900, n)},
                        index=pd.Index([f"C{i:04d}" for i in range(n)], name="customer_id"))


def run(models, customers, holdout=0.0,
        policy=RoutingPolicy(global_holdout_share=0.0, exploration_share=0.0, offer_costs={}),
        capped=None, suppressed=None):
    uplift = pd.DataFrame({p: m.predict(customers) for p, m in models.items()}, index=customers.index)
    audience = pd.DataFrame(True, index=customers.index, columns=list(models))
    capped = capped if capped is not None else pd.DataFrame(False, index=customers.index, columns=list(models))
    suppressed = suppressed if suppressed is not None else pd.Series(None, index=customers.index, dtype=object)
    ev = expected_values(uplift, GOAL_OF, policy)
    return route(audience, capped, ev, suppressed, {p: holdout for p in models}, policy, "2026-11-25") \
        .set_index("customer_id")


def test_planted_effect_routes_that_playbook_to_its_sub_population(models):
    assert models["cadence_mismatch"].passed
    customers = fresh_customers()
    decisions = run(models, customers)
    skippers = customers["skip_share_last4"] >= 0.5
    routed = decisions["playbook_id"]
    assert (routed[skippers] == "cadence_mismatch").mean() > 0.9
    assert (routed[~skippers] == "cadence_mismatch").mean() < 0.1
    # Every decision explains itself: alternatives' values and the features behind the choice.
    sample = decisions[routed == "cadence_mismatch"].iloc[0]
    assert set(json.loads(sample["alternatives"])) == {"cadence_mismatch", "at_risk_save"}
    reasons = models["cadence_mismatch"].reasons(customers[skippers].head(5))
    assert all(any("share of the last 4 deliveries skipped" in r for r in rs) for rs in reasons)


def test_holdouts_and_suppressed_are_never_sent(models):
    customers = fresh_customers(2000)
    suppressed = pd.Series(np.where(np.arange(2000) % 10 == 0, "unsubscribed", None), index=customers.index)
    decisions = run(models, customers, holdout=0.2, suppressed=suppressed,
                    policy=RoutingPolicy(global_holdout_share=0.05, exploration_share=0.1))
    sends = decisions["decision"] == "send"
    assert (decisions.loc[sends, "arm"] == "treatment").all()
    assert (decisions.loc[~sends, "arm"] != "treatment").all()
    assert not sends[suppressed.notna()].any()
    global_holdout = in_global_holdout(customers.index, 0.05)
    assert (decisions.loc[global_holdout, "decision"] == "global_holdout").all()
    routed = decisions["decision"].isin(["send", "holdout"])
    held_share = (decisions.loc[routed, "decision"] == "holdout").mean()
    assert 0.15 < held_share < 0.25
    assert decisions["exploration"].mean() > 0.05


def test_frequency_caps_hold(models):
    customers = fresh_customers(4)
    ids = list(customers.index)
    history = pd.DataFrame({"customer_id": [ids[0], ids[1], ids[2], ids[2]],
                            "playbook_id": ["cadence_mismatch", "cadence_mismatch", "at_risk_save", "at_risk_save"],
                            "assigned_at": pd.to_datetime(["2026-11-10", "2026-09-01", "2026-11-01", "2026-11-20"])})
    caps = {"cadence_mismatch": (1, 30), "at_risk_save": (2, 21)}
    capped = frequency_capped(history, customers.index, caps, "2026-11-25")
    assert capped.loc[ids[0], "cadence_mismatch"]          # sent 15 days ago, cap 1 per 30 days
    assert not capped.loc[ids[1], "cadence_mismatch"]      # 85 days ago: allowed again
    assert not capped.loc[ids[2], "at_risk_save"]          # only one of the two within 21 days
    capped.loc[:, :] = True
    decisions = run(models, customers, capped=capped)
    assert (decisions["decision"] == "capped").all() and decisions["playbook_id"].isna().all()


def test_a_contact_cap_holds_every_playbook_after_any_assignment():
    ids = ["A", "B", "C", "D", "E"]
    history = pd.DataFrame({"customer_id": ["A", "B", "C", "D", "E"],
                            "playbook_id": ["expansion"] * 5,
                            "assigned_at": pd.to_datetime(["2026-11-24", "2026-11-18", "2026-11-19", "2026-11-26",
                                                           "2026-11-25"])})
    caps = {"cadence_mismatch": (1, 30), "at_risk_save": (2, 21)}  # neither is the playbook they were sent
    capped = frequency_capped(history, ids, caps, "2026-11-25", contact_days=7)
    assert capped.loc["A"].all()                 # any playbook yesterday: capped for all of them
    assert not capped.loc["B"].any()             # exactly 7 days ago: free again
    assert capped.loc["C"].all()                 # 6 days ago
    assert not capped.loc["D"].any()             # an assignment after the run date does not count
    assert not capped.loc["E"].any()             # nor the run date's own (deciding it again)
    assert not frequency_capped(history, ids, caps, "2026-11-25").to_numpy().any()  # contact_days=0: off


def test_an_assignment_earlier_on_the_run_date_caps_like_one_the_day_before():
    # A save offer at 02:00 on the run date (the agent's, assigned when the cancel attempt came in),
    # one at 23:00 the evening before, the run's own row at 00:00, and one the next day.
    history = pd.DataFrame({"customer_id": ["A", "B", "C", "D"],
                            "playbook_id": ["save_offer", "save_offer", "at_risk_save", "save_offer"],
                            "assigned_at": pd.to_datetime(["2026-11-25 02:00", "2026-11-24 23:00", "2026-11-25 00:00",
                                                           "2026-11-26 02:00"]),
                            "arm": "treatment"})
    caps = {"at_risk_save": (1, 21), "expansion": (1, 30)}
    capped = frequency_capped(history, ["A", "B", "C", "D"], caps, "2026-11-25", contact_days=7)
    assert capped.loc["A"].all() and capped.loc["B"].all()
    # The run's own assignment caps neither its playbook nor the contact: the same date decides the same again.
    assert not capped.loc["C"].any()
    assert not capped.loc["D"].any()


def test_a_holdout_is_not_assigned_its_playbook_again_inside_the_goal_window():
    # Held out of at_risk_save (cap 1 per 21 days, goal retention over 60 days) 30 and 65 days ago;
    # treated with it 30 days ago; held out of expansion (no goal window given) 30 days ago.
    history = pd.DataFrame({"customer_id": ["A", "B", "C", "D"],
                            "playbook_id": ["at_risk_save", "at_risk_save", "at_risk_save", "expansion"],
                            "assigned_at": pd.to_datetime(["2026-10-26", "2026-09-21", "2026-10-26", "2026-10-26"]),
                            "arm": ["holdout", "holdout", "treatment", "holdout"]})
    caps = {"at_risk_save": (1, 21), "expansion": (1, 21)}
    capped = frequency_capped(history, ["A", "B", "C", "D"], caps, "2026-11-25", holdout_days={"at_risk_save": 60})
    assert capped.loc["A", "at_risk_save"] and not capped.loc["A", "expansion"]  # only its own playbook
    assert not capped.loc["B"].any()      # its goal window has passed
    assert not capped.loc["C"].any()      # treated: its brief's 21-day cap alone
    assert not capped.loc["D"].any()      # no goal window given for expansion: its cap alone
    assert not frequency_capped(history, ["A"], caps, "2026-11-25").loc["A"].any()  # without holdout_days


def test_global_holdout_is_stable_and_about_five_percent():
    ids = [f"C{i:08d}" for i in range(20000)]
    first = in_global_holdout(ids)
    again = in_global_holdout(list(reversed(ids)))[::-1]
    assert (first == again).all()
    assert 0.045 < first.mean() < 0.055
    # Growing the holdout only adds customers; nobody leaves it.
    assert (in_global_holdout(ids, 0.10)[first]).all()


def test_send_hour_follows_history_with_a_prior():
    events = pd.DataFrame({"customer_id": ["A"] * 12 + ["B"] * 40,
                           "occurred_at": pd.to_datetime(["2026-11-03 19:10"] * 12 + ["2026-11-05 08:30"] * 40)})
    hours = best_send_hours(events, ["A", "B", "NEW"]).set_index("customer_id")
    assert hours.at["A", "send_hour_of_week"] == 1 * 24 + 19      # Tuesday 19:00
    assert hours.at["NEW", "send_hour_of_week"] == 3 * 24 + 8     # no history: the store's best hour
    send_at = next_time_at(int(hours.at["A", "send_hour_of_week"]), pd.Timestamp("2026-11-25").to_pydatetime())
    assert (send_at.weekday(), send_at.hour) == (1, 19) and send_at >= pd.Timestamp("2026-11-25")


def test_global_holdout_records_the_playbook_it_would_have_received(models):
    customers = fresh_customers(2000)
    suppressed = pd.Series(np.where(np.arange(2000) % 10 == 0, "unsubscribed", None), index=customers.index)
    policy = RoutingPolicy(global_holdout_share=0.05, exploration_share=0.1)
    decisions = run(models, customers, holdout=0.2, suppressed=suppressed, policy=policy)
    without = run(models, customers, holdout=0.2, suppressed=suppressed,
                  policy=RoutingPolicy(global_holdout_share=0.0, exploration_share=0.1))
    held = in_global_holdout(customers.index, 0.05)
    global_rows = decisions[held]
    assert (global_rows["decision"] == "global_holdout").all()
    # Their campaign is the playbook routing would have chosen; suppressed ones would have had none.
    would_have = without.loc[held, "playbook_id"]
    assert global_rows["playbook_id"].fillna("-").equals(would_have.fillna("-"))
    assigned = global_rows["playbook_id"].notna()
    assert assigned.sum() > 50 and (global_rows.loc[assigned, "arm"] == "global_holdout").all()
    assert global_rows.loc[~assigned, "arm"].isna().all()
    assert not assigned[suppressed[held].notna()].any()
    assert global_rows.loc[assigned, "reason"].str.contains("would have received").all()
    # Nobody else is affected by the global holdout.
    pd.testing.assert_frame_equal(decisions[~held], without[~held])


def test_a_save_is_worth_the_margin_on_the_customers_predicted_clv():
    # Equal uplift; at 0.05 uplift a send costing 2 pays off only for a goal worth more than 40 (margin),
    # i.e. a predicted 12-month CLV (revenue) above 40 / margin rate.
    customers = pd.Index(["BIG", "SMALL", "UNSCORED"], name="customer_id")
    uplift = pd.DataFrame({"at_risk_save": 0.05, "cadence_mismatch": 0.0}, index=customers)
    policy = RoutingPolicy(global_holdout_share=0.0, exploration_share=0.0, send_cost=2.0, offer_costs={})
    assert 0 < policy.clv_margin_rate < 1
    clv = pd.Series({"BIG": 400.0, "SMALL": 100.0})  # margin 140 and 35
    ev = expected_values(uplift, GOAL_OF, policy, clv)
    audience = pd.DataFrame(True, index=customers, columns=list(GOAL_OF))
    decisions = route(audience, pd.DataFrame(False, index=customers, columns=list(GOAL_OF)), ev,
                      pd.Series(None, index=customers, dtype=object), {}, policy, "2026-11-25").set_index("customer_id")
    assert decisions.at["BIG", "decision"] == "send" and decisions.at["BIG", "playbook_id"] == "at_risk_save"
    assert decisions.at["BIG", "expected_value"] == pytest.approx(0.05 * 400 * policy.clv_margin_rate - 2)
    assert decisions.at["SMALL", "decision"] == "none"
    values = goal_values(customers, GOAL_OF, policy, clv)
    # No prediction: the fixed constant; goals other than retention never use the CLV.
    assert values.at["UNSCORED", "at_risk_save"] == policy.goal_values["retained_60d"]
    assert (values["cadence_mismatch"] == policy.goal_values["cadence_changed_30d"]).all()
    assert expected_values(uplift, GOAL_OF, policy).at["BIG", "at_risk_save"] == pytest.approx(0.05 * 30 - 2)


def test_a_discount_is_sent_only_where_it_moves_enough_customers_to_pay_for_itself():
    # The save offer's 15% is paid by everyone who takes it, moved or not.
    customers = pd.Index(["PERSUADABLE", "LUKEWARM"], name="customer_id")
    uplift = pd.DataFrame({"at_risk_save": [0.10, 0.03], "cadence_mismatch": [0.0, 0.03]}, index=customers)
    policy = RoutingPolicy(global_holdout_share=0.0, exploration_share=0.0)
    assert policy.cost("at_risk_save") == pytest.approx(policy.send_cost + policy.offer_costs["at_risk_save"])
    assert policy.cost("cadence_mismatch") == policy.send_cost
    clv = pd.Series({"PERSUADABLE": 200.0, "LUKEWARM": 200.0})  # a save is worth 70 of margin
    ev = expected_values(uplift, GOAL_OF, policy, clv)
    assert ev.at["PERSUADABLE", "at_risk_save"] == pytest.approx(0.10 * 70 - policy.cost("at_risk_save"))
    audience = pd.DataFrame(True, index=customers, columns=list(GOAL_OF))
    decisions = route(audience, pd.DataFrame(False, index=customers, columns=list(GOAL_OF)), ev,
                      pd.Series(None, index=customers, dtype=object), {}, policy, "2026-11-25").set_index("customer_id")
    assert decisions.at["PERSUADABLE", "playbook_id"] == "at_risk_save"
    # 0.03 x 70 = 2.1 does not cover the offer; a longer cycle (0.03 x 15 = 0.45) covers its send.
    assert decisions.at["LUKEWARM", "playbook_id"] == "cadence_mismatch"


def test_a_win_back_is_not_valued_at_a_lapsed_customers_predicted_spend():
    # A cancelled customer's predicted spend is what they are worth if nobody wins them back.
    assert RETENTION_GOALS == {"retained_60d"}
    policy = RoutingPolicy()
    values = goal_values(pd.Index(["GONE"]), {"win_back": "reactivated_60d"}, policy, pd.Series({"GONE": 3.0}))
    assert values.at["GONE", "win_back"] == policy.goal_values["reactivated_60d"]


OVERLAP_GOALS = {"cadence_mismatch": "cadence_changed_30d", "expansion": "addon_30d", "at_risk_save": "retained_60d"}


def overlapping_campaign(playbook: str, n: int, seed: int, effect) -> pd.DataFrame:
    """A randomized past campaign sent to every live subscriber (broad audience), 80% treated."""
    # Not `seed` itself: training holds out customers with default_rng(0), and the same stream would
    # hold out exactly the customers drawn with the smallest skip shares.
    rng = np.random.default_rng(1000 + seed)
    frame = pd.DataFrame({"customer_id": [f"{playbook}-{i}" for i in range(n)],
                          "skip_share_last4": rng.choice([0.0, 0.25, 0.5, 0.75], n, p=[.5, .2, .15, .15]),
                          "addons_90d": rng.choice([0.0, 1.0, 2.0, 3.0], n, p=[.6, .15, .15, .1]),
                          "opens_30d": rng.poisson(1.0, n).astype(float)})
    treated = rng.random(n) < 0.8
    frame["treated"] = treated.astype(int)
    frame["outcome"] = (rng.random(n) < 0.1 + treated * effect(frame)).astype(int)
    frame["goal"], frame["playbook_id"] = OVERLAP_GOALS[playbook], playbook
    return frame


@pytest.fixture(scope="module")
def overlap_models():
    # Every customer is in all three audiences. A longer cycle works on skippers only, a curated
    # add-on on customers who already add items only, and the save offer on nobody.
    effects = {"cadence_mismatch": lambda f: np.where(f["skip_share_last4"] >= 0.5, 0.4, 0.0),
               "expansion": lambda f: np.where(f["addons_90d"] >= 2, 0.35, 0.0),
               "at_risk_save": lambda f: np.zeros(len(f))}
    return {p: train_playbook_model(overlapping_campaign(p, 3000, k, effect), p)
            for k, (p, effect) in enumerate(effects.items())}


def test_effects_inside_overlapping_audiences_route_where_they_work_and_nothing_elsewhere(overlap_models):
    assert overlap_models["cadence_mismatch"].passed and overlap_models["expansion"].passed
    rng = np.random.default_rng(3)
    n = 900
    customers = pd.DataFrame({"skip_share_last4": rng.choice([0.0, 0.25, 0.5, 0.75], n),
                              "addons_90d": rng.choice([0.0, 1.0, 2.0, 3.0], n),
                              "opens_30d": rng.poisson(1.0, n).astype(float)},
                             index=pd.Index([f"L{i:04d}" for i in range(n)], name="customer_id"))
    # A send costs 1.0: at_risk_save's zero effect (worth 30 a save) never pays; the planted ones do.
    policy = RoutingPolicy(global_holdout_share=0.0, exploration_share=0.0, send_cost=1.0)
    uplift = pd.DataFrame({p: m.predict(customers) for p, m in overlap_models.items()}, index=customers.index)
    audience = pd.DataFrame(True, index=customers.index, columns=list(overlap_models))
    decisions = route(audience, pd.DataFrame(False, index=customers.index, columns=list(overlap_models)),
                      expected_values(uplift, OVERLAP_GOALS, policy),
                      pd.Series(None, index=customers.index, dtype=object), {}, policy, "2026-11-25") \
        .set_index("customer_id")
    skipper = customers["skip_share_last4"] >= 0.5
    adder = customers["addons_90d"] >= 2
    routed = decisions["playbook_id"]
    # Skippers get the longer cycle (worth 0.4 x 15, more than 0.35 x 12 for those who also add items) ...
    assert (routed[skipper] == "cadence_mismatch").mean() > 0.85
    # ... add-on buyers who do not skip get the bundle ...
    assert (routed[adder & ~skipper] == "expansion").mean() > 0.85
    # ... and the rest get nothing: no playbook is worth its send for them, the save offer least of all.
    rest = decisions[~skipper & ~adder]
    assert (rest["decision"] == "none").mean() > 0.85
    assert (decisions["playbook_id"] == "at_risk_save").mean() < 0.03
    assert rest.loc[rest["decision"] == "none", "reason"].str.contains("worth its send cost").all()


def route_one_by_one(audience: pd.DataFrame, capped: pd.DataFrame, ev: pd.DataFrame, suppressed: pd.Series,
          holdout_shares: dict[str, float], policy: RoutingPolicy, run_key: str) -> pd.DataFrame:
    """The rules of `routing.route`, as first written: one customer at a time, in order."""
    playbooks = list(audience.columns)
    audience = audience.reindex(columns=playbooks, fill_value=False)
    # Plain arrays, read by position: a pandas lookup per customer and playbook would cost more than the routing.
    members = audience.to_numpy(dtype=bool)
    caps = capped.reindex(index=audience.index, columns=playbooks, fill_value=False).to_numpy(dtype=bool)
    values = ev.reindex(index=audience.index, columns=playbooks).to_numpy(dtype=float)
    reasons = suppressed.reindex(audience.index).to_numpy(dtype=object)
    rows = []
    for i in np.flatnonzero(members.any(axis=1)):
        cid, value = audience.index[i], dict(zip(playbooks, values[i]))
        member = [p for p, m in zip(playbooks, members[i]) if m]
        allowed = [p for p, m, c in zip(playbooks, members[i], caps[i]) if m and not c]
        alternatives = {p: ("frequency cap" if p not in allowed else "no uplift model yet" if np.isnan(value[p])
                            else round(float(value[p]), 4)) for p in member}
        row = {"customer_id": cid, "decision": None, "playbook_id": None, "arm": None, "expected_value": None,
               "exploration": False, "alternatives": json.dumps(alternatives, sort_keys=True), "reason": ""}
        global_held = stable_unit("global-holdout", cid) < policy.global_holdout_share
        best, explore = None, False
        if isinstance(reasons[i], str) and reasons[i]:
            row.update(decision="suppressed", reason=reasons[i])
        elif not allowed:
            row.update(decision="capped", reason="frequency cap reached for every playbook they qualify for")
        else:
            best = max(allowed, key=lambda p: -np.inf if np.isnan(value[p]) else value[p])
            explore = stable_unit("explore", run_key, cid) < policy.exploration_share
            if explore:
                best = allowed[int(stable_unit("explore-pick", run_key, cid) * len(allowed))]
            if not explore and not value[best] > 0:
                unvalued = all(np.isnan(value[p]) for p in allowed)
                row.update(decision="none", reason=NO_MODEL_REASON if unvalued
                           else "no playbook is expected to be worth its send cost")
                best = None
        why = ("exploration: random eligible playbook" if explore else "highest expected value")
        if global_held:
            # The playbook they would have received (if any) is their campaign: treated vs global holdout.
            row.update(decision="global_holdout", reason="permanent global holdout (never messaged)"
                       + (f"; would have received {best} ({why})" if best else ""))
            if best:
                row.update(playbook_id=best, arm="global_holdout", expected_value=float(value[best]),
                           exploration=explore)
        elif best:
            held = stable_unit("holdout", run_key, best, cid) < holdout_shares.get(best, 0.0)
            row.update(decision="holdout" if held else "send", playbook_id=best,
                       arm="holdout" if held else "treatment", expected_value=float(value[best]),
                       exploration=explore,
                       reason=why + ("; in this playbook's randomized holdout (not sent)" if held else ""))
        rows.append(row)
    return pd.DataFrame(rows, columns=["customer_id", "decision", "playbook_id", "arm", "expected_value",
                                       "exploration", "alternatives", "reason"])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_routing_on_whole_arrays_decides_as_one_customer_at_a_time(seed):
    # Every branch at once: suppressed, capped, no model (NaN), ties, nothing worth it, exploration,
    # both holdouts, customers in no audience; shares large enough that each happens often.
    rng = np.random.default_rng(seed)
    n, playbooks = 3000, ["win_back", "at_risk_save", "cadence_mismatch", "onboarding"]
    customers = pd.Index([f"C{i:05d}" for i in range(n)], name="customer_id")
    audience = pd.DataFrame(rng.random((n, 4)) < 0.5, index=customers, columns=playbooks)
    capped = pd.DataFrame(rng.random((n, 4)) < 0.2, index=customers, columns=playbooks)
    ev = pd.DataFrame(rng.choice([-1.0, 0.0, 0.25, 0.5, 1.123456789], (n, 4)), index=customers, columns=playbooks)
    ev = ev.mask(rng.random((n, 4)) < 0.15)  # no model yet
    ev["onboarding"] = np.nan  # a playbook with no model at all
    suppressed = pd.Series(np.where(rng.random(n) < 0.1, "unsubscribed", None), index=customers, dtype=object)
    policy = RoutingPolicy(global_holdout_share=0.15, exploration_share=0.2)
    shares = {"win_back": 0.3, "at_risk_save": 0.1, "cadence_mismatch": 0.0}
    fast = route(audience, capped, ev, suppressed, shares, policy, "2026-11-25")
    slow = route_one_by_one(audience, capped, ev, suppressed, shares, policy, "2026-11-25")
    assert set(fast["decision"]) == {"send", "holdout", "global_holdout", "suppressed", "capped", "none"}
    assert fast["exploration"].any() and fast["alternatives"].str.contains("no uplift model yet").any()
    # Customers whose only options have no model are told so, not that nothing is worth its cost.
    assert (fast["reason"] == NO_MODEL_REASON).any() and (fast["reason"].str.contains("worth its send cost")).any()
    pd.testing.assert_frame_equal(fast, slow)

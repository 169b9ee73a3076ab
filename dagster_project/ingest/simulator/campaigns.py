"""Past playbook campaigns: observable audiences, randomized holdouts, enacted outcomes.

Every four weeks each playbook picks its audience with a rule a marketer could
write from the data so far (no latent traits); a customer matching several
rules gets the first in `PRIORITY`. On top of the rules, an exploration share
of the other reachable live subscribers gets a random playbook whose brief
audience is every live subscriber (`EXPLORED`), as NextBest's own exploration
would, so the uplift models learn on the whole audience routing later scores.
A random 20% of each audience, drawn independently of everything else, is
held out. For each assigned customer the goal outcome is drawn with
probability p0 (holdout) or p0 + true uplift (treatment), p0 being the
customer's current rate without a message (`baseline_rates`), and the
simulator then makes the raw data show it: a retained customer does not cancel
in the window, a lost one does; a cadence change, add-on order, login or
reactivation happens in the window or is held back. Comparing arms in the raw
data therefore recovers the uplift.
"""

from __future__ import annotations

import numpy as np

from dagster_project.ingest.contract import PLAYBOOKS

from . import catalog, engagement, orders, subscriptions
from .state import DAY, NEVER, State, pick
from .traits import GOALS, RETENTION_PLAYBOOKS, baseline_rate, goal_probabilities

EVERY_WEEKS = 4
FIRST_WEEK = 13  # leave ~90 days of history for the audience rules
HOLDOUT_SHARE = 0.2
COOLDOWN_DAYS = 60  # one playbook at a time per customer, so goal windows never overlap
HOUR = 3600
# Audience priority: a customer matching several rules gets the first.
PRIORITY = ("high_ltv_recovery", "at_risk_save", "cadence_mismatch", "onboarding", "expansion",
            "re_engagement", "win_back")
# Playbooks whose brief audience is every live subscriber, and the share of reachable live
# subscribers no rule picked that one of them goes to each round (at random).
EXPLORED = ("at_risk_save", "cadence_mismatch", "expansion", "re_engagement", "high_ltv_recovery")
EXPLORE_SHARE = 0.5


def audiences(st: State, week: int, day: int) -> dict[str, np.ndarray]:
    """Boolean audience masks per playbook, from observable history only."""
    recent = st.activity[:, week - 4:week].sum(axis=1, dtype=np.int32)
    prior = st.activity[:, week - 12:week - 4].sum(axis=1, dtype=np.int32) / 2.0
    no_opens = st.opens[:, week - 9:week].sum(axis=1, dtype=np.int32) == 0
    live = st.subscribed & ~st.gift & (st.paused_until < day)
    tenured = live & (st.sub_start <= day - 60) & (st.created_day <= day - 60)
    declining = (prior >= 2) & (recent <= 0.5 * prior)
    spend_cut = np.quantile(st.spend[live], 0.8) if live.any() else 0
    skips = np.unpackbits(st.skip_hist[:, None] & 0x0F, axis=1).sum(axis=1)
    return {
        "high_ltv_recovery": tenured & (st.spend >= max(spend_cut, 1)) & (recent < prior),
        "at_risk_save": tenured & declining,
        "cadence_mismatch": live & (st.cycles >= 4) & (skips >= 2),
        "onboarding": live & (st.created_day > day - 30) & (st.created_day <= day),
        "expansion": live & (st.last_addon_day >= day - 30),
        "re_engagement": tenured & no_opens,
        "win_back": ~st.subscribed & (st.last_cancel_day >= day - 180) & (st.last_cancel_day <= day - 30)
        & (st.last_cancel_reason != catalog.REASON["upgraded"]),
    }


def explore_audiences(st: State, day: int) -> dict[str, np.ndarray]:
    """Boolean masks per explored playbook: every live subscriber (not paused, not a gift that runs
    out on its own); high-LTV recovery only for the top fifth by spend, like its rule."""
    live = st.subscribed & ~st.gift & (st.paused_until < day)
    spend_cut = np.quantile(st.spend[live], 0.8) if live.any() else 0
    return {p: live & (st.spend >= max(spend_cut, 1)) if p == "high_ltv_recovery" else live for p in EXPLORED}


def run_round(st: State, week: int) -> None:
    """One campaign round: assign (rules, then exploration), send to treatment, enact every outcome."""
    if week < FIRST_WEEK or (week - FIRST_WEEK) % EVERY_WEEKS:
        return
    day = week * 7 + 2
    if day >= st.clock.days:
        return
    masks = audiences(st, week, day)
    free = engagement.reachable(st, day) & (st.last_assigned_day <= day - COOLDOWN_DAYS)
    chosen = np.full(st.n, -1)
    for playbook in PRIORITY:
        idx = np.flatnonzero(masks[playbook] & free)
        free[idx] = False
        chosen[idx] = PLAYBOOKS.index(playbook)
    # Exploration: a random share of the rest gets one of the playbooks whose audience they are in.
    broad = explore_audiences(st, day)
    options = np.column_stack([broad[p] for p in EXPLORED]) & free[:, None]
    idx = np.flatnonzero(options.any(axis=1) & (st.rng.random(st.n) < EXPLORE_SHARE))
    if len(idx):
        explored = np.array([PLAYBOOKS.index(p) for p in EXPLORED])
        chosen[idx] = explored[pick(st.rng, options[idx].astype(float))]
    for playbook in PRIORITY:
        idx = np.flatnonzero(chosen == PLAYBOOKS.index(playbook))
        if len(idx):
            _assign(st, playbook, idx, day)


def baseline_rates(st: State, playbook: str, idx: np.ndarray, day: int) -> np.ndarray:
    """Each customer's chance of the playbook's goal in its window without a message, now.

    Where the state says more than the traits (a scheduled churn, how often they log in and
    order), the rate follows the state, so sending to a broad audience changes how often
    customers cancel, log in or add items only by the uplift.
    """
    t = st.traits
    goal, window = GOALS[playbook]
    if playbook in RETENTION_PLAYBOOKS:
        # The natural course: kept unless a churn is scheduled inside the window.
        return (st.churn_day[idx] > day + window).astype(float)
    if goal == "login_30d":
        weekly = (0.05 + 0.45 * t.engagement[idx]) * st.engagement_factor(idx, day)
        return 1.0 - np.exp(-weekly * window / 7.0)
    if goal == "addon_30d":
        per_order = 0.02 + 0.3 * t.addon_appetite[idx] ** 2
        orders = np.maximum(window / np.maximum(st.cadence[idx], 1), 1.0)
        return 1.0 - (1.0 - per_order) ** orders
    return baseline_rate(t, playbook)[idx]


def _assign(st: State, playbook: str, idx: np.ndarray, day: int) -> None:
    rng, n, out = st.rng, len(idx), st.out
    st.last_assigned_day[idx] = day
    sec = day * DAY + 9 * HOUR
    campaign = out.campaign(f"pb-{playbook}-{st.clock.date(day).isoformat()}")
    # Complete randomization: exactly round(20%) of the audience, by a random permutation.
    holdout = np.zeros(n, bool)
    holdout[rng.permutation(n)[: int(round(HOLDOUT_SHARE * n))]] = True
    treated = ~holdout
    p0, p1 = goal_probabilities(st.traits, playbook, idx, baseline_rates(st, playbook, idx, day))
    success = rng.random(n) < np.where(treated, p1, p0)

    t = np.flatnonzero(treated)
    click = np.where(success[t], 0.35, 0.08)
    sends = engagement.send(st, idx[t], sec, campaign, engagement.open_probability(st, idx[t], day) + 0.05, click)
    msg = np.full(n, -1, dtype=np.int64)
    msg[t] = sends.msg
    out.assignments.add(aid=out.ids("assignment", n), campaign=np.full(n, campaign),
                        playbook=np.full(n, PLAYBOOKS.index(playbook)), cid=idx + 1, sec=np.full(n, sec),
                        arm=holdout.astype(int), msg=msg)

    goal, window = GOALS[playbook]
    goal_sec = ENACT[goal](st, idx, success, day, window, playbook, treated)
    conv = treated & success
    conv_msg = msg[conv]
    out.email_events(idx[conv] + 1, campaign, conv_msg, "conversion", goal_sec[conv])


def _retained(st: State, idx, success, day, window, playbook, treated) -> np.ndarray:
    """Success: no cancellation in the window. Failure: cancel within it and stay away."""
    rng, n = st.rng, len(idx)
    s, f = idx[success], idx[~success]
    st.protected_until[s] = day + window + 1
    late = st.churn_day[s] <= day + window
    st.churn_day[s[late]] = subscriptions.draw_churn_day(st, s[late], day + window + 1)
    st.churn_reason[s] = -1
    # A scheduled churn inside the window keeps its day; anyone else lost cancels on a random day in it.
    lost_day = day + rng.integers(3, window - 2, len(f))
    st.churn_day[f] = np.where(st.churn_day[f] <= day + window, st.churn_day[f], lost_day)
    st.block_react[f] = day + window + 1
    # A save offer (and a high-LTV thank-you) is 15% off the next order for those who stay.
    if playbook in ("at_risk_save", "high_ltv_recovery"):
        st.discount_next[s[treated[success]]] = catalog.DISCOUNT_CODES.index("SAVE15")
    return day * DAY + rng.integers(1, 10, n) * DAY


def _cadence_changed(st: State, idx, success, day, window, playbook, treated) -> np.ndarray:
    rng, n = st.rng, len(idx)
    when = day * DAY + rng.integers(1, window - 5, n) * DAY + rng.integers(8 * HOUR, 22 * HOUR, n)
    s = idx[success]
    # Due at `when` (subscriptions.due_cadence_changes), on whatever subscription is live then.
    st.cadence_change_sec[s] = when[success]
    # The change happens before any cancellation in the window.
    st.churn_day[s] = np.maximum(st.churn_day[s], when[success] // DAY + 1)
    st.block_cadence[idx[~success]] = day + window + 1
    return when


def _addon(st: State, idx, success, day, window, playbook, treated) -> np.ndarray:
    rng, n = st.rng, len(idx)
    when = day * DAY + rng.integers(2, window - 5, n) * DAY + rng.integers(8 * HOUR, 22 * HOUR, n)
    s = np.flatnonzero(success)
    product = catalog.ADDONS[rng.integers(0, len(catalog.ADDONS), len(s))]
    orders.store_order(st, idx[s], when[s], product, np.ones(len(s), np.int64), np.full(len(s), -1),
                       add_on=True, can_fail=False)
    st.addon_count[idx[s]] += 1
    st.last_addon_day[idx[s]] = when[s] // DAY
    st.block_addon[idx[~success]] = day + window + 1
    return when


def _login(st: State, idx, success, day, window, playbook, treated) -> np.ndarray:
    rng, n = st.rng, len(idx)
    when = day * DAY + rng.integers(1, window - 2, n) * DAY + rng.integers(8 * HOUR, 22 * HOUR, n)
    engagement.emit_logins(st, idx[success], when[success])
    st.block_login[idx[~success]] = day + window + 1
    return when


def _reactivated(st: State, idx, success, day, window, playbook, treated) -> np.ndarray:
    rng, n = st.rng, len(idx)
    back = (day + rng.integers(3, window - 5, n)).astype(np.int32)
    st.reactivate_day[idx[success]] = back[success]
    f = idx[~success]
    st.block_react[f] = day + window + 1
    st.reactivate_day[f] = np.where(st.reactivate_day[f] < NEVER, np.maximum(st.reactivate_day[f], day + window + 1),
                                    NEVER)
    return back.astype(np.int64) * DAY + 8 * HOUR


ENACT = {
    "retained_60d": _retained,
    "cadence_changed_30d": _cadence_changed,
    "addon_30d": _addon,
    "login_30d": _login,
    "reactivated_60d": _reactivated,
}

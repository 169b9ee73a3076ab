"""Past playbook campaigns: observable audiences, randomized holdouts, enacted outcomes.

Every four weeks each playbook picks its audience with a rule a marketer could
write from the data so far (no latent traits). A random 20% of each audience,
drawn independently of everything else, is held out. For each assigned
customer the goal outcome is drawn with probability p0 (holdout) or p0 + true
uplift (treatment), and the simulator then makes the raw data show it: a
retained customer does not cancel in the window, a lost one does; a cadence
change, add-on order, login or reactivation happens in the window or is
held back. Comparing arms in the raw data therefore recovers the uplift.
"""

from __future__ import annotations

import numpy as np

from dagster_project.ingest.contract import PLAYBOOKS

from . import catalog, engagement, orders, subscriptions
from .state import DAY, NEVER, State
from .traits import GOALS, goal_probabilities

EVERY_WEEKS = 4
FIRST_WEEK = 13  # leave ~90 days of history for the audience rules
HOLDOUT_SHARE = 0.2
COOLDOWN_DAYS = 60  # one playbook at a time per customer, so goal windows never overlap
HOUR = 3600
# Audience priority: a customer matching several rules gets the first.
PRIORITY = ("high_ltv_recovery", "at_risk_save", "cadence_mismatch", "onboarding", "expansion",
            "re_engagement", "win_back")


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


def run_round(st: State, week: int) -> None:
    """One campaign round: assign, send to treatment, enact every assigned customer's outcome."""
    if week < FIRST_WEEK or (week - FIRST_WEEK) % EVERY_WEEKS:
        return
    day = week * 7 + 2
    if day >= st.clock.days:
        return
    masks = audiences(st, week, day)
    free = engagement.reachable(st, day) & (st.last_assigned_day <= day - COOLDOWN_DAYS)
    for playbook in PRIORITY:
        idx = np.flatnonzero(masks[playbook] & free)
        free[idx] = False
        if len(idx):
            _assign(st, playbook, idx, day)


def _assign(st: State, playbook: str, idx: np.ndarray, day: int) -> None:
    rng, n, out = st.rng, len(idx), st.out
    st.last_assigned_day[idx] = day
    sec = day * DAY + 9 * HOUR
    campaign = out.campaign(f"pb-{playbook}-{st.clock.date(day).isoformat()}")
    # Complete randomization: exactly round(20%) of the audience, by a random permutation.
    holdout = np.zeros(n, bool)
    holdout[rng.permutation(n)[: int(round(HOLDOUT_SHARE * n))]] = True
    treated = ~holdout
    p0, p1 = goal_probabilities(st.traits, playbook, idx)
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
    lost_day = day + rng.integers(3, window - 2, len(f))
    st.churn_day[f] = np.minimum(st.churn_day[f], lost_day)
    st.block_react[f] = day + window + 1
    # A save offer is a discount on the next order for those who take it.
    if playbook == "at_risk_save":
        st.discount_next[s[treated[success]]] = catalog.DISCOUNT_CODES.index("SAVE15")
    return day * DAY + rng.integers(1, 10, n) * DAY


def _cadence_changed(st: State, idx, success, day, window, playbook, treated) -> np.ndarray:
    rng, n = st.rng, len(idx)
    when = day * DAY + rng.integers(1, window - 5, n) * DAY + rng.integers(8 * HOUR, 22 * HOUR, n)
    s = idx[success]
    to = np.where(st.mismatch_open[s], st.traits.preferred_cadence[s], subscriptions.longer_cadence(st.cadence[s]))
    subscriptions.change_cadence(st, s, when[success], to)
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

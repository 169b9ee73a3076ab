"""Route each eligible customer to the playbook with the highest expected incremental value, or none.

Pure pandas/numpy; `assets.py` gathers the inputs from the warehouse.

    ev = expected_values(uplift, goal_of, policy, clv)       # uplift x goal value (margin) - send and offer cost
    decisions = route(audience, capped, ev, suppressed, holdout_shares, policy, run_key="2026-11-25")

Order of the rules, per customer:
1. permanent global holdout (stable hash of the customer id): never messaged, but
   rules 2-4 still pick the playbook they would have received, recorded with arm
   `global_holdout` so campaigns can be compared with customers who get nothing;
2. suppression (opted out, unsubscribed, bounced, complained): never messaged;
3. playbooks the customer is in the audience of and not capped for (each brief's own cap, no
   playbook at all within `contact_cap_days` of the customer's last assignment, and not a
   playbook whose randomized holdout they are in until its goal window has passed);
4. exploration: a small stable-random share gets a random allowed playbook,
   so every playbook keeps collecting randomized data;
   otherwise the best allowed playbook if its expected value is positive, else none;
5. the chosen playbook's randomized holdout (its brief's `holdout_share`):
   assigned, recorded, not sent.
All randomness is a hash of (purpose, run key, customer, playbook): reruns
decide the same, and holdouts are independent of everything the models see.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

# What a goal is worth when it happens, in store currency of gross margin (what the store keeps
# after coffee, roasting, packing and shipping; a delivery of ~26.00 leaves ~9.00). A marketer's
# assumptions: a retained subscriber ~ three more deliveries of margin; a cadence change keeps
# a subscriber who would otherwise cancel over too much coffee; an add-on is one accessory
# order's margin; a login is cheap engagement; a reactivation is a new subscription's first months.
GOAL_VALUES = {
    "retained_60d": 30.0,
    "cadence_changed_30d": 15.0,
    "addon_30d": 12.0,
    "login_30d": 2.0,
    "reactivated_60d": 30.0,
}
# Goals that keep a subscriber: worth that customer's predicted 12-month CLV (revenue, from
# `customer_predictions`) times the margin rate when it exists, so saving a big spender
# outranks saving a small one and every goal is valued in the same currency (margin).
# A reactivation keeps its constant: a cancelled customer's predicted spend is what they are
# worth if nobody wins them back, not what winning them back is worth.
RETENTION_GOALS = frozenset({"retained_60d"})
# Gross margin per unit of revenue: what a predicted 12-month CLV (revenue) is worth to the store.
CLV_MARGIN_RATE = 0.35
# Cost of one send: ESP cost plus the attention it spends (fatigue, unsubscribes).
SEND_COST = 0.25
# What a playbook's incentive costs per send, in margin: 15% off the next delivery (~26.00),
# which ~9 in 10 of those who get the offer go on to receive. Paid whether or not the message
# changed anything, so a discount is worth sending only where it moves enough customers.
OFFER_COSTS = {"at_risk_save": 3.5, "high_ltv_recovery": 3.5}
# Days after any assignment (any playbook, any arm) before a customer is routed again. Each brief's
# own cap only stops a repeat of that playbook: without this, a customer capped for yesterday's
# playbook would get the next best one today, and another tomorrow.
CONTACT_CAP_DAYS = 7

DECISIONS = ("send", "holdout", "global_holdout", "suppressed", "capped", "none")
# What `route` returns per customer.
DECISION_FIELDS = ["customer_id", "decision", "playbook_id", "arm", "expected_value", "exploration", "alternatives",
                   "reason"]


@dataclass(frozen=True)
class RoutingPolicy:
    """Knobs of the routing policy (asset config can override each)."""

    global_holdout_share: float = 0.05
    exploration_share: float = 0.05
    send_cost: float = SEND_COST
    goal_values: dict = field(default_factory=lambda: dict(GOAL_VALUES))
    clv_margin_rate: float = CLV_MARGIN_RATE
    offer_costs: dict = field(default_factory=lambda: dict(OFFER_COSTS))
    contact_cap_days: int = CONTACT_CAP_DAYS

    def cost(self, playbook: str) -> float:
        """What one send of `playbook` costs in margin: the send plus its offer, if any."""
        return self.send_cost + self.offer_costs.get(playbook, 0.0)


def stable_unit(*parts: str) -> float:
    """A number in [0, 1) that depends only on `parts` (sha256), the same on every machine and run."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def in_global_holdout(customer_ids, share: float = 0.05) -> np.ndarray:
    """True for customers in the permanent global holdout (depends on the id only, never on the date)."""
    return np.array([stable_unit("global-holdout", cid) < share for cid in customer_ids], dtype=bool)


def goal_values(customers, goal_of: dict[str, str], policy: RoutingPolicy,
                clv: pd.Series | None = None) -> pd.DataFrame:
    """What each playbook's goal is worth per customer (rows) and playbook (columns), in store currency of margin.

    Retention goals take the customer's predicted 12-month CLV from `clv` (customer_id -> revenue)
    times `policy.clv_margin_rate`; customers without one, and every other goal, get the fixed
    `policy.goal_values` constant (already margin).
    """
    customers = pd.Index(customers)
    values = pd.DataFrame({p: np.full(len(customers), policy.goal_values[g], dtype=float) for p, g in goal_of.items()},
                          index=customers)
    if clv is not None:
        # A negative prediction is noise around zero; a missing one falls back to the constant.
        margin = pd.to_numeric(clv, errors="coerce").clip(lower=0).reindex(customers) * policy.clv_margin_rate
        for playbook, goal in goal_of.items():
            if goal in RETENTION_GOALS:
                values[playbook] = margin.fillna(policy.goal_values[goal]).to_numpy()
    return values


def expected_values(uplift: pd.DataFrame, goal_of: dict[str, str], policy: RoutingPolicy,
                    clv: pd.Series | None = None) -> pd.DataFrame:
    """Expected incremental value per customer (rows) and playbook (columns): uplift x goal value - cost.

    `clv` (customer_id -> predicted 12-month CLV, revenue) values the retention goals per customer at
    the policy's margin rate (`goal_values`); the cost is the send plus the playbook's offer
    (`RoutingPolicy.cost`). A playbook is worth sending only where this is positive.
    """
    values = goal_values(uplift.index, {p: goal_of[p] for p in uplift.columns}, policy, clv)
    costs = pd.Series({p: policy.cost(p) for p in uplift.columns})
    return uplift * values - costs


def route(audience: pd.DataFrame, capped: pd.DataFrame, ev: pd.DataFrame, suppressed: pd.Series,
          holdout_shares: dict[str, float], policy: RoutingPolicy, run_key: str) -> pd.DataFrame:
    """One decision per customer in at least one audience.

    `audience` and `capped`: boolean frames, customers x playbooks; `ev`: the
    expected values (same shape); `suppressed`: reason per customer or None.
    Returns customer_id, decision, playbook_id, arm, expected_value,
    exploration, alternatives (JSON), reason. Global holdout rows carry the
    playbook they would have received (arm `global_holdout`), or none.

    The rules run on whole arrays; only the hashes and the alternatives' JSON are made per customer.
    """
    playbooks = list(audience.columns)
    audience = audience.reindex(columns=playbooks, fill_value=False)
    members = audience.to_numpy(dtype=bool)
    kept = members.any(axis=1)
    if not kept.any():
        return pd.DataFrame(columns=DECISION_FIELDS)
    customers, members = audience.index[kept], members[kept]
    caps = capped.reindex(index=customers, columns=playbooks, fill_value=False).to_numpy(dtype=bool)
    values = ev.reindex(index=customers, columns=playbooks).to_numpy(dtype=float)
    reasons = suppressed.reindex(customers).to_numpy(dtype=object)
    allowed = members & ~caps
    n = len(customers)
    ids = customers.tolist()  # plain values: indexing an Arrow-backed index one at a time is slow

    is_suppressed = np.array([isinstance(r, str) and bool(r) for r in reasons], dtype=bool)
    all_capped = ~allowed.any(axis=1)
    choosing = ~is_suppressed & ~all_capped
    # The best allowed playbook by expected value, the first in column order on a tie; a missing
    # value (no model yet) ranks below every value, and when all are missing the first allowed wins.
    ranked = np.where(allowed & ~np.isnan(values), values, -np.inf)
    best = np.where(ranked.max(axis=1) > -np.inf, ranked.argmax(axis=1), allowed.argmax(axis=1))
    explore = np.zeros(n, dtype=bool)
    explore[choosing] = [stable_unit("explore", run_key, ids[i]) < policy.exploration_share
                         for i in np.flatnonzero(choosing)]
    for i in np.flatnonzero(explore):
        options = np.flatnonzero(allowed[i])
        best[i] = options[int(stable_unit("explore-pick", run_key, ids[i]) * len(options))]
    best_value = values[np.arange(n), best]
    worth_it = explore | (best_value > 0)
    has_best = choosing & worth_it
    global_held = in_global_holdout(ids, policy.global_holdout_share)
    held = np.zeros(n, dtype=bool)
    for i in np.flatnonzero(has_best & ~global_held):
        playbook = playbooks[best[i]]
        held[i] = stable_unit("holdout", run_key, playbook, ids[i]) < holdout_shares.get(playbook, 0.0)

    chosen = np.where(has_best, np.array(playbooks, dtype=object)[best], None)
    why = np.where(explore, "exploration: random eligible playbook", "highest expected value")
    decision = np.select(
        [global_held, is_suppressed, all_capped, ~has_best, held],
        ["global_holdout", "suppressed", "capped", "none", "holdout"], "send").astype(object)
    # Nothing valued at all: no playbook they may get has an uplift model yet (a new store, a new brief).
    unvalued = ~(allowed & ~np.isnan(values)).any(axis=1)
    reason = np.select(
        [is_suppressed, all_capped, ~has_best & unvalued, ~has_best, held],
        [reasons, "frequency cap reached for every playbook they qualify for", NO_MODEL_REASON,
         "no playbook is expected to be worth its send cost",
         np.char.add(why.astype(str), "; in this playbook's randomized holdout (not sent)")], why).astype(object)
    for i in np.flatnonzero(global_held):
        reason[i] = "permanent global holdout (never messaged)" + (
            f"; would have received {chosen[i]} ({why[i]})" if has_best[i] else "")
    arm = np.select([~has_best, global_held, held], [None, "global_holdout", "holdout"], "treatment").astype(object)
    return pd.DataFrame({
        "customer_id": customers.to_numpy(dtype=object),
        "decision": decision,
        "playbook_id": chosen,
        "arm": arm,
        "expected_value": [float(v) if h else None for v, h in zip(best_value, has_best)],
        "exploration": explore & has_best,
        "alternatives": _alternatives(playbooks, members, allowed, values),
        "reason": reason,
    }, columns=DECISION_FIELDS)


NO_MODEL_REASON = ("no uplift model yet for any playbook they qualify for: only exploration sends them one "
                   "until past sends with holdouts teach a model (a new store: raise exploration_share)")


def _alternatives(playbooks: list[str], members: np.ndarray, allowed: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per customer, the JSON (sorted keys) of each playbook in their audience: "frequency cap", "no
    uplift model yet", or its expected value rounded to 4 places; what `json.dumps(..., sort_keys=True)`
    of that dict gives, written a column at a time."""
    capped_text, no_model = json.dumps("frequency cap"), json.dumps("no uplift model yet")
    joined = np.full(len(members), "", dtype=object)
    for j in sorted(range(len(playbooks)), key=lambda j: playbooks[j]):
        texts = np.where(~allowed[:, j], capped_text, no_model).astype(object)
        valued = np.flatnonzero(members[:, j] & allowed[:, j] & ~np.isnan(values[:, j]))
        texts[valued] = [_json_number(v) for v in values[valued, j]]
        joined = joined + np.where(members[:, j], json.dumps(playbooks[j]) + ": " + texts + ", ", "")
    return np.array(["{" + text[:-2] + "}" for text in joined], dtype=object)


def _json_number(value: float) -> str:
    """`json.dumps(round(value, 4))`: Python's shortest float text, or JSON's words for the infinities."""
    value = round(float(value), 4)
    return repr(value) if math.isfinite(value) else json.dumps(value)


def frequency_capped(history: pd.DataFrame, customers, caps: dict[str, tuple[int, int]], as_of,
                     contact_days: int = 0, holdout_days: dict[str, int] | None = None) -> pd.DataFrame:
    """customers x playbooks: True where the playbook's cap is already used up at `as_of`.

    `history`: assignments (customer_id, playbook_id, assigned_at, and arm with `holdout_days`),
    both arms. Counted are those before the end of the run date but for the run's own (assigned at
    `as_of` itself, 00:00): deciding a date again decides it as the first time did, and a save offer
    made earlier that day counts like one made the day before.
    `contact_days` (`RoutingPolicy.contact_cap_days`; 0: off): a customer assigned any playbook in
    the last that many days is capped for every playbook.
    `holdout_days`: playbook -> its goal window. A customer in a playbook's randomized holdout is not
    assigned that playbook again until the window has passed, whatever its cap window (at_risk_save
    caps 21 days, its goal is retention over 60): the holdout stays clean for its measurement.
    """
    as_of = pd.Timestamp(as_of)
    at = history["assigned_at"]
    past = history[(at < as_of + pd.Timedelta(days=1)) & (at != as_of)]
    out = pd.DataFrame(False, index=pd.Index(customers, name="customer_id"), columns=list(caps))
    for playbook, (max_messages, per_days) in caps.items():
        mine = past[past["playbook_id"] == playbook]
        counts = mine[mine["assigned_at"] > as_of - pd.Timedelta(days=per_days)].groupby("customer_id").size()
        full = counts.index[counts >= max_messages]
        out.loc[out.index.intersection(full), playbook] = True
        if holdout_days and playbook in holdout_days:
            held = mine.loc[(mine["arm"] == "holdout")
                            & (mine["assigned_at"] > as_of - pd.Timedelta(days=holdout_days[playbook])), "customer_id"]
            out.loc[out.index.isin(held), playbook] = True
    if contact_days > 0:
        contacted = past.loc[past["assigned_at"] > as_of - pd.Timedelta(days=contact_days), "customer_id"]
        out.loc[out.index.isin(contacted)] = True
    return out

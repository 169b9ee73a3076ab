"""Latent per-customer traits and each customer's true response to each playbook.

Traits are drawn once per customer and never shown to the pipeline; they drive
every behaviour the simulator generates and are written to
`sim_truth.customer_traits`. `true_uplift` and `baseline_rate` give, per
playbook, the probability that its goal happens within the goal window with
and without the message; the campaign engine enacts exactly those
probabilities, so treatment vs holdout in the raw data recovers the uplift.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dagster_project.ingest.contract import PLAYBOOKS

from . import catalog

SUBSCRIBER, ONE_TIME = 0, 1
CUSTOMER_TYPES = ("subscriber", "one_time_buyer")
WRITER_STYLES = ("brief", "warm")

# playbook -> (goal, window in days). Goals are measurable from raw tables.
GOALS = {
    "at_risk_save": ("retained_60d", 60),
    "cadence_mismatch": ("cadence_changed_30d", 30),
    "expansion": ("addon_30d", 30),
    "onboarding": ("retained_60d", 60),
    "re_engagement": ("login_30d", 30),
    "win_back": ("reactivated_60d", 60),
    "high_ltv_recovery": ("retained_60d", 60),
}


@dataclass
class Traits:
    """Latent traits, one array element per customer (index = customer number - 1)."""

    customer_type: np.ndarray  # SUBSCRIBER / ONE_TIME
    engagement: np.ndarray  # 0..1, drives opens and logins
    churn_hazard: np.ndarray  # monthly probability of cancelling while subscribed
    cadence: np.ndarray  # cadence chosen at sign-up (days)
    preferred_cadence: np.ndarray  # what they actually drink through (2x cadence if mismatch)
    mismatch: np.ndarray  # bool: subscribed cadence is too short
    addon_appetite: np.ndarray  # 0..1, one-time add-ons and later upgrades
    price_sensitivity: np.ndarray  # 0..1, discounts and 'price' cancellations
    is_gift: np.ndarray  # bool: started as a gift subscription
    gift_cycles: np.ndarray  # 3 or 6 for gifts
    warm_writer: np.ndarray  # bool: support-ticket style
    payment_fail: np.ndarray  # probability a charge fails
    sleeping_dog: np.ndarray  # bool: outreach backfires
    opt_in: np.ndarray  # bool: marketing opt-in
    plan: np.ndarray  # 1..3 bags
    product: np.ndarray  # favourite coffee (product index)

    @property
    def daily_hazard(self) -> np.ndarray:
        return -np.log1p(-self.churn_hazard) / 30.0


def draw_traits(rng: np.random.Generator, n: int) -> Traits:
    """Draw every customer's latent traits (vectorised)."""
    ctype = np.where(rng.random(n) < 0.15, ONE_TIME, SUBSCRIBER)
    subscriber = ctype == SUBSCRIBER
    engagement = rng.beta(2.2, 2.2, n)
    price_sens = rng.beta(2.0, 3.0, n)
    appetite = rng.beta(1.1, 4.0, n)
    mismatch = subscriber & (rng.random(n) < 0.13)
    # Mismatch customers chose a short cadence (14-28) and drink at half that pace.
    cadence = rng.choice(catalog.CADENCES, n, p=[0.2, 0.15, 0.4, 0.15, 0.1])
    cadence = np.where(mismatch, rng.choice(catalog.CADENCES[:3], n, p=[0.35, 0.25, 0.4]), cadence)
    preferred = np.where(mismatch, cadence * 2, cadence)
    # Monthly churn hazard around 3-4%, higher for the disengaged, the
    # price-sensitive and those drowning in coffee.
    hazard = 0.016 * rng.lognormal(0.0, 0.35, n)
    hazard *= 1.0 + 0.6 * (1 - engagement) + 0.4 * price_sens + 0.9 * mismatch
    hazard = np.clip(hazard, 0.005, 0.2)
    is_gift = subscriber & ~mismatch & (rng.random(n) < 0.05)
    pay_fail = np.where(rng.random(n) < 0.08, rng.uniform(0.12, 0.3, n), rng.uniform(0.005, 0.025, n))
    return Traits(
        customer_type=ctype,
        engagement=engagement,
        churn_hazard=hazard,
        cadence=cadence.astype(np.int32),
        preferred_cadence=preferred.astype(np.int32),
        mismatch=mismatch,
        addon_appetite=appetite,
        price_sensitivity=price_sens,
        is_gift=is_gift,
        gift_cycles=rng.choice([3, 6], n).astype(np.int32),
        warm_writer=rng.random(n) < 0.5,
        payment_fail=pay_fail,
        sleeping_dog=rng.random(n) < 0.1,
        opt_in=rng.random(n) < 0.82,
        plan=rng.choice([1, 2, 3], n, p=[0.55, 0.32, 0.13]).astype(np.int32),
        product=rng.choice(catalog.COFFEE, n).astype(np.int32),
    )


def true_uplift(t: Traits, playbook: str) -> np.ndarray:
    """Change in the probability of the playbook's goal caused by its message."""
    e, p, a, dog = t.engagement, t.price_sensitivity, t.addon_appetite, t.sleeping_dog
    if playbook == "at_risk_save":  # a save offer: works on the price-sensitive
        u = 0.02 + 0.3 * p + 0.05 * e
    elif playbook == "cadence_mismatch":  # a longer cycle only helps if they drink slower
        u = np.where(t.mismatch, 0.45, 0.02)
    elif playbook == "expansion":
        u = 0.03 + 0.4 * a
    elif playbook == "onboarding":
        u = 0.03 + 0.12 * (1 - e)
    elif playbook == "re_engagement":
        u = 0.04 + 0.25 * e
    elif playbook == "win_back":
        u = 0.03 + 0.2 * p + 0.08 * e
    elif playbook == "high_ltv_recovery":
        u = 0.04 + 0.15 * (1 - p) + 0.1 * a
    else:
        raise KeyError(f"unknown playbook {playbook!r}; expected one of {PLAYBOOKS}")
    # Sleeping dogs: a reminder makes them act against the goal.
    return np.where(dog & (playbook != "cadence_mismatch"), -0.08, u)


def baseline_rate(t: Traits, playbook: str) -> np.ndarray:
    """Probability of the goal within its window without the message."""
    e, a, h = t.engagement, t.addon_appetite, t.churn_hazard
    base = {
        "at_risk_save": 0.75 - 3.0 * h,
        "cadence_mismatch": np.where(t.mismatch, 0.06, 0.01),
        "expansion": 0.05 + 0.3 * a,
        "onboarding": 0.9 - 2.0 * h,
        "re_engagement": 0.1 + 0.2 * e,
        "win_back": 0.04 + 0.04 * e,
        "high_ltv_recovery": 0.8 - 3.0 * h,
    }[playbook]
    return np.asarray(base, dtype=float)


def goal_probabilities(t: Traits, playbook: str, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(p_holdout, p_treated) for customers `idx`, kept inside [0, 1] without clipping the uplift."""
    u = true_uplift(t, playbook)[idx]
    p0 = np.clip(baseline_rate(t, playbook)[idx], np.maximum(0.0, -u), np.minimum(1.0, 1.0 - u))
    return p0, p0 + u

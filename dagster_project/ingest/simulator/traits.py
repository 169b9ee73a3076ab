"""Latent per-customer traits and each customer's true response to each playbook.

Traits are drawn once per customer and never shown to the pipeline; they drive
every behaviour the simulator generates and are written to
`sim_truth.customer_traits`. `true_uplift` gives, per playbook, the change in
the probability that its goal happens within the goal window caused by the
message; it is a function of traits only (the same for every send to that
customer), so `sim_truth.uplift` is the truth for past campaigns and for a
send on the end date alike. The campaign engine enacts exactly that change on
top of the customer's rate without the message (`goal_probabilities`), so
treatment vs holdout in the raw data recovers the uplift.

Every trait an effect depends on leaves traces a model can see: engagement in
opens and logins, add-on appetite in add-ons, cadence mismatch in skips, price
sensitivity in the newsletter codes they use, the coffee and plan they pick, the
welcome code and 'price' cancellations, sleeping dogs (the least engaged) in
barely any opens or logins.
docs/SHARED_SEMANTICS.md lists the planted effects.
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
RETENTION_PLAYBOOKS = tuple(p for p, (goal, _) in GOALS.items() if goal == "retained_60d")
# Sleeping dogs: subscribers on autopilot (engagement below this, ~6%), whom a reminder prompts
# to act against the goal by DOG_EFFECT (every playbook but cadence_mismatch).
DOG_ENGAGEMENT = 0.15
DOG_EFFECT = -0.08


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
        sleeping_dog=engagement < DOG_ENGAGEMENT,
        opt_in=rng.random(n) < 0.82,
        # The price-sensitive pick smaller plans: single bag 30-90% (55% overall), family 0-20% (13%).
        plan=_plans(rng.random(n), price_sens),
        product=_coffees(rng.random(n), price_sens),
    )


def _coffees(u: np.ndarray, price_sensitivity: np.ndarray) -> np.ndarray:
    """Favourite coffee from a uniform draw: the price-sensitive lean to the cheaper beans."""
    by_price = catalog.COFFEE[np.argsort(catalog.PRICE_CENTS[catalog.COFFEE], kind="stable")]
    rank = np.floor(len(by_price) * u ** (0.5 + 2.0 * price_sensitivity)).astype(int)
    return by_price[np.minimum(rank, len(by_price) - 1)].astype(np.int32)


def _plans(u: np.ndarray, price_sensitivity: np.ndarray) -> np.ndarray:
    """Bags per delivery (1..3) from a uniform draw, tilted to smaller plans by price sensitivity."""
    single = 0.3 + 0.6 * price_sensitivity
    family = 0.2 * (1.0 - price_sensitivity)
    return np.where(u < single, 1, np.where(u > 1.0 - family, 3, 2)).astype(np.int32)


def deal_seeker(price_sensitivity: np.ndarray) -> np.ndarray:
    """How much of a deal seeker a customer is (0..1): a steep step around price sensitivity 0.5 (~30% are)."""
    return 1.0 / (1.0 + np.exp(-(price_sensitivity - 0.5) / 0.06))


def true_uplift(t: Traits, playbook: str) -> np.ndarray:
    """Change in the probability of the playbook's goal caused by its message.

    Only traits that show in the data drive it (engagement in opens and logins, price
    sensitivity in the newsletter codes they use, coffee and plan size, appetite in add-ons,
    mismatch in skips).
    """
    e, p, a, dog = t.engagement, t.price_sensitivity, t.addon_appetite, t.sleeping_dog
    if playbook == "at_risk_save":
        # A 15% save offer keeps deal seekers, the lukewarm more than the keen; loyal full-price
        # buyers read an unasked-for discount as a nudge to reconsider.
        u = 0.18 * deal_seeker(p) * (1.3 - e) - 0.04 * np.clip(1.0 - p / 0.25, 0.0, 1.0)
    elif playbook == "cadence_mismatch":  # a longer cycle only helps if they drink slower
        u = np.where(t.mismatch, 0.45, 0.01)
    elif playbook == "expansion":  # a curated extra moves those who already like extras
        u = 0.01 + 0.5 * a**2
    elif playbook == "onboarding":
        u = 0.03 + 0.12 * (1 - e)
    elif playbook == "re_engagement":
        # A check-in works in the middle: the very engaged log in anyway, the very quiet ignore email.
        u = 0.03 + 0.35 * e * (1 - e)
    elif playbook == "win_back":
        u = 0.03 + 0.2 * p + 0.08 * e
    elif playbook == "high_ltv_recovery":
        # A personal note from the roastery keeps lukewarm loyal customers; deal seekers shrug.
        u = 0.10 * (1 - deal_seeker(p)) * (1.2 - e) + 0.02 * a
    else:
        raise KeyError(f"unknown playbook {playbook!r}; expected one of {PLAYBOOKS}")
    return np.where(dog & (playbook != "cadence_mismatch"), DOG_EFFECT, u)


def baseline_rate(t: Traits, playbook: str) -> np.ndarray:
    """Probability of the goal within its window without the message, for a customer in the playbook's
    original (narrow) audience; the campaign engine uses the customer's current rate where it knows it."""
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


def goal_probabilities(t: Traits, playbook: str, idx: np.ndarray,
                       base: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(p_holdout, p_treated) for customers `idx`, kept inside [0, 1] without clipping the uplift.

    `base`: each customer's rate without the message now (default `baseline_rate`).
    """
    u = true_uplift(t, playbook)[idx]
    base = baseline_rate(t, playbook)[idx] if base is None else np.asarray(base, dtype=float)
    p0 = np.clip(base, np.maximum(0.0, -u), np.minimum(1.0, 1.0 - u))
    return p0, p0 + u

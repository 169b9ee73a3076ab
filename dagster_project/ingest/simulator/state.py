"""The simulation's clock and per-customer state arrays.

Time is counted in days (and seconds) since the window start; the loop steps
one week at a time. Every state field is a numpy array with one element per
customer, so each stage updates all customers at once. A customer has at most
one current (active or paused) subscription; closed ones are written out when
they close.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass, field

import numpy as np

from .sinks import Sinks
from .traits import Traits

DAY = 86_400
NEVER = 10**9  # day sentinel for "not scheduled"


def months_before(end: dt.date, months: int) -> dt.date:
    """The same day of month `months` calendar months before `end` (clamped to month length)."""
    y, m = divmod(end.year * 12 + end.month - 1 - months, 12)
    m += 1
    return dt.date(y, m, min(end.day, calendar.monthrange(y, m)[1]))


@dataclass
class Clock:
    """Window [start, end) in days; the simulation ends at `end` 00:00 UTC."""

    start: dt.date
    end: dt.date

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    @property
    def end_sec(self) -> int:
        return self.days * DAY

    @property
    def weeks(self) -> int:
        return -(-self.days // 7)

    @property
    def start64(self) -> np.datetime64:
        return np.datetime64(self.start, "s")

    def date(self, day: int) -> dt.date:
        return self.start + dt.timedelta(days=int(day))


@dataclass
class State:
    """Everything that changes while the simulation runs."""

    rng: np.random.Generator
    traits: Traits
    clock: Clock
    out: Sinks
    created_day: np.ndarray
    n: int = 0
    created_sec: np.ndarray = field(init=False)
    # current subscription (sub_id < 0: none)
    sub_id: np.ndarray = field(init=False)
    product: np.ndarray = field(init=False)
    plan: np.ndarray = field(init=False)
    cadence: np.ndarray = field(init=False)
    price: np.ndarray = field(init=False)
    sub_start: np.ndarray = field(init=False)  # day
    start_sec: np.ndarray = field(init=False)
    gift: np.ndarray = field(init=False)
    gift_left: np.ndarray = field(init=False)
    next_charge: np.ndarray = field(init=False)
    paused_until: np.ndarray = field(init=False)
    cycles: np.ndarray = field(init=False)  # orders on the current subscription
    skip_hist: np.ndarray = field(init=False)  # last 8 cycle orders, bit 1 = skipped
    consec_fail: np.ndarray = field(init=False)
    mismatch_open: np.ndarray = field(init=False)  # still on the too-short cadence
    discount_next: np.ndarray = field(init=False)  # discount code to apply on next order, -1 none
    # churn and comeback
    churn_day: np.ndarray = field(init=False)
    churn_reason: np.ndarray = field(init=False)  # forced reason code, -1 = pick at churn
    protected_until: np.ndarray = field(init=False)  # no churn before this day
    reactivate_day: np.ndarray = field(init=False)
    last_cancel_day: np.ndarray = field(init=False)
    last_cancel_reason: np.ndarray = field(init=False)
    # outcome enforcement for past campaigns: natural events blocked until this day
    block_login: np.ndarray = field(init=False)
    block_addon: np.ndarray = field(init=False)
    block_cadence: np.ndarray = field(init=False)
    cadence_change_sec: np.ndarray = field(init=False)  # a campaign's cadence change, due at this second
    block_react: np.ndarray = field(init=False)
    # observable history used by campaign audiences
    orders_count: np.ndarray = field(init=False)
    spend: np.ndarray = field(init=False)
    addon_count: np.ndarray = field(init=False)
    last_addon_day: np.ndarray = field(init=False)
    last_assigned_day: np.ndarray = field(init=False)
    unsubscribed: np.ndarray = field(init=False)
    bounced: np.ndarray = field(init=False)
    onetime_left: np.ndarray = field(init=False)
    next_onetime: np.ndarray = field(init=False)
    opens: np.ndarray = field(init=False)  # (n, weeks) opens per week
    activity: np.ndarray = field(init=False)  # (n, weeks) opens + logins per week

    def __post_init__(self) -> None:
        n = self.n = len(self.created_day)
        self.created_sec = self.created_day.astype(np.int64) * DAY
        i32 = lambda v: np.full(n, v, dtype=np.int32)  # noqa: E731
        self.sub_id = np.full(n, -1, dtype=np.int64)
        self.product = self.traits.product.copy()
        self.plan = self.traits.plan.copy()
        self.cadence = self.traits.cadence.copy()
        self.price = np.zeros(n, dtype=np.int64)
        self.sub_start = i32(0)
        self.start_sec = np.zeros(n, dtype=np.int64)
        self.gift = np.zeros(n, dtype=bool)
        self.gift_left = i32(0)
        self.next_charge = i32(NEVER)
        self.paused_until = i32(-1)
        self.cycles = i32(0)
        self.skip_hist = np.zeros(n, dtype=np.uint8)
        self.consec_fail = i32(0)
        self.mismatch_open = self.traits.mismatch.copy()
        self.discount_next = i32(-1)
        self.churn_day = i32(NEVER)
        self.churn_reason = i32(-1)
        self.protected_until = i32(-1)
        self.reactivate_day = i32(NEVER)
        self.last_cancel_day = i32(-NEVER)
        self.last_cancel_reason = i32(-1)
        self.block_login = i32(-1)
        self.block_addon = i32(-1)
        self.block_cadence = i32(-1)
        self.cadence_change_sec = np.full(n, -1, dtype=np.int64)
        self.block_react = i32(-1)
        self.orders_count = i32(0)
        self.spend = np.zeros(n, dtype=np.int64)
        self.addon_count = i32(0)
        self.last_addon_day = i32(-NEVER)
        self.last_assigned_day = i32(-NEVER)
        self.unsubscribed = np.zeros(n, dtype=bool)
        self.bounced = np.zeros(n, dtype=bool)
        self.onetime_left = i32(0)
        self.next_onetime = i32(NEVER)
        self.opens = np.zeros((n, self.clock.weeks + 10), dtype=np.uint8)
        self.activity = np.zeros((n, self.clock.weeks + 10), dtype=np.uint8)

    @property
    def subscribed(self) -> np.ndarray:
        """Customers with a current (active or paused) subscription."""
        return self.sub_id >= 0

    def seconds(self, day: np.ndarray, early: int = 7, late: int = 22) -> np.ndarray:
        """A random time of day (between `early` and `late` o'clock) on each `day`."""
        day = np.asarray(day, dtype=np.int64)
        return day * DAY + self.rng.integers(early * 3600, late * 3600, len(day))

    def engagement_factor(self, idx: np.ndarray, day: int) -> np.ndarray:
        """Engagement multiplier that decays over the ~75 days before a scheduled churn."""
        left = (self.churn_day[idx] - day).astype(float)
        return np.clip(left / 75.0, 0.12, 1.0)

    def add_activity(self, idx: np.ndarray, day: np.ndarray, opens: bool) -> None:
        """Count an open or login in the customer's weekly activity history."""
        week = np.minimum(np.asarray(day) // 7, self.activity.shape[1] - 1)
        np.add.at(self.activity, (idx, week), 1)
        if opens:
            np.add.at(self.opens, (idx, week), 1)


def pick(rng: np.random.Generator, weights: np.ndarray) -> np.ndarray:
    """One categorical draw per row of a (rows, k) weight matrix (vectorised)."""
    cum = np.cumsum(weights, axis=1)
    u = rng.random(len(weights)) * cum[:, -1]
    return (cum < u[:, None]).sum(axis=1)

"""The simulation loop: sign-ups, then one week at a time for every customer at once."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from dagster_project.ingest.contract import LOAD_ORDER, NEXTBEST_SCHEMA, PLAYBOOKS, RAW_SCHEMA, SIM_TRUTH_SCHEMA

from . import campaigns, catalog, engagement, orders, subscriptions, support
from .sinks import Sinks
from .state import NEVER, Clock, State, months_before
from .traits import CUSTOMER_TYPES, GOALS, ONE_TIME, SUBSCRIBER, Traits, draw_traits, true_uplift
from .writer import TableBuffer, count_rows, id_sql, reset_tables

DEFAULT_CUSTOMERS = 8000
DEFAULT_MONTHS = 18
DEFAULT_SEED = 42
INITIAL_COHORT = 0.4  # share of customers who signed up before the window


@dataclass(frozen=True)
class SimulationSummary:
    """What one `simulate` call wrote: row counts per table and the time it took."""

    customers: int
    months: int
    seed: int
    start_date: dt.date
    end_date: dt.date
    row_counts: dict[str, int] = field(default_factory=dict)
    elapsed_seconds: float = 0.0


def simulate(con, *, customers: int = DEFAULT_CUSTOMERS, months: int = DEFAULT_MONTHS, seed: int = DEFAULT_SEED,
             end_date: dt.date | None = None, progress: Callable[[str], None] | None = None) -> SimulationSummary:
    """Simulate the demo store and replace the raw.*, nextbest.assignments and sim_truth.* tables."""
    began = time.perf_counter()
    say = progress or (lambda _msg: None)
    if customers < 1 or months < 1:
        raise ValueError(f"simulate needs customers >= 1 and months >= 1 (got {customers}, {months})")
    end = end_date or dt.datetime.now(dt.timezone.utc).date()
    clock = Clock(months_before(end, months), end)
    rng = np.random.default_rng(seed)
    reset_tables(con)
    out = Sinks(con, clock.start64, clock.end_sec, support.BODIES)

    traits = draw_traits(rng, customers)
    created = _signup_days(rng, customers, clock.days)
    st = State(rng=rng, traits=traits, clock=clock, out=out, created_day=created)
    _write_customers(st)
    out.products.add(**catalog.products_frame())
    _start_initial_cohort(st)
    say(f"customers: {customers:,} ({clock.start} to {clock.end}, {clock.weeks} weeks)")

    for week in range(clock.weeks):
        d0, d1 = week * 7, min(week * 7 + 7, clock.days)
        campaigns.run_round(st, week)
        _signups(st, d0, d1)
        subscriptions.reactivate(st, d0, d1)
        subscriptions.due_cadence_changes(st, d0, d1)
        subscriptions.portal_changes(st, d0, d1)
        subscriptions.defer_protected(st, d1)
        orders.cycle_orders(st, d0, d1)
        orders.one_time_buyers(st, d0, d1)
        subscriptions.saved_cancel_attempts(st, d0, d1)
        subscriptions.churn(st, d0, d1)
        engagement.logins(st, d0, d1)
        engagement.newsletter(st, week, d0)
        support.tickets(st, d0, d1)
        if (week + 1) % 13 == 0:
            say(f"week {week + 1}/{clock.weeks}: {int(st.subscribed.sum()):,} subscribed, "
                f"{out.next_id['order'] - 1:,} orders, {out.next_id['email'] - 1:,} email events")

    subscriptions.write_current(st)
    _write_truth(con, st)
    out.flush()
    tables = [f"{RAW_SCHEMA}.{t}" for t in LOAD_ORDER] + [
        f"{NEXTBEST_SCHEMA}.assignments", f"{SIM_TRUTH_SCHEMA}.customer_traits", f"{SIM_TRUTH_SCHEMA}.uplift"]
    counts = count_rows(con, tables)
    for name, rows in counts.items():
        say(f"{name}: {rows:,} rows")
    elapsed = time.perf_counter() - began
    say(f"done in {elapsed:.1f}s")
    return SimulationSummary(customers, months, seed, clock.start, clock.end, counts, elapsed)


def _signup_days(rng: np.random.Generator, n: int, days: int) -> np.ndarray:
    """Sign-up day per customer: an initial cohort before the window, the rest growing through it."""
    initial = rng.random(n) < INITIAL_COHORT
    before = -rng.integers(1, 540, n)
    during = (days * rng.random(n) ** 0.8).astype(np.int64)
    day = np.where(initial, before, np.minimum(during, days - 1))
    # Ids in sign-up order, so customer numbers read like a real store's.
    return np.sort(day).astype(np.int32)


def _write_customers(st: State) -> None:
    rng, n = st.rng, st.n
    countries = catalog.COUNTRIES
    country = rng.choice(len(countries), n, p=[c[2] for c in countries])
    name = np.where(rng.random(n) < 0.93, rng.integers(0, len(catalog.FIRST_NAMES), n), -1)
    chan = np.where(rng.random(n) < 0.8, rng.choice(3, n, p=[0.7, 0.15, 0.15]), -1)
    # Kept on the state so the first subscription never starts before the account.
    st.created_sec = st.seconds(st.created_day, 0, 24)
    st.out.customers.add(cid=np.arange(1, n + 1), created=st.created_sec, name=name,
                         country=country, tz=country, opt_in=st.traits.opt_in, chan=chan)


def _start_initial_cohort(st: State) -> None:
    idx = np.flatnonzero((st.created_day < 0) & (st.traits.customer_type == SUBSCRIBER))
    subscriptions.start(st, idx, st.created_sec[idx] + 300, gift=st.traits.is_gift[idx])
    buyers = np.flatnonzero((st.created_day < 0) & (st.traits.customer_type == ONE_TIME))
    st.onetime_left[buyers] = st.rng.poisson(0.6, len(buyers))
    st.next_onetime[buyers] = np.where(st.onetime_left[buyers] > 0, st.rng.integers(0, 120, len(buyers)), NEVER)


def _signups(st: State, d0: int, d1: int) -> None:
    new = (st.created_day >= d0) & (st.created_day < d1)
    idx = np.flatnonzero(new & (st.traits.customer_type == SUBSCRIBER))
    subscriptions.start(st, idx, st.created_sec[idx] + 300, gift=st.traits.is_gift[idx])
    # New subscribers often arrive through a welcome code, the price-sensitive more often (~40% overall).
    welcome = idx[st.rng.random(len(idx)) < 0.05 + 0.9 * st.traits.price_sensitivity[idx]]
    st.discount_next[welcome] = catalog.DISCOUNT_CODES.index("WELCOME10")
    buyers = np.flatnonzero(new & (st.traits.customer_type == ONE_TIME))
    st.onetime_left[buyers] = 1 + st.rng.poisson(0.6, len(buyers))
    st.next_onetime[buyers] = st.created_day[buyers]


def _write_truth(con, st: State) -> None:
    """sim_truth.customer_traits and sim_truth.uplift (the oracle; nothing in the pipeline reads it)."""
    t: Traits = st.traits
    n = st.n
    subscriber = t.customer_type == SUBSCRIBER
    buf = TableBuffer(con, f"{SIM_TRUTH_SCHEMA}.customer_traits", {
        "cid": "int", "ctype": CUSTOMER_TYPES, "eng": "float", "haz": "float", "cad": "int", "pref": "int",
        "mis": "bool", "app": "float", "price": "float", "gift": "bool", "style": ("brief", "warm"),
        "pay": "float", "dog": "bool",
    }, "select " + id_sql("customer", "cid") + ", cast(ctype as varchar), eng, haz, "
       "case when cad > 0 then cast(cad as integer) end, case when pref > 0 then cast(pref as integer) end, "
       "mis, app, price, gift, cast(style as varchar), pay, dog from _chunk", st.clock.start64)
    buf.add(cid=np.arange(1, n + 1), ctype=t.customer_type, eng=t.engagement, haz=t.churn_hazard,
            cad=np.where(subscriber, t.cadence, 0), pref=np.where(subscriber, t.preferred_cadence, 0),
            mis=t.mismatch, app=t.addon_appetite, price=t.price_sensitivity, gift=t.is_gift,
            style=t.warm_writer.astype(int), pay=t.payment_fail, dog=t.sleeping_dog)
    buf.flush()
    goals = sorted({g for g, _ in GOALS.values()})
    up = TableBuffer(con, f"{SIM_TRUTH_SCHEMA}.uplift", {
        "cid": "int", "pb": PLAYBOOKS, "goal": goals, "u": "float",
    }, "select " + id_sql("customer", "cid") + ", cast(pb as varchar), cast(goal as varchar), u from _chunk",
        st.clock.start64)
    for k, playbook in enumerate(PLAYBOOKS):
        up.add(cid=np.arange(1, n + 1), pb=np.full(n, k), goal=np.full(n, goals.index(GOALS[playbook][0])),
               u=true_uplift(t, playbook))
    up.flush()


__all__ = ["simulate", "SimulationSummary", "DEFAULT_CUSTOMERS", "DEFAULT_MONTHS", "DEFAULT_SEED"]

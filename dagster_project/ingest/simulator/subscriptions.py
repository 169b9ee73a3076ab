"""Subscription lifecycle: start, close, churn, reactivation and portal changes.

Churn is a scheduled latent event: each subscription draws its churn day from
the customer's hazard when it starts, and engagement fades in the ~75 days
before it (see `State.engagement_factor`). Every cancellation, whatever its
reason, goes through `churn`, so past campaigns can move or prevent it.
"""

from __future__ import annotations

import numpy as np

from . import catalog
from .catalog import REASON
from .state import DAY, NEVER, State, pick
from .writer import NULL_TS


def draw_churn_day(st: State, idx: np.ndarray, from_day) -> np.ndarray:
    """Churn day after `from_day` from each customer's hazard (memoryless)."""
    wait = st.rng.exponential(1.0 / st.traits.daily_hazard[idx])
    return (np.asarray(from_day) + 1 + wait).clip(max=NEVER).astype(np.int32)


def start(st: State, idx: np.ndarray, sec: np.ndarray, *, gift=None, keep_churn: bool = False) -> np.ndarray:
    """Start a new subscription for customers `idx` at `sec`; returns the new ids."""
    n = len(idx)
    ids = st.out.ids("sub", n)
    day = (sec // DAY).astype(np.int32)
    st.sub_id[idx] = ids
    st.price[idx] = catalog.sub_price_cents(st.product[idx], st.plan[idx])
    st.sub_start[idx] = day
    st.start_sec[idx] = sec
    is_gift = np.zeros(n, dtype=bool) if gift is None else gift
    st.gift[idx] = is_gift
    st.gift_left[idx] = st.traits.gift_cycles[idx]
    # Sign-ups before the window are charged on their cycle from the window start.
    behind = np.maximum(0, -day)
    cycles_done = -(-behind // st.cadence[idx])
    st.next_charge[idx] = day + cycles_done * st.cadence[idx]
    st.cycles[idx] = cycles_done
    st.paused_until[idx] = -1
    st.skip_hist[idx] = 0
    st.consec_fail[idx] = 0
    if not keep_churn:
        churn = draw_churn_day(st, idx, np.maximum(day, 0))
        st.churn_day[idx] = np.where(is_gift, NEVER, churn)
        st.churn_reason[idx] = -1
    st.reactivate_day[idx] = NEVER
    return ids


def close(st: State, idx: np.ndarray, sec: np.ndarray, reason: np.ndarray) -> None:
    """Cancel the current subscription of customers `idx` and write its row."""
    n = len(idx)
    if n == 0:
        return
    _write(st, idx, status=np.full(n, catalog.SUB_STATUSES.index("cancelled")), cancelled=sec,
           reason=reason, next_charge=np.full(n, NULL_TS))
    st.sub_id[idx] = -1
    st.next_charge[idx] = NEVER
    st.churn_day[idx] = NEVER
    st.churn_reason[idx] = -1
    st.last_cancel_day[idx] = (sec // DAY).astype(np.int32)
    st.last_cancel_reason[idx] = reason


def write_current(st: State) -> None:
    """Write the subscriptions still running at the end (status active or paused)."""
    idx = np.flatnonzero(st.subscribed)
    paused = st.paused_until[idx] >= st.clock.days
    status = np.where(paused, catalog.SUB_STATUSES.index("paused"), catalog.SUB_STATUSES.index("active"))
    next_day = np.where(paused, np.maximum(st.next_charge[idx], st.paused_until[idx]), st.next_charge[idx])
    next_day = np.maximum(next_day, st.clock.days)
    _write(st, idx, status=status, cancelled=np.full(len(idx), NULL_TS), reason=np.full(len(idx), -1),
           next_charge=next_day.astype(np.int64) * DAY + 6 * 3600)


def _write(st: State, idx, *, status, cancelled, reason, next_charge) -> None:
    st.out.subscriptions.add(
        sid=st.sub_id[idx], cid=idx + 1, product=st.product[idx], plan=st.plan[idx] - 1, status=status,
        cadence=st.cadence[idx], price=st.price[idx], started=st.start_sec[idx], cancelled=cancelled,
        reason=reason, next_charge=next_charge, gift=st.gift[idx],
    )


def defer_protected(st: State, d1: int) -> None:
    """Customers a past campaign retained do not churn before their protection ends."""
    idx = np.flatnonzero(st.subscribed & (st.churn_day < d1) & (st.protected_until > st.churn_day))
    if len(idx):
        st.churn_day[idx] = draw_churn_day(st, idx, st.protected_until[idx])
        st.churn_reason[idx] = -1


def churn(st: State, d0: int, d1: int) -> None:
    """Cancel subscriptions whose churn day falls in [d0, d1), with a reason from traits and state."""
    idx = np.flatnonzero(st.subscribed & (st.churn_day < d1))
    if len(idx) == 0:
        return
    t, rng = st.traits, st.rng
    n = len(idx)
    # weights over: too_much_coffee, price, taste, moving, other, payment_failed
    w = np.column_stack([
        np.where(st.mismatch_open[idx], 4.0, 0.05), 0.2 + 2.5 * t.price_sensitivity[idx],
        np.full(n, 0.6), np.full(n, 0.25), np.full(n, 0.4), np.where(st.consec_fail[idx] > 0, 2.0, 0.0),
    ])
    codes = np.array([REASON[r] for r in ("too_much_coffee", "price", "taste", "moving", "other", "payment_failed")])
    reason = codes[pick(rng, w)]
    reason = np.where(st.churn_reason[idx] >= 0, st.churn_reason[idx], reason)
    sec = st.seconds(np.maximum(st.churn_day[idx], d0))
    by_customer = reason != REASON["payment_failed"]
    tried = by_customer & (rng.random(n) < 0.5)
    st.out.portal_event(idx[tried] + 1, sec[tried] - rng.integers(60, 600, tried.sum()), "cancel_attempt",
                        sub=st.sub_id[idx[tried]], reason=reason[tried])
    st.out.portal_event(idx[by_customer] + 1, sec[by_customer], "cancel", sub=st.sub_id[idx[by_customer]],
                        reason=reason[by_customer])
    close(st, idx, sec, reason)
    # Some come back later on their own; past campaigns may hold that back.
    comes_back = rng.random(n) < 0.4
    back = (sec // DAY) + 20 + rng.exponential(240.0, n)
    back = np.maximum(back, st.block_react[idx])
    st.reactivate_day[idx] = np.where(comes_back, back, NEVER).astype(np.int32)


def saved_cancel_attempts(st: State, d0: int, d1: int) -> None:
    """Customers drifting towards churn sometimes try to cancel and are talked out of it."""
    soon = st.subscribed & (st.churn_day - d0 < 45) & (st.churn_day >= d1)
    idx = np.flatnonzero(soon & (st.rng.random(st.n) < 0.05))
    reason = st.rng.choice([REASON["price"], REASON["too_much_coffee"], REASON["other"]], len(idx))
    sec = np.maximum(st.seconds(st.rng.integers(d0, d1, len(idx))), st.start_sec[idx] + 600)
    st.out.portal_event(idx + 1, sec, "cancel_attempt", sub=st.sub_id[idx], reason=reason)


def reactivate(st: State, d0: int, d1: int) -> None:
    """Cancelled customers whose comeback day is this week start a new subscription."""
    idx = np.flatnonzero(~st.subscribed & (st.reactivate_day < d1))
    if len(idx) == 0:
        return
    sec = st.seconds(np.maximum(st.reactivate_day[idx], d0))
    ids = start(st, idx, sec)
    st.discount_next[idx] = catalog.DISCOUNT_CODES.index("COMEBACK20")
    st.out.portal_event(idx + 1, sec - 30, "reactivate", sub=ids)


def due_cadence_changes(st: State, d0: int, d1: int) -> None:
    """Make the cadence changes past campaigns scheduled for this week, if the customer still subscribes."""
    idx = np.flatnonzero((st.cadence_change_sec >= d0 * DAY) & (st.cadence_change_sec < d1 * DAY))
    sec = st.cadence_change_sec[idx]
    st.cadence_change_sec[idx] = -1
    # A plan upgrade may have replaced the subscription since; the change goes to the live one.
    live = st.subscribed[idx] & (st.start_sec[idx] < sec)
    idx, sec = idx[live], sec[live]
    to = np.where(st.mismatch_open[idx], st.traits.preferred_cadence[idx], longer_cadence(st.cadence[idx]))
    change_cadence(st, idx, sec, to)


def change_cadence(st: State, idx: np.ndarray, sec: np.ndarray, to_days: np.ndarray) -> None:
    """Move subscriptions to a new cadence (portal change_cadence event)."""
    st.out.portal_event(idx + 1, sec, "change_cadence", sub=st.sub_id[idx], a=st.cadence[idx], b=to_days)
    st.cadence[idx] = to_days
    # Once on the cadence they drink at, the mismatch (and its skipping) is gone.
    st.mismatch_open[idx] &= to_days < st.traits.preferred_cadence[idx]


def longer_cadence(cadence: np.ndarray) -> np.ndarray:
    """The next longer cadence (the longest one steps back down)."""
    pos = np.searchsorted(catalog.CADENCES, cadence)
    return np.where(pos + 1 < len(catalog.CADENCES), catalog.CADENCES[np.minimum(pos + 1, len(catalog.CADENCES) - 1)],
                    catalog.CADENCES[-2]).astype(np.int32)


def portal_changes(st: State, d0: int, d1: int) -> None:
    """Organic portal actions: cadence changes, pauses, resumes, swaps, reschedules."""
    rng, n = st.rng, st.n
    day = rng.integers(d0, d1, n)
    # Only after the subscription started and before this week's cancellation, if any.
    when = np.maximum(st.seconds(day), st.start_sec + 600)
    day = when // DAY
    # ... and before this week's delivery, if any: that order may upgrade the plan, which replaces
    # the subscription an action after it would name.
    active = (st.subscribed & (st.paused_until < d0) & ~st.gift & (day < st.churn_day)
              & ((st.next_charge >= d1) | (day < st.next_charge)))
    # Mismatch customers eventually fix their cadence (~3% a month) unless a campaign's holdout blocks it.
    free = active & (st.block_cadence <= d0)
    fix = np.flatnonzero(free & st.mismatch_open & (rng.random(n) < 0.007))
    change_cadence(st, fix, when[fix], st.traits.preferred_cadence[fix])
    other = np.flatnonzero(free & ~st.mismatch_open & (rng.random(n) < 0.0015))
    change_cadence(st, other, when[other], longer_cadence(st.cadence[other]))

    pause = np.flatnonzero(active & (rng.random(n) < 0.0025))
    st.paused_until[pause] = day[pause] + rng.choice([28, 42, 56], len(pause))
    st.out.portal_event(pause + 1, when[pause], "pause", sub=st.sub_id[pause])
    resume = np.flatnonzero(st.subscribed & (st.paused_until >= d0) & (st.paused_until < d1)
                            & (st.paused_until < st.churn_day))
    st.out.portal_event(resume + 1, st.seconds(st.paused_until[resume]), "resume", sub=st.sub_id[resume])

    swap = np.flatnonzero(active & (rng.random(n) < 0.003))
    new = catalog.COFFEE[rng.integers(0, len(catalog.COFFEE), len(swap))]
    new = np.where(new == st.product[swap], catalog.COFFEE[0] if len(swap) else new, new)
    moved = new != st.product[swap]
    swap, new = swap[moved], new[moved]
    st.out.portal_event(swap + 1, when[swap], "swap_product", sub=st.sub_id[swap],
                        p1=st.product[swap], p2=new)
    st.product[swap] = new
    st.price[swap] = catalog.sub_price_cents(new, st.plan[swap])

    resched = np.flatnonzero(active & (st.next_charge >= d1) & (rng.random(n) < 0.004))
    days = rng.integers(3, 11, len(resched))
    st.out.portal_event(resched + 1, when[resched], "reschedule", sub=st.sub_id[resched], a=days)
    st.next_charge[resched] += days

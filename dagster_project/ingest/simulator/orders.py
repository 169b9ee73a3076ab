"""Orders, order items and payments: one order per subscription cycle plus store orders.

A cycle order is skipped (portal 'skip' first), charged and fulfilled, charged
and failed (payment failure), or refunded. Add-ons ride on cycle orders
(portal 'add_one_time' first); customers who keep adding items later upgrade
their plan, so add-ons precede upgrades. Gift subscriptions end after their
fixed number of deliveries.
"""

from __future__ import annotations

import numpy as np

from . import catalog, subscriptions
from .catalog import ORDER_STATUS, REASON
from .state import DAY, NEVER, State
from .writer import NULL_TS

DISCOUNT_RATES = np.array([0.10, 0.15, 0.20, 0.10])  # WELCOME10, SAVE15, COMEBACK20, BREW10
HOUR = 3600


def _shipping(st: State, sec: np.ndarray, shipped_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shipped 1-2 days after the order, delivered 2-5 days later; null if still in the future."""
    n = len(sec)
    shipped = sec + st.rng.integers(1 * DAY, 2 * DAY, n)
    delivered = shipped + st.rng.integers(2 * DAY, 5 * DAY, n)
    end = st.clock.end_sec
    shipped_out = np.where(shipped_mask & (shipped < end), shipped, NULL_TS)
    delivered_out = np.where(shipped_mask & (delivered < end), delivered, NULL_TS)
    return shipped_out, delivered_out


def _payments(st: State, cid, oid, sec, failed, amount) -> None:
    n = len(cid)
    reason = np.where(failed, st.rng.integers(0, len(catalog.FAILURE_REASONS), n), -1)
    st.out.payments.add(pid=st.out.ids("payment", n), cid=cid, oid=oid, sec=sec + 30,
                        status=failed.astype(int), reason=reason, amount=amount)


def cycle_orders(st: State, d0: int, d1: int) -> None:
    """Charge (or skip) every subscription whose next cycle falls in [d0, d1)."""
    rng, t = st.rng, st.traits
    due = st.subscribed & (st.next_charge < d1) & (st.next_charge < st.churn_day)
    on_pause = st.paused_until >= st.next_charge
    paused = np.flatnonzero(due & on_pause)
    st.next_charge[paused] += st.cadence[paused]
    idx = np.flatnonzero(due & ~on_pause)
    n = len(idx)
    if n == 0:
        return
    day = st.next_charge[idx].astype(np.int64)
    sec = np.maximum(day * DAY + rng.integers(6 * HOUR, 8 * HOUR, n), st.start_sec[idx] + 120)
    oid = st.out.ids("order", n)
    cycles = st.cycles[idx]

    # Mismatch customers have coffee left every other cycle, so they skip it.
    mismatch = st.mismatch_open[idx]
    p_skip = np.where(mismatch, np.where(cycles % 2 == 1, 0.9, 0.08), 0.04)
    p_skip = np.where((cycles == 0) | st.gift[idx], 0.0, p_skip)
    skipped = rng.random(n) < p_skip
    charged = ~skipped
    appetite = t.addon_appetite[idx]
    addon = charged & (st.block_addon[idx] <= day) & (rng.random(n) < 0.02 + 0.3 * appetite**2)
    addon_prod = catalog.ADDONS[rng.integers(0, len(catalog.ADDONS), n)]
    disc = np.where(charged, st.discount_next[idx], -1)
    sub_total = st.price[idx]
    discount = np.where(disc >= 0, np.round(sub_total * DISCOUNT_RATES[np.maximum(disc, 0)]), 0).astype(np.int64)
    total = sub_total - discount + np.where(addon, catalog.PRICE_CENTS[addon_prod], 0)
    failed = charged & (rng.random(n) < t.payment_fail[idx])
    ok = charged & ~failed
    refunded = ok & (rng.random(n) < 0.01)
    status = np.select([skipped, failed, refunded], [ORDER_STATUS["skipped"], ORDER_STATUS["failed"],
                       ORDER_STATUS["refunded"]], ORDER_STATUS["fulfilled"])
    shipped, delivered = _shipping(st, sec, ok)
    cid = idx + 1
    st.out.orders.add(oid=oid, cid=cid, sub=st.sub_id[idx], sec=sec, status=status,
                      total=np.where(skipped, 0, total), discount=disc, shipped=shipped, delivered=delivered)
    c = np.flatnonzero(charged)
    st.out.order_items.add(oid=oid[c], product=st.product[idx[c]], qty=st.plan[idx[c]],
                           unit=catalog.bag_price_cents(st.product[idx[c]]), one_time=np.zeros(len(c), bool), sec=sec[c])
    a = np.flatnonzero(addon)
    st.out.order_items.add(oid=oid[a], product=addon_prod[a], qty=np.ones(len(a), np.int64),
                           unit=catalog.PRICE_CENTS[addon_prod[a]], one_time=np.ones(len(a), bool), sec=sec[a])
    before = np.maximum(sec - rng.integers(HOUR, 2 * DAY, n), st.start_sec[idx] + 60)
    st.out.portal_event(cid[a], before[a], "add_one_time", p1=addon_prod[a], order=oid[a])
    s = np.flatnonzero(skipped)
    st.out.portal_event(cid[s], before[s], "skip", sub=st.sub_id[idx[s]], order=oid[s])
    _payments(st, cid[c], oid[c], sec[c], failed[c], total[c])

    # State after the cycle.
    st.cycles[idx] += 1
    st.skip_hist[idx] = ((st.skip_hist[idx].astype(np.int32) << 1) | skipped) & 0xFF
    st.next_charge[idx] += st.cadence[idx]
    st.discount_next[idx[charged]] = -1
    st.orders_count[idx[ok]] += 1
    st.spend[idx[ok]] += total[ok]
    got = idx[ok & addon]
    st.addon_count[got] += 1
    st.last_addon_day[got] = day[ok & addon]
    st.consec_fail[idx[ok]] = 0
    st.consec_fail[idx[failed]] += 1
    _after_failures(st, idx[failed], sec[failed])
    _gift_endings(st, idx, sec, ok)
    _upgrades(st, idx, sec, ok)


def _after_failures(st: State, idx: np.ndarray, sec: np.ndarray) -> None:
    """Half update their card; repeated failures end in a 'payment_failed' cancellation."""
    rng, n = st.rng, len(idx)
    day = sec // DAY
    upd = rng.random(n) < 0.5
    st.out.portal_event(idx[upd] + 1, sec[upd] + rng.integers(HOUR, 3 * DAY, upd.sum()), "update_payment")
    lost = (st.consec_fail[idx] >= 2) & ~upd & (st.protected_until[idx] <= day + 3)
    lost_idx = idx[lost]
    st.churn_day[lost_idx] = np.minimum(st.churn_day[lost_idx], day[lost] + 3)
    st.churn_reason[lost_idx] = REASON["payment_failed"]


def _gift_endings(st: State, idx, sec, ok) -> None:
    gift = st.gift[idx] & ok
    st.gift_left[idx[gift]] -= 1
    ended = gift & (st.gift_left[idx] <= 0)
    e = idx[ended]
    subscriptions.close(st, e, sec[ended] + HOUR, np.full(len(e), REASON["gift_ended"]))
    # Some recipients liked it enough to subscribe themselves.
    keep = st.rng.random(len(e)) < 0.3
    st.reactivate_day[e[keep]] = (sec[ended][keep] // DAY + st.rng.integers(3, 40, keep.sum())).astype(np.int32)


def _upgrades(st: State, idx, sec, ok) -> None:
    """Customers who have bought add-ons repeatedly move to a bigger plan."""
    eligible = ok & st.subscribed[idx] & ~st.gift[idx] & (st.plan[idx] < 3) & (st.addon_count[idx] >= 2) \
        & (st.cycles[idx] >= 3)
    up = eligible & (st.rng.random(len(idx)) < 0.2 * st.traits.addon_appetite[idx])
    u = idx[up]
    when = sec[up] + 4 * HOUR
    # An upgrade changes neither the billing rhythm nor when they would churn (close resets both).
    churn_day, next_charge = st.churn_day[u], st.next_charge[u]
    subscriptions.close(st, u, when, np.full(len(u), REASON["upgraded"]))
    st.plan[u] += 1
    subscriptions.start(st, u, when, keep_churn=True)
    st.next_charge[u] = next_charge
    st.churn_day[u] = churn_day


def store_order(st: State, idx: np.ndarray, sec: np.ndarray, product: np.ndarray, qty: np.ndarray,
                extra: np.ndarray, *, add_on: bool, can_fail: bool = True) -> np.ndarray:
    """One-time orders (no subscription): `product` x `qty` plus an optional `extra` item (-1: none).

    With `add_on`, every line is a one-time add-on announced by an 'add_one_time' portal event.
    Returns a mask of orders that were paid.
    """
    rng, n = st.rng, len(idx)
    if n == 0:
        return np.zeros(0, bool)
    oid = st.out.ids("order", n)
    has_extra = extra >= 0
    total = catalog.PRICE_CENTS[product] * qty + np.where(has_extra, catalog.PRICE_CENTS[np.maximum(extra, 0)], 0)
    failed = (rng.random(n) < st.traits.payment_fail[idx]) if can_fail else np.zeros(n, bool)
    ok = ~failed
    refunded = ok & (rng.random(n) < 0.01)
    status = np.select([failed, refunded], [ORDER_STATUS["failed"], ORDER_STATUS["refunded"]], ORDER_STATUS["fulfilled"])
    shipped, delivered = _shipping(st, sec, ok)
    cid = idx + 1
    st.out.orders.add(oid=oid, cid=cid, sub=np.full(n, -1), sec=sec, status=status, total=total,
                      discount=np.full(n, -1), shipped=shipped, delivered=delivered)
    flag = np.full(n, add_on)
    st.out.order_items.add(oid=oid, product=product, qty=qty, unit=catalog.PRICE_CENTS[product], one_time=flag, sec=sec)
    x = np.flatnonzero(has_extra)
    st.out.order_items.add(oid=oid[x], product=extra[x], qty=np.ones(len(x), np.int64),
                           unit=catalog.PRICE_CENTS[extra[x]], one_time=flag[x], sec=sec[x])
    if add_on:
        st.out.portal_event(cid, sec - rng.integers(60, 1800, n), "add_one_time", p1=product, order=oid)
        st.out.portal_event(cid[x], sec[x] - rng.integers(60, 1800, len(x)), "add_one_time", p1=extra[x], order=oid[x])
    _payments(st, cid, oid, sec, failed, total)
    st.orders_count[idx[ok]] += 1
    st.spend[idx[ok]] += total[ok]
    return ok


def one_time_buyers(st: State, d0: int, d1: int) -> None:
    """Store orders of customers without a subscription (one-time buyers)."""
    idx = np.flatnonzero(st.next_onetime < d1)
    if len(idx) == 0:
        return
    rng, n = st.rng, len(idx)
    day = np.maximum(st.next_onetime[idx], d0)
    qty = rng.choice([1, 2], n, p=[0.7, 0.3])
    extra_pool = np.concatenate([catalog.ADDONS, catalog.GIFT_BOXES])
    extra = np.where(rng.random(n) < 0.3, extra_pool[rng.integers(0, len(extra_pool), n)], -1)
    sec = np.maximum(st.seconds(day), st.created_sec[idx] + 600)
    store_order(st, idx, sec, st.product[idx], qty, extra, add_on=False)
    st.onetime_left[idx] -= 1
    later = day + 20 + rng.exponential(70.0, n)
    st.next_onetime[idx] = np.where(st.onetime_left[idx] > 0, later, NEVER).astype(np.int32)

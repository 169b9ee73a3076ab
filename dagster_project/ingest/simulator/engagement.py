"""Engagement: portal logins and email (the fortnightly newsletter and campaign sends).

Open and login rates come from each customer's baseline engagement times a
factor that fades before a scheduled churn, which is what makes falling
engagement predictive. Every open and login is also counted in the weekly
activity history that campaign audiences are picked from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import catalog
from .state import DAY, State
from .traits import ONE_TIME

NEWSLETTER_EVERY_WEEKS = 2
NEWSLETTER_CODE_USE = 0.8  # P(a reader uses the newsletter's code) = this x price_sensitivity^3
HOUR = 3600


def logins(st: State, d0: int, d1: int) -> None:
    """Portal logins this week (Poisson, engagement-driven; blocked for some campaign holdouts)."""
    rng, n = st.rng, st.n
    subscribed = st.subscribed
    rate = np.where(subscribed, 0.05 + 0.45 * st.traits.engagement, 0.02)
    idx_sub = np.flatnonzero(subscribed)
    rate[idx_sub] *= st.engagement_factor(idx_sub, d0)
    rate[st.created_day >= d1] = 0.0
    count = np.minimum(rng.poisson(rate), 3)
    idx = np.repeat(np.arange(n), count)
    day = rng.integers(d0, d1, len(idx))
    sec = st.seconds(day, 6, 23)
    keep = (day >= st.block_login[idx]) & (sec > st.created_sec[idx])
    emit_logins(st, idx[keep], sec[keep])


def emit_logins(st: State, idx: np.ndarray, sec: np.ndarray) -> None:
    """Write login events and count them as activity."""
    st.out.portal_event(idx + 1, sec, "login")
    st.add_activity(idx, sec // DAY, opens=False)


@dataclass
class Sends:
    """What happened to one batch of sends (arrays aligned with the recipients)."""

    msg: np.ndarray
    opened: np.ndarray
    clicked: np.ndarray
    open_sec: np.ndarray


def send(st: State, idx: np.ndarray, sec: int, campaign: int, open_p: np.ndarray,
         click_given_open: np.ndarray | float = 0.1) -> Sends:
    """Send one email to customers `idx` and write sent/delivered/bounce/open/click/unsubscribe/complaint."""
    rng, n, out = st.rng, len(idx), st.out
    cid = idx + 1
    msg = out.ids("message", n)
    sent = np.full(n, sec, dtype=np.int64) + rng.integers(0, 1800, n)
    out.email_events(cid, campaign, msg, "sent", sent)
    bounced = rng.random(n) < 0.01
    delivered = ~bounced
    out.email_events(cid[delivered], campaign, msg[delivered], "delivered", sent[delivered] + rng.integers(5, 120, delivered.sum()))
    out.email_events(cid[bounced], campaign, msg[bounced], "bounce", sent[bounced] + rng.integers(5, 120, bounced.sum()))
    # Hard bounces stop future sends.
    st.bounced[idx[bounced & (rng.random(n) < 0.3)]] = True

    opened = delivered & (rng.random(n) < open_p)
    open_sec = sent + (rng.exponential(10.0, n) * HOUR).astype(np.int64) + 60
    out.email_events(cid[opened], campaign, msg[opened], "open", open_sec[opened])
    st.add_activity(idx[opened], open_sec[opened] // DAY, opens=True)
    clicked = opened & (rng.random(n) < click_given_open)
    click_sec = open_sec + rng.integers(10, 600, n)
    out.email_events(cid[clicked], campaign, msg[clicked], "click", click_sec[clicked])
    unsub = delivered & (rng.random(n) < np.where(opened, 0.006, 0.0015))
    out.email_events(cid[unsub], campaign, msg[unsub], "unsubscribe", open_sec[unsub] + 120)
    st.unsubscribed[idx[unsub]] = True
    complaint = delivered & ~unsub & (rng.random(n) < 0.0003)
    out.email_events(cid[complaint], campaign, msg[complaint], "complaint", open_sec[complaint] + 300)
    st.unsubscribed[idx[complaint]] = True
    return Sends(msg=msg, opened=opened, clicked=clicked, open_sec=open_sec)


def reachable(st: State, day: int) -> np.ndarray:
    """Customers email may go to: opted in, never unsubscribed or hard-bounced, already signed up."""
    return st.traits.opt_in & ~st.unsubscribed & ~st.bounced & (st.created_day < day)


def open_probability(st: State, idx: np.ndarray, day: int) -> np.ndarray:
    """Chance a delivered email is opened: baseline engagement, fading before churn."""
    base = 0.1 + 0.5 * st.traits.engagement[idx]
    factor = np.where(st.subscribed[idx], st.engagement_factor(idx, day), 0.5)
    return base * factor


def newsletter(st: State, week: int, d0: int) -> None:
    """The fortnightly newsletter to reachable active subscribers and recent buyers."""
    if week % NEWSLETTER_EVERY_WEEKS:
        return
    day = d0 + 1
    if day >= st.clock.days:
        return
    recent_buyer = (st.traits.customer_type == ONE_TIME) & (st.created_day > day - 180)
    idx = np.flatnonzero(reachable(st, day) & (st.subscribed | recent_buyer))
    campaign = st.out.campaign(f"newsletter-{st.clock.date(day).isoformat()}")
    sends = send(st, idx, day * DAY + 10 * HOUR, campaign, open_probability(st, idx, day), 0.1)
    # Each newsletter carries a 10%-off code for the next delivery; deal seekers use it, full-price
    # loyalists ignore it, so a subscriber's discounted orders show how price-sensitive they are.
    reader = idx[sends.opened & st.subscribed[idx] & (st.discount_next[idx] < 0)]
    uses = reader[st.rng.random(len(reader)) < NEWSLETTER_CODE_USE * st.traits.price_sensitivity[reader] ** 3]
    st.discount_next[uses] = catalog.DISCOUNT_CODES.index("BREW10")

"""Support tickets: rate and topic follow the customer's state; the body follows their style.

'brief' writers send a short line with no greeting; 'warm' writers greet,
thank and write at least twenty words (SHARED_SEMANTICS.md). Some issues are
not fixed the first time, so the customer writes again about the same topic
within two weeks.
"""

from __future__ import annotations

import numpy as np

from .sinks import TOPICS
from .state import DAY, State, pick
from .writer import NULL_TS

# topic -> (brief variants, warm variants)
_TEXT = {
    "delivery_delay": (
        ("Where is my order?", "My coffee still has not arrived."),
        ("Hi there! My last delivery seems to be running late and the tracking has not moved for days. "
         "Could you take a look for me? Thanks so much for your help.",
         "Hello team, I hope you are well. My coffee was due a few days ago but nothing has arrived yet. "
         "Would you mind checking where it is? Many thanks in advance."),
    ),
    "damaged_package": (
        ("Bag arrived torn open.", "Package was crushed, beans everywhere."),
        ("Hi there! Unfortunately my latest package arrived damaged and one of the bags had split open. "
         "Could you send a replacement? Thank you so much, I really appreciate it.",
         "Hello team, the box came in quite crushed this time and the coffee bag was torn. "
         "Is there anything you can do about it? Thanks a lot for looking into this."),
    ),
    "billing": (
        ("Why was I charged twice?", "Wrong amount on my last invoice."),
        ("Hi there! I noticed my last charge was a bit higher than I expected and I am not sure why. "
         "Could you explain what it includes? Thanks so much for clarifying.",
         "Hello team, I think there might be a mistake on my most recent bill, the amount looks different "
         "from my plan price. Could you check it please? Many thanks."),
    ),
    "payment_issue": (
        ("My card payment keeps failing.", "Cannot update my card."),
        ("Hi there! I got an email saying my payment failed, but my card should be fine. Could you help me "
         "sort this out so my next delivery goes through? Thanks so much.",
         "Hello team, I tried to update my payment details in the portal but it did not seem to save. "
         "Could you help me with this? Thank you very much for your help."),
    ),
    "change_address": (
        ("Please update my shipping address.", "I moved, new address needed."),
        ("Hi there! I have just moved house and would like my next deliveries to go to my new address. "
         "Could you help me update it? Thanks so much, really appreciate it.",
         "Hello team, we are moving next week, so could you please change the shipping address on my "
         "subscription before the next delivery? Thank you kindly for your help."),
    ),
    "product_question": (
        ("Is the decaf organic?", "Which roast is least bitter?"),
        ("Hi there! I am curious about your single origin coffees and would love a recommendation for "
         "something fruity and light. What would you suggest? Thanks so much!",
         "Hello team, I really enjoy my current coffee and I wonder how it compares to your other blends. "
         "Could you tell me a bit more about them? Many thanks."),
    ),
    "grind_preference": (
        ("Can I get whole beans instead?", "Need a coarser grind please."),
        ("Hi there! I just bought a French press, so I would like my coffee ground a bit coarser from now on. "
         "Could you change that for me? Thanks so much for your help.",
         "Hello team, I would love to switch from ground coffee to whole beans for my next deliveries if "
         "that is possible. Could you update my order? Thank you very much."),
    ),
    "cancel_request": (
        ("Please cancel my subscription.", "I want to stop my deliveries."),
        ("Hi there! Thank you for all the lovely coffee, but I think I need to stop my subscription for now. "
         "Could you help me cancel it? Thanks so much for everything.",
         "Hello team, I have really enjoyed the coffee, thank you, but I have too much at home at the moment. "
         "Could you cancel or pause my subscription please? Many thanks."),
    ),
}

# Flat vocabulary: body code = topic * 4 + warm * 2 + variant.
BODIES: tuple[str, ...] = tuple(text for topic in TOPICS for style in _TEXT[topic] for text in style)
_BASE_TOPIC_WEIGHTS = np.array([0.2, 0.08, 0.1, 0.04, 0.12, 0.2, 0.16, 0.06])
_T = {name: i for i, name in enumerate(TOPICS)}
STATUS_OPEN, STATUS_PENDING, STATUS_SOLVED, STATUS_CLOSED = range(4)


def tickets(st: State, d0: int, d1: int) -> None:
    """New tickets this week (~0.2 per active customer a month) and their repeat contacts."""
    rng, n = st.rng, st.n
    churn_soon = st.subscribed & (st.churn_day - d0 < 30)
    failing = st.consec_fail > 0
    rate = np.where(st.subscribed, 0.035, 0.006) * (1 + 2.0 * failing + 1.5 * churn_soon)
    rate[st.created_day >= d1] = 0.0
    idx = np.flatnonzero(rng.random(n) < rate)
    if len(idx) == 0:
        return
    w = np.tile(_BASE_TOPIC_WEIGHTS, (len(idx), 1))
    w[:, _T["payment_issue"]] += 0.6 * failing[idx]
    w[:, _T["billing"]] += 0.2 * failing[idx]
    w[:, _T["cancel_request"]] += 0.4 * churn_soon[idx]
    topic = pick(rng, w)
    day = np.maximum(rng.integers(d0, d1, len(idx)), st.created_day[idx])
    sec = np.maximum(st.seconds(day, 6, 23), st.created_sec[idx] + 600)
    channel = pick(rng, np.tile([0.45, 0.35, 0.2], (len(idx), 1)))
    # Repeat contacts: same topic (and usually channel) 2-13 days later.
    rep = rng.random(len(idx)) < 0.15
    rep_sec = sec[rep] + rng.integers(2 * DAY, 14 * DAY, rep.sum())
    all_idx = np.concatenate([idx, idx[rep]])
    _emit(st, all_idx, np.concatenate([sec, rep_sec]), np.concatenate([channel, channel[rep]]),
          np.concatenate([topic, topic[rep]]), np.concatenate([np.zeros(len(idx), bool), np.ones(rep.sum(), bool)]))


def _emit(st: State, idx, sec, channel, topic, repeat) -> None:
    rng, n = st.rng, len(idx)
    resolve = (rng.exponential(20.0, n) * 3600).astype(np.int64) + 600
    resolved = sec + resolve
    done = resolved < st.clock.end_sec
    status = np.where(done, np.where(rng.random(n) < 0.6, STATUS_CLOSED, STATUS_SOLVED),
                      np.where(rng.random(n) < 0.5, STATUS_OPEN, STATUS_PENDING))
    # Repeat contacts are the unhappy ones.
    csat = np.where(repeat, rng.choice([1, 2, 3], n), rng.choice([3, 4, 5, 5], n))
    csat = np.where(done & (rng.random(n) < 0.55), csat, 0)
    body = topic * 4 + st.traits.warm_writer[idx] * 2 + rng.integers(0, 2, n)
    st.out.tickets.add(tid=st.out.ids("ticket", n), cid=idx + 1, sec=sec, channel=channel, topic=topic,
                       status=status, resolved=np.where(done, resolved, NULL_TS), csat=csat, body=body)

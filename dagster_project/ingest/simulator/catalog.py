"""The demo store's product catalog (fixed, small) and the text vocabularies.

Products follow SHARED_SEMANTICS.md: coffee (subscription eligible, 12-24 per
bag), equipment, accessories, gift boxes, and two inactive products.
"""

from __future__ import annotations

import numpy as np

# (name, category, price in cents, active)
PRODUCTS = (
    ("House Blend", "coffee", 1400, True),
    ("Morning Espresso", "coffee", 1600, True),
    ("Colombia Huila", "coffee", 1800, True),
    ("Ethiopia Yirgacheffe", "coffee", 2100, True),
    ("Kenya AA", "coffee", 2200, True),
    ("Guatemala Antigua", "coffee", 1700, True),
    ("Sumatra Mandheling", "coffee", 1900, True),
    ("Decaf Swiss Water", "coffee", 1500, True),
    ("Brazil Cerrado", "coffee", 1300, True),
    ("Costa Rica Tarrazu", "coffee", 2000, True),
    ("Rwanda Nyamasheke", "coffee", 2400, True),
    ("Cold Brew Blend", "coffee", 1200, True),
    ("Burr Grinder", "equipment", 14900, True),
    ("Gooseneck Kettle", "equipment", 6900, True),
    ("Brew Scale", "equipment", 3900, True),
    ("Paper Filters (100)", "accessory", 600, True),
    ("Stoneware Mug", "accessory", 1800, True),
    ("Storage Canister", "accessory", 2900, True),
    ("Tasting Gift Box", "gift_box", 4500, True),
    ("Holiday Gift Bundle", "gift_box", 5900, True),
    ("Summer Blend 2023", "coffee", 1600, False),
    ("Hand Grinder (old model)", "equipment", 4900, False),
)

PRICE_CENTS = np.array([p[2] for p in PRODUCTS], dtype=np.int64)
_category = np.array([p[1] for p in PRODUCTS])
_active = np.array([p[3] for p in PRODUCTS])

# Product indices (0-based; product_id is index + 1).
COFFEE = np.flatnonzero((_category == "coffee") & _active)
ADDONS = np.flatnonzero(np.isin(_category, ["equipment", "accessory"]) & _active)
GIFT_BOXES = np.flatnonzero((_category == "gift_box") & _active)

PLANS = ("single_bag", "double_bag", "family")  # 1, 2, 3 bags
CADENCES = np.array([14, 21, 28, 42, 56])
SUBSCRIBER_DISCOUNT = 0.9

CANCEL_REASONS = (
    "too_much_coffee", "price", "taste", "moving", "other", "upgraded", "gift_ended", "payment_failed",
)
REASON = {name: i for i, name in enumerate(CANCEL_REASONS)}
SUB_STATUSES = ("active", "paused", "cancelled")
ORDER_STATUSES = ("fulfilled", "skipped", "refunded", "failed")
ORDER_STATUS = {name: i for i, name in enumerate(ORDER_STATUSES)}
DISCOUNT_CODES = ("WELCOME10", "SAVE15", "COMEBACK20", "BREW10")  # BREW10: the newsletter's code
FAILURE_REASONS = ("card_declined", "expired_card", "insufficient_funds")
PAYMENT_STATUSES = ("succeeded", "failed")

FIRST_NAMES = (
    "Ava", "Ben", "Chloe", "Daniel", "Emma", "Felix", "Grace", "Hugo", "Isla", "Jack",
    "Kira", "Liam", "Maya", "Noah", "Olivia", "Pablo", "Quinn", "Rosa", "Sam", "Tara",
    "Uma", "Victor", "Wen", "Yusuf", "Zoe",
)
# (country, timezone, weight)
COUNTRIES = (
    ("US", "America/New_York", 0.30), ("US", "America/Chicago", 0.12),
    ("US", "America/Los_Angeles", 0.18), ("CA", "America/Toronto", 0.10),
    ("GB", "Europe/London", 0.14), ("DE", "Europe/Berlin", 0.08),
    ("AU", "Australia/Sydney", 0.08),
)
CHANNEL_PREFERENCES = ("email", "sms", "in_portal")


def bag_price_cents(product: np.ndarray) -> np.ndarray:
    """Subscriber price of one bag (catalog price x subscriber discount), in cents."""
    return np.round(PRICE_CENTS[product] * SUBSCRIBER_DISCOUNT).astype(np.int64)


def sub_price_cents(product: np.ndarray, plan: np.ndarray) -> np.ndarray:
    """Subscription price per delivery: subscriber bag price x bags, in cents."""
    return bag_price_cents(product) * plan


def products_frame():
    """The catalog as columns for raw.products."""
    return {
        "pid": np.arange(1, len(PRODUCTS) + 1),
        "name": np.arange(len(PRODUCTS)),
        "category": np.array([("coffee", "equipment", "accessory", "gift_box").index(p[1]) for p in PRODUCTS]),
        "price": PRICE_CENTS,
        "active": _active,
        "eligible": (_category == "coffee"),
    }

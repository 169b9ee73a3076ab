"""A small store for the service assets, loadable into either warehouse resource (DuckDB or Snowflake).

Twenty customers in the raw contract (what context packs read), plus hand-written rows of
the dbt relations the service assets read: `analytics.customer_service_context` (blanks where
the mart has them: no subscription, no delivery yet), `staging.stg_raw__portal_events` (cancel
attempts, with and without a stated reason) and `intermediate.int_ticket_history` (open
cancellation tickets). Customers C0003, C0006, ... have open tickets; C0001, C0005, ... tried to
cancel on the run day (C0009 also in an open cancellation ticket; C0014, who never subscribed, too).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pandas as pd

from dagster_project.ingest import contract
from tests.messaging.store import PRODUCTS
from tests.raw_frames import contract_frame

CUSTOMERS = 20
AS_OF = "2026-06-01"
RUN_DAY = datetime(2026, 6, 1)
TOPICS = ("delivery_delay", "cancel_request", "product_question", "payment_issue")
REASONS = (None, "price", "too_much_coffee", "taste")
# A customer without a subscription who presses cancel in the portal: nothing to save.
NEVER_SUBSCRIBED_CANCEL = 14


def ids() -> list[str]:
    return [f"C{k:04d}" for k in range(CUSTOMERS)]


def tables() -> dict[tuple[str, str], pd.DataFrame]:
    customers, subscriptions, orders, items, tickets, portal = [], [], [], [], [], []
    context, stg_portal, ticket_history = [], [], []
    for k, c in enumerate(ids()):
        joined = RUN_DAY - timedelta(days=40 + 45 * k)
        customers.append((c, f"{c.lower()}@example.com", f"Name{k}", joined, "US", "UTC", k % 7 != 4, "email"))
        product = PRODUCTS[k % 3]
        subscribed = k % 5 != 4 or k % 4 == 1  # every customer who tries to cancel has a subscription...
        cadence = (14, 21, 28)[k % 3]
        if subscribed:
            sid = f"S{k:04d}"
            subscriptions.append((sid, c, product[0], "double_bag", "active" if k % 3 else "paused", cadence,
                                  product[3], joined, None, None, RUN_DAY + timedelta(days=1 + k % 9), False))
            for n in range(1 + k % 6):
                day = RUN_DAY - timedelta(days=2 + cadence * n)
                oid = f"O{k:04d}-{n}"
                skipped = (k + n) % 4 == 3
                orders.append((oid, c, sid, day, "skipped" if skipped else "fulfilled", 0 if skipped else 14.0,
                               None, None if skipped else day + timedelta(days=1),
                               None if skipped or n == 0 else day + timedelta(days=3)))
                if not skipped:
                    items.append((oid, product[0], 1, product[3], False))
        open_ids, open_topics = [], []
        if k % 3 == 0 and k:
            for t in range(1 + k % 2):
                tid, topic = f"T{k:04d}-{t}", TOPICS[(k + t) % len(TOPICS)]
                opened = RUN_DAY - timedelta(hours=2 + 30 * t + k % 5)  # the first within the run day's window
                tickets.append((tid, c, opened, "email", topic, "open", None, None,
                                "Hi there, could you help me with my last order please?" if t else "Where is it?"))
                ticket_history.append((tid, c, opened, topic, True))
                open_ids.append(tid)
                open_topics.append(topic)
        if k % 4 == 1 or k == NEVER_SUBSCRIBED_CANCEL:  # ... but one who never subscribed
            at = RUN_DAY + timedelta(hours=9 + k % 8)
            reason = REASONS[k // 4 % len(REASONS)]
            properties = json.dumps({"reason": reason} if reason else {})
            portal.append((f"PE{k:04d}", c, "cancel_attempt", at, properties))
            stg_portal.append((f"PE{k:04d}", c, "cancel_attempt", at, properties))
        delivered = [o for o in orders if o[1] == c and o[8] is not None]
        context.append({
            "customer_id": c, "as_of_date": pd.Timestamp(AS_OF), "first_name": f"Name{k}",
            "tenure_months": (RUN_DAY - joined).days // 30, "tenure_tier": ("new", "established", "loyal")[k % 3],
            "lifetime_value_tier": ("low", "mid", "high")[k % 3], "lifetime_fulfilled_orders": k % 6 + (k % 3) * 4,
            "high_ltv": k % 3 == 2, "gift_recipient": None if k % 8 == 7 else k % 5 == 1, "at_risk": k % 4 == 1,
            "brand_advocate": k % 6 == 5,
            "subscription_product_id": product[0] if subscribed else None,
            "subscription_product_name": product[1] if subscribed else None,
            "products_tried": product[0] if k % 2 else f"{product[0]},P002",
            "subscription_status": ("paused" if k % 3 == 0 else "active") if subscribed else None,
            "plan": "double_bag" if subscribed else None, "cadence_days": cadence if subscribed else None,
            "recent_cycles": 6 if subscribed else None, "recent_cycle_skips": k % 4, "consecutive_skips": k % 3,
            "last_cancel_reason": "price" if k % 9 == 2 else None,
            "next_charge_date": pd.Timestamp(RUN_DAY + timedelta(days=1 + k % 9)) if subscribed else None,
            "last_delivery_status": "delivered" if delivered else None,
            "last_delivery_date": pd.Timestamp(max(o[8] for o in delivered).date()) if delivered else None,
            "payment_health": ("healthy", "recovered")[k % 2], "channel_preference": "email",
            "tone_preference": ("warm", "brief", "unknown")[k % 3], "open_tickets": len(open_ids),
            "open_ticket_ids": ", ".join(open_ids) or None, "open_ticket_topics": ", ".join(open_topics) or None,
            "has_repeat_issue": bool(open_ids) and k % 2 == 0,
            "repeat_issue_topic": open_topics[0] if open_ids and k % 2 == 0 else None,
        })
    mart = pd.DataFrame(context)
    for column in ("tenure_months", "lifetime_fulfilled_orders", "cadence_days", "recent_cycles",
                   "recent_cycle_skips", "consecutive_skips", "open_tickets"):
        mart[column] = mart[column].astype("Int64")
    for column in ("high_ltv", "gift_recipient", "at_risk", "brand_advocate", "has_repeat_issue"):
        mart[column] = mart[column].astype("boolean")
    for column in ("next_charge_date", "last_delivery_date"):
        mart[column] = pd.to_datetime(mart[column])
    return {
        ("raw", "customers"): contract_frame("customers", customers), ("raw", "products"): contract_frame("products", PRODUCTS),
        ("raw", "subscriptions"): contract_frame("subscriptions", subscriptions), ("raw", "orders"): contract_frame("orders", orders),
        ("raw", "order_items"): contract_frame("order_items", items),
        ("raw", "support_tickets"): contract_frame("support_tickets", tickets),
        ("raw", "portal_events"): contract_frame("portal_events", portal),
        ("analytics", "customer_service_context"): mart,
        ("staging", "stg_raw__portal_events"): pd.DataFrame(
            stg_portal, columns=["portal_event_id", "customer_id", "event_type", "occurred_at", "properties"]),
        ("intermediate", "int_ticket_history"): pd.DataFrame(
            ticket_history, columns=["ticket_id", "customer_id", "created_at", "topic", "is_open_as_of"]),
    }


def load(warehouse) -> None:
    """The raw contract tables (typed as it says) and the dbt relations, filled with the store."""
    contract.create_raw_schema(warehouse)
    for (schema, table), df in tables().items():
        warehouse.execute(f"create schema if not exists {schema}")
        warehouse.write_df(schema, table, df)


# What each asset wrote, without the moment it ran: the rows compared across chunk sizes and engines.
OUTBOX_SQL = ("select batch_id, customer_id, playbook_id, body, state, kind, destination, attempts "
              "from nextbest.outbox order by destination, customer_id, batch_id")
RECOMMENDATIONS_SQL = ("select recommendation_id, assignment_id, arm, customer_id, trigger_kind, trigger_id, "
                       "triggered_at, stated_reason, pattern, option_id, angle, cta, offer_id, percent_off, "
                       "to_cadence_days, product_id, reason, allowed_options, as_of "
                       "from nextbest.save_offer_recommendations order by recommendation_id")
ASSIGNMENTS_SQL = ("select assignment_id, campaign_id, playbook_id, customer_id, assigned_at, arm, message_id "
                   "from nextbest.assignments where playbook_id = 'save_offer' order by assignment_id")
REPLIES_SQL = ("select draft_id, batch_id, ticket_id, customer_id, playbook_id, angle, generator, subject, body, cta, "
               "cited_fact_ids, verdicts, status, block_reason, cache_key, as_of "
               "from nextbest.service_reply_drafts order by draft_id")

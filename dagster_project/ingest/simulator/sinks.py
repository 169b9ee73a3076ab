"""Where simulated rows go: one buffer per output table plus id counters.

Each `emit_*` method takes numpy columns for a batch of rows, allocates their
ids in order (so ids are deterministic) and queues them. The SQL here is the
only place that knows how staging columns become contract columns.
"""

from __future__ import annotations

import numpy as np

from dagster_project.ingest.contract import (
    EMAIL_EVENT_TYPES, NEXTBEST_SCHEMA, PLAYBOOKS, PORTAL_EVENT_TYPES, RAW_SCHEMA, TICKET_CHANNELS, TICKET_STATUSES,
)

from . import catalog
from .writer import TableBuffer, id_sql, money_sql, table_sql

PORTAL = {name: i for i, name in enumerate(PORTAL_EVENT_TYPES)}
EMAIL = {name: i for i, name in enumerate(EMAIL_EVENT_TYPES)}
ARMS = ("treatment", "holdout")
TOPICS = (
    "delivery_delay", "damaged_package", "billing", "payment_issue", "change_address",
    "product_question", "grind_preference", "cancel_request",
)
TOPIC = {name: i for i, name in enumerate(TOPICS)}


def _pid(col: str) -> str:
    return id_sql("product", f"({col} + 1)")


def _json_str(key: str, expr: str) -> str:
    return f"'\"{key}\": \"' || {expr} || '\"'"


def _json_int(key: str, expr: str) -> str:
    return f"'\"{key}\": ' || cast({expr} as varchar)"


def _obj(*parts: str) -> str:
    return "'{' || " + " || ', ' || ".join(parts) + " || '}'"


_SUB = _json_str("subscription_id", id_sql("subscription", "sub"))
_PORTAL_PROPS = f"""case event_type
    when 'skip' then {_obj(_SUB, _json_str('order_id', id_sql('order', 'ord')))}
    when 'reschedule' then {_obj(_SUB, _json_int('days', 'a'))}
    when 'swap_product' then {_obj(_SUB, _json_str('from_product_id', _pid('p1')), _json_str('to_product_id', _pid('p2')))}
    when 'change_cadence' then {_obj(_SUB, _json_int('from_days', 'a'), _json_int('to_days', 'b'))}
    when 'add_one_time' then {_obj(_json_str('product_id', _pid('p1')), _json_str('order_id', id_sql('order', 'ord')))}
    when 'cancel_attempt' then {_obj(_SUB, _json_str('reason', 'reason_text'))}
    when 'cancel' then {_obj(_SUB, _json_str('reason', 'reason_text'))}
    when 'pause' then {_obj(_SUB)}
    when 'resume' then {_obj(_SUB)}
    when 'reactivate' then {_obj(_SUB)}
    else '{{}}' end"""


class Sinks:
    """All output buffers of one simulation run, with their id counters."""

    def __init__(self, con, start: np.datetime64, end_sec: int, bodies: tuple[str, ...]):
        self.campaigns: list[str] = []  # campaign_id vocabulary, grows as campaigns run
        self.next_id = {k: 1 for k in ("sub", "order", "email", "portal", "ticket", "payment", "message", "assignment")}

        def buf(target, columns, select, filter_ts=None):
            return TableBuffer(con, target, columns, select, start, end_sec=end_sec, filter_ts=filter_ts)

        raw = RAW_SCHEMA
        self.customers = buf(f"{raw}.customers", {
            "cid": "int", "created": "ts", "name": catalog.FIRST_NAMES, "country": [c[0] for c in catalog.COUNTRIES],
            "tz": [c[1] for c in catalog.COUNTRIES], "opt_in": "bool", "chan": catalog.CHANNEL_PREFERENCES,
        }, table_sql("customers", {
            "customer_id": id_sql("customer", "cid"),
            "email": "'customer' || cast(cid as varchar) || '@example.com'",
            "first_name": "cast(name as varchar)", "created_at": "created",
            "country": "cast(country as varchar)", "timezone": "cast(tz as varchar)",
            "marketing_opt_in": "opt_in", "channel_preference": "cast(chan as varchar)",
        }))
        self.products = buf(f"{raw}.products", {
            "pid": "int", "name": [p[0] for p in catalog.PRODUCTS],
            "category": ("coffee", "equipment", "accessory", "gift_box"), "price": "int",
            "active": "bool", "eligible": "bool",
        }, table_sql("products", {
            "product_id": id_sql("product", "pid"), "name": "cast(name as varchar)",
            "category": "cast(category as varchar)", "price": money_sql("price"),
            "active": "active", "subscription_eligible": "eligible",
        }))
        self.subscriptions = buf(f"{raw}.subscriptions", {
            "sid": "int", "cid": "int", "product": "int", "plan": catalog.PLANS,
            "status": catalog.SUB_STATUSES, "cadence": "int", "price": "int", "started": "ts",
            "cancelled": "ts", "reason": catalog.CANCEL_REASONS, "next_charge": "ts", "gift": "bool",
        }, table_sql("subscriptions", {
            "subscription_id": id_sql("subscription", "sid"), "customer_id": id_sql("customer", "cid"),
            "product_id": _pid("product"), "plan": "cast(plan as varchar)",
            "status": "cast(status as varchar)", "cadence_days": "cast(cadence as integer)",
            "price": money_sql("price"), "started_at": "started", "cancelled_at": "cancelled",
            "cancel_reason": "cast(reason as varchar)", "next_charge_at": "next_charge", "is_gift": "gift",
        }))
        self.orders = buf(f"{raw}.orders", {
            "oid": "int", "cid": "int", "sub": "int", "sec": "ts", "status": catalog.ORDER_STATUSES,
            "total": "int", "discount": catalog.DISCOUNT_CODES, "shipped": "ts", "delivered": "ts",
        }, table_sql("orders", {
            "order_id": id_sql("order", "oid"), "customer_id": id_sql("customer", "cid"),
            "subscription_id": f"case when sub >= 0 then {id_sql('subscription', 'sub')} end",
            "ordered_at": "sec", "status": "cast(status as varchar)", "total": money_sql("total"),
            "discount_code": "cast(discount as varchar)", "shipped_at": "shipped", "delivered_at": "delivered",
        }), filter_ts="sec")
        self.order_items = buf(f"{raw}.order_items", {
            "oid": "int", "product": "int", "qty": "int", "unit": "int", "one_time": "bool", "sec": "ts",
        }, table_sql("order_items", {
            "order_id": id_sql("order", "oid"), "product_id": _pid("product"),
            "quantity": "cast(qty as integer)", "unit_price": money_sql("unit"), "is_one_time": "one_time",
        }), filter_ts="sec")
        self.payments = buf(f"{raw}.payments", {
            "pid": "int", "cid": "int", "oid": "int", "sec": "ts", "status": catalog.PAYMENT_STATUSES,
            "reason": catalog.FAILURE_REASONS, "amount": "int",
        }, table_sql("payments", {
            "payment_id": id_sql("payment", "pid"), "customer_id": id_sql("customer", "cid"),
            "order_id": id_sql("order", "oid"), "attempted_at": "sec", "status": "cast(status as varchar)",
            "failure_reason": "cast(reason as varchar)", "amount": money_sql("amount"),
        }), filter_ts="sec")
        self.email = buf(f"{raw}.email_events", {
            "eid": "int", "cid": "int", "campaign": lambda: self.campaigns, "msg": "int",
            "etype": EMAIL_EVENT_TYPES, "sec": "ts",
        }, table_sql("email_events", {
            "event_id": id_sql("email_event", "eid"), "customer_id": id_sql("customer", "cid"),
            "campaign_id": "cast(campaign as varchar)", "message_id": id_sql("message", "msg"),
            "event_type": "cast(etype as varchar)", "occurred_at": "sec",
        }), filter_ts="sec")
        portal_cols = {
            "eid": "int", "cid": "int", "etype": PORTAL_EVENT_TYPES, "sec": "ts", "sub": "int",
            "ord": "int", "p1": "int", "p2": "int", "a": "int", "b": "int", "reason": catalog.CANCEL_REASONS,
        }
        self.portal = buf(f"{raw}.portal_events", portal_cols, (
            "(event_id, customer_id, event_type, occurred_at, properties) select "
            f"{id_sql('portal_event', 'eid')}, {id_sql('customer', 'cid')}, event_type, sec, {_PORTAL_PROPS} "
            "from (select *, cast(etype as varchar) as event_type, cast(reason as varchar) as reason_text "
            "from _chunk)"
        ), filter_ts="sec")
        self.tickets = buf(f"{raw}.support_tickets", {
            "tid": "int", "cid": "int", "sec": "ts", "channel": TICKET_CHANNELS, "topic": TOPICS,
            "status": TICKET_STATUSES, "resolved": "ts", "csat": "int", "body": bodies,
        }, table_sql("support_tickets", {
            "ticket_id": id_sql("ticket", "tid"), "customer_id": id_sql("customer", "cid"),
            "created_at": "sec", "channel": "cast(channel as varchar)", "topic": "cast(topic as varchar)",
            "status": "cast(status as varchar)", "resolved_at": "resolved",
            "csat": "cast(nullif(csat, 0) as integer)", "body": "cast(body as varchar)",
        }), filter_ts="sec")
        self.assignments = buf(f"{NEXTBEST_SCHEMA}.assignments", {
            "aid": "int", "campaign": lambda: self.campaigns, "playbook": PLAYBOOKS, "cid": "int",
            "sec": "ts", "arm": ARMS, "msg": "int",
        }, (
            "select " + id_sql("assignment", "aid") + ", cast(campaign as varchar), cast(playbook as varchar), "
            + id_sql("customer", "cid") + ", sec, cast(arm as varchar), "
            + f"case when msg >= 0 then {id_sql('message', 'msg')} end from _chunk"
        ), filter_ts="sec")
        self.all = [self.customers, self.products, self.subscriptions, self.orders, self.order_items,
                    self.payments, self.email, self.portal, self.tickets, self.assignments]

    def ids(self, kind: str, n: int) -> np.ndarray:
        """Allocate `n` consecutive integer ids of one kind."""
        start = self.next_id[kind]
        self.next_id[kind] = start + n
        return np.arange(start, start + n, dtype=np.int64)

    def portal_event(self, cid, sec, etype: str, *, sub=None, order=None, p1=None, p2=None,
                     a=None, b=None, reason=None) -> None:
        """Queue portal events of one type; optional columns are scalars or arrays."""
        n = len(cid)
        if n == 0:
            return

        def col(v, fill=-1):
            return np.full(n, fill, dtype=np.int64) if v is None else np.broadcast_to(np.asarray(v, dtype=np.int64), (n,))

        self.portal.add(eid=self.ids("portal", n), cid=np.asarray(cid, dtype=np.int64), etype=np.full(n, PORTAL[etype]),
                        sec=np.asarray(sec, dtype=np.int64), sub=col(sub), ord=col(order), p1=col(p1), p2=col(p2),
                        a=col(a), b=col(b), reason=col(reason))

    def email_events(self, cid, campaign: int, msg, etype: str, sec) -> None:
        """Queue email events of one type for one campaign."""
        n = len(cid)
        if n:
            self.email.add(eid=self.ids("email", n), cid=cid, campaign=np.full(n, campaign), msg=msg,
                           etype=np.full(n, EMAIL[etype]), sec=sec)

    def campaign(self, campaign_id: str) -> int:
        """Register a campaign id and return its code."""
        self.campaigns.append(campaign_id)
        return len(self.campaigns) - 1

    def flush(self) -> None:
        for b in self.all:
            b.flush()


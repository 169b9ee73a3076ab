"""Context packs: the customer-visible facts a message may use, each with a stable id.

A pack holds only what the customer could see themselves: their first name,
tenure, subscriptions (product, plan, cadence, price, next charge date), recent
orders and items, and support tickets with their outcomes. Never scores,
email opens or clicks, inferred traits, or anyone else's data. Ticket bodies
are customer text: kept as data (for tone and for the injection guardrail),
never as instructions.

`build_context_pack(rows)` is pure (plain rows in, pack out); `load_context_packs`
(by customer id), `load_scoped_packs` (a chunk of customers) and `load_catalog` read
the `raw.*` contract tables with SQL both DuckDB and Snowflake run, so packs exist
before the dbt marts do.
"""

from __future__ import annotations

import copy
import json
import re
from collections import defaultdict
from dataclasses import asdict, dataclass, field, fields
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any, Iterable, Literal, NamedTuple, Sequence

import numpy as np
import pandas as pd

from dagster_project.project import default_as_of
from dagster_project.resources.warehouse import session_on

FactKind = Literal["text", "number", "money", "date", "customer_text"]

RECENT_ORDERS = 8  # orders per pack, most recent first
RECENT_TICKETS = 5
SKIP_WINDOW_ORDERS = 6  # "skipped N of your last 6 deliveries" (matches dbt's cadence_mismatch_cycles)
# Tone rule, the same as dbt's tone_warm_greeting_share / tone_warm_min_words.
TONE_WARM_GREETING_SHARE = 0.5
TONE_WARM_MIN_WORDS = 20
STANDARD_CADENCES = (14, 21, 28, 42, 56)  # delivery cycles the demo store offers (SHARED_SEMANTICS)
PLAN_BAGS = {"single_bag": 1, "double_bag": 2, "family": 3}
_GREETING = re.compile(r"^\s*(hi|hello|hey|dear|good (morning|afternoon|evening))\b", re.I)

TICKET_TOPICS = {
    "delivery_delay": "a late delivery",
    "damaged_package": "a damaged package",
    "billing": "a billing question",
    "payment_issue": "a payment problem",
    "change_address": "changing your address",
    "product_question": "a question about our coffee",
    "grind_preference": "your grind preference",
    "cancel_request": "cancelling your subscription",
}


class Fact(NamedTuple):
    """One customer-visible fact. `value` is text, an int, money as '12.60', or 'YYYY-MM-DD'.

    A named tuple (immutable, like a frozen dataclass) because a chunk makes millions: it is made in half the time.
    """

    id: str
    kind: FactKind
    value: Any


@dataclass(frozen=True)
class CatalogProduct:
    """One product of the live catalog."""

    product_id: str
    name: str
    category: str
    price: str  # '12.60'
    active: bool = True
    subscription_eligible: bool = False


@dataclass(frozen=True)
class Catalog:
    """The store's live catalog and the delivery cycles it offers (store facts, not customer facts)."""

    products: tuple[CatalogProduct, ...]
    cadence_options: tuple[int, ...] = STANDARD_CADENCES

    def facts(self) -> dict[str, Fact]:
        """Catalog facts with ids `catalog:<product_id>:name|price` and `catalog:cadence:<days>`."""
        out: dict[str, Fact] = {}
        for p in self.products:
            out[f"catalog:{p.product_id}:name"] = Fact(f"catalog:{p.product_id}:name", "text", p.name)
            out[f"catalog:{p.product_id}:price"] = Fact(f"catalog:{p.product_id}:price", "money", p.price)
        for days in self.cadence_options:
            out[f"catalog:cadence:{days}"] = Fact(f"catalog:cadence:{days}", "number", days)
        return out

    def to_dict(self) -> dict:
        return {"products": [asdict(p) for p in self.products], "cadence_options": list(self.cadence_options)}

    def fingerprint(self) -> str:
        """Canonical JSON of the catalog (for cache keys): a draft may quote any product's name and price,
        and which products are active or offered decides what a template suggests."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def closest_untried_coffee(self, tried: set[str], current: CatalogProduct | None) -> CatalogProduct | None:
        """An active subscription coffee that is not in `tried` (product ids) and not `current`, closest in
        price to `current` (ties, and a coffee the catalog does not list, by product id); None when none is.

        The one rule for a swap: a draft's suggestion and the save offer an agent sees name the same coffee.
        """
        fresh = [p for p in self.products if p.active and p.subscription_eligible and p.product_id not in tried
                 and (current is None or p.product_id != current.product_id)]
        if not fresh:
            return None
        if current is None:
            return min(fresh, key=lambda p: p.product_id)
        return min(fresh, key=lambda p: (abs(float(p.price) - float(current.price)), p.product_id))

    @classmethod
    def from_dict(cls, data: dict) -> "Catalog":
        return cls(tuple(CatalogProduct(**p) for p in data.get("products", [])),
                   tuple(data.get("cadence_options") or STANDARD_CADENCES))


# The header fields that say which day a pack was read on, not what the customer did.
UNDATED_SKIPS = ("as_of", "data_fresh_at")


@dataclass
class ContextPack:
    """Everything a message about one customer may say, as facts with ids.

    The header fields point at the facts a writer reaches for first (the live
    subscription, the favourite product, the last delivered order, the last ticket).
    """

    customer_id: str
    first_name: str | None
    as_of: str  # YYYY-MM-DD
    tenure_months: int
    tone: Literal["brief", "warm", "unknown"]
    facts: dict[str, Fact]
    data_fresh_at: str | None = None  # newest order/ticket/sign-up in the warehouse (staleness check)
    current_subscription_id: str | None = None
    favourite_product_id: str | None = None
    last_delivered_order_id: str | None = None
    last_ticket_id: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def value(self, fact_id: str, default: Any = None) -> Any:
        fact = self.facts.get(fact_id)
        return default if fact is None else fact.value

    def to_dict(self) -> dict:
        """JSON-ready form (the `context_pack` of `nextbest check-draft`; see README)."""
        # Field by field, not `asdict`: its deep copy of ~100 facts per pack cost more than writing the draft.
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["facts"] = [{"id": f.id, "kind": f.kind, "value": f.value} for f in self.facts.values()]
        data["extras"] = copy.deepcopy(self.extras)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "ContextPack":
        data = dict(data)
        facts = data.pop("facts", [])
        if isinstance(facts, dict):  # also accept {"id": {"kind":..,"value":..}}
            facts = [{"id": k, **v} for k, v in facts.items()]
        pack = cls(facts={f["id"]: Fact(f["id"], f["kind"], f["value"]) for f in facts}, **data)
        return pack

    def fingerprint(self, dated: bool = True) -> str:
        """Canonical JSON of the pack (for cache keys): the header fields, then each fact as [id, kind, value].

        `dated=False` leaves out the run's day (`as_of`) and the warehouse's (`data_fresh_at`): what the
        customer did is the same from one day to the next when nothing new happened.
        Lists rather than `to_dict`'s fact dicts: the same content, a third of the encoding work.
        """
        skipped = ("facts",) if dated else ("facts", *UNDATED_SKIPS)
        header = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skipped}
        facts = [[f.id, f.kind, f.value] for f in self.facts.values()]
        return json.dumps([header, facts], sort_keys=True, default=str, separators=(",", ":"))


@dataclass
class CustomerRows:
    """Plain rows for one customer, as read from `raw.*` (dicts keyed by column name)."""

    customer: dict
    subscriptions: list[dict] = field(default_factory=list)
    orders: list[dict] = field(default_factory=list)  # most recent first, at most RECENT_ORDERS
    order_items: list[dict] = field(default_factory=list)  # items of those orders
    tickets: list[dict] = field(default_factory=list)  # most recent first
    product_counts: list[dict] = field(default_factory=list)  # product_id, name, price, times_ordered
    fulfilled_orders: int = 0
    skips_in_window: int = 0  # skipped among the last SKIP_WINDOW_ORDERS subscription orders
    orders_in_window: int = 0


def _day(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)[:10]


def _by(value: Any, as_of: str) -> str | None:
    """The day of an event, or None when the rows date it after `as_of`: a delivery or a resolution the
    source already plans is not a fact yet (a draft would say "arrived on" a day still to come)."""
    day = _day(value)
    return None if day is None or day > as_of else day


def _ahead(value: Any, as_of: str) -> str | None:
    """A day still to come on `as_of`, or None: a next charge the rows date before it is stale (a
    payment being retried, a late load), and a draft would announce a charge already past."""
    day = _day(value)
    return None if day is None or day < as_of else day


@lru_cache(maxsize=4096)  # prices repeat across a chunk's ~100k money facts
def _money(value: Any) -> str | None:
    return None if value is None else f"{Decimal(str(value)):.2f}"


def months_between(start: str, end: str) -> int:
    """Whole months from one ISO date to another (never negative)."""
    a, b = date.fromisoformat(start), date.fromisoformat(end)
    months = (b.year - a.year) * 12 + b.month - a.month - (1 if b.day < a.day else 0)
    return max(months, 0)


def tone_from_tickets(bodies: Iterable[str | None]) -> Literal["brief", "warm", "unknown"]:
    """'warm' if they greet in half their tickets or write >= 20 words on average, else 'brief'."""
    texts = [b for b in bodies if b and b.strip()]
    if not texts:
        return "unknown"
    greeting_share = sum(1 for t in texts if _GREETING.match(t)) / len(texts)
    mean_words = sum(len(t.split()) for t in texts) / len(texts)
    warm = greeting_share >= TONE_WARM_GREETING_SHARE or mean_words >= TONE_WARM_MIN_WORDS
    return "warm" if warm else "brief"


def _pick_current_subscription(subs: list[dict]) -> dict | None:
    rank = {"active": 0, "paused": 1, "cancelled": 2}
    ordered = sorted(subs, key=lambda s: (rank.get(s.get("status"), 3), str(s.get("started_at"))), reverse=False)
    if not ordered:
        return None
    best = rank.get(ordered[0].get("status"), 3)
    # among equals, the newest start wins
    same = [s for s in ordered if rank.get(s.get("status"), 3) == best]
    return max(same, key=lambda s: str(s.get("started_at")))


def build_context_pack(rows: CustomerRows, as_of: str, data_fresh_at: str | None = None) -> ContextPack:
    """Turn one customer's raw rows into a context pack (pure; no database)."""
    c = rows.customer
    cid = str(c["customer_id"])
    # (id, kind, value) as they come, made facts at the end: a list append per fact, not a function call.
    found: list[tuple[str, FactKind, Any]] = []
    add = found.append

    since = _day(c.get("created_at")) or as_of
    tenure = months_between(since, as_of)
    add((f"customer:{cid}:first_name", "text", c.get("first_name")))
    add((f"customer:{cid}:since", "date", since))
    add((f"customer:{cid}:tenure_months", "number", tenure))
    add((f"customer:{cid}:fulfilled_orders", "number", int(rows.fulfilled_orders)))
    if rows.orders_in_window:
        add((f"customer:{cid}:recent_deliveries", "number", int(rows.orders_in_window)))
        add((f"customer:{cid}:recent_skips", "number", int(rows.skips_in_window)))

    product_names: dict[str, str] = {}
    for p in rows.product_counts:
        pid = str(p["product_id"])
        product_names[pid] = p["name"]
        add((f"product:{pid}:name", "text", p["name"]))
        add((f"product:{pid}:price", "money", _money(p.get("price"))))
        add((f"product:{pid}:times_ordered", "number", int(p.get("times_ordered") or 0)))

    for s in rows.subscriptions:
        sid = str(s["subscription_id"])
        pid = str(s["product_id"])
        name = s.get("product_name") or product_names.get(pid)
        if name and pid not in product_names:
            product_names[pid] = name
            add((f"product:{pid}:name", "text", name))
        add((f"subscription:{sid}:product", "text", name))
        add((f"subscription:{sid}:plan", "text", s.get("plan")))
        add((f"subscription:{sid}:bags", "number", PLAN_BAGS.get(s.get("plan"))))
        add((f"subscription:{sid}:cadence_days", "number", s.get("cadence_days")))
        add((f"subscription:{sid}:price", "money", _money(s.get("price"))))
        add((f"subscription:{sid}:status", "text", s.get("status")))
        add((f"subscription:{sid}:started_at", "date", _day(s.get("started_at"))))
        add((f"subscription:{sid}:next_charge_at", "date", _ahead(s.get("next_charge_at"), as_of)))
        add((f"subscription:{sid}:cancelled_at", "date", _by(s.get("cancelled_at"), as_of)))
        add((f"subscription:{sid}:cancel_reason", "text", s.get("cancel_reason")))
        if s.get("is_gift"):
            add((f"subscription:{sid}:is_gift", "text", "gift"))

    items_by_order: dict[str, list[dict]] = defaultdict(list)
    for item in rows.order_items:
        items_by_order[str(item["order_id"])].append(item)
    last_delivered = None
    for o in rows.orders:
        oid = str(o["order_id"])
        add((f"order:{oid}:ordered_at", "date", _day(o.get("ordered_at"))))
        add((f"order:{oid}:status", "text", o.get("status")))
        add((f"order:{oid}:total", "money", _money(o.get("total"))))
        add((f"order:{oid}:shipped_at", "date", _by(o.get("shipped_at"), as_of)))
        delivered = _by(o.get("delivered_at"), as_of)
        add((f"order:{oid}:delivered_at", "date", delivered))
        # The latest delivery, not the latest order delivered: orders can arrive out of order.
        if delivered is not None and (last_delivered is None or delivered > last_delivered[1]):
            last_delivered = (oid, delivered)
        for item in items_by_order.get(oid, []):
            pid = str(item["product_id"])
            base = f"order:{oid}:item:{pid}"
            add((f"{base}:product", "text", item.get("product_name") or product_names.get(pid)))
            add((f"{base}:quantity", "number", item.get("quantity")))
            add((f"{base}:unit_price", "money", _money(item.get("unit_price"))))
            if item.get("is_one_time"):
                add((f"{base}:one_time", "text", "one-time add-on"))

    for t in rows.tickets:
        tid = str(t["ticket_id"])
        topic = t.get("topic")
        add((f"ticket:{tid}:topic", "text", TICKET_TOPICS.get(topic, str(topic or "").replace("_", " "))))
        add((f"ticket:{tid}:created_at", "date", _day(t.get("created_at"))))
        add((f"ticket:{tid}:channel", "text", t.get("channel")))
        add((f"ticket:{tid}:status", "text", t.get("status")))
        add((f"ticket:{tid}:resolved_at", "date", _by(t.get("resolved_at"), as_of)))
        # Customer text: data for tone and the injection check, never instructions.
        add((f"ticket:{tid}:body", "customer_text", t.get("body")))

    # Blank values are left out; a repeated id keeps its first place and its last value.
    facts = {i: Fact(i, kind, value) for i, kind, value in found if value is not None and value != ""}
    current = _pick_current_subscription(rows.subscriptions)
    favourite = max(rows.product_counts, key=lambda p: (int(p.get("times_ordered") or 0), str(p["product_id"])),
                    default=None)
    return ContextPack(
        customer_id=cid,
        first_name=c.get("first_name") or None,
        as_of=as_of,
        tenure_months=tenure,
        tone=tone_from_tickets(t.get("body") for t in rows.tickets),
        facts=facts,
        data_fresh_at=data_fresh_at,
        current_subscription_id=str(current["subscription_id"]) if current else None,
        favourite_product_id=str(favourite["product_id"]) if favourite else None,
        last_delivered_order_id=last_delivered[0] if last_delivered else None,
        last_ticket_id=str(rows.tickets[0]["ticket_id"]) if rows.tickets else None,
    )


# --------------------------------------------------------------------------- SQL
#
# SQL both engines speak, read through the warehouse interface (`?` placeholders). A query's
# customers come from a scope, SQL selecting `customer_id`, spliced in as
# `customer_id in (select customer_id from (<scope>) in_scope)`. Every query orders its rows
# fully: a pack's fingerprint is its draft-cache key, so the same data must give the same pack.

IDS_PER_QUERY = 1_000  # customer ids bound per query when packs are asked for by id

_CUSTOMERS_SQL = """
select customer_id, first_name, created_at from raw.customers
where customer_id in (select customer_id from ({scope}) in_scope) and created_at < ?
order by customer_id
"""
_SUBSCRIPTIONS_SQL = """
select s.subscription_id, s.customer_id, s.product_id, s.plan, s.status, s.cadence_days, s.price, s.started_at,
       s.cancelled_at, s.cancel_reason, s.next_charge_at, s.is_gift, p.name as product_name
from raw.subscriptions s left join raw.products p on p.product_id = s.product_id
where s.customer_id in (select customer_id from ({scope}) in_scope) and s.started_at < ?
order by s.customer_id, s.started_at, s.subscription_id
"""


def _recent_rows_sql(table: str, columns: str, at: str, key: str) -> str:
    """Each scoped customer's `{limit}` newest rows of `table` before the bound `?`, newest by `at`
    then `key` (their order is fixed again in Python)."""
    return f"""
select {columns} from (
    select {columns},
           row_number() over (partition by customer_id order by {at} desc, {key} desc) as recent
    from {table}
    where customer_id in (select customer_id from ({{scope}}) in_scope) and {at} < ?
) ranked where recent <= {{limit}}
"""


_RECENT_ORDERS_SQL = _recent_rows_sql(
    "raw.orders", "order_id, customer_id, subscription_id, ordered_at, status, total, discount_code, shipped_at, "
    "delivered_at", "ordered_at", "order_id")
_ORDER_ITEMS_SQL = """
select i.order_id, i.product_id, i.quantity, i.unit_price, i.is_one_time, p.name as product_name
from raw.order_items i
join ({orders}) o on o.order_id = i.order_id
left join raw.products p on p.product_id = i.product_id
order by i.order_id, i.product_id
"""
# A cycle order is a subscription's; the skip window counts each customer's latest cycle orders.
_ORDER_STATS_SQL = """
select customer_id,
       sum(case when status = 'fulfilled' then 1 else 0 end) as fulfilled_orders,
       sum(case when is_cycle = 1 and n <= {window} and status = 'skipped' then 1 else 0 end) as skips_in_window,
       sum(case when is_cycle = 1 and n <= {window} then 1 else 0 end) as orders_in_window
from (
    select customer_id, status, case when subscription_id is null then 0 else 1 end as is_cycle,
           row_number() over (partition by customer_id, case when subscription_id is null then 0 else 1 end
                              order by ordered_at desc, order_id desc) as n
    from raw.orders
    where customer_id in (select customer_id from ({scope}) in_scope) and ordered_at < ?
) scoped
group by customer_id
order by customer_id
"""
_PRODUCT_COUNTS_SQL = """
select o.customer_id, i.product_id, p.name, p.price, count(*) as times_ordered
from raw.orders o
join raw.order_items i on i.order_id = o.order_id
join raw.products p on p.product_id = i.product_id
where o.customer_id in (select customer_id from ({scope}) in_scope) and o.ordered_at < ? and o.status = 'fulfilled'
group by o.customer_id, i.product_id, p.name, p.price
order by o.customer_id, times_ordered desc, i.product_id
"""
_RECENT_TICKETS_SQL = _recent_rows_sql(
    "raw.support_tickets", "ticket_id, customer_id, created_at, channel, topic, status, resolved_at, csat, body",
    "created_at", "ticket_id")
# How fresh the warehouse is: its newest order, ticket or sign-up up to as_of. Three maxima, not
# greatest(): Snowflake's greatest() is null when any argument is (an empty table), DuckDB's is not.
_FRESHNESS_SQL = """
select (select max(ordered_at) from raw.orders where ordered_at < ?) as newest_order,
       (select max(created_at) from raw.support_tickets where created_at < ?) as newest_ticket,
       (select max(created_at) from raw.customers where created_at < ?) as newest_signup
"""


def plain_records(frame: pd.DataFrame) -> list[dict]:
    """Rows as dicts of plain values, the same from either engine: None for nulls, datetimes for timestamps."""
    names = [str(name) for name in frame.columns]
    columns = [_plain_column(frame.iloc[:, i]) for i in range(len(names))]
    return [dict(zip(names, row)) for row in zip(*columns)]


def _plain_column(column: pd.Series) -> list:
    """A column's values as plain Python (converted a column at a time: ~100 facts per customer add up)."""
    if isinstance(column.dtype, np.dtype) and column.dtype.kind == "M":
        # Naive timestamps through numpy's microseconds: datetimes (None for NaT) in one C loop, not
        # a pandas Timestamp per value (most of reading a chunk's ~150k orders).
        return column.to_numpy().astype("datetime64[us]").tolist()
    missing = column.isna().tolist()
    values = column.tolist()  # numbers and booleans come out as Python's; timestamps as pandas'
    if pd.api.types.is_datetime64_any_dtype(column.dtype):  # with a time zone
        values = [None if m else v.to_pydatetime() for v, m in zip(values, missing)]
    elif column.dtype == object or not isinstance(column.dtype, np.dtype):
        values = [_plain(v) for v in values]
    return [None if m else v for v, m in zip(values, missing)]


def _plain(value: Any) -> Any:
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _whole(value: Any) -> int | None:
    # An integer column with nulls can arrive as floats (Snowflake's Arrow results): 28.0 must read "28".
    return None if value is None else int(value)


def _until(as_of: str) -> datetime:
    """The first moment after `as_of`: events before it count."""
    return datetime.combine(date.fromisoformat(as_of) + timedelta(days=1), time.min)


def load_catalog(source) -> Catalog:
    """The live catalog from `raw.products`, and the cycles subscribers use (`raw.subscriptions`).

    `source`: a warehouse resource, a session of one, or a DuckDB connection.
    """
    with session_on(source) as tx:
        products = plain_records(tx.read_df(
            "select product_id, name, category, price, active, subscription_eligible "
            "from raw.products order by product_id"))
        used = tx.read_df("select distinct cadence_days from raw.subscriptions where cadence_days is not null "
                          "order by cadence_days")
    # Cycles subscribers use, plus the store's standard ones (a cycle nobody uses yet is still offered).
    cadences = {int(d) for d in used["cadence_days"]} | set(STANDARD_CADENCES)
    return Catalog(
        tuple(CatalogProduct(str(p["product_id"]), p["name"], p["category"], _money(p["price"]),
                             bool(p["active"]), bool(p["subscription_eligible"])) for p in products),
        tuple(sorted(cadences)),
    )


def data_fresh_day(source, as_of: str) -> str | None:
    """The day of the warehouse's newest order, ticket or sign-up up to `as_of` (None when it has none)."""
    with session_on(source) as tx:
        row = plain_records(tx.read_df(_FRESHNESS_SQL, [_until(as_of)] * 3))[0]
    newest = [value for value in row.values() if value is not None]
    return _day(max(newest)) if newest else None


def load_context_packs(source, customer_ids: Iterable[str], as_of: str | None = None) -> dict[str, ContextPack]:
    """Context packs for these customers from the `raw.*` tables, as of a day (default today).

    Events after `as_of` are ignored. Customers missing from `raw.customers` get no pack.
    `source`: a warehouse resource, a session of one, or a DuckDB connection. Ids are read
    `IDS_PER_QUERY` at a time; a chunked step selects its customers with `load_scoped_packs`.
    """
    ids = sorted({str(i) for i in customer_ids})
    as_of = as_of or default_as_of()
    if not ids:
        return {}
    packs: dict[str, ContextPack] = {}
    with session_on(source) as tx:
        fresh_at = data_fresh_day(tx, as_of)
        for start in range(0, len(ids), IDS_PER_QUERY):
            group = ids[start:start + IDS_PER_QUERY]
            scope = f"select customer_id from raw.customers where customer_id in ({', '.join('?' * len(group))})"
            packs.update(load_scoped_packs(tx, scope, group, as_of, fresh_at))
    return packs


def load_scoped_packs(source, scope: str, params: Sequence[Any], as_of: str,
                      fresh_at: str | None) -> dict[str, ContextPack]:
    """Context packs for the customers `scope` selects (SQL with a `customer_id` column; `params` are its `?`s).

    `fresh_at` is `data_fresh_day(source, as_of)`, read once per run rather than once per chunk.
    A chunked step passes its chunk: `select customer_id ... where customer_id >= ? and customer_id <= ?`.
    """
    return packs_from_frames(read_pack_frames(source, scope, params, as_of), as_of, fresh_at)


def read_pack_frames(source, scope: str, params: Sequence[Any], as_of: str) -> dict[str, pd.DataFrame]:
    """The rows behind the packs of the customers `scope` selects, a DataFrame per query (see
    `load_scoped_packs`): what `packs_from_frames` makes the packs of, here or in another process."""
    params = [*params, _until(as_of)]
    recent = _RECENT_ORDERS_SQL.format(scope=scope, limit=RECENT_ORDERS)
    queries = {"customers": _CUSTOMERS_SQL.format(scope=scope),
               "subscriptions": _SUBSCRIPTIONS_SQL.format(scope=scope),
               "orders": recent,
               "items": _ORDER_ITEMS_SQL.format(scope=scope, orders=recent),
               "stats": _ORDER_STATS_SQL.format(scope=scope, window=SKIP_WINDOW_ORDERS),
               "product_counts": _PRODUCT_COUNTS_SQL.format(scope=scope),
               "tickets": _RECENT_TICKETS_SQL.format(scope=scope, limit=RECENT_TICKETS)}
    with session_on(source) as tx:
        return {name: tx.read_df(sql, params) for name, sql in queries.items()}


def packs_from_frames(frames: dict[str, pd.DataFrame], as_of: str, fresh_at: str | None) -> dict[str, ContextPack]:
    """Context packs from `read_pack_frames`' rows."""
    by_customer: dict[str, CustomerRows] = {
        r["customer_id"]: CustomerRows(customer=r) for r in plain_records(frames["customers"])}
    subscriptions, orders, items, stats, product_counts, tickets = (
        plain_records(frames[name]) for name in ("subscriptions", "orders", "items", "stats", "product_counts",
                                                 "tickets"))
    for s in subscriptions:
        if s["customer_id"] in by_customer:
            by_customer[s["customer_id"]].subscriptions.append({**s, "cadence_days": _whole(s["cadence_days"])})
    orders.sort(key=lambda o: (o["ordered_at"], o["order_id"]), reverse=True)
    order_owner = {}
    for o in orders:
        if o["customer_id"] in by_customer:
            by_customer[o["customer_id"]].orders.append(o)
            order_owner[o["order_id"]] = o["customer_id"]
    for item in items:
        owner = order_owner.get(item["order_id"])
        if owner:
            by_customer[owner].order_items.append({**item, "quantity": _whole(item["quantity"])})
    for r in stats:
        rows = by_customer.get(r["customer_id"])
        if rows:
            rows.fulfilled_orders = int(r["fulfilled_orders"] or 0)
            rows.skips_in_window = int(r["skips_in_window"] or 0)
            rows.orders_in_window = int(r["orders_in_window"] or 0)
    for p in product_counts:
        if p["customer_id"] in by_customer:
            by_customer[p["customer_id"]].product_counts.append(p)
    tickets.sort(key=lambda t: (t["created_at"], t["ticket_id"]), reverse=True)
    for t in tickets:
        if t["customer_id"] in by_customer:
            by_customer[t["customer_id"]].tickets.append(t)
    return {cid: build_context_pack(rows, as_of, fresh_at) for cid, rows in by_customer.items()}

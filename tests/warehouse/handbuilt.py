"""Hand-built customers whose segments, tags and context are known in advance.

Each customer is a small, deterministic timeline anchored on ANCHOR (D1). Loading
the store "as of" a day writes every raw row that exists by the end of that day,
so loading at D1 and later at D2 = D1 + 84 days is a loader re-syncing fresh data:
the cadence customer stops skipping after D1 and adds a one-time item just before
D2, the expansion customer's add-on ages out, the new customer stops being new.

Ids start with a prefix ('HB-' by default) so they cannot collide with simulated ones.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from dagster_project.ingest import contract

ANCHOR = date(2025, 6, 30)  # D1, a Monday
LATER = ANCHOR + timedelta(days=84)  # D2: six 14-day cycles later

# What each hand-built customer is at D1 and at D2 (segments), by id suffix.
SEGMENTS_AT_ANCHOR = {
    "CADENCE": {"cadence_mismatch"},
    "EXPAND": {"expansion"},
    "FADING": {"at_risk"},
    "NEW": {"onboarding"},
    "WINBACK": {"win_back"},
    "DORMANT": {"dormant"},
    "ADVOCATE": set(),
    "BRIEF": set(),
    "OLDCANCEL": set(),
    "GIFT": set(),
}
SEGMENTS_LATER = {
    "CADENCE": {"expansion"},  # stopped skipping, then added a one-time item
    "EXPAND": set(),  # add-on older than the expansion window
    "FADING": set(),  # no prior engagement left to fall from
    "NEW": set(),  # no longer new
    "WINBACK": set(),  # cancelled longer ago than the win-back window
    "DORMANT": {"dormant"},
    "ADVOCATE": set(),
    "BRIEF": set(),
    "OLDCANCEL": set(),
    "GIFT": set(),
}


def at(day: date, hour: int = 9) -> datetime:
    return datetime.combine(day, time(hour))


@dataclass
class Store:
    """Raw rows by table, in contract column order, cut off at the end of `as_of`."""

    as_of: date
    prefix: str
    rows: dict[str, list[tuple]] = field(default_factory=lambda: defaultdict(list))
    _seen: dict = field(default_factory=lambda: defaultdict(int))

    def id(self, kind: str, cid: str, when: date | datetime) -> str:
        """A row's id from what it is (kind, customer, time), as a source system keeps it: the same
        row gets the same id whichever day the store is loaded at (a running number would shift
        as later rows appear, and re-synced rows would look new to incremental models)."""
        key = f"{cid.removeprefix(self.prefix)}-{when:%Y%m%d%H%M}"
        self._seen[(kind, key)] += 1
        return f"{self.prefix}{kind}-{key}-{self._seen[(kind, key)]}"

    def visible(self, when: date | datetime) -> bool:
        return (when.date() if isinstance(when, datetime) else when) <= self.as_of

    def add(self, table: str, **values) -> None:
        names = contract.TABLES[table].column_names
        unknown = set(values) - set(names)
        assert not unknown, f"raw.{table} has no columns {unknown}"
        self.rows[table].append(tuple(values.get(n) for n in names))

    # --- building blocks -----------------------------------------------------

    def customer(self, cid: str, created: date, first_name: str, **kw) -> None:
        if self.visible(created):
            self.add(
                "customers", customer_id=cid, email=f"{cid.lower()}@example.com",
                first_name=first_name, created_at=at(created, 8), country="DE",
                timezone="Europe/Berlin", marketing_opt_in=kw.get("opt_in", True),
                channel_preference=kw.get("channel", "email"),
            )

    def subscription(self, sid, cid, product, started, cadence, price, *, plan="single_bag",
                     cancelled=None, reason=None, paused=False, is_gift=False) -> None:
        if not self.visible(started):
            return
        if cancelled is not None and self.visible(cancelled):
            status, cancelled_at, next_charge = "cancelled", at(cancelled, 10), None
        else:
            status, cancelled_at, reason = ("paused" if paused else "active"), None, None
            day = started
            while day <= self.as_of:
                day += timedelta(days=cadence)
            next_charge = None if paused else at(day)
        self.add(
            "subscriptions", subscription_id=sid, customer_id=cid, product_id=product, plan=plan,
            status=status, cadence_days=cadence, price=price, started_at=at(started),
            cancelled_at=cancelled_at, cancel_reason=reason, next_charge_at=next_charge,
            is_gift=is_gift,
        )

    def cycles(self, cid, sid, product, started, cadence, price, *, until=None, status=None,
               qty=1) -> None:
        """One order per cycle from `started` to `until` (default as_of); `status(day)`
        says 'fulfilled' (default), 'skipped' or 'failed'."""
        end = min(until or self.as_of, self.as_of)
        day, k = started, 0
        while day <= end:
            st = status(day, k) if status else "fulfilled"
            oid = f"{sid}-O{k:03d}"
            shipped = at(day + timedelta(days=1), 14) if st == "fulfilled" else None
            delivered = at(day + timedelta(days=4), 12) if st == "fulfilled" else None
            if delivered is not None and not self.visible(delivered):
                delivered = None
            if shipped is not None and not self.visible(shipped):
                shipped = None
            self.add(
                "orders", order_id=oid, customer_id=cid, subscription_id=sid, ordered_at=at(day),
                status=st, total=0 if st == "skipped" else price, discount_code=None,
                shipped_at=shipped, delivered_at=delivered,
            )
            self.add("order_items", order_id=oid, product_id=product, quantity=qty,
                     unit_price=round(price / qty, 2), is_one_time=False)
            if st == "skipped":
                self.add("portal_events", event_id=self.id("PE", cid, at(day - timedelta(days=2), 19)),
                         customer_id=cid, event_type="skip", occurred_at=at(day - timedelta(days=2), 19),
                         properties=json.dumps({"subscription_id": sid, "order_id": oid}))
            else:
                self.add("payments", payment_id=f"{oid}-PAY", customer_id=cid, order_id=oid,
                         attempted_at=at(day, 9), status="succeeded" if st != "failed" else "failed",
                         failure_reason="card_declined" if st == "failed" else None, amount=price)
            day += timedelta(days=cadence)
            k += 1

    def one_time(self, cid, day, product, qty, unit_price) -> None:
        if not self.visible(day):
            return
        oid = self.id("OT", cid, at(day))
        self.add("portal_events", event_id=self.id("PE", cid, at(day, 8)), customer_id=cid,
                 event_type="add_one_time", occurred_at=at(day, 8),
                 properties=json.dumps({"product_id": product, "order_id": oid}))
        shipped = at(day + timedelta(days=1), 14)
        self.add("orders", order_id=oid, customer_id=cid, subscription_id=None,
                 ordered_at=at(day), status="fulfilled", total=round(qty * unit_price, 2),
                 discount_code=None, shipped_at=shipped if self.visible(shipped) else None,
                 delivered_at=None)
        self.add("order_items", order_id=oid, product_id=product, quantity=qty,
                 unit_price=unit_price, is_one_time=True)
        self.add("payments", payment_id=f"{oid}-PAY", customer_id=cid, order_id=oid,
                 attempted_at=at(day), status="succeeded", failure_reason=None,
                 amount=round(qty * unit_price, 2))

    def newsletters(self, cid, start, end, *, opens=True, click_every=4) -> None:
        """A weekly newsletter (Mondays): sent, delivered, and opened / clicked."""
        day = start + timedelta(days=(7 - start.weekday()) % 7)
        n = 0
        while day <= min(end, self.as_of):
            campaign = f"newsletter-{day.isoformat()}"
            message = f"{cid}-{campaign}"
            events = ["sent", "delivered"]
            if opens:
                events.append("open")
                if click_every and n % click_every == 0:
                    events.append("click")
            for hour, ev in enumerate(events, start=7):
                self.add("email_events", event_id=self.id("EE", cid, at(day, hour)), customer_id=cid,
                         campaign_id=campaign, message_id=message, event_type=ev,
                         occurred_at=at(day, hour))
            day += timedelta(days=7)
            n += 1

    def portal(self, cid, start, end, every_days, event_type="login") -> None:
        day = start
        while day <= min(end, self.as_of):
            self.add("portal_events", event_id=self.id("PE", cid, at(day, 20)), customer_id=cid,
                     event_type=event_type, occurred_at=at(day, 20), properties="{}")
            day += timedelta(days=every_days)

    def ticket(self, cid, day, topic, body, *, status="solved", csat=None) -> None:
        if not self.visible(day):
            return
        resolved = at(day + timedelta(days=1)) if status in ("solved", "closed") else None
        if resolved is not None and not self.visible(resolved):
            status, resolved = "pending", None
        self.add("support_tickets", ticket_id=self.id("T", cid, at(day, 11)), customer_id=cid, created_at=at(day, 11),
                 channel="email", topic=topic, status=status, resolved_at=resolved, csat=csat,
                 body=body)


def build(as_of: date, prefix: str = "HB-") -> Store:
    """All hand-built raw rows that exist by the end of `as_of`."""
    s = Store(as_of=as_of, prefix=prefix)
    D = ANCHOR
    p = prefix
    coffee, coffee2 = f"{p}P-COF1", f"{p}P-COF2"
    grinder, giftbox = f"{p}P-GRIND", f"{p}P-GIFT"
    for pid, name, cat, price in (
        (coffee, "House Blend", "coffee", 16.00),
        (coffee2, "Ethiopia Yirgacheffe", "coffee", 20.00),
        (grinder, "Burr Grinder", "equipment", 120.00),
        (giftbox, "Gift Box Deluxe", "gift_box", 50.00),
    ):
        s.add("products", product_id=pid, name=name, category=cat, price=price, active=True,
              subscription_eligible=cat == "coffee")

    def steady(cid, since, until=None):
        s.newsletters(cid, since, until or s.as_of)
        s.portal(cid, since, until or s.as_of, every_days=14)

    def days(n):
        return D + timedelta(days=n)

    # Skips every other delivery until D1, then receives every one; adds a grinder
    # four days before D2.
    cid = f"{p}CADENCE"
    s.customer(cid, days(-400), "Carla")
    s.subscription(f"{cid}-S1", cid, coffee, days(-392), 14, 16.00)
    s.cycles(cid, f"{cid}-S1", coffee, days(-392), 14, 16.00,
             status=lambda day, k: "skipped" if day <= D and k % 2 == 1 else "fulfilled")
    steady(cid, days(-400))
    s.one_time(cid, days(80), grinder, 1, 120.00)

    # Receives everything and added a grinder five days before D1.
    cid = f"{p}EXPAND"
    s.customer(cid, days(-300), "Emil")
    s.subscription(f"{cid}-S1", cid, coffee2, days(-290), 28, 20.00)
    s.cycles(cid, f"{cid}-S1", coffee2, days(-290), 28, 20.00)
    steady(cid, days(-300))
    s.one_time(cid, days(-5), grinder, 1, 120.00)

    # Opened and logged in several times a week, then went silent 45 days before D1.
    cid = f"{p}FADING"
    s.customer(cid, days(-500), "Fiona")
    s.subscription(f"{cid}-S1", cid, coffee, days(-490), 28, 16.00)
    s.cycles(cid, f"{cid}-S1", coffee, days(-490), 28, 16.00)
    s.newsletters(cid, days(-500), days(-46))
    s.newsletters(cid, days(-45), LATER, opens=False)
    s.portal(cid, days(-200), days(-46), every_days=3)
    s.portal(cid, days(-199), days(-46), every_days=3)

    # Joined a week before D1.
    cid = f"{p}NEW"
    s.customer(cid, days(-7), "Nora")
    s.subscription(f"{cid}-S1", cid, coffee, days(-7), 14, 16.00)
    s.cycles(cid, f"{cid}-S1", coffee, days(-7), 14, 16.00)
    s.newsletters(cid, days(-7), days(-1))

    # Cancelled (price) twenty days before D1.
    cid = f"{p}WINBACK"
    s.customer(cid, days(-400), "Walter")
    s.subscription(f"{cid}-S1", cid, coffee, days(-390), 28, 16.00, cancelled=days(-20),
                   reason="price")
    s.cycles(cid, f"{cid}-S1", coffee, days(-390), 28, 16.00, until=days(-21))
    steady(cid, days(-400), days(-20))
    s.portal(cid, days(-20), days(-20), every_days=1, event_type="cancel")

    # Paused 150 days before D1 and silent since.
    cid = f"{p}DORMANT"
    s.customer(cid, days(-400), "Doris")
    s.subscription(f"{cid}-S1", cid, coffee, days(-390), 28, 16.00, paused=True)
    s.cycles(cid, f"{cid}-S1", coffee, days(-390), 28, 16.00, until=days(-151))
    steady(cid, days(-400), days(-151))
    s.portal(cid, days(-150), days(-150), every_days=1, event_type="pause")
    s.newsletters(cid, days(-150), LATER, opens=False)

    # Long-time fan: never skips, clicks, rates support 5, bought a big gift order.
    cid = f"{p}ADVOCATE"
    s.customer(cid, days(-800), "Ada")
    s.subscription(f"{cid}-S1", cid, coffee2, days(-790), 28, 36.00, plan="double_bag")
    s.cycles(cid, f"{cid}-S1", coffee2, days(-790), 28, 36.00, qty=2)
    steady(cid, days(-800))
    s.one_time(cid, days(-200), giftbox, 20, 50.00)
    s.ticket(cid, days(-210), "product_question",
             "Hello team, thank you so much for the lovely beans last month! Could you tell me "
             "which grind setting works best for a Chemex? Many thanks and warm regards, Ada",
             csat=5)
    s.ticket(cid, days(-90), "change_address",
             "Hi there! We are moving next month, so could you please send my coffee to our new "
             "address from July on? Thanks a lot for your help, Ada", csat=5)

    # Terse writer with a repeat delivery problem and a failed payment.
    cid = f"{p}BRIEF"
    s.customer(cid, days(-200), "Bruno")
    s.subscription(f"{cid}-S1", cid, coffee, days(-196), 28, 16.00)
    s.cycles(cid, f"{cid}-S1", coffee, days(-196), 28, 16.00,
             status=lambda day, k: "failed" if k == 5 else "fulfilled")
    steady(cid, days(-200))
    s.ticket(cid, days(-12), "delivery_delay", "Where is my order?", csat=2)
    s.ticket(cid, days(-6), "delivery_delay", "Order still not here.", status="open")

    # Cancelled long ago: nobody's target.
    cid = f"{p}OLDCANCEL"
    s.customer(cid, days(-700), "Otto")
    s.subscription(f"{cid}-S1", cid, coffee, days(-690), 28, 16.00, cancelled=days(-300),
                   reason="taste")
    s.cycles(cid, f"{cid}-S1", coffee, days(-690), 28, 16.00, until=days(-301))

    # Receives a gift subscription and enjoys it.
    cid = f"{p}GIFT"
    s.customer(cid, days(-100), "Greta")
    s.subscription(f"{cid}-S1", cid, coffee, days(-100), 28, 16.00, is_gift=True)
    s.cycles(cid, f"{cid}-S1", coffee, days(-100), 28, 16.00)
    steady(cid, days(-100))
    return s


def load(con, as_of: date, prefix: str = "HB-") -> Store:
    """(Re)load the hand-built customers into raw.* as a loader would see them at the
    end of `as_of`: their previous rows are replaced, other customers are untouched."""
    contract.create_raw_schema(con)
    store = build(as_of, prefix)
    for table in contract.LOAD_ORDER:
        key = {"products": "product_id", "order_items": "order_id"}.get(table, "customer_id")
        if table == "products":
            con.execute(f"delete from raw.products where product_id like '{prefix}%'")
        else:
            con.execute(f"delete from raw.{table} where {key} like '{prefix}%'")
        rows = store.rows.get(table, [])
        if rows:
            marks = ", ".join("?" for _ in contract.TABLES[table].column_names)
            con.executemany(f"insert into raw.{table} values ({marks})", rows)
    return store

"""Training rows for uplift per playbook: past assignments, features before, goals after.

    rows = assignment_rows(con, as_of)       # one row per past assignment whose goal window closed
    X = point_in_time_features(con, anchors)  # features from raw.* strictly before each anchor time

Outcomes mirror the simulator's goals (`simulator/traits.GOALS`) but are read
from the raw tables, never from `sim_truth`:

| goal | happened when, in the window after assigned_at |
|---|---|
| retained_60d | no subscription cancelled (other than to upgrade) |
| cadence_changed_30d | a portal `change_cadence` event |
| addon_30d | a portal `add_one_time` event |
| login_30d | a portal `login` event |
| reactivated_60d | a portal `reactivate` event or a new subscription started |

Features: `analytics.customer_features` (one row per customer per weekly
as_of) when it exists, taking the latest as_of on or before the anchor;
otherwise a small feature set computed here in SQL from raw.* before the
anchor. Either way nothing after the anchor is read.
"""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd

# playbook -> (goal, window days); the same table as simulator/traits.GOALS, kept here so
# the pipeline does not import the simulator (a user's store has no simulator).
GOALS = {
    "at_risk_save": ("retained_60d", 60),
    "cadence_mismatch": ("cadence_changed_30d", 30),
    "expansion": ("addon_30d", 30),
    "onboarding": ("retained_60d", 60),
    "re_engagement": ("login_30d", 30),
    "win_back": ("reactivated_60d", 60),
    "high_ltv_recovery": ("retained_60d", 60),
}
FEATURES_TABLE = "analytics.customer_features"
TRAINING_CUSTOMERS_TABLE = "intermediate.int_training_customers"
KEY_COLUMNS = ("customer_id", "as_of", "as_of_date", "anchor_at", "first_day", "last_day")

# Human-readable names for reason codes ("few opens in the last 30 days").
FEATURE_LABELS = {
    "tenure_days": "days since sign-up",
    "live_subscription": "has a live subscription",
    "cadence_days": "delivery cycle (days)",
    "bags_per_delivery": "bags per delivery",
    "subscription_price": "subscription price",
    "is_gift": "gift subscription",
    "fulfilled_orders_90d": "deliveries in the last 90 days",
    "skips_90d": "skipped deliveries in the last 90 days",
    "skip_share_last4": "share of the last 4 deliveries skipped",
    "failed_payments_90d": "failed payments in the last 90 days",
    "days_since_last_order": "days since the last order",
    "addons_90d": "one-time add-ons in the last 90 days",
    "addons_ever": "one-time add-ons ever",
    "discount_order_share": "share of orders with a discount code",
    "lifetime_value": "lifetime spend",
    "opens_30d": "email opens in the last 30 days",
    "opens_31_90d": "email opens 31-90 days ago",
    "clicks_90d": "email clicks in the last 90 days",
    "logins_30d": "portal logins in the last 30 days",
    "logins_31_90d": "portal logins 31-90 days ago",
    "cancel_attempts_90d": "cancel attempts in the last 90 days",
    "cadence_changes_ever": "delivery-cycle changes ever",
    "tickets_90d": "support tickets in the last 90 days",
    "days_since_cancel": "days since cancelling",
    "cancelled_for_price": "cancelled over price",
    "playbook_sends_90d": "campaign emails in the last 90 days",
}

_ANCHORED_FEATURES_SQL = """
with anchors as (select distinct customer_id, anchor_at from {anchors}),
subs as (
    select a.customer_id, a.anchor_at,
        max(case when s.started_at < a.anchor_at and (s.cancelled_at is null or s.cancelled_at >= a.anchor_at)
                 then 1 else 0 end) as live_subscription,
        max(case when s.started_at < a.anchor_at and (s.cancelled_at is null or s.cancelled_at >= a.anchor_at)
                 then s.cadence_days end) as cadence_days,
        max(case when s.started_at < a.anchor_at and (s.cancelled_at is null or s.cancelled_at >= a.anchor_at)
                 then case s.plan when 'single_bag' then 1 when 'double_bag' then 2 else 3 end end) as bags_per_delivery,
        max(case when s.started_at < a.anchor_at and (s.cancelled_at is null or s.cancelled_at >= a.anchor_at)
                 then s.price end) as subscription_price,
        max(case when s.started_at < a.anchor_at and s.is_gift then 1 else 0 end) as is_gift,
        date_diff('day', max(case when s.cancelled_at < a.anchor_at and coalesce(s.cancel_reason, '') <> 'upgraded'
                 then s.cancelled_at end), max(a.anchor_at)) as days_since_cancel,
        max(case when s.cancelled_at < a.anchor_at and s.cancel_reason = 'price' then 1 else 0 end) as cancelled_for_price
    from anchors a left join raw.subscriptions s on s.customer_id = a.customer_id and s.started_at < a.anchor_at
    group by all
),
ords as (
    select a.customer_id, a.anchor_at,
        count(*) filter (where o.status = 'fulfilled' and o.ordered_at >= a.anchor_at - interval 90 day) as fulfilled_orders_90d,
        count(*) filter (where o.status = 'skipped' and o.ordered_at >= a.anchor_at - interval 90 day) as skips_90d,
        count(*) filter (where o.status = 'failed' and o.ordered_at >= a.anchor_at - interval 90 day) as failed_payments_90d,
        date_diff('day', max(o.ordered_at), max(a.anchor_at)) as days_since_last_order,
        avg(case when o.discount_code is not null then 1.0 else 0.0 end) as discount_order_share,
        coalesce(sum(o.total) filter (where o.status = 'fulfilled'), 0) as lifetime_value
    from anchors a left join raw.orders o on o.customer_id = a.customer_id and o.ordered_at < a.anchor_at
    group by all
),
last4 as (
    select customer_id, anchor_at, avg(case when status = 'skipped' then 1.0 else 0.0 end) as skip_share_last4
    from (
        select a.customer_id, a.anchor_at, o.status,
            row_number() over (partition by a.customer_id, a.anchor_at order by o.ordered_at desc) as k
        from anchors a join raw.orders o on o.customer_id = a.customer_id and o.ordered_at < a.anchor_at
        where o.subscription_id is not null
    ) where k <= 4 group by all
),
portal as (
    select a.customer_id, a.anchor_at,
        count(*) filter (where p.event_type = 'add_one_time' and p.occurred_at >= a.anchor_at - interval 90 day) as addons_90d,
        count(*) filter (where p.event_type = 'add_one_time') as addons_ever,
        count(*) filter (where p.event_type = 'login' and p.occurred_at >= a.anchor_at - interval 30 day) as logins_30d,
        count(*) filter (where p.event_type = 'login' and p.occurred_at < a.anchor_at - interval 30 day
                         and p.occurred_at >= a.anchor_at - interval 90 day) as logins_31_90d,
        count(*) filter (where p.event_type = 'cancel_attempt' and p.occurred_at >= a.anchor_at - interval 90 day)
            as cancel_attempts_90d,
        count(*) filter (where p.event_type = 'change_cadence') as cadence_changes_ever
    from anchors a left join raw.portal_events p on p.customer_id = a.customer_id and p.occurred_at < a.anchor_at
    group by all
),
mail as (
    select a.customer_id, a.anchor_at,
        count(*) filter (where e.event_type = 'open' and e.occurred_at >= a.anchor_at - interval 30 day) as opens_30d,
        count(*) filter (where e.event_type = 'open' and e.occurred_at < a.anchor_at - interval 30 day) as opens_31_90d,
        count(*) filter (where e.event_type = 'click') as clicks_90d,
        count(*) filter (where e.event_type = 'sent' and e.campaign_id like 'pb-%') as playbook_sends_90d
    from anchors a left join raw.email_events e on e.customer_id = a.customer_id and e.occurred_at < a.anchor_at
        and e.occurred_at >= a.anchor_at - interval 90 day
    group by all
),
tickets as (
    select a.customer_id, a.anchor_at, count(t.ticket_id) as tickets_90d
    from anchors a left join raw.support_tickets t on t.customer_id = a.customer_id and t.created_at < a.anchor_at
        and t.created_at >= a.anchor_at - interval 90 day
    group by all
)
select a.customer_id, a.anchor_at,
    date_diff('day', c.created_at, a.anchor_at) as tenure_days,
    subs.* exclude (customer_id, anchor_at), ords.* exclude (customer_id, anchor_at),
    last4.skip_share_last4, portal.* exclude (customer_id, anchor_at), mail.* exclude (customer_id, anchor_at),
    tickets.tickets_90d
from anchors a
join raw.customers c on c.customer_id = a.customer_id
left join subs on subs.customer_id = a.customer_id and subs.anchor_at = a.anchor_at
left join ords on ords.customer_id = a.customer_id and ords.anchor_at = a.anchor_at
left join last4 on last4.customer_id = a.customer_id and last4.anchor_at = a.anchor_at
left join portal on portal.customer_id = a.customer_id and portal.anchor_at = a.anchor_at
left join mail on mail.customer_id = a.customer_id and mail.anchor_at = a.anchor_at
left join tickets on tickets.customer_id = a.customer_id and tickets.anchor_at = a.anchor_at
"""

_OUTCOME_SQL = {
    "retained_60d": """not exists (select 1 from raw.subscriptions s where s.customer_id = r.customer_id
        and s.cancelled_at > r.assigned_at and s.cancelled_at <= r.assigned_at + interval {days} day
        and coalesce(s.cancel_reason, '') <> 'upgraded')""",
    "cadence_changed_30d": """exists (select 1 from raw.portal_events p where p.customer_id = r.customer_id
        and p.event_type = 'change_cadence' and p.occurred_at > r.assigned_at
        and p.occurred_at <= r.assigned_at + interval {days} day)""",
    "addon_30d": """exists (select 1 from raw.portal_events p where p.customer_id = r.customer_id
        and p.event_type = 'add_one_time' and p.occurred_at > r.assigned_at
        and p.occurred_at <= r.assigned_at + interval {days} day)""",
    "login_30d": """exists (select 1 from raw.portal_events p where p.customer_id = r.customer_id
        and p.event_type = 'login' and p.occurred_at > r.assigned_at
        and p.occurred_at <= r.assigned_at + interval {days} day)""",
    "reactivated_60d": """(exists (select 1 from raw.portal_events p where p.customer_id = r.customer_id
        and p.event_type = 'reactivate' and p.occurred_at > r.assigned_at
        and p.occurred_at <= r.assigned_at + interval {days} day)
        or exists (select 1 from raw.subscriptions s where s.customer_id = r.customer_id
        and s.started_at > r.assigned_at and s.started_at <= r.assigned_at + interval {days} day
        and not exists (select 1 from raw.subscriptions u where u.customer_id = s.customer_id
            and u.cancel_reason = 'upgraded' and u.cancelled_at = s.started_at)))""",
}


def table_exists(con, qualified: str) -> bool:
    schema, name = qualified.split(".")
    return bool(con.execute("select count(*) from information_schema.tables where table_schema = ? "
                            "and table_name = ?", [schema, name]).fetchall()[0][0])


def data_end(con) -> datetime:
    """The last moment the raw data covers (latest order, portal or email event)."""
    return con.execute("""select greatest((select max(ordered_at) from raw.orders),
        (select max(occurred_at) from raw.portal_events), (select max(occurred_at) from raw.email_events))""").fetchall()[0][0]


def assignment_rows(con, as_of: date | datetime | None = None, playbooks=None) -> pd.DataFrame:
    """Past assignments whose goal window has closed by `as_of`, with the goal outcome (0/1).

    Columns: assignment_id, playbook_id, customer_id, assigned_at, treated, goal, outcome.
    """
    as_of = pd.Timestamp(as_of) if as_of is not None else pd.Timestamp(data_end(con))
    # The weekly feature history covers the dbt training sample only (var training_customers):
    # customers outside it have no features at their past sends, so they are not training rows.
    sampled = ""
    if table_exists(con, FEATURES_TABLE) and table_exists(con, TRAINING_CUSTOMERS_TABLE):
        sampled = f"and r.customer_id in (select customer_id from {TRAINING_CUSTOMERS_TABLE})"
    frames = []
    for playbook, (goal, days) in GOALS.items():
        if playbooks is not None and playbook not in playbooks:
            continue
        frames.append(con.execute(f"""
            select r.assignment_id, r.playbook_id, r.customer_id, r.assigned_at,
                   (r.arm = 'treatment')::int as treated, '{goal}' as goal,
                   ({_OUTCOME_SQL[goal].format(days=days)})::int as outcome
            from nextbest.assignments r
            where r.playbook_id = ? and r.assigned_at + interval {days} day <= ? {sampled}
            order by r.assigned_at, r.customer_id""", [playbook, as_of.to_pydatetime()]).df())
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def point_in_time_features(con, anchors: pd.DataFrame) -> pd.DataFrame:
    """Features per (customer_id, anchor_at) row of `anchors`, from data strictly before anchor_at.

    Uses `analytics.customer_features` when it exists (latest as_of on or
    before the anchor), else the SQL feature set above. Returns one row per
    distinct anchor with customer_id, anchor_at and numeric feature columns.
    """
    anchors = anchors[["customer_id", "anchor_at"]].drop_duplicates().reset_index(drop=True)
    con.register("_uplift_anchors", anchors)
    try:
        if table_exists(con, FEATURES_TABLE):
            frame = _from_features_mart(con)
            if frame is not None:
                return frame
        return con.execute(_ANCHORED_FEATURES_SQL.format(anchors="_uplift_anchors")).df()
    finally:
        con.unregister("_uplift_anchors")


def _from_features_mart(con) -> pd.DataFrame | None:
    columns = [r[0] for r in con.execute(
        "select column_name from information_schema.columns where table_schema = 'analytics' "
        "and table_name = 'customer_features'").fetchall()]
    as_of = next((c for c in ("as_of_date", "as_of") if c in columns), None)
    if "customer_id" not in columns or as_of is None:
        return None  # an unexpected shape: fall back to the SQL features rather than guess
    frame = con.execute(f"""
        select a.customer_id, a.anchor_at, f.* exclude (customer_id)
        from _uplift_anchors a asof left join {FEATURES_TABLE} f
          on f.customer_id = a.customer_id and a.anchor_at >= f.{as_of}::timestamp""").df()
    return frame


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """The numeric / boolean feature columns of a features frame (keys and dates left out)."""
    return [c for c in frame.columns if c not in KEY_COLUMNS
            and (pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c]))]


def training_frame(con, as_of=None, playbooks=None) -> pd.DataFrame:
    """Assignment rows joined to their features at assigned_at."""
    rows = assignment_rows(con, as_of, playbooks)
    if rows.empty:
        return rows
    features = point_in_time_features(con, rows.rename(columns={"assigned_at": "anchor_at"}))
    return rows.merge(features, left_on=["customer_id", "assigned_at"], right_on=["customer_id", "anchor_at"],
                      how="left").drop(columns=["anchor_at"])

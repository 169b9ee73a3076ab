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

Every reader takes the warehouse resource (DuckDB or Snowflake), a session, or
a DuckDB connection, and reads through the session interface in SQL both
engines run; only the fallback feature set is DuckDB SQL (on Snowflake the dbt
marts are built first).
"""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd

from dagster_project.models.goals import GOAL_WINDOWS, SEED_GOALS
from dagster_project.resources.warehouse import (DuckDBSession, WarehouseSession, check_identifier, column_names,
                                                 session_on, table_exists)

# The seed playbooks' (goal, window days) (`goals.py`); a brief's own goal is `Brief.goal`, and
# `playbook_goals(briefs)` gives every playbook's.
GOALS = {playbook: (goal, GOAL_WINDOWS[goal]) for playbook, goal in SEED_GOALS.items()}
FEATURES_TABLE = "analytics.customer_features"
TRAINING_CUSTOMERS_TABLE = "intermediate.int_training_customers"
SCRATCH_SCHEMA = "nextbest"  # where Snowflake uploads the anchors for one read (a transient table, dropped after)
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

# The fallback feature set, in DuckDB SQL (`filter`, `group by all`, `exclude`): used only without the mart.
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

# Per goal: the raw events that decide it, as (customer_id, event_at). A send's outcome is whether
# one falls in its window (assigned_at, assigned_at + days]; retained_60d counts the opposite.
# Anti-joins are left joins, not correlated subqueries: Snowflake only takes those in a where clause.
_GOAL_EVENTS_SQL = {
    "retained_60d": """select s.customer_id, s.cancelled_at as event_at from raw.subscriptions s
        where coalesce(s.cancel_reason, '') <> 'upgraded'""",
    "cadence_changed_30d": """select p.customer_id, p.occurred_at as event_at from raw.portal_events p
        where p.event_type = 'change_cadence'""",
    "addon_30d": """select p.customer_id, p.occurred_at as event_at from raw.portal_events p
        where p.event_type = 'add_one_time'""",
    "login_30d": """select p.customer_id, p.occurred_at as event_at from raw.portal_events p
        where p.event_type = 'login'""",
    # A reactivation, or a new subscription that is not the other half of an upgrade.
    "reactivated_60d": """select p.customer_id, p.occurred_at as event_at from raw.portal_events p
        where p.event_type = 'reactivate'
        union all
        select s.customer_id, s.started_at as event_at from raw.subscriptions s
        left join raw.subscriptions u on u.customer_id = s.customer_id and u.cancel_reason = 'upgraded'
            and u.cancelled_at = s.started_at
        where u.customer_id is null""",
}
_GOAL_IS_NO_EVENT = {"retained_60d"}

# SQL both engines run: `interval '<n> day'` and `cast(<boolean> as integer)` (true -> 1) read the same
# on DuckDB and Snowflake; the as-of cutoff is bound from Python.
_ASSIGNMENT_ROWS_SQL = """
with sends as (
    select r.assignment_id, r.playbook_id, r.customer_id, r.assigned_at, r.arm
    from nextbest.assignments r
    where r.playbook_id = ? and r.assigned_at <= cast(? as timestamp) {sampled}
),
goal_events as ({events}),
hits as (
    select s.customer_id, s.assigned_at
    from (select distinct customer_id, assigned_at from sends) s
    join goal_events e on e.customer_id = s.customer_id
        and e.event_at > s.assigned_at and e.event_at <= s.assigned_at + interval '{days} day'
    group by s.customer_id, s.assigned_at
)
select s.assignment_id, s.playbook_id, s.customer_id, s.assigned_at,
    cast(s.arm = 'treatment' as integer) as treated, '{goal}' as goal,
    cast(h.customer_id is {hit} null as integer) as outcome
from sends s
left join hits h on h.customer_id = s.customer_id and h.assigned_at = s.assigned_at
order by s.assigned_at, s.customer_id, s.assignment_id
"""


def data_end(con) -> datetime:
    """The last moment the raw data covers (latest order, portal or email event)."""
    # max over a union, not greatest(): Snowflake's greatest() is null when any table is empty.
    with session_on(con) as tx:
        found = tx.read_df("""select max(t) as data_end from (
            select max(ordered_at) as t from raw.orders
            union all select max(occurred_at) as t from raw.portal_events
            union all select max(occurred_at) as t from raw.email_events) ends""")
    return pd.Timestamp(found.iloc[0, 0]).to_pydatetime()


def playbook_goals(briefs) -> dict[str, tuple[str, int]]:
    """playbook -> (goal, window days) for every brief of a `BriefSet` (a brief's goal, else its seed goal)."""
    return {playbook: (brief.goal, brief.goal_days) for playbook, brief in briefs.playbooks.items()}


def assignment_rows(con, as_of: date | datetime | None = None, playbooks=None,
                    goals: dict[str, tuple[str, int]] | None = None) -> pd.DataFrame:
    """Past assignments whose goal window has closed by `as_of`, with the goal outcome (0/1).

    Columns: assignment_id, playbook_id, customer_id, assigned_at, treated, goal, outcome.
    `con`: the warehouse resource (either engine), a session, or a DuckDB connection.
    `goals`: playbook -> (goal, window days) of the playbooks to read (`playbook_goals`), default the seed
    playbooks' (`GOALS`).
    """
    with session_on(con) as tx:
        if not table_exists(tx, "nextbest.assignments"):
            return pd.DataFrame()  # a store's own data before its first routed day: no past sends to learn from
        as_of = pd.Timestamp(as_of) if as_of is not None else pd.Timestamp(data_end(tx))
        # The weekly feature history covers the dbt training sample only (var training_customers):
        # customers outside it have no features at their past sends, so they are not training rows.
        sampled = ""
        if table_exists(tx, FEATURES_TABLE) and table_exists(tx, TRAINING_CUSTOMERS_TABLE):
            sampled = f"and r.customer_id in (select customer_id from {TRAINING_CUSTOMERS_TABLE})"
        frames = []
        for playbook, (goal, days) in (GOALS if goals is None else goals).items():
            if playbooks is not None and playbook not in playbooks:
                continue
            sql = _ASSIGNMENT_ROWS_SQL.format(sampled=sampled, events=_GOAL_EVENTS_SQL[goal], days=days, goal=goal,
                                              hit="" if goal in _GOAL_IS_NO_EVENT else "not")
            # The window has closed when assigned_at + days <= as_of.
            frames.append(tx.read_df(sql, [playbook, (as_of - pd.Timedelta(days=days)).to_pydatetime()]))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def point_in_time_features(con, anchors: pd.DataFrame) -> pd.DataFrame:
    """Features per (customer_id, anchor_at) row of `anchors`, from data strictly before anchor_at.

    Uses `analytics.customer_features` when it exists (latest as_of on or
    before the anchor), else the SQL feature set above (DuckDB only: on
    Snowflake the dbt marts must be built first). Returns one row per
    distinct anchor with customer_id, anchor_at and numeric feature columns.
    `con`: the warehouse resource (either engine), a session, or a DuckDB connection.
    """
    anchors = anchors[["customer_id", "anchor_at"]].drop_duplicates().reset_index(drop=True)
    with session_on(con) as tx:
        staged = tx.stage_df(SCRATCH_SCHEMA, anchors)
        if tx.exists(*FEATURES_TABLE.split(".")):
            frame = _from_features_mart(tx, staged)
            if frame is not None:
                return frame
        if not isinstance(tx, DuckDBSession):
            raise RuntimeError(f"{FEATURES_TABLE} is missing (or has no customer_id / as_of_date column): build "
                               "the dbt marts (`dbt build`) before training uplift models or routing on Snowflake")
        return tx.read_df(_ANCHORED_FEATURES_SQL.format(anchors=staged))


def _from_features_mart(tx: WarehouseSession, anchors: str) -> pd.DataFrame | None:
    """The latest mart row on or before each anchor (what DuckDB's asof join gives, in SQL both engines run)."""
    columns = column_names(tx, FEATURES_TABLE)
    as_of = next((c for c in ("as_of_date", "as_of") if c in columns), None)
    if "customer_id" not in columns or as_of is None:
        return None  # an unexpected shape: fall back to the SQL features rather than guess
    kept = [check_identifier(c, f"Column of {FEATURES_TABLE}") for c in columns if c != "customer_id"]
    picked = ", ".join(f"f.{c}" for c in kept)
    frame = tx.read_df(f"""
        select customer_id, anchor_at, {", ".join(kept)} from (
            select a.customer_id, a.anchor_at, {picked},
                row_number() over (partition by a.customer_id, a.anchor_at order by f.{as_of} desc) as nb_latest
            from {anchors} a
            left join {FEATURES_TABLE} f
                on f.customer_id = a.customer_id and cast(f.{as_of} as timestamp) <= a.anchor_at
        ) latest
        where nb_latest = 1""")
    return frame


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """The numeric / boolean feature columns of a features frame (keys and dates left out)."""
    return [c for c in frame.columns if c not in KEY_COLUMNS
            and (pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c]))]


def training_frame(con, as_of=None, playbooks=None, goals: dict[str, tuple[str, int]] | None = None) -> pd.DataFrame:
    """Assignment rows joined to their features at assigned_at (one read of the warehouse, either engine);
    `goals` as `assignment_rows` takes them."""
    with session_on(con) as tx:
        rows = assignment_rows(tx, as_of, playbooks, goals)
        if rows.empty:
            return rows
        features = point_in_time_features(tx, rows.rename(columns={"assigned_at": "anchor_at"}))
    return rows.merge(features, left_on=["customer_id", "assigned_at"], right_on=["customer_id", "anchor_at"],
                      how="left").drop(columns=["anchor_at"])

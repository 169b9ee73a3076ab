"""The source contract: the `raw.*` tables every loader must produce.

This is the single Python description of DESIGN.md's source contract. The demo
simulator writes exactly these tables, the importer checks files against them,
and the dbt sources (`dbt/models/staging/sources.yml`) describe the same
columns. Timestamps are UTC. Ids are text so any loader's ids fit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

RAW_SCHEMA = "raw"
QUARANTINE_TABLE = "raw_quarantine"  # lives in schema `raw`: raw.raw_quarantine
NEXTBEST_SCHEMA = "nextbest"
# A playbook send's campaign id: its assignment's (`nextbest.assignments.campaign_id`) and the one the
# ESP reports back on its events (raw.email_events), so lift is measured on the sends themselves.
# dbt counts events of campaigns with this prefix as playbook sends.
PLAYBOOK_CAMPAIGN_PREFIX = "pb-"


def campaign_id(batch_id: str) -> str:
    """The campaign id of a batch of playbook messages (`<playbook>-<run date>`): `pb-<batch>`."""
    return f"{PLAYBOOK_CAMPAIGN_PREFIX}{batch_id}"
SIM_TRUTH_SCHEMA = "sim_truth"  # simulator oracle; nothing in the pipeline reads it

# The seven playbooks of DESIGN.md; ids are shared by the simulator's past
# campaigns, the briefs and routing.
PLAYBOOKS = (
    "at_risk_save",
    "cadence_mismatch",
    "expansion",
    "onboarding",
    "re_engagement",
    "win_back",
    "high_ltv_recovery",
)


@dataclass(frozen=True)
class Column:
    """One contract column: name, warehouse type and the rules a row must meet."""

    name: str
    type: str  # DuckDB / ANSI type name
    required: bool = True  # null not allowed
    accepted: tuple[str, ...] | None = None  # accepted values (enums)
    min_value: float | None = None  # numeric lower bound (e.g. no negative prices)
    max_value: float | None = None
    may_be_future: bool = False  # timestamps that legitimately lie ahead (a next charge)
    description: str = ""


@dataclass(frozen=True)
class Table:
    """One `raw.*` table: columns, primary key and foreign keys."""

    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    # column -> (table, column) it must reference
    foreign_keys: dict[str, tuple[str, str]] = field(default_factory=dict)
    description: str = ""
    # True: a row is an entity's current state (an order ships, a subscription is cancelled), so a
    # re-export with other values replaces the stored row. False: an event, never changed once stored.
    current_state: bool = True

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"raw.{self.name} has no column {name!r}")


ID = "VARCHAR"
TS = "TIMESTAMP"
MONEY = "DECIMAL(12,2)"

SUBSCRIPTION_STATUSES = ("active", "paused", "cancelled")
ORDER_STATUSES = ("fulfilled", "skipped", "refunded", "failed")
EMAIL_EVENT_TYPES = (
    "sent", "delivered", "open", "click", "conversion", "unsubscribe", "bounce", "complaint",
)
PORTAL_EVENT_TYPES = (
    "login", "skip", "reschedule", "swap_product", "change_cadence", "add_one_time",
    "pause", "resume", "cancel_attempt", "cancel", "reactivate", "update_payment",
)
TICKET_CHANNELS = ("email", "chat", "phone")
TICKET_STATUSES = ("open", "pending", "solved", "closed")
PAYMENT_STATUSES = ("succeeded", "failed")
CHANNEL_PREFERENCES = ("email", "sms", "in_portal")

TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        Table(
            "customers",
            (
                Column("customer_id", ID),
                Column("email", "VARCHAR"),
                Column("first_name", "VARCHAR", required=False),
                Column("created_at", TS),
                Column("country", "VARCHAR", required=False),
                Column("timezone", "VARCHAR", required=False),
                Column("marketing_opt_in", "BOOLEAN"),
                Column("channel_preference", "VARCHAR", required=False, accepted=CHANNEL_PREFERENCES),
            ),
            primary_key=("customer_id",),
            description="One row per customer account.",
        ),
        Table(
            "products",
            (
                Column("product_id", ID),
                Column("name", "VARCHAR"),
                Column("category", "VARCHAR"),
                Column("price", MONEY, min_value=0),
                Column("active", "BOOLEAN"),
                Column("subscription_eligible", "BOOLEAN"),
            ),
            primary_key=("product_id",),
            description="The catalog.",
        ),
        Table(
            "subscriptions",
            (
                Column("subscription_id", ID),
                Column("customer_id", ID),
                Column("product_id", ID),
                Column("plan", "VARCHAR"),
                Column("status", "VARCHAR", accepted=SUBSCRIPTION_STATUSES),
                Column("cadence_days", "INTEGER", min_value=1, max_value=365),
                Column("price", MONEY, min_value=0),
                Column("started_at", TS),
                Column("cancelled_at", TS, required=False),
                Column("cancel_reason", "VARCHAR", required=False),
                Column("next_charge_at", TS, required=False, may_be_future=True),
                Column("is_gift", "BOOLEAN"),
            ),
            primary_key=("subscription_id",),
            foreign_keys={"customer_id": ("customers", "customer_id"), "product_id": ("products", "product_id")},
            description="Subscriptions, current state; a plan change is a new subscription.",
        ),
        Table(
            "orders",
            (
                Column("order_id", ID),
                Column("customer_id", ID),
                Column("subscription_id", ID, required=False),
                Column("ordered_at", TS),
                Column("status", "VARCHAR", accepted=ORDER_STATUSES),
                Column("total", MONEY, min_value=0),
                Column("discount_code", "VARCHAR", required=False),
                Column("shipped_at", TS, required=False),
                Column("delivered_at", TS, required=False),
            ),
            primary_key=("order_id",),
            foreign_keys={
                "customer_id": ("customers", "customer_id"),
                "subscription_id": ("subscriptions", "subscription_id"),
            },
            description="Orders: one per subscription cycle (fulfilled or skipped) plus one-time orders.",
        ),
        Table(
            "order_items",
            (
                Column("order_id", ID),
                Column("product_id", ID),
                Column("quantity", "INTEGER", min_value=1, max_value=1000),
                Column("unit_price", MONEY, min_value=0),
                Column("is_one_time", "BOOLEAN"),
            ),
            primary_key=("order_id", "product_id"),
            foreign_keys={"order_id": ("orders", "order_id"), "product_id": ("products", "product_id")},
            description="Lines of an order; one-time add-ons have is_one_time = true.",
        ),
        Table(
            "email_events",
            (
                Column("event_id", ID),
                Column("customer_id", ID),
                Column("campaign_id", "VARCHAR"),
                Column("message_id", "VARCHAR"),
                Column("event_type", "VARCHAR", accepted=EMAIL_EVENT_TYPES),
                Column("occurred_at", TS),
            ),
            primary_key=("event_id",),
            foreign_keys={"customer_id": ("customers", "customer_id")},
            description="ESP events.",
            current_state=False,
        ),
        Table(
            "portal_events",
            (
                Column("event_id", ID),
                Column("customer_id", ID),
                Column("event_type", "VARCHAR", accepted=PORTAL_EVENT_TYPES),
                Column("occurred_at", TS),
                Column("properties", "VARCHAR", required=False, description="JSON text"),
            ),
            primary_key=("event_id",),
            foreign_keys={"customer_id": ("customers", "customer_id")},
            description="Customer portal actions.",
            current_state=False,
        ),
        Table(
            "support_tickets",
            (
                Column("ticket_id", ID),
                Column("customer_id", ID),
                Column("created_at", TS),
                Column("channel", "VARCHAR", accepted=TICKET_CHANNELS),
                Column("topic", "VARCHAR"),
                Column("status", "VARCHAR", accepted=TICKET_STATUSES),
                Column("resolved_at", TS, required=False),
                Column("csat", "INTEGER", required=False, min_value=1, max_value=5),
                Column("body", "VARCHAR", required=False),
            ),
            primary_key=("ticket_id",),
            foreign_keys={"customer_id": ("customers", "customer_id")},
            description="Support tickets across email, chat and phone.",
        ),
        Table(
            "payments",
            (
                Column("payment_id", ID),
                Column("customer_id", ID),
                Column("order_id", ID),
                Column("attempted_at", TS),
                Column("status", "VARCHAR", accepted=PAYMENT_STATUSES),
                Column("failure_reason", "VARCHAR", required=False),
                Column("amount", MONEY, min_value=0),
            ),
            primary_key=("payment_id",),
            foreign_keys={"customer_id": ("customers", "customer_id"), "order_id": ("orders", "order_id")},
            description="Payment attempts for orders.",
        ),
    )
}

# Load order: parents before children, so foreign keys can be checked.
LOAD_ORDER = (
    "customers", "products", "subscriptions", "orders", "order_items",
    "email_events", "portal_events", "support_tickets", "payments",
)


def create_table_sql(table: Table, schema: str = RAW_SCHEMA) -> str:
    """`create table if not exists` DDL for one contract table (no constraints,
    so a loader can append; keys are enforced by the importer and dbt tests)."""
    cols = ",\n  ".join(f"{c.name} {c.type}" for c in table.columns)
    return f"create table if not exists {schema}.{table.name} (\n  {cols}\n)"


QUARANTINE_DDL = f"""
create table if not exists {RAW_SCHEMA}.{QUARANTINE_TABLE} (
  source_table varchar,
  source_file varchar,
  row_number bigint,
  reason varchar,
  row_json varchar,
  quarantined_at timestamp
)
"""


def create_raw_schema(con) -> None:
    """Create schema `raw`, every contract table and the quarantine table (idempotent)."""
    con.execute(f"create schema if not exists {RAW_SCHEMA}")
    for name in LOAD_ORDER:
        con.execute(create_table_sql(TABLES[name]))
    con.execute(QUARANTINE_DDL)

"""The `routing_decisions` asset (group `decisioning`): a playbook, a holdout or nothing, per customer, and why.

Reads the brief audiences (`analytics.customer_segments`, `analytics.customer_tags`),
suppression (raw.customers opt-in, unsubscribes / bounces / complaints in
raw.email_events), frequency caps (`nextbest.assignments`), the newest uplift
model per playbook that passed its check, point-in-time features at the
run date, and predicted 12-month CLV (`nextbest.customer_predictions`, when it
exists) as the value of a retention goal. Appends one row per decided customer to `nextbest.routing_decisions`
and one `nextbest.assignments` row per routed customer (treatment, the
playbook's holdout, or `global_holdout` for a permanently held-out customer the
playbook would have gone to, in the same campaign), so lift can be measured
later against both holdouts. A second run on the same
run date decides nothing new (both tables are append-only).
"""


import hashlib
import json
from datetime import date, datetime, timezone

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from dagster_project.decisioning.routing import (RETENTION_GOALS, RoutingPolicy, expected_values, frequency_capped,
                                                 goal_values, route)
from dagster_project.decisioning.timing import best_send_hours, next_time_at
from dagster_project.messaging.briefs import BriefSet, load_briefs
from dagster_project.messaging.context_pack import default_as_of
from dagster_project.models.clv_assets import PREDICTIONS_TABLE
from dagster_project.models.uplift_assets import newest_passing, uplift_models
from dagster_project.models.uplift_data import GOALS, point_in_time_features, table_exists
from dagster_project.resources.warehouse import DuckDBWarehouse

DECISIONS_TABLE = "nextbest.routing_decisions"
DECISIONS_DDL = f"""
create table if not exists {DECISIONS_TABLE} (
  decision_id varchar, run_date date, decided_at timestamp, customer_id varchar, decision varchar,
  playbook_id varchar, arm varchar, goal varchar, expected_uplift double, expected_value double,
  exploration boolean, alternatives varchar, reason varchar, reason_codes varchar, model_version varchar,
  send_hour_of_week integer, send_at timestamp, campaign_id varchar, assignment_id varchar, goal_value double
)
"""
# Tables created before goal values were per customer lack the column; added in place.
DECISIONS_MIGRATE = f"alter table {DECISIONS_TABLE} add column if not exists goal_value double"
ASSIGNMENTS_DDL = """
create table if not exists nextbest.assignments (
  assignment_id varchar, campaign_id varchar, playbook_id varchar, customer_id varchar,
  assigned_at timestamp, arm varchar, message_id varchar
)
"""


class RoutingConfig(dg.Config):
    """The routing policy's knobs (defaults in `routing.RoutingPolicy`)."""

    as_of: str | None = Field(default=None, description="Run date YYYY-MM-DD; default NEXTBEST_AS_OF or today.")
    global_holdout_share: float = Field(default=0.05, description="Customers never messaged (stable by id).")
    exploration_share: float = Field(default=0.05, description="Share routed to a random eligible playbook.")
    send_cost: float = Field(default=RoutingPolicy().send_cost, description="Cost of one send, store currency.")


def audiences(con, briefs: BriefSet, as_of: date) -> pd.DataFrame:
    """customers x playbooks: in the brief's audience (any listed segment, every listed tag, every score floor)."""
    segments = con.execute("select customer_id, segment from analytics.customer_segments").df()
    tags = con.execute("select * from analytics.customer_tags").df().set_index("customer_id")
    scores = (con.execute("select * from nextbest.customer_scores").df().drop_duplicates("customer_id", keep="last")
              .set_index("customer_id") if table_exists(con, "nextbest.customer_scores") else pd.DataFrame())
    customers = pd.Index(sorted(set(segments["customer_id"]) | set(tags.index)), name="customer_id")
    member = pd.DataFrame(False, index=customers, columns=sorted(briefs.playbooks))
    for playbook, brief in briefs.playbooks.items():
        ok = pd.Series(True, index=customers)
        if brief.audience.segments:
            ok &= customers.isin(segments.loc[segments["segment"].isin(brief.audience.segments), "customer_id"])
        for tag in brief.audience.tags:
            ok &= tags.reindex(customers)[tag].fillna(False).astype(bool) if tag in tags else False
        for score, floor in brief.audience.min_scores.items():
            ok &= (scores.reindex(customers)[score] >= floor).fillna(False) if score in scores else False
        member[playbook] = ok.to_numpy()
    return member[member.any(axis=1)]


def suppression(con, customers) -> pd.Series:
    """Reason a customer must not be messaged (opted out, unsubscribed, bounced, complained), else None."""
    frame = con.execute("""
        select c.customer_id,
          case when not coalesce(c.marketing_opt_in, false) then 'opted out of marketing'
               when bool_or(e.event_type = 'complaint') then 'marked an email as spam'
               when bool_or(e.event_type = 'unsubscribe') then 'unsubscribed'
               when bool_or(e.event_type = 'bounce') then 'email bounced' end as reason
        from raw.customers c left join raw.email_events e
          on e.customer_id = c.customer_id and e.event_type in ('complaint', 'unsubscribe', 'bounce')
        group by c.customer_id, c.marketing_opt_in""").df().set_index("customer_id")["reason"]
    return frame.reindex(customers).where(lambda s: s.notna(), None)


def predicted_clv(con) -> pd.Series | None:
    """customer_id -> predicted 12-month CLV from `nextbest.customer_predictions`, or None before it exists."""
    if not table_exists(con, PREDICTIONS_TABLE):
        return None
    frame = con.execute(f"select customer_id, predicted_clv_12m from {PREDICTIONS_TABLE} "
                        "where predicted_clv_12m is not null").df()
    return frame.drop_duplicates("customer_id", keep="last").set_index("customer_id")["predicted_clv_12m"]


def decide(con, as_of: date, policy: RoutingPolicy, briefs: BriefSet | None = None,
           models: dict | None = None) -> pd.DataFrame:
    """Routing decisions for `as_of` (nothing written). `models`: playbook -> (version, UpliftModel)."""
    briefs = briefs or load_briefs()
    member = audiences(con, briefs, as_of)
    if member.empty:
        return pd.DataFrame()
    playbooks = list(member.columns)
    if models is None:
        models = {}
        for p in playbooks:
            found = newest_passing(con, p)
            if found is not None:
                models[p] = (found[0].version, found[1])
    at = datetime.combine(as_of, datetime.min.time())
    features = point_in_time_features(con, pd.DataFrame({"customer_id": member.index, "anchor_at": at}))
    features = features.set_index("customer_id").reindex(member.index)
    uplift = pd.DataFrame({p: models[p][1].predict(features) if p in models else np.nan for p in playbooks},
                          index=member.index)
    goal_of = {p: GOALS[p][0] for p in playbooks}
    clv = predicted_clv(con)
    ev = expected_values(uplift, goal_of, policy, clv)
    values = goal_values(member.index, goal_of, policy, clv)
    history = (con.execute("select customer_id, playbook_id, assigned_at from nextbest.assignments").df()
               if table_exists(con, "nextbest.assignments")
               else pd.DataFrame(columns=["customer_id", "playbook_id", "assigned_at"]))
    caps = {p: (briefs.get(p).frequency_cap.max_messages, briefs.get(p).frequency_cap.per_days) for p in playbooks}
    capped = frequency_capped(history, member.index, caps, at)
    decisions = route(member, capped, ev, suppression(con, member.index),
                      {p: briefs.get(p).holdout_share for p in playbooks}, policy, run_key=as_of.isoformat())
    return _annotate(con, decisions, uplift, values, clv, features, models, as_of)


def _annotate(con, decisions: pd.DataFrame, uplift, values, clv, features, models, as_of: date) -> pd.DataFrame:
    """Add goal, uplift, goal value, reason codes, model version and the send hour to routed rows."""
    at = datetime.combine(as_of, datetime.min.time())
    decisions["goal"] = decisions["playbook_id"].map(lambda p: GOALS[p][0] if isinstance(p, str) else None)
    decisions["expected_uplift"] = [float(uplift.at[c, p]) if isinstance(p, str) else None
                                    for c, p in zip(decisions["customer_id"], decisions["playbook_id"])]
    decisions["goal_value"] = [float(values.at[c, p]) if isinstance(p, str) else None
                               for c, p in zip(decisions["customer_id"], decisions["playbook_id"])]
    clv_ids = set(clv.index) if clv is not None else set()
    decisions["reason"] = [reason + f"; goal worth {value:.2f} (predicted 12-month CLV)"
                           if isinstance(p, str) and GOALS[p][0] in RETENTION_GOALS and c in clv_ids else reason
                           for c, p, value, reason in zip(decisions["customer_id"], decisions["playbook_id"],
                                                          decisions["goal_value"], decisions["reason"])]
    decisions["model_version"] = decisions["playbook_id"].map(
        lambda p: models[p][0] if isinstance(p, str) and p in models else None)
    codes = pd.Series([[] for _ in range(len(decisions))], index=decisions.index, dtype=object)
    for playbook, rows in decisions[decisions["playbook_id"].notna()].groupby("playbook_id"):
        if playbook in models:
            reasons = models[playbook][1].reasons(features.loc[rows["customer_id"]])
            codes.loc[rows.index] = pd.Series(reasons, index=rows.index, dtype=object)
    decisions["reason_codes"] = codes.map(json.dumps)
    # A send time only for customers routed to the campaign (the global holdout is never sent to).
    routed = decisions["arm"].isin(["treatment", "holdout"])
    events = con.execute("""select customer_id, occurred_at from raw.email_events
                            where event_type in ('open', 'click') and occurred_at < ?""", [at]).df()
    hours = best_send_hours(events, decisions["customer_id"]).set_index("customer_id")["send_hour_of_week"]
    decisions["send_hour_of_week"] = decisions["customer_id"].map(hours).where(routed)
    decisions["send_at"] = [next_time_at(int(h), at) if r else None
                            for h, r in zip(decisions["send_hour_of_week"].fillna(0), routed)]
    decisions["campaign_id"] = decisions["playbook_id"].map(
        lambda p: f"pb-{p}-{as_of.isoformat()}" if isinstance(p, str) else None)
    decisions["assignment_id"] = [_id("as", as_of, c, p) if isinstance(p, str) else None
                                  for c, p in zip(decisions["customer_id"], decisions["playbook_id"])]
    decisions["decision_id"] = [_id("rd", as_of, c, "") for c in decisions["customer_id"]]
    decisions["run_date"] = as_of
    decisions["decided_at"] = datetime.now(timezone.utc).replace(tzinfo=None)
    return decisions


def _id(prefix: str, as_of: date, customer: str, playbook: str) -> str:
    return f"{prefix}-{hashlib.sha256(f'{as_of}|{customer}|{playbook}'.encode()).hexdigest()[:16]}"


def write_decisions(con, decisions: pd.DataFrame, as_of: date) -> int:
    """Append the run date's decisions and assignments; 0 when that date was already decided."""
    con.execute("create schema if not exists nextbest")
    con.execute(DECISIONS_DDL)
    con.execute(DECISIONS_MIGRATE)
    con.execute(ASSIGNMENTS_DDL)
    if con.execute(f"select count(*) from {DECISIONS_TABLE} where run_date = ?", [as_of]).fetchall()[0][0]:
        return 0
    columns = [r[0] for r in con.execute(f"describe {DECISIONS_TABLE}").fetchall()]
    con.register("_decisions", decisions[columns])
    try:
        con.execute(f"insert into {DECISIONS_TABLE} select * from _decisions")
        con.execute("""insert into nextbest.assignments (assignment_id, campaign_id, playbook_id, customer_id,
                           assigned_at, arm, message_id)
                       select assignment_id, campaign_id, playbook_id, customer_id, ?::timestamp, arm, null
                       from _decisions where arm is not null""", [datetime.combine(as_of, datetime.min.time())])
    finally:
        con.unregister("_decisions")
    return len(decisions)


@dg.asset(
    group_name="decisioning",
    deps=[uplift_models, dg.AssetKey("customer_segments"), dg.AssetKey("customer_tags"),
          dg.AssetKey("customer_predictions")],
    kinds={"duckdb", "python"},
    description="Per eligible customer: best playbook by expected incremental value, or holdout / none, with why.",
)
def routing_decisions(context: dg.AssetExecutionContext, config: RoutingConfig,
                      warehouse: DuckDBWarehouse) -> dg.MaterializeResult:
    as_of = date.fromisoformat(config.as_of or default_as_of())
    policy = RoutingPolicy(global_holdout_share=config.global_holdout_share,
                           exploration_share=config.exploration_share, send_cost=config.send_cost)
    with warehouse.connect() as con:
        decisions = decide(con, as_of, policy)
        written = write_decisions(con, decisions, as_of) if len(decisions) else 0
    if len(decisions) and not written:
        context.log.info(f"{DECISIONS_TABLE} already has decisions for {as_of}; nothing appended")
    counts = decisions["decision"].value_counts().to_dict() if len(decisions) else {}
    sends = decisions[decisions["decision"] == "send"] if len(decisions) else pd.DataFrame()
    return dg.MaterializeResult(metadata={
        "run_date": as_of.isoformat(), "appended": written,
        **{f"decisions_{k}": int(v) for k, v in counts.items()},
        "global_holdout_assigned": int((decisions["arm"] == "global_holdout").sum()) if len(decisions) else 0,
        "sends_per_playbook": dg.MetadataValue.json(sends["playbook_id"].value_counts().to_dict() if len(sends) else {}),
        "expected_incremental_value": float(sends["expected_value"].sum()) if len(sends) else 0.0,
    })


@dg.asset_check(asset=routing_decisions, description="No held-out or suppressed customer is routed to a send.")
def holdouts_never_sent(warehouse: DuckDBWarehouse) -> dg.AssetCheckResult:
    with warehouse.connect(read_only=True) as con:
        if not table_exists(con, DECISIONS_TABLE):
            return dg.AssetCheckResult(passed=True, metadata={"rows": 0})
        bad = con.execute(f"""select count(*) from {DECISIONS_TABLE}
            where (decision <> 'send' and arm = 'treatment') or (decision = 'send' and arm <> 'treatment')""").fetchall()[0][0]
    return dg.AssetCheckResult(passed=bad == 0, metadata={"violations": int(bad)})


daily_routing = dg.define_asset_job("daily_routing", selection=[uplift_models, routing_decisions],
                                    description="Retrain uplift weekly (skipped otherwise) and route every day.")
daily_routing_schedule = dg.ScheduleDefinition(
    name="daily_routing_schedule", job=daily_routing, cron_schedule="30 5 * * *",  # after daily_personalization
    execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.STOPPED)

assets = [routing_decisions]
asset_checks = [holdouts_never_sent]
jobs = [daily_routing]
schedules = [daily_routing_schedule]

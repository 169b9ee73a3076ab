"""The `routing_decisions` asset (group `decisioning`): a playbook, a holdout or nothing, per customer, and why.

Reads the brief audiences (`analytics.customer_segments`, `analytics.customer_tags`),
suppression (raw.customers opt-in, unsubscribes / bounces / complaints in
raw.email_events), frequency caps (`nextbest.assignments`: each brief's, no playbook
within `contact_cap_days` of a customer's last assignment, and a playbook's holdout not
assigned it again inside its goal window), the newest uplift
model per playbook that passed its check, point-in-time features at the
run date, and predicted 12-month CLV (`nextbest.customer_predictions`, when it
exists) as the value of a retention goal. Appends one row per decided customer to `nextbest.routing_decisions`
and one `nextbest.assignments` row per routed customer (treatment, the
playbook's holdout, or `global_holdout` for a permanently held-out customer the
playbook would have gone to, in the same campaign), so lift can be measured
later against both holdouts. A second run on the same
run date decides nothing new (both tables are append-only).

Customers are decided a chunk at a time (`batch_rows` customers, a range of
customer ids; `NEXTBEST_BATCH_ROWS`): every input is read for that range only,
the chunk's decisions go to a scratch table, and the whole run date is appended
in one transaction at the end. From `PARALLEL_MIN_CUSTOMERS` customers, chunks are
decided in a worker process per core while this process reads the next one.
Everything per customer is the same whatever the chunk; the one store-wide input,
the hour-of-week pattern of opens and clicks behind send times, is read once for
the run. Of the append-only assignments, a chunk reads only those inside the longest
frequency-cap or goal window, so a day's routing does not grow with the months of history.
"""


import hashlib
import json
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from typing import Iterable, Iterator

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from dagster_project.decisioning.routing import (RETENTION_GOALS, RoutingPolicy, expected_values, frequency_capped,
                                                 goal_values, route)
from dagster_project.delivery.approvals import unsent_campaigns
from dagster_project.decisioning.timing import HOURS, best_send_hours, hour_of_week, next_time_at
from dagster_project.ingest.contract import campaign_id
from dagster_project.messaging.briefs import BriefError, BriefSet, load_briefs
from dagster_project.project import WAREHOUSE_RUN_TAGS, default_as_of, mapped_in_workers, usable_cores
from dagster_project.models.clv_assets import PREDICTIONS_TABLE
from dagster_project.models.uplift_assets import newest_passing, uplift_models
from dagster_project.models.uplift_data import FEATURES_TABLE, point_in_time_features
from dagster_project.quality.freshness import StaleSourceError, reference_time, stale_playbooks
from dagster_project.resources.warehouse import (IN_CHUNK, DuckDBSession, DuckDBWarehouse, KeyRange, WarehouseInterface,
                                                 WarehouseSession, check_identifier, column_names, session_on)

DECISIONS_TABLE = "nextbest.routing_decisions"
# nextbest.routing_decisions, column by column.
DECISION_COLUMNS = {
    "decision_id": "varchar", "run_date": "date", "decided_at": "timestamp", "customer_id": "varchar",
    "decision": "varchar", "playbook_id": "varchar", "arm": "varchar", "goal": "varchar",
    "expected_uplift": "double", "expected_value": "double", "exploration": "boolean", "alternatives": "varchar",
    "reason": "varchar", "reason_codes": "varchar", "model_version": "varchar", "send_hour_of_week": "integer",
    "send_at": "timestamp", "campaign_id": "varchar", "assignment_id": "varchar", "goal_value": "double",
}
DECISIONS_DDL = (f"create table if not exists {DECISIONS_TABLE} (\n"
                 + ",\n".join(f"  {name} {kind}" for name, kind in DECISION_COLUMNS.items()) + "\n)")
# Tables created before goal values were per customer lack the column; added in place.
DECISIONS_MIGRATE = f"alter table {DECISIONS_TABLE} add column if not exists goal_value double"
ASSIGNMENTS_DDL = """
create table if not exists nextbest.assignments (
  assignment_id varchar, campaign_id varchar, playbook_id varchar, customer_id varchar,
  assigned_at timestamp, arm varchar, message_id varchar
)
"""
# Every customer in an audience source, in order: the chunks are ranges of these ids.
AUDIENCE_CUSTOMERS_SQL = """
select customer_id from analytics.customer_segments
union
select customer_id from analytics.customer_tags
"""
CUSTOMERS_SQL = AUDIENCE_CUSTOMERS_SQL + "order by customer_id\n"
# Opens and clicks per hour before the run date, store-wide: the prior of every send time.
STORE_HOURS_SQL = """
select date_trunc('hour', occurred_at) as hour, count(*) as events from raw.email_events
where event_type in ('open', 'click') and occurred_at < cast(? as timestamp)
group by 1
"""


class RoutingConfig(dg.Config):
    """The routing policy's knobs (defaults in `routing.RoutingPolicy`)."""

    as_of: str | None = Field(default=None, description="Run date YYYY-MM-DD; default NEXTBEST_AS_OF or today.")
    global_holdout_share: float = Field(default=0.05, description="Customers never messaged (stable by id).")
    exploration_share: float = Field(default=0.05, description="Share routed to a random eligible playbook.")
    send_cost: float = Field(default=RoutingPolicy().send_cost, description="Cost of one send, store currency.")
    contact_cap_days: int = Field(default=RoutingPolicy().contact_cap_days, ge=0,
                                  description="Days after any assignment before a customer is routed again "
                                              "(any playbook; 0: only each brief's own cap).")


@dataclass
class RoutingRun:
    """What every chunk of one run date shares: policy, briefs, models, the store's hours, one timestamp."""

    as_of: date
    policy: RoutingPolicy
    briefs: BriefSet
    models: dict  # playbook -> (version, UpliftModel)
    store_hours: np.ndarray  # opens + clicks per hour of the week before the run date, every customer
    decided_at: datetime
    # Scratch tables with the run's per-customer rows of big tables, sorted by customer id
    # (`per_customer_inputs`): "features", "engagement", "suppression". A chunk reads its range.
    inputs: dict[str, str] = field(default_factory=dict)
    # Campaigns that will never be sent (`approvals.unsent_campaigns`): their assignments cap nobody.
    released: frozenset[str] = frozenset()
    # A rerun of a day already decided: only customers without a decision that day (imported since) are routed.
    only_undecided: bool = False

    @property
    def at(self) -> datetime:
        return datetime.combine(self.as_of, datetime.min.time())

    @property
    def history_since(self) -> datetime:
        """Assignments after this moment are all the frequency caps look at: the longest of the briefs'
        cap windows, their goal windows (a holdout's) and the contact cap before the run date
        (`routing.frequency_capped`)."""
        longest = max([self.policy.contact_cap_days,
                       *(self.briefs.get(p).frequency_cap.per_days for p in self.briefs.playbooks),
                       *(brief.goal_days for brief in self.briefs.playbooks.values())])
        return self.at - timedelta(days=longest)


def known_segments() -> list[str]:
    """The segments dbt may assign: the accepted values its test of `customer_segments.segment` lists
    (an analytics engineer adding a segment adds it there, or that test fails); empty when unknown."""
    import json

    from dagster_project.project import ensure_manifest

    try:
        nodes = json.loads(ensure_manifest().read_text())["nodes"].values()
    except (OSError, ValueError, KeyError, RuntimeError):
        return []
    for node in nodes:
        test = node.get("test_metadata") or {}
        if (test.get("name") == "accepted_values" and node.get("attached_node", "").endswith(".customer_segments")
                and node.get("column_name") == "segment"):
            kwargs = test.get("kwargs") or {}
            return [str(v) for v in kwargs.get("values") or (kwargs.get("arguments") or {}).get("values") or []]
    return []


def audience_problems(warehouse: WarehouseInterface, briefs: BriefSet) -> list[str]:
    """A brief's audience naming a segment, tag or score the warehouse does not have (a typo targets
    nobody, silently): one line per name, naming the brief's file and field and the known names."""
    known = {"segments": known_segments()}
    with warehouse.transaction() as tx:
        known["tags"] = ([c for c in column_names(tx, "analytics.customer_tags") if c not in ("customer_id", "as_of_date")]
                         if tx.exists("analytics", "customer_tags") else [])
        known["min_scores"] = ([c for c in column_names(tx, "nextbest.customer_scores")
                                if c not in ("customer_id", "as_of_date", "scored_at") and not c.endswith("_version")]
                               if tx.exists("nextbest", "customer_scores") else [])
    problems = []
    for playbook, brief in sorted(briefs.playbooks.items()):
        audience = {"segments": brief.audience.segments, "tags": brief.audience.tags,
                    "min_scores": list(brief.audience.min_scores)}
        for field_name, names in audience.items():
            if not known[field_name]:
                continue  # not built yet (or no test lists the segments): nothing to check against
            for name in names:
                if name not in known[field_name]:
                    problems.append(f"{briefs.folder / playbook}.yaml: audience.{field_name}: {name!r} is not one "
                                    f"the warehouse has; known: {', '.join(sorted(known[field_name]))}")
    return problems


def plan_run(warehouse: WarehouseInterface, as_of: date, policy: RoutingPolicy, briefs: BriefSet | None = None,
             models: dict | None = None) -> RoutingRun:
    """Read what the chunks share: the newest uplift model per playbook (unless given) and the store's hours.
    A brief whose audience names an unknown segment, tag or score is a `BriefError` (`audience_problems`)."""
    briefs = briefs or load_briefs()
    problems = audience_problems(warehouse, briefs)
    if problems:
        raise BriefError("\n".join(problems))
    if models is None:
        models = {}
        for playbook in sorted(briefs.playbooks):
            found = newest_passing(warehouse, playbook, as_of)  # none that learned from sends after as_of
            # A model of another goal (the brief's goal changed since it was trained) does not value this one.
            if found is not None and getattr(found[1], "goal", None) == briefs.get(playbook).goal:
                models[playbook] = (found[0].version, found[1])
    at = datetime.combine(as_of, datetime.min.time())
    hours = warehouse.read_df(STORE_HOURS_SQL, [at])
    store_hours = np.bincount(hour_of_week(hours["hour"]), weights=hours["events"].astype(float),
                              minlength=HOURS) if len(hours) else np.zeros(HOURS)
    run = RoutingRun(as_of, policy, briefs, models, store_hours, datetime.now(timezone.utc).replace(tzinfo=None))
    with warehouse.transaction() as tx:
        return replace(run, released=unsent_campaigns(tx, run.history_since.date(), as_of))


def fresh_briefs(warehouse: WarehouseInterface, now: datetime) -> tuple[BriefSet, dict[str, StaleSourceError]]:
    """The briefs whose data is fresh enough to draft from (`max_data_staleness_days`), and why the others are not.

    A playbook drafting would refuse is not routed either: its decisions would assign treatment and holdout
    arms (and cap those customers) for messages that are never written. All stale: a `dg.Failure`, and the
    day stays undecided, so a run after the sources are reloaded routes it.
    """
    briefs = load_briefs()
    with warehouse.transaction() as tx:
        stale = stale_playbooks(tx, briefs.playbooks.values(), now=now)
    if stale and len(stale) == len(briefs.playbooks):
        raise dg.Failure(description="No routing: every playbook is stale (nothing is decided or assigned).\n"
                         + "\n".join(str(e) for e in stale.values()),
                         metadata={"stale_playbooks": dg.MetadataValue.json(sorted(stale))})
    fresh = {p: brief for p, brief in briefs.playbooks.items() if p not in stale}
    return briefs.model_copy(update={"playbooks": fresh}), stale


def customer_chunks(warehouse: WarehouseInterface, batch_rows: int) -> list[KeyRange]:
    """Ranges of `batch_rows` customer ids covering everyone in a segment or a tag."""
    return warehouse.key_ranges(CUSTOMERS_SQL, batch_rows)


def audiences(tx: WarehouseSession, briefs: BriefSet, chunk: KeyRange) -> pd.DataFrame:
    """customers x playbooks: in the brief's audience (any listed segment, every listed tag, every score floor)."""
    segments = tx.read_df(f"select customer_id, segment from analytics.customer_segments where {IN_CHUNK}", chunk.bounds)
    tags = tx.read_df(f"select * from analytics.customer_tags where {IN_CHUNK}", chunk.bounds).set_index("customer_id")
    scores = (tx.read_df(f"select * from nextbest.customer_scores where {IN_CHUNK}", chunk.bounds)
              .drop_duplicates("customer_id", keep="last").set_index("customer_id")
              if tx.exists("nextbest", "customer_scores") else pd.DataFrame())
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


_FLAGGED = {"complaint": "marked an email as spam", "unsubscribe": "unsubscribed", "bounce": "email bounced"}
SUPPRESSING_EVENTS = tuple(_FLAGGED)  # email events after which a customer is never messaged again
# Why a customer must not be messaged, per customer ({where}: which customers).
SUPPRESSION_SQL = f"""
select c.customer_id,
  case when not coalesce(c.marketing_opt_in, false) then 'opted out of marketing'
       {" ".join(f"when max(case when e.event_type = '{kind}' then 1 else 0 end) = 1 then '{why}'"
                 for kind, why in _FLAGGED.items())} end as reason
from raw.customers c left join raw.email_events e
  on e.customer_id = c.customer_id and e.event_type in ('complaint', 'unsubscribe', 'bounce')
{{where}}
group by c.customer_id, c.marketing_opt_in"""
# Opens and clicks before the run date, per customer ({where}: which customers): their send hours.
ENGAGEMENT_SQL = """select customer_id, occurred_at from raw.email_events
where event_type in ('open', 'click') and occurred_at < {before} {where}"""


def suppression(tx: WarehouseSession, customers, chunk: KeyRange, source: str | None = None) -> pd.Series:
    """Reason a customer must not be messaged (opted out, unsubscribed, bounced, complained), else None.

    `source`: the run's scratch copy of every customer's reason (`per_customer_inputs`), else raw tables.
    """
    sql = (f"select customer_id, reason from {source} where {IN_CHUNK}" if source
           else SUPPRESSION_SQL.format(where="where c.customer_id >= ? and c.customer_id <= ?"))
    frame = tx.read_df(sql, chunk.bounds)
    return frame.set_index("customer_id")["reason"].reindex(customers).where(lambda s: s.notna(), None)


def predicted_clv(tx: WarehouseSession, chunk: KeyRange) -> pd.Series | None:
    """customer_id -> predicted 12-month CLV from `nextbest.customer_predictions`, or None before it exists."""
    schema, table = PREDICTIONS_TABLE.split(".")
    if not tx.exists(schema, table):
        return None
    frame = tx.read_df(f"select customer_id, predicted_clv_12m from {PREDICTIONS_TABLE} "
                       f"where predicted_clv_12m is not null and {IN_CHUNK}", chunk.bounds)
    return frame.drop_duplicates("customer_id", keep="last").set_index("customer_id")["predicted_clv_12m"]


def latest_features_sql(source: WarehouseInterface | WarehouseSession, where: str = "",
                        day: str = "cast(? as date)") -> str | None:
    """SQL of each customer's latest `analytics.customer_features` row on or before `day` (SQL: by default
    a bound date), `where` narrowing the customers; None without the mart or its key columns."""
    schema, table = FEATURES_TABLE.split(".")
    with session_on(source) as tx:
        if not tx.exists(schema, table):
            return None
        columns = column_names(tx, FEATURES_TABLE)
    as_of = next((c for c in ("as_of_date", "as_of") if c in columns), None)
    if "customer_id" not in columns or as_of is None:
        return None
    kept = ", ".join(check_identifier(c, f"Column of {FEATURES_TABLE}") for c in columns)
    return f"""
        select {kept} from (
            select f.*, row_number() over (partition by f.customer_id order by f.{as_of} desc) as nb_latest
            from {FEATURES_TABLE} f
            where {where} {"and" if where else ""} f.{as_of} <= {day}
        ) latest where nb_latest = 1"""


def features_at(tx: WarehouseSession, customers: pd.Index, chunk: KeyRange, at: datetime,
                source: str | None = None) -> pd.DataFrame:
    """Each customer's features at `at`, as uplift training saw them (`uplift_data.point_in_time_features`):
    the latest `analytics.customer_features` row on or before it, else (DuckDB) the SQL feature set.

    `source`: the run's scratch copy of those latest rows (`per_customer_inputs`).
    """
    sql = None if source else latest_features_sql(tx, "f.customer_id >= ? and f.customer_id <= ?")
    if source or sql:
        frame = (tx.read_df(f"select * from {source} where {IN_CHUNK}", chunk.bounds) if source
                 else tx.read_df(sql, [*chunk.bounds, at.date()]))
        frame = frame.set_index("customer_id").reindex(customers)
        frame.insert(0, "anchor_at", at)
        return frame
    if not isinstance(tx, DuckDBSession):
        raise RuntimeError(f"{FEATURES_TABLE} is missing (or has no customer_id / as_of_date): build the dbt "
                           "marts (`dbt build`) before routing")
    frame = point_in_time_features(tx, pd.DataFrame({"customer_id": customers, "anchor_at": at}))
    return frame.set_index("customer_id").reindex(customers)


def assignment_history(tx: WarehouseSession, chunk: KeyRange, since: datetime) -> pd.DataFrame:
    """The chunk's customers' assignments (customer_id, playbook_id, assigned_at, arm) after `since`, for
    frequency caps (`RoutingRun.history_since`): what a chunk reads stays a few weeks of assignments
    however long the append-only table grows (at 1M customers, a quarter of its rows the second day)."""
    if not tx.exists("nextbest", "assignments"):
        return pd.DataFrame(columns=["customer_id", "playbook_id", "assigned_at", "arm", "campaign_id"])
    return tx.read_df(f"select customer_id, playbook_id, assigned_at, arm, campaign_id from nextbest.assignments "
                      f"where {IN_CHUNK} and assigned_at > ?", [*chunk.bounds, since])


@dataclass
class ChunkReads:
    """What deciding one chunk reads from the warehouse (`read_chunk`); `decide_read` needs nothing else."""

    member: pd.DataFrame  # customers x playbooks: in the playbook's audience
    features: pd.DataFrame
    clv: pd.Series | None
    history: pd.DataFrame
    suppressed: pd.Series
    events: pd.DataFrame


def read_chunk(warehouse: WarehouseInterface, run: RoutingRun, chunk: KeyRange) -> ChunkReads | None:
    """One chunk's inputs, in one snapshot; None when none of its customers is in an audience."""
    with warehouse.transaction() as tx:  # one connection, one snapshot, reads only
        member = audiences(tx, run.briefs, chunk)
        if run.only_undecided and not member.empty:
            decided = tx.read_df(f"select customer_id from {DECISIONS_TABLE} where run_date = cast(? as date) "
                                 f"and {IN_CHUNK}", [run.as_of, *chunk.bounds])["customer_id"]
            member = member[~member.index.isin(decided)]
        if member.empty:
            return None
        features = features_at(tx, member.index, chunk, run.at, run.inputs.get("features"))
        clv = predicted_clv(tx, chunk)
        history = assignment_history(tx, chunk, run.history_since)
        if run.released:  # nobody got those messages: they take no room in a cap
            history = history[~history["campaign_id"].isin(run.released)]
        suppressed = suppression(tx, member.index, chunk, run.inputs.get("suppression"))
        events = (tx.read_df(f"select customer_id, occurred_at from {run.inputs['engagement']} where {IN_CHUNK}",
                             chunk.bounds) if "engagement" in run.inputs
                  else tx.read_df(ENGAGEMENT_SQL.format(before="cast(? as timestamp)", where=f"and {IN_CHUNK}"),
                                  [run.at, *chunk.bounds]))
    return ChunkReads(member, features, clv, history, suppressed, events)


def decide_chunk(warehouse: WarehouseInterface, run: RoutingRun, chunk: KeyRange) -> pd.DataFrame:
    """Routing decisions for the customers of one chunk (nothing written); empty when none is in an audience."""
    return decide_read(run, read_chunk(warehouse, run, chunk))


def decide_read(run: RoutingRun, reads: ChunkReads | None) -> pd.DataFrame:
    """Routing decisions from one chunk's `read_chunk` (no warehouse needed: it may run in a worker process)."""
    if reads is None:
        return pd.DataFrame(columns=list(DECISION_COLUMNS))
    member, features, clv, history, suppressed, events = (reads.member, reads.features, reads.clv, reads.history,
                                                          reads.suppressed, reads.events)
    playbooks = list(member.columns)
    models, briefs, policy = run.models, run.briefs, run.policy
    caps = {p: (briefs.get(p).frequency_cap.max_messages, briefs.get(p).frequency_cap.per_days) for p in playbooks}
    capped = frequency_capped(history, member.index, caps, run.at, policy.contact_cap_days,
                              holdout_days={p: briefs.get(p).goal_days for p in playbooks})
    # Uplift only where routing can use it: a playbook's audience, less those capped for it.
    uplift = pd.DataFrame(np.nan, index=member.index, columns=playbooks)
    for p in playbooks:
        rows = member[p].to_numpy(dtype=bool) & ~capped[p].to_numpy(dtype=bool)
        if p in models and rows.any():
            uplift.loc[rows, p] = models[p][1].predict(features[rows])
    goal_of = {p: briefs.get(p).goal for p in playbooks}
    ev = expected_values(uplift, goal_of, policy, clv)
    values = goal_values(member.index, goal_of, policy, clv)
    decisions = route(member, capped, ev, suppressed, {p: briefs.get(p).holdout_share for p in playbooks}, policy,
                      run_key=run.as_of.isoformat())
    return _annotate(decisions, uplift, values, clv, features, events, run)


def decide(warehouse: WarehouseInterface, as_of: date, policy: RoutingPolicy, briefs: BriefSet | None = None,
           models: dict | None = None, batch_rows: int | None = None) -> pd.DataFrame:
    """Routing decisions for `as_of`, every chunk in one frame (nothing written; for scripts and tests).

    `models`: playbook -> (version, UpliftModel), default the newest that passed. The asset
    does the same chunk by chunk without holding them all (`decision_chunks`).
    """
    frames = [frame for _, frame in decision_chunks(warehouse, plan_run(warehouse, as_of, policy, briefs, models),
                                                    batch_rows or warehouse.batch_rows) if len(frame)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def decision_chunks(warehouse: WarehouseInterface, run: RoutingRun,
                    batch_rows: int) -> Iterator[tuple[KeyRange, pd.DataFrame]]:
    """(chunk, its decisions) for every chunk of customers, in order: decided in a worker process per
    core from PARALLEL_MIN_CUSTOMERS customers on, else here."""
    chunks = customer_chunks(warehouse, batch_rows)
    if len(chunks) < 2:  # one read of the big tables either way
        for chunk in chunks:
            yield chunk, decide_chunk(warehouse, run, chunk)
        return
    with per_customer_inputs(warehouse, run) as run:
        reads = ((chunk, read_chunk(warehouse, run, chunk)) for chunk in chunks)
        processes = usable_cores()
        if processes > 1 and sum(c.rows for c in chunks) >= PARALLEL_MIN_CUSTOMERS:
            yield from mapped_in_workers(_decide_in_worker, reads, processes, setup=_keep_in_worker, setup_args=(run,))
            return
        for chunk, read in reads:
            yield chunk, decide_read(run, read)


# From this many customers, chunks are decided in a worker process per core while this process reads
# the next chunk and stages the last one's decisions: at 1M customers, deciding (uplift predictions,
# caps, reasons, send hours) was 17 of the 30 s of a day's routing, reading 9.
PARALLEL_MIN_CUSTOMERS = 50_000
_WORKER_RUN: list[RoutingRun] = []  # a worker process's run (models, briefs, policy), sent to it once


def _keep_in_worker(run: RoutingRun) -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)  # a worker per core: more OpenMP threads than cores spin
    _WORKER_RUN[:] = [run]


def _decide_in_worker(item: tuple[KeyRange, ChunkReads | None]) -> tuple[KeyRange, pd.DataFrame]:
    return item[0], decide_read(_WORKER_RUN[0], item[1])


@contextmanager
def per_customer_inputs(warehouse: WarehouseInterface, run: RoutingRun) -> Iterator[RoutingRun]:
    """`run` with its per-customer inputs from big tables copied once into scratch tables sorted by
    customer id, dropped when the block ends.

    Each chunk filters these by a customer-id range. Read from `analytics.customer_features` (every
    weekly row) and `raw.email_events`, that range filter scanned the whole table once per chunk:
    at 1M customers, 20 chunks read 14M feature rows and 41M events each. Sorted copies let a
    chunk skip to its range.
    """
    with ExitStack() as scratch:
        inputs = {}
        day = f"cast('{run.as_of.isoformat()}' as date)"  # a literal: scratch tables are made without bindings
        features = latest_features_sql(warehouse, day=day)
        if features is not None:
            inputs["features"] = scratch.enter_context(warehouse.scratch_table(
                "nextbest", "routing_features", f"as {features} order by customer_id"))
        inputs["suppression"] = scratch.enter_context(warehouse.scratch_table(
            "nextbest", "routing_suppression", f"as {SUPPRESSION_SQL.format(where='')} order by customer_id"))
        inputs["engagement"] = scratch.enter_context(warehouse.scratch_table(
            "nextbest", "routing_engagement",
            f"as {ENGAGEMENT_SQL.format(before=f'cast({day} as timestamp)', where='')} order by customer_id"))
        yield replace(run, inputs=inputs)


def _annotate(decisions: pd.DataFrame, uplift, values, clv, features, events, run: RoutingRun) -> pd.DataFrame:
    """Add goal, uplift, goal value, reason codes, model version and the send hour to routed rows."""
    as_of, at, models = run.as_of, run.at, run.models
    # Plain lists: a row at a time through Arrow-backed string columns costs more than the work.
    customers, playbooks = decisions["customer_id"].tolist(), decisions["playbook_id"].tolist()
    has_playbook = [isinstance(p, str) for p in playbooks]
    goal_of = {p: brief.goal for p, brief in run.briefs.playbooks.items()}
    decisions["goal"] = [goal_of[p] if h else None for p, h in zip(playbooks, has_playbook)]
    decisions["expected_uplift"] = _routed_cells(uplift, decisions)
    decisions["goal_value"] = _routed_cells(values, decisions)
    clv_ids = set(clv.index) if clv is not None else set()
    decisions["reason"] = [reason + f"; goal worth {value:.2f} (margin on predicted 12-month CLV)"
                           if h and goal_of[p] in RETENTION_GOALS and c in clv_ids else reason
                           for c, p, h, value, reason in zip(customers, playbooks, has_playbook,
                                                             decisions["goal_value"], decisions["reason"].tolist())]
    decisions["model_version"] = [models[p][0] if h and p in models else None for p, h in zip(playbooks, has_playbook)]
    codes = pd.Series([[] for _ in range(len(decisions))], index=decisions.index, dtype=object)
    for playbook, rows in decisions[decisions["playbook_id"].notna()].groupby("playbook_id"):
        if playbook in models:
            reasons = models[playbook][1].reasons(features.loc[rows["customer_id"]])
            codes.loc[rows.index] = pd.Series(reasons, index=rows.index, dtype=object)
    decisions["reason_codes"] = codes.map(json.dumps)
    # A send time only for customers routed to the campaign (the global holdout is never sent to).
    routed = decisions["arm"].isin(["treatment", "holdout"]).to_numpy()
    # Shrunk toward the whole store's hours, not this chunk's customers'.
    hours = best_send_hours(events, decisions["customer_id"][routed], store_counts=run.store_hours).set_index(
        "customer_id")["send_hour_of_week"]
    decisions["send_hour_of_week"] = decisions["customer_id"].map(hours).where(routed)
    send_at = [next_time_at(hour, at) for hour in range(HOURS)]  # the run's moment of each hour of the week
    decisions["send_at"] = [send_at[int(h)] if r else None
                            for h, r in zip(decisions["send_hour_of_week"].fillna(0), routed)]
    # The batch its drafts go out in is `<playbook>-<run date>` (message_drafts), and the ESP reports on its campaign id.
    decisions["campaign_id"] = [campaign_id(f"{p}-{as_of.isoformat()}") if h else None
                                for p, h in zip(playbooks, has_playbook)]
    decisions["assignment_id"] = [_id("as", as_of, c, p) if h else None
                                  for c, p, h in zip(customers, playbooks, has_playbook)]
    decisions["decision_id"] = [_id("rd", as_of, c, "") for c in customers]
    decisions["run_date"] = as_of
    decisions["decided_at"] = run.decided_at
    return decisions[list(DECISION_COLUMNS)]


def _routed_cells(frame: pd.DataFrame, decisions: pd.DataFrame) -> list[float | None]:
    """`frame` (customers x playbooks) at each decision's customer and playbook; None where no playbook."""
    playbooks = decisions["playbook_id"]
    rows = frame.index.get_indexer(decisions["customer_id"])
    columns = frame.columns.get_indexer(playbooks.where(playbooks.map(lambda p: isinstance(p, str)), None))
    cells = frame.to_numpy(dtype=float)[rows, columns.clip(min=0)] if len(frame.columns) else np.full(len(rows), np.nan)
    return [float(v) if c >= 0 else None for v, c in zip(cells, columns)]


def _id(prefix: str, as_of: date, customer: str, playbook: str) -> str:
    return f"{prefix}-{hashlib.sha256(f'{as_of}|{customer}|{playbook}'.encode()).hexdigest()[:16]}"


def ensure_tables(warehouse: WarehouseInterface) -> None:
    """Create (or bring up to date) nextbest.routing_decisions and nextbest.assignments."""
    warehouse.execute("create schema if not exists nextbest")
    warehouse.execute(DECISIONS_DDL)
    warehouse.execute(DECISIONS_MIGRATE)
    warehouse.execute(ASSIGNMENTS_DDL)


def undecided_customers(source: WarehouseInterface | WarehouseSession, as_of: date) -> int:
    """How many customers in a segment or tag have no decision on `as_of` (the table must exist)."""
    found = source.read_df(f"""select count(*) as n from ({AUDIENCE_CUSTOMERS_SQL}) c
                               where not exists (select 1 from {DECISIONS_TABLE} d
                                                 where d.run_date = cast(? as date) and d.customer_id = c.customer_id)""",
                           [as_of])
    return int(found.iloc[0, 0])


def already_decided(source: WarehouseInterface | WarehouseSession, as_of: date) -> bool:
    """Whether nextbest.routing_decisions has rows for this run date (the table must exist)."""
    found = source.read_df(f"select count(*) as n from {DECISIONS_TABLE} where run_date = cast(? as date)", [as_of])
    return bool(int(found.iloc[0, 0]))


def write_decisions(warehouse: WarehouseInterface, chunks: Iterable[pd.DataFrame], as_of: date,
                    adding: bool = False) -> int:
    """Append the run date's decisions and assignments in one transaction; 0 when that date was already decided.

    `adding`: the date was decided before, and these are customers it has no decision for (imported since):
    appended but for any a run meanwhile decided. Each chunk goes to a scratch table as it comes, so memory
    holds one chunk.
    """
    ensure_tables(warehouse)
    if already_decided(warehouse, as_of) and not adding:
        return 0
    with warehouse.staged("nextbest", "routing_decisions") as staged:
        for decisions in chunks:
            staged.write_df(decisions[list(DECISION_COLUMNS)])
        with warehouse.transaction() as tx:
            if not adding and already_decided(tx, as_of):  # a run that finished meanwhile: append nothing
                return 0
            if adding and staged.rows:  # decision ids hash the date and the customer: one per customer and day
                tx.execute(f"delete from {staged.relation(tx)} where decision_id in "
                           f"(select decision_id from {DECISIONS_TABLE} where run_date = cast(? as date))", [as_of])
                staged.rows = int(tx.read_df(f"select count(*) as n from {staged.relation(tx)}").iloc[0, 0])
            if staged.rows:
                # Assignments first: both inserts read the staged rows, never the table they fill.
                tx.execute(f"""insert into nextbest.assignments (assignment_id, campaign_id, playbook_id, customer_id,
                                   assigned_at, arm, message_id)
                               select assignment_id, campaign_id, playbook_id, customer_id, cast(? as timestamp),
                                   arm, null
                               from {staged.relation(tx)} where arm is not null""",
                           [datetime.combine(as_of, datetime.min.time())])
            written = staged.append(tx)
    return written


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
                           exploration_share=config.exploration_share, send_cost=config.send_cost,
                           contact_cap_days=config.contact_cap_days)
    # Freshness is judged as drafting judges it: at the run date when one is given (history ends there).
    now = datetime.combine(as_of, datetime.min.time()) if config.as_of else reference_time()
    with warehouse.kept_open():  # a few transactions per chunk: keep what opening the file costs
        return _route(context, warehouse, as_of, policy, now)


def _route(context: dg.AssetExecutionContext, warehouse: WarehouseInterface, as_of: date,
           policy: RoutingPolicy, now: datetime) -> dg.MaterializeResult:
    ensure_tables(warehouse)
    adding = already_decided(warehouse, as_of)
    if adding:
        undecided = undecided_customers(warehouse, as_of)
        if not undecided:
            context.log.info(f"{DECISIONS_TABLE} already has decisions for {as_of}; nothing appended")
            return dg.MaterializeResult(metadata={"run_date": as_of.isoformat(), "appended": 0,
                                                  "global_holdout_share": policy.global_holdout_share})
        context.log.info(f"{DECISIONS_TABLE} already has decisions for {as_of}: deciding only the {undecided:,} "
                         "customers in a segment or tag it has none for (imported since the day's first run, or in "
                         "no routed playbook's audience)")
    briefs, stale = fresh_briefs(warehouse, now)
    for error in stale.values():
        context.log.warning(f"not routed: {error}")
    run = replace(plan_run(warehouse, as_of, policy, briefs), only_undecided=adding)
    counts: dict[str, int] = {}
    sends: dict[str, int] = {}
    totals = {"global_holdout_assigned": 0, "expected_incremental_value": 0.0}

    def chunks() -> Iterator[pd.DataFrame]:
        for i, (chunk, decisions) in enumerate(decision_chunks(warehouse, run, warehouse.batch_rows)):
            context.log.info(f"chunk {i}: {chunk.rows} customers")
            for key, n in decisions["decision"].value_counts().items():
                counts[key] = counts.get(key, 0) + int(n)
            sent = decisions[decisions["decision"] == "send"]
            for playbook, n in sent["playbook_id"].value_counts().items():
                sends[playbook] = sends.get(playbook, 0) + int(n)
            totals["global_holdout_assigned"] += int((decisions["arm"] == "global_holdout").sum())
            totals["expected_incremental_value"] += float(sent["expected_value"].sum())
            yield decisions

    written = write_decisions(warehouse, chunks(), as_of, adding=adding)
    return dg.MaterializeResult(metadata={
        "run_date": as_of.isoformat(), "appended": written,
        **({"skipped_stale": dg.MetadataValue.json(sorted(stale))} if stale else {}),
        # message_drafts' segments fallback reads it, to leave out the same permanent holdout.
        "global_holdout_share": policy.global_holdout_share,
        **{f"decisions_{k}": v for k, v in counts.items()},
        "global_holdout_assigned": totals["global_holdout_assigned"],
        "sends_per_playbook": dg.MetadataValue.json(dict(sorted(sends.items(), key=lambda kv: -kv[1]))),
        "expected_incremental_value": totals["expected_incremental_value"],
    })


@dg.asset_check(asset=routing_decisions, description="No held-out or suppressed customer is routed to a send.")
def holdouts_never_sent(warehouse: DuckDBWarehouse) -> dg.AssetCheckResult:
    if not warehouse.table_exists("nextbest", "routing_decisions"):
        return dg.AssetCheckResult(passed=True, metadata={"rows": 0})
    bad = int(warehouse.read_df(f"""select count(*) as n from {DECISIONS_TABLE}
        where (decision <> 'send' and arm = 'treatment') or (decision = 'send' and arm <> 'treatment')""").iloc[0, 0])
    return dg.AssetCheckResult(passed=bad == 0, metadata={"violations": bad})


daily_routing = dg.define_asset_job("daily_routing", selection=[uplift_models, routing_decisions],
                                    description="Retrain uplift weekly (skipped otherwise) and route every day.",
                                    tags=WAREHOUSE_RUN_TAGS)
daily_routing_schedule = dg.ScheduleDefinition(
    name="daily_routing_schedule", job=daily_routing, cron_schedule="30 5 * * *",  # after daily_personalization
    execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.STOPPED)

assets = [routing_decisions]
asset_checks = [holdouts_never_sent]
jobs = [daily_routing]
schedules = [daily_routing_schedule]

"""The `message_drafts` asset (group `messaging`): one checked draft per routed customer.

The playbook is the one `routing_decisions` chose for the run date (treatment arm
only: holdouts, the global holdout and "none" get no draft). When routing has not
run for that date, the playbook comes from `analytics.customer_segments`
(segment -> playbook below). Playbooks whose raw sources are older than their
brief's `max_data_staleness_days` are skipped (all stale: the asset fails).
Drafts land in `nextbest.message_drafts` with status `pending_review` or
`blocked`; a rerun on the same day replaces that day's batches, and customers
whose pack, brief and generator are unchanged reuse their earlier draft (cache
key) instead of being regenerated, on later days too for template drafts.

Customers are drafted a chunk at a time (`batch_rows` customers, a range of
customer ids; `NEXTBEST_BATCH_ROWS`): their playbooks, context packs and cached
drafts are read for that range, drafted, and staged; the day's drafts replace
the old ones in one transaction at the end. The LLM budget is the run's: each
chunk may spend what earlier chunks left. With the template generator and at
least `PARALLEL_MIN_CUSTOMERS` customers, worker processes write and check one
chunk's drafts while this process reads the next.
"""


import json
from dataclasses import dataclass, replace
from datetime import date, datetime, timezone
from typing import Any, Iterable, Iterator, Literal, Sequence

import dagster as dg
import pandas as pd
from pydantic import Field

from dagster_project.decisioning.assets import DECISIONS_TABLE, SUPPRESSING_EVENTS
from dagster_project.decisioning.routing import RoutingPolicy, in_global_holdout
from dagster_project.messaging.briefs import load_briefs
from dagster_project.messaging.context_pack import (Catalog, data_fresh_day, load_catalog, packs_from_frames,
                                                    read_pack_frames)
from dagster_project.project import cyclic_gc_paused, default_as_of, mapped_in_workers, usable_cores
from dagster_project.messaging.drafting import (
    DraftingPolicy, DraftJob, DraftOutcome, MemoryDraftCache, draft_batch, summarize,
)
from dagster_project.messaging.generators.base import Draft, DraftRequest, Usage
from dagster_project.messaging.generators.template import TemplateGenerator
from dagster_project.messaging.guardrails import Verdict
from dagster_project.quality.freshness import reference_time, stale_playbooks
from dagster_project.resources.warehouse import (IN_CHUNK, DuckDBWarehouse, KeyRange, WarehouseInterface, WarehouseSession,
                                                 column_names, in_values, session_on)

DRAFTS_TABLE = "nextbest.message_drafts"
SEGMENTS_TABLE = "analytics.customer_segments"
# Customers in the permanent global holdout get no draft when segments choose the playbooks either:
# at the share routing's latest materialization used, this one before routing has ever run.
FALLBACK_GLOBAL_HOLDOUT_SHARE = RoutingPolicy().global_holdout_share

# Segment (dbt) -> playbook (brief). Earlier entries win when a customer is in several segments.
SEGMENT_PLAYBOOKS = {
    "at_risk": "at_risk_save",
    "win_back": "win_back",
    "cadence_mismatch": "cadence_mismatch",
    "onboarding": "onboarding",
    "dormant": "re_engagement",
    "expansion": "expansion",
}

DRAFTS_DDL = f"""
create table if not exists {DRAFTS_TABLE} (
  draft_id varchar, batch_id varchar, customer_id varchar, playbook_id varchar, angle varchar,
  generator varchar, generator_version varchar, subject varchar, preheader varchar, body varchar,
  cta varchar, offer_id varchar, cited_fact_ids varchar, verdicts varchar, status varchar,
  block_reason varchar, attempts integer, fell_back boolean, history varchar,
  prompt_tokens integer, completion_tokens integer, cost_usd double, cache_key varchar,
  cached boolean, as_of date, created_at timestamp
)
"""


class MessageDraftsConfig(dg.Config):
    """How this run drafts: generator, cost control, and how many customers."""

    generator: Literal["template", "openai"] = Field(  # type: ignore[valid-type]
        default="template", description="template (offline, default) or openai (needs OPENAI_MODEL etc.)")
    max_llm_attempts: int = Field(default=3, description="LLM attempts per draft before the template fallback.")
    value_threshold: float = Field(default=0.0, description="LLM only for customers worth at least this.")
    budget_usd: float | None = Field(default=None, description="Stop LLM calls once this batch spent this much.")
    limit: int | None = Field(default=None, description="Draft at most this many customers (sampling).")
    as_of: str | None = Field(default=None, description="YYYY-MM-DD; default NEXTBEST_AS_OF or today.")


def segment_column(columns) -> str:
    """The segment column of `analytics.customer_segments` (`segment` or `segment_name`), or why not."""
    columns = {str(c).lower() for c in columns}
    if not columns:
        raise RuntimeError(f"{SEGMENTS_TABLE} does not exist yet; build the dbt marts first (`nextbest demo`)")
    segment_col = next((c for c in ("segment", "segment_name") if c in columns), None)
    if "customer_id" not in columns or segment_col is None:
        raise RuntimeError(f"{SEGMENTS_TABLE} needs columns customer_id and segment; has {sorted(columns)}")
    return segment_col


def segment_playbooks_sql(segment_col: str, where: str = "") -> str:
    """customer_id, playbook_id per customer routing would not suppress (opted in; never unsubscribed,
    complained or bounced), from their first segment in SEGMENT_PLAYBOOKS' order.

    `where`: more conditions on `s` (customer_segments), starting with `and`.
    """
    flagged = ", ".join(f"'{event}'" for event in SUPPRESSING_EVENTS)
    segments = ", ".join(f"'{segment}'" for segment in SEGMENT_PLAYBOOKS)
    rank = " ".join(f"when '{segment}' then {i}" for i, segment in enumerate(SEGMENT_PLAYBOOKS))
    playbook = " ".join(f"when '{segment}' then '{p}'" for segment, p in SEGMENT_PLAYBOOKS.items())
    return f"""
        select customer_id, playbook_id from (
            select s.customer_id, case s.{segment_col} {playbook} end as playbook_id,
                   row_number() over (partition by s.customer_id order by case s.{segment_col} {rank} end) as k
            from {SEGMENTS_TABLE} s join raw.customers c on c.customer_id = s.customer_id
            where c.marketing_opt_in and s.{segment_col} in ({segments}) {where}
              and not exists (select 1 from raw.email_events e
                              where e.customer_id = s.customer_id and e.event_type in ({flagged}))
        ) ranked where k = 1"""


def segment_playbooks(source, customer_ids: Sequence[str] | None = None) -> dict[str, str]:
    """customer_id -> playbook from `analytics.customer_segments` (opted-in customers only).

    `source`: the warehouse resource (either engine), one of its sessions, or a DuckDB connection.
    """
    with session_on(source) as tx:
        schema, table = SEGMENTS_TABLE.split(".")
        columns = column_names(tx, SEGMENTS_TABLE) if tx.exists(schema, table) else []
        segment_col = segment_column(columns)  # no segments table: a RuntimeError saying so
        where, params = "", []
        if customer_ids is not None:
            params = [str(c) for c in customer_ids]
            if not params:
                return {}
            where = f"and s.customer_id in ({', '.join('?' * len(params))})"
        rows = tx.read_df(segment_playbooks_sql(segment_col, where) + " order by 1", params)
    return dict(zip(rows["customer_id"].astype(str), rows["playbook_id"].astype(str)))


# The playbook routing chose per customer for a run date (treatment arm only; the latest decision counts).
ROUTED_PLAYBOOKS_SQL = f"""
    select customer_id, playbook_id from (
        select customer_id, playbook_id, row_number() over (partition by customer_id order by decided_at desc) as k
        from {DECISIONS_TABLE}
        where run_date = cast(? as date) and decision = 'send' and arm = 'treatment' and playbook_id is not null
    ) ranked where k = 1"""


def routing_ran(warehouse: WarehouseInterface, as_of: str) -> bool:
    """Whether `routing_decisions` decided anything for `as_of` (if not, segments choose the playbooks)."""
    if not warehouse.table_exists("nextbest", "routing_decisions"):
        return False
    found = warehouse.read_df(f"select count(*) as n from {DECISIONS_TABLE} where run_date = cast(? as date)",
                              [date.fromisoformat(as_of)])
    return bool(int(found.iloc[0, 0]))


def playbooks_sql(warehouse: WarehouseInterface, as_of: str) -> tuple[str, list, str]:
    """SQL giving customer_id, playbook_id to draft (routing's choice, else segments'), its params, its source."""
    if routing_ran(warehouse, as_of):
        return ROUTED_PLAYBOOKS_SQL, [date.fromisoformat(as_of)], DECISIONS_TABLE
    columns = (column_names(warehouse, SEGMENTS_TABLE)
               if warehouse.table_exists("analytics", "customer_segments") else [])
    return segment_playbooks_sql(segment_column(columns)), [], SEGMENTS_TABLE


def outcome_row(outcome: DraftOutcome, batch_id: str, as_of: str, created_at: datetime) -> dict:
    """One `nextbest.message_drafts` row."""
    d = outcome.draft
    return {
        "draft_id": f"{batch_id}:{outcome.customer_id}", "batch_id": batch_id,
        "customer_id": outcome.customer_id, "playbook_id": outcome.playbook_id,
        "angle": d.angle if d else None, "generator": outcome.generator,
        "generator_version": d.generator_version if d else None,
        "subject": d.subject if d else None, "preheader": d.preheader if d else None, "body": d.body if d else None,
        "cta": d.cta if d else None, "offer_id": d.offer_id if d else None,
        "cited_fact_ids": json.dumps(d.cited_fact_ids if d else []),
        "verdicts": json.dumps([v.to_dict() for v in outcome.verdicts]), "status": outcome.status,
        "block_reason": outcome.block_reason, "attempts": outcome.attempts, "fell_back": outcome.fell_back,
        "history": json.dumps(outcome.history), "prompt_tokens": outcome.usage.prompt_tokens,
        "completion_tokens": outcome.usage.completion_tokens, "cost_usd": outcome.usage.cost_usd,
        "cache_key": outcome.cache_key, "cached": outcome.cached, "as_of": as_of, "created_at": created_at,
    }


def cached_outcomes(tx: WarehouseSession, in_chunk: str, params: Sequence[Any],
                    table: str = DRAFTS_TABLE) -> MemoryDraftCache:
    """Earlier `pending_review` drafts of the chunk's customers by cache key, so unchanged ones are not redrafted.

    `in_chunk` (SQL of customer_id, playbook_id) is what this run drafts for the chunk. A cache key covers
    the customer's context pack and the playbook's brief, so only a customer's earlier drafts for the
    playbook they get today can hit: the others (most, once routing moves customers on) are not read.
    `table`: the drafts table read (`nextbest.service_reply_drafts` has the same columns).
    """
    if not tx.exists(*table.split(".")):
        return MemoryDraftCache()
    rows = tx.read_df(f"""
        select * from (
            select d.customer_id, d.playbook_id, d.subject, d.preheader, d.body, d.cta, d.offer_id, d.angle,
                   d.generator, d.generator_version, d.cited_fact_ids, d.verdicts, d.attempts, d.fell_back,
                   d.history, d.cache_key,
                   row_number() over (partition by d.cache_key order by d.created_at desc) as nb_newest
            from {table} d
            inner join ({in_chunk}) today
                on d.customer_id = today.customer_id and d.playbook_id = today.playbook_id
            where d.status = 'pending_review'
        ) newest where nb_newest = 1""", list(params))
    cache = MemoryDraftCache()
    for r in rows.to_dict("records"):
        draft = Draft(subject=r["subject"], preheader=r["preheader"] or "", body=r["body"], cta=r["cta"],
                      cited_fact_ids=json.loads(r["cited_fact_ids"]), offer_id=r["offer_id"], angle=r["angle"],
                      generator=r["generator"], generator_version=r["generator_version"] or "")
        verdicts = [Verdict(**v) for v in json.loads(r["verdicts"])]
        cache.put(r["cache_key"], DraftOutcome(
            r["customer_id"], r["playbook_id"], "pending_review", draft, verdicts, r["generator"],
            int(r["attempts"]), bool(r["fell_back"]), None, json.loads(r["history"]), Usage(), r["cache_key"]))
    return cache


def routing_holdout_share(instance: dg.DagsterInstance) -> float:
    """The global holdout share of routing's latest materialization (its run config may change the default),
    else FALLBACK_GLOBAL_HOLDOUT_SHARE."""
    event = instance.get_latest_materialization_event(dg.AssetKey("routing_decisions"))
    materialization = event.asset_materialization if event else None
    recorded = materialization.metadata.get("global_holdout_share") if materialization else None
    return float(recorded.value) if recorded is not None else FALLBACK_GLOBAL_HOLDOUT_SHARE


def render_sample(outcomes: Sequence[DraftOutcome], n: int = 5) -> str:
    """A few drafts as markdown for reviewers (blocked ones first, with their reasons)."""
    chosen = sorted(outcomes, key=lambda o: o.status != "blocked")[:n]
    parts = []
    for o in chosen:
        head = f"### {o.customer_id} · {o.playbook_id} · {o.generator} · **{o.status}**"
        if o.draft is None:
            parts.append(f"{head}\n\n_{o.block_reason}_")
            continue
        body = o.draft.body.replace("\n", "  \n")
        why = f"\n\n> blocked: {o.block_reason}" if o.block_reason else ""
        parts.append(f"{head}\n\n**{o.draft.subject}**  \n_{o.draft.preheader}_\n\n{body}\n\n"
                     f"CTA: `{o.draft.cta}` · offer: `{o.draft.offer_id}`{why}")
    return "\n\n---\n\n".join(parts) or "_no drafts_"


@dg.asset(
    group_name="messaging",
    deps=[dg.AssetKey("customer_segments"), dg.AssetKey("routing_decisions")],
    kinds={"duckdb", "python"},
    description="One guardrail-checked message draft per customer routing sends to (segments until it runs), "
                "in nextbest.message_drafts.",
)
def message_drafts(context: dg.AssetExecutionContext, config: MessageDraftsConfig,
                   warehouse: DuckDBWarehouse) -> dg.MaterializeResult:
    """Draft, check and store a message for every customer routed to a playbook whose data is fresh."""
    with warehouse.kept_open():  # a few transactions per chunk: keep what opening the file costs
        return _draft_all(context, config, warehouse)


def _draft_all(context: dg.AssetExecutionContext, config: MessageDraftsConfig,
               warehouse: WarehouseInterface) -> dg.MaterializeResult:
    briefs = load_briefs()
    as_of = config.as_of or default_as_of()
    # Freshness is judged at the run date (history ends there), like the context packs.
    now = datetime.combine(date.fromisoformat(config.as_of), datetime.min.time()) if config.as_of \
        else reference_time()
    created_at = datetime.now(timezone.utc).replace(tzinfo=None)
    playbooks, params, source = playbooks_sql(warehouse, as_of)
    chosen = warehouse.read_df(f"select distinct playbook_id from ({playbooks}) chosen", params)["playbook_id"]
    wanted = [briefs.playbooks[p] for p in sorted(set(chosen)) if p in briefs.playbooks]
    with warehouse.transaction() as tx:
        stale = stale_playbooks(tx, wanted, now=now)
        catalog = load_catalog(tx)
        fresh_at = data_fresh_day(tx, as_of)  # read once: every chunk's packs carry the same day
    if stale and len(stale) == len(wanted):
        raise dg.Failure(description="No drafts: every playbook to draft is stale.\n"
                         + "\n".join(str(e) for e in stale.values()),
                         metadata={"stale_playbooks": dg.MetadataValue.json(sorted(stale))})
    for error in stale.values():
        context.log.warning(f"skipped: {error}")
    if stale:
        playbooks = (f"select customer_id, playbook_id from ({playbooks}) fresh "
                     f"where playbook_id not in ({', '.join('?' * len(stale))})")
        params = [*params, *sorted(stale)]
    customers = f"select customer_id from ({playbooks}) drafted order by customer_id"
    if config.limit:
        customers += f" limit {int(config.limit)}"
    chunks = warehouse.key_ranges(customers, warehouse.batch_rows, params)

    llm = None
    if config.generator == "openai":
        from dagster_project.messaging.generators.openai_chat import OpenAIGenerator
        llm = OpenAIGenerator()
    policy = DraftingPolicy(max_llm_attempts=config.max_llm_attempts, value_threshold=config.value_threshold,
                            budget_usd=config.budget_usd)
    template = TemplateGenerator()
    generic = template.generic_angles(briefs) if llm is None else []
    if generic:
        context.log.warning(f"angles without a template of their own, drafted with the generic one: "
                            f"{', '.join(generic)} (add <angle>.j2 to messaging/generators/templates/)")
    warehouse.execute("create schema if not exists nextbest")
    warehouse.execute(DRAFTS_DDL)
    summary: dict = {}
    spent = 0.0
    sample: dict[bool, list[DraftOutcome]] = {True: [], False: []}  # blocked first, as render_sample shows them

    # The segments' fallback leaves out the permanent global holdout as routing does.
    held_share = routing_holdout_share(context.instance) if source == SEGMENTS_TABLE else 0.0

    def read(i: int, chunk: KeyRange) -> ChunkInputs:
        context.log.info(f"chunk {i}: {chunk.rows} customers")
        return read_chunk(warehouse, chunk, playbooks, params, as_of, held_share)

    def drafted() -> Iterator[DraftedPart]:
        if llm is None and len(chunks) > 1 and sum(c.rows for c in chunks) >= PARALLEL_MIN_CUSTOMERS:
            yield from template_drafts_in_workers((read(i, c) for i, c in enumerate(chunks)),
                                                  (as_of, fresh_at, briefs, catalog, policy, created_at))
            return
        for i, chunk in enumerate(chunks):
            inputs = read(i, chunk)
            # The budget is the run's: this chunk may spend what the earlier ones left.
            left = policy if policy.budget_usd is None else replace(
                policy, budget_usd=max(0.0, policy.budget_usd - spent))
            with cyclic_gc_paused():  # a chunk's packs and drafts are millions of small objects
                outcomes = draft_batch(inputs.jobs(as_of, fresh_at, briefs, catalog), template, llm, left,
                                       inputs.cache)
                yield DraftedPart.of(outcomes, as_of, created_at)

    with warehouse.staged("nextbest", "message_drafts") as staged:
        for part in drafted():
            staged.write_df(part.rows)
            spent += part.spent
            summary = merge_summaries(summary, part.summary)
            for o in part.sample:
                kept = sample[o.status == "blocked"]
                if len(kept) < 5:
                    kept.append(o)
        with warehouse.transaction() as tx:
            # The whole day is replaced: a stale playbook keeps no drafts from an earlier run today.
            batches = sorted({f"{p}-{as_of}" for p in briefs.playbooks})
            staged.replace(tx, where=f"batch_id in ({', '.join('?' * len(batches))})", params=batches)
    summary = summary or summarize([])
    context.log.info(f"message_drafts: {summary}")
    metadata = {
        "playbooks_from": source,
        "drafts": summary["drafts"],
        "by_status": dg.MetadataValue.json(summary["by_status"]),
        "by_generator": dg.MetadataValue.json(summary["by_generator"]),
        "fallbacks": summary["fallbacks"],
        "cache_hits": summary["cache_hits"],
        "total_cost_usd": dg.MetadataValue.float(summary["total_cost_usd"]),
        "sample": dg.MetadataValue.md(render_sample(sample[True] + sample[False])),
    }
    if held_share:
        metadata["global_holdout_share"] = held_share
    if generic:
        metadata["generic_template_angles"] = dg.MetadataValue.json(generic)
    if stale:
        metadata["skipped_stale"] = dg.MetadataValue.md(
            "\n".join(f"- `{p}`: {str(e).replace(chr(10), ' ')}" for p, e in sorted(stale.items())))
    return dg.MaterializeResult(metadata=metadata)


@dataclass
class ChunkInputs:
    """What drafting one chunk reads: each customer's playbook, the rows of their packs, cached drafts."""

    playbook_of: dict[str, str]
    frames: dict[str, pd.DataFrame]  # context_pack.read_pack_frames
    cache: MemoryDraftCache

    def jobs(self, as_of: str, fresh_at: str | None, briefs, catalog: Catalog) -> list[DraftJob]:
        """One job per customer whose pack and playbook exist (`fresh_at`: the run's `data_fresh_day`)."""
        packs = packs_from_frames(self.frames, as_of, fresh_at)
        return [DraftJob(DraftRequest(packs[c], briefs.get(p), briefs.brand_voice, catalog))
                for c, p in self.playbook_of.items() if c in packs and p in briefs.playbooks]

    def part(self, customers: Sequence[str]) -> "ChunkInputs":
        """These customers only: their rows of every frame (order items by their orders), and their cached drafts.

        A worker sent the whole chunk's rows made every row plain Python again and dropped the
        others' (of 25,000 customers' packs, 6.7 s of which 2.0 s was rows of the other half)."""
        frames = {name: frame[in_values(frame["customer_id"], customers)] if "customer_id" in frame else frame
                  for name, frame in self.frames.items()}
        frames["items"] = frames["items"][in_values(frames["items"]["order_id"], frames["orders"]["order_id"])]
        mine = set(customers)
        cache = MemoryDraftCache({k: o for k, o in self.cache.outcomes.items() if o.customer_id in mine})
        return ChunkInputs({c: self.playbook_of[c] for c in customers}, frames, cache)


@dataclass
class DraftedPart:
    """Drafts of a chunk (or a worker's part of one) as `nextbest.message_drafts` rows, with what the
    run reports of them: their `summarize` counts, a few for the sample, and their LLM cost."""

    rows: pd.DataFrame
    summary: dict
    sample: list[DraftOutcome]  # up to 5 blocked and 5 others
    spent: float

    @classmethod
    def of(cls, outcomes: Sequence[DraftOutcome], as_of: str, created_at: datetime) -> "DraftedPart":
        rows = pd.DataFrame([outcome_row(o, f"{o.playbook_id}-{as_of}", as_of, created_at) for o in outcomes])
        blocked = [o for o in outcomes if o.status == "blocked"][:5]
        others = [o for o in outcomes if o.status != "blocked"][:5]
        return cls(rows, summarize(outcomes), blocked + others, sum(o.usage.cost_usd for o in outcomes))


def read_chunk(warehouse: WarehouseInterface, chunk: KeyRange, playbooks: str, params: list,
               as_of: str, global_holdout_share: float = 0.0) -> ChunkInputs:
    """What drafting one chunk of customers needs from the warehouse: `playbooks` (SQL of customer_id,
    playbook_id) read for its range, less the permanent global holdout at `global_holdout_share`
    (routing leaves it out itself; the segments' fallback does not know it)."""
    in_chunk = f"select customer_id, playbook_id from ({playbooks}) chunk where {IN_CHUNK}"
    in_chunk_params = [*params, *chunk.bounds]
    with warehouse.transaction() as tx:  # reads only; drafting (maybe slow LLM calls) happens after
        chosen = tx.read_df(f"{in_chunk} order by customer_id", in_chunk_params)
        customers = chosen["customer_id"].astype(str).tolist()
        held = in_global_holdout(customers, global_holdout_share) if global_holdout_share else [False] * len(customers)
        playbook_of = {c: str(p) for c, p, h in zip(customers, chosen["playbook_id"], held) if not h}
        frames = read_pack_frames(tx, in_chunk, in_chunk_params, as_of)
        return ChunkInputs(playbook_of, frames, cached_outcomes(tx, in_chunk, in_chunk_params))


# From this many customers to draft, in two chunks or more, template drafts are made in worker
# processes (packs, drafts, checks: ~85% of the step, on one core of two) while this one reads the
# next chunk. Fewer do not repay starting the workers (~4 s of imports each): 34,545 drafts in one
# chunk took 19.5 s here and 23.0 s in workers. The LLM path stays here: its budget is spent chunk
# after chunk.
PARALLEL_MIN_CUSTOMERS = 50_000


def template_drafts_in_workers(chunks: Iterable[ChunkInputs], draft_args: tuple,
                               processes: int | None = None) -> Iterator[DraftedPart]:
    """Template drafts of each chunk, a part of it per worker process, in the chunks' order.

    `draft_args`: (as_of, fresh_at, briefs, catalog, policy, created_at), sent to each worker once.
    Each chunk is split among the workers; the next chunk is read while they draft
    (`mapped_in_workers`), so memory holds about two chunks. Workers send back table rows, not
    the drafts themselves: 50,000 drafts took 7.3 s to pickle and unpickle, their rows 0.2 s.
    """
    processes = processes or usable_cores()

    def parts() -> Iterator[ChunkInputs]:
        for inputs in chunks:
            customers = list(inputs.playbook_of)
            size = -(-len(customers) // processes) or 1
            for i in range(0, len(customers), size):
                yield inputs.part(customers[i:i + size])

    yield from mapped_in_workers(_template_drafts, parts(), processes, setup=_keep_for_drafting,
                                 setup_args=draft_args)


_WORKER_DRAFTING: list = []  # a worker process's draft_args and template generator (compiled once)


def _keep_for_drafting(*draft_args) -> None:
    _WORKER_DRAFTING[:] = [draft_args, TemplateGenerator()]


def _template_drafts(inputs: ChunkInputs) -> DraftedPart:
    (as_of, fresh_at, briefs, catalog, policy, created_at), template = _WORKER_DRAFTING
    with cyclic_gc_paused():
        outcomes = draft_batch(inputs.jobs(as_of, fresh_at, briefs, catalog), template, None, policy, inputs.cache)
        return DraftedPart.of(outcomes, as_of, created_at)


def merge_summaries(total: dict, part: dict) -> dict:
    """Two `drafting.summarize` results as one (counts added, cost rounded as summarize rounds it)."""
    if not total:
        return part
    merged = {key: total[key] + part[key] for key in ("drafts", "fallbacks", "cache_hits", "prompt_tokens",
                                                      "completion_tokens")}
    for key in ("by_status", "by_generator"):
        merged[key] = {k: total[key].get(k, 0) + part[key].get(k, 0) for k in {**total[key], **part[key]}}
    merged["total_cost_usd"] = round(total["total_cost_usd"] + part["total_cost_usd"], 6)
    return {key: merged[key] for key in part}

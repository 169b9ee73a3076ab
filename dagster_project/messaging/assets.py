"""The `message_drafts` asset (group `messaging`): one checked draft per routed customer.

The playbook is the one `routing_decisions` chose for the run date (treatment arm
only: holdouts, the global holdout and "none" get no draft). When routing has not
run for that date, the playbook comes from `analytics.customer_segments`
(segment -> playbook below). Playbooks whose raw sources are older than their
brief's `max_data_staleness_days` are skipped (all stale: the asset fails).
Drafts land in `nextbest.message_drafts` with status `pending_review` or
`blocked`; a rerun on the same day replaces that day's batches, and customers
whose pack, brief and generator are unchanged reuse their earlier draft (cache
key) instead of being regenerated.
"""


import json
from datetime import date, datetime, timezone
from typing import Literal, Sequence

import dagster as dg
import pandas as pd
from pydantic import Field

from dagster_project.decisioning.assets import DECISIONS_TABLE
from dagster_project.messaging.briefs import load_briefs
from dagster_project.messaging.context_pack import default_as_of, load_catalog, load_context_packs
from dagster_project.messaging.drafting import (
    DraftingPolicy, DraftJob, DraftOutcome, MemoryDraftCache, draft_batch, summarize,
)
from dagster_project.messaging.generators.base import Draft, DraftRequest, Usage
from dagster_project.messaging.generators.template import TemplateGenerator
from dagster_project.messaging.guardrails import Verdict
from dagster_project.models.uplift_data import table_exists
from dagster_project.quality.freshness import reference_time, stale_playbooks
from dagster_project.resources.warehouse import DuckDBWarehouse

DRAFTS_TABLE = "nextbest.message_drafts"
SEGMENTS_TABLE = "analytics.customer_segments"

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


def segment_playbooks(con, customer_ids: Sequence[str] | None = None) -> dict[str, str]:
    """customer_id -> playbook from `analytics.customer_segments` (opted-in customers only)."""
    columns = {r[0] for r in con.execute(
        "select column_name from information_schema.columns where table_schema = 'analytics' "
        "and table_name = 'customer_segments'").fetchall()}
    if not columns:
        raise RuntimeError(f"{SEGMENTS_TABLE} does not exist yet; build the dbt marts first (`nextbest demo`)")
    segment_col = next((c for c in ("segment", "segment_name") if c in columns), None)
    if "customer_id" not in columns or segment_col is None:
        raise RuntimeError(f"{SEGMENTS_TABLE} needs columns customer_id and segment; has {sorted(columns)}")
    where, params = "", []
    if customer_ids is not None:
        where, params = "and s.customer_id in (select unnest(?::varchar[]))", [list(customer_ids)]
    rows = con.execute(
        f"select s.customer_id, s.{segment_col} from {SEGMENTS_TABLE} s "
        f"join raw.customers c using (customer_id) where c.marketing_opt_in {where} order by 1", params
    ).fetchall()
    rank = {seg: i for i, seg in enumerate(SEGMENT_PLAYBOOKS)}
    best: dict[str, str] = {}
    for customer_id, segment in rows:
        if segment in SEGMENT_PLAYBOOKS and (customer_id not in best or rank[segment] < rank[best[customer_id]]):
            best[customer_id] = segment
    return {c: SEGMENT_PLAYBOOKS[s] for c, s in best.items()}


def routed_playbooks(con, as_of: str) -> dict[str, str] | None:
    """customer_id -> playbook that `routing_decisions` chose to send on `as_of` (treatment arm only).

    None when routing has not run for that date (no table, or no decisions that day), so the
    caller falls back to segments; an empty dict when routing ran and chose nobody.
    """
    if not table_exists(con, DECISIONS_TABLE):
        return None
    if not con.execute(f"select count(*) from {DECISIONS_TABLE} where run_date = ?::date", [as_of]).fetchone()[0]:
        return None
    rows = con.execute(f"""
        select customer_id, playbook_id from {DECISIONS_TABLE}
        where run_date = ?::date and decision = 'send' and arm = 'treatment' and playbook_id is not null
        qualify row_number() over (partition by customer_id order by decided_at desc) = 1""", [as_of]).fetchall()
    return {str(c): str(p) for c, p in rows}


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


def cached_outcomes(con) -> MemoryDraftCache:
    """Earlier `pending_review` drafts by cache key, so unchanged customers are not regenerated."""
    exists = con.execute("select count(*) from information_schema.tables where table_schema = 'nextbest' "
                         "and table_name = 'message_drafts'").fetchone()[0]
    if not exists:
        return MemoryDraftCache()
    rows = con.execute(f"""
        select * from {DRAFTS_TABLE} where status = 'pending_review'
        qualify row_number() over (partition by cache_key order by created_at desc) = 1""").fetchdf()
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
    briefs = load_briefs()
    as_of = config.as_of or default_as_of()
    # Freshness is judged at the run date (history ends there), like the context packs.
    now = datetime.combine(date.fromisoformat(config.as_of), datetime.min.time()) if config.as_of \
        else reference_time()
    created_at = datetime.now(timezone.utc).replace(tzinfo=None)
    with warehouse.connect() as con:
        playbooks = routed_playbooks(con, as_of)
        source = DECISIONS_TABLE if playbooks is not None else SEGMENTS_TABLE
        if playbooks is None:
            playbooks = segment_playbooks(con)
        wanted = [briefs.playbooks[p] for p in sorted(set(playbooks.values())) if p in briefs.playbooks]
        stale = stale_playbooks(con, wanted, now=now)
        if stale and len(stale) == len(wanted):
            raise dg.Failure(description="No drafts: every playbook to draft is stale.\n"
                             + "\n".join(str(e) for e in stale.values()),
                             metadata={"stale_playbooks": dg.MetadataValue.json(sorted(stale))})
        for error in stale.values():
            context.log.warning(f"skipped: {error}")
        playbooks = {c: p for c, p in playbooks.items() if p not in stale}
        customers = sorted(playbooks)[: config.limit] if config.limit else sorted(playbooks)
        packs = load_context_packs(con, customers, as_of=as_of)
        catalog = load_catalog(con)
        cache = cached_outcomes(con)
    llm = None
    if config.generator == "openai":
        from dagster_project.messaging.generators.openai_chat import OpenAIGenerator
        llm = OpenAIGenerator()
    jobs = [DraftJob(DraftRequest(packs[c], briefs.get(playbooks[c]), briefs.brand_voice, catalog))
            for c in customers if c in packs and playbooks[c] in briefs.playbooks]
    policy = DraftingPolicy(max_llm_attempts=config.max_llm_attempts, value_threshold=config.value_threshold,
                            budget_usd=config.budget_usd)
    outcomes = draft_batch(jobs, TemplateGenerator(), llm, policy, cache)
    rows = pd.DataFrame([outcome_row(o, f"{o.playbook_id}-{as_of}", as_of, created_at) for o in outcomes])
    with warehouse.connect() as con:
        con.execute("create schema if not exists nextbest")
        con.execute(DRAFTS_DDL)
        # The whole day is replaced: a stale playbook keeps no drafts from an earlier run today.
        batches = sorted({f"{p}-{as_of}" for p in briefs.playbooks})
        con.execute(f"delete from {DRAFTS_TABLE} where batch_id in (select unnest(?::varchar[]))", [batches])
        if len(rows):
            con.register("_drafts", rows)
            con.execute(f"insert into {DRAFTS_TABLE} by name select * from _drafts")
            con.unregister("_drafts")
    summary = summarize(outcomes)
    context.log.info(f"message_drafts: {summary}")
    metadata = {
        "playbooks_from": source,
        "drafts": summary["drafts"],
        "by_status": dg.MetadataValue.json(summary["by_status"]),
        "by_generator": dg.MetadataValue.json(summary["by_generator"]),
        "fallbacks": summary["fallbacks"],
        "cache_hits": summary["cache_hits"],
        "total_cost_usd": dg.MetadataValue.float(summary["total_cost_usd"]),
        "sample": dg.MetadataValue.md(render_sample(outcomes)),
    }
    if stale:
        metadata["skipped_stale"] = dg.MetadataValue.md(
            "\n".join(f"- `{p}`: {str(e).replace(chr(10), ' ')}" for p, e in sorted(stale.items())))
    return dg.MaterializeResult(metadata=metadata)

"""Service assets: save offers (group `decisioning`), reply drafts (`messaging`) and the helpdesk /
ESP profile export (`delivery`), in the stage groups of DESIGN.md.

All three read the dbt mart `customer_service_context` a chunk of customers at a time (a range
of customer ids, `NEXTBEST_BATCH_ROWS` of them), through the engine-neutral warehouse
interface, so they run on DuckDB and on Snowflake alike. Wiring lives in definitions.py:
`assets` and `asset_checks` below are the lists to add there.
"""

# No `from __future__ import annotations`: Dagster resolves the config classes from annotations.
import json
from collections import Counter
from datetime import datetime, timezone
from typing import Literal

import dagster as dg
import pandas as pd
from pydantic import Field

from dagster_project.messaging.assets import (DRAFTS_DDL, DRAFTS_TABLE, cached_outcomes, merge_summaries, outcome_row,
                                             render_sample)
from dagster_project.messaging.briefs import load_briefs
from dagster_project.messaging.context_pack import data_fresh_day, load_catalog
from dagster_project.project import default_as_of
from dagster_project.messaging.drafting import DraftingPolicy, MemoryDraftCache, summarize
from dagster_project.resources.warehouse import DuckDBWarehouse, KeyRange, WarehouseSession, check_identifier
from dagster_project.service import replies, save_offers
from dagster_project.service.context import (REPLY_DRAFTS, context_chunks, load_service_context,
                                             require_service_context)

SERVICE_CONTEXT_KEY = dg.AssetKey("customer_service_context")
REPLIES_TABLE = REPLY_DRAFTS
# The message_drafts columns plus the ticket a reply answers.
REPLIES_DDL = DRAFTS_DDL.replace(DRAFTS_TABLE, REPLIES_TABLE).replace(
    "created_at timestamp", "created_at timestamp, ticket_id varchar")


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class SaveOffersConfig(dg.Config):
    """Which cancel attempts to answer."""

    lookback_days: int = Field(default=1, description="Cancel attempts from this many days before as_of on.")
    as_of: str | None = Field(default=None, description="YYYY-MM-DD; default NEXTBEST_AS_OF or today.")


# `warehouse` is annotated with the DuckDB class because Dagster needs a resource class here; the
# Snowflake resource binds just as well (definitions.py: `build_warehouse()`), and everything below
# uses only the methods both share.
@dg.asset(group_name="decisioning", deps=[SERVICE_CONTEXT_KEY], kinds={"duckdb", "python"},
          description="A save offer per cancel attempt (portal or ticket), with its reason and a randomized "
                      "holdout (nextbest.save_offer_recommendations, nextbest.assignments).")
def save_offer_recommendations(context: dg.AssetExecutionContext, config: SaveOffersConfig,
                               warehouse: DuckDBWarehouse) -> dg.MaterializeResult:
    """Recommend, assign an arm and record, a chunk of customers at a time; triggers already recorded
    are left as they are (each chunk is its own transaction, so a rerun finishes what a failed run began)."""
    brief = save_offers.load_save_brief()
    as_of = config.as_of or default_as_of()
    require_service_context(warehouse)
    catalog = load_catalog(warehouse)
    counts: Counter = Counter()
    by_pattern: Counter = Counter()
    by_option: Counter = Counter()
    triggers_seen = 0
    for i, chunk in enumerate(save_offers.trigger_chunks(warehouse, as_of, config.lookback_days,
                                                         warehouse.batch_rows)):
        with warehouse.transaction() as tx:  # reads only
            triggers = save_offers.load_triggers(tx, as_of, config.lookback_days, chunk)
            ctx = load_service_context(tx, {t.customer_id for t in triggers})
        live = [t for t in triggers if t.customer_id in ctx and save_offers.has_live_subscription(ctx[t.customer_id])]
        counts["no_live_subscription"] += sum(t.customer_id in ctx for t in triggers) - len(live)
        recs = [save_offers.recommend(t, ctx[t.customer_id], brief, catalog) for t in live]
        counts.update(save_offers.record_recommendations(warehouse, recs, brief, as_of, _now()))
        by_pattern.update(r.pattern for r in recs)
        by_option.update(r.option.id for r in recs)
        triggers_seen += len(triggers)
        context.log.info(f"chunk {i}: {chunk.rows} customers, {len(triggers)} cancel attempts")
    totals = {key: int(counts[key]) for key in ("recommended", "already_recorded", "new_assignments", "treatment",
                                                "holdout", "no_live_subscription")}
    context.log.info(f"save offers: {totals}")
    return dg.MaterializeResult(metadata={
        **totals, "triggers": triggers_seen,
        "by_pattern": dg.MetadataValue.json(dict(by_pattern.most_common())),
        "by_option": dg.MetadataValue.json(dict(by_option.most_common())),
    })


class ReplyDraftsConfig(dg.Config):
    """How reply drafts are written."""

    generator: Literal["template", "openai"] = Field(  # type: ignore[valid-type]
        default="template", description="template (offline, default) or openai (needs OPENAI_MODEL etc.)")
    limit: int | None = Field(default=None, description="Draft at most this many tickets.")
    as_of: str | None = Field(default=None, description="YYYY-MM-DD; default NEXTBEST_AS_OF or today.")


@dg.asset(group_name="messaging", deps=[SERVICE_CONTEXT_KEY], kinds={"duckdb", "python"},
          description="A guardrail-checked reply draft per open ticket (nextbest.service_reply_drafts).")
def service_reply_drafts(context: dg.AssetExecutionContext, config: ReplyDraftsConfig,
                         warehouse: DuckDBWarehouse) -> dg.MaterializeResult:
    """Draft, check and store a reply per open ticket, a chunk of customers at a time; the day's batch
    is replaced in one transaction at the end."""
    as_of = config.as_of or default_as_of()
    left = config.limit or None  # tickets still to draft (None: all)
    chunks = context_chunks(warehouse, warehouse.batch_rows, where=replies.HAS_OPEN_TICKETS, limit=left)
    briefs, brief = load_briefs(), replies.load_reply_brief()
    catalog = load_catalog(warehouse)
    fresh_at = data_fresh_day(warehouse, as_of)  # read once: every chunk's packs carry the same day
    llm = None
    if config.generator == "openai":
        from dagster_project.messaging.generators.openai_chat import OpenAIGenerator
        llm = OpenAIGenerator()
    batch_id, created_at = f"service_reply-{as_of}", _now()
    warehouse.execute("create schema if not exists nextbest")
    warehouse.execute(REPLIES_DDL)
    summary: dict = {}
    sample = []
    with warehouse.staged("nextbest", "service_reply_drafts") as staged:
        for i, chunk in enumerate(chunks):
            if left is not None and left <= 0:
                break
            with warehouse.transaction() as tx:  # reads only; drafting happens after
                requests = replies.open_ticket_requests(tx, chunk, as_of, fresh_at, catalog, briefs.brand_voice,
                                                        brief, left)
                cache = cached_replies(tx, chunk, brief.id) if requests else None
            outcomes = replies.draft_replies(requests, llm, DraftingPolicy(), cache)
            staged.write_df(pd.DataFrame([{**outcome_row(o, batch_id, as_of, created_at),
                                           "draft_id": f"{batch_id}:{r.pack.last_ticket_id}",
                                           "ticket_id": r.pack.last_ticket_id}
                                          for o, r in zip(outcomes, requests)]))
            summary = merge_summaries(summary, summarize(outcomes))
            sample = sorted(sample + outcomes, key=lambda o: o.status != "blocked")[:5]
            left = None if left is None else left - len(requests)
            context.log.info(f"chunk {i}: {chunk.rows} customers, {len(requests)} open tickets")
        with warehouse.transaction() as tx:
            staged.replace(tx, where="batch_id = ?", params=[batch_id])
    summary = summary or summarize([])
    return dg.MaterializeResult(metadata={
        "drafts": summary["drafts"], "by_status": dg.MetadataValue.json(summary["by_status"]),
        "cache_hits": summary["cache_hits"], "sample": dg.MetadataValue.md(render_sample(sample)),
    })


def cached_replies(tx: WarehouseSession, chunk: KeyRange, brief_id: str) -> MemoryDraftCache:
    """Earlier `pending_review` replies of the chunk's customers with open tickets, by cache key.

    The key covers the customer's pack pointed at the ticket (`replies.reply_pack`) and the reply brief,
    not the day: a ticket still open the next day, whose customer has nothing new, keeps its reply
    (its guardrails' staleness and the service checks are judged again). As the message drafts' cache.
    """
    brief = check_identifier(brief_id, "Reply brief id")
    today = f"select customer_id, '{brief}' as playbook_id from ({replies.OPEN_TICKET_CUSTOMERS}) open_tickets"
    return cached_outcomes(tx, today, chunk.bounds, table=REPLIES_TABLE)


@dg.asset(group_name="delivery", deps=[SERVICE_CONTEXT_KEY], kinds={"duckdb", "python"},
          description="Tags and agent-view fields to ESP profile properties and the helpdesk sink, "
                      "through nextbest.outbox (exactly once; changed customers only).")
def service_context_export(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse) -> dg.MaterializeResult:
    """Queue the properties of customers whose agent-view fields changed, a chunk at a time, and send them."""
    from dagster_project.delivery.esp import esp_from_env
    from dagster_project.service.export import (
        HELPDESK_PLAYBOOK, PROFILE_PLAYBOOK, export_service_context, helpdesk_sink_from_env, service_context_chunks,
    )

    sinks = {PROFILE_PLAYBOOK: esp_from_env(), HELPDESK_PLAYBOOK: helpdesk_sink_from_env()}
    try:
        result = export_service_context(warehouse, service_context_chunks(warehouse, warehouse.batch_rows, list(sinks)),
                                        default_as_of(), sinks, batch_rows=warehouse.batch_rows,
                                        log=context.log.info)
    finally:
        for sink in sinks.values():
            sink.close()
    context.log.info(f"service export: {result}")
    return dg.MaterializeResult(metadata={k: dg.MetadataValue.json(v) for k, v in result.items()})


@dg.asset_check(asset=save_offer_recommendations, description="Every recommendation has its assignment, "
                "in the same arm, in nextbest.assignments (so campaign_performance can measure it).")
def save_offer_assignments_recorded(warehouse: DuckDBWarehouse) -> dg.AssetCheckResult:
    if not warehouse.table_exists("nextbest", "save_offer_recommendations"):
        return dg.AssetCheckResult(passed=True, metadata={"recommendations": 0})
    missing = int(warehouse.read_df(f"""
        select count(*) as n from {save_offers.RECOMMENDATIONS} r
        left join {save_offers.ASSIGNMENTS} a
          on a.assignment_id = r.assignment_id and a.playbook_id = ?
        where a.assignment_id is null or a.arm <> r.arm""", [save_offers.PLAYBOOK_ID]).iloc[0, 0])
    return dg.AssetCheckResult(passed=missing == 0, metadata={"without_matching_assignment": missing})


@dg.asset_check(asset=service_reply_drafts, description="No reply awaiting review failed a guardrail.")
def service_replies_pass_guardrails(warehouse: DuckDBWarehouse) -> dg.AssetCheckResult:
    if not warehouse.table_exists("nextbest", "service_reply_drafts"):
        return dg.AssetCheckResult(passed=True, metadata={"drafts": 0})
    bad = 0
    for batch in warehouse.iter_batches(f"select verdicts from {REPLIES_TABLE} where status = 'pending_review'",
                                        warehouse.batch_rows):
        bad += sum(1 for v in batch["verdicts"] if not all(x["passed"] for x in json.loads(v)))
    return dg.AssetCheckResult(passed=bad == 0, metadata={"pending_with_failed_check": bad})


assets = [save_offer_recommendations, service_reply_drafts, service_context_export]
asset_checks = [save_offer_assignments_recorded, service_replies_pass_guardrails]

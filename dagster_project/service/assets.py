"""Service assets: save offers (group `decisioning`), reply drafts (`messaging`) and the helpdesk /
ESP profile export (`delivery`), in the stage groups of DESIGN.md.

All three read the dbt mart `customer_service_context`. Wiring lives in definitions.py:
`assets` and `asset_checks` below are the lists to add there.
"""

# No `from __future__ import annotations`: Dagster resolves the config classes from annotations.
import json
from datetime import datetime, timezone
from typing import Literal

import dagster as dg
import pandas as pd
from pydantic import Field

from dagster_project.messaging.assets import outcome_row, render_sample
from dagster_project.messaging.briefs import load_briefs
from dagster_project.messaging.context_pack import load_catalog, load_context_packs
from dagster_project.project import default_as_of
from dagster_project.messaging.drafting import DraftingPolicy, summarize
from dagster_project.messaging.generators.base import DraftRequest
from dagster_project.resources.warehouse import DuckDBWarehouse, table_exists
from dagster_project.service import replies, save_offers
from dagster_project.service.context import load_service_context

SERVICE_CONTEXT_KEY = dg.AssetKey("customer_service_context")
REPLIES_TABLE = "nextbest.service_reply_drafts"


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class SaveOffersConfig(dg.Config):
    """Which cancel attempts to answer."""

    lookback_days: int = Field(default=1, description="Cancel attempts from this many days before as_of on.")
    as_of: str | None = Field(default=None, description="YYYY-MM-DD; default NEXTBEST_AS_OF or today.")


@dg.asset(group_name="decisioning", deps=[SERVICE_CONTEXT_KEY], kinds={"duckdb", "python"},
          description="A save offer per cancel attempt (portal or ticket), with its reason and a randomized "
                      "holdout (nextbest.save_offer_recommendations, nextbest.assignments).")
def save_offer_recommendations(context: dg.AssetExecutionContext, config: SaveOffersConfig,
                               warehouse: DuckDBWarehouse) -> dg.MaterializeResult:
    """Recommend, assign an arm and record; triggers already recorded are left as they are."""
    brief = save_offers.load_save_brief()
    as_of = config.as_of or default_as_of()
    with warehouse.connect() as con:
        triggers = save_offers.load_triggers(con, as_of, config.lookback_days)
        ctx = load_service_context(con, {t.customer_id for t in triggers})
        catalog = load_catalog(con)
        recs = [save_offers.recommend(t, ctx[t.customer_id], brief, catalog) for t in triggers
                if t.customer_id in ctx]
        counts = save_offers.record_recommendations(con, recs, brief, as_of, _now())
    by_pattern = pd.Series([r.pattern for r in recs], dtype="object").value_counts().to_dict()
    by_option = pd.Series([r.option.id for r in recs], dtype="object").value_counts().to_dict()
    context.log.info(f"save offers: {counts}")
    return dg.MaterializeResult(metadata={
        **counts, "triggers": len(triggers),
        "by_pattern": dg.MetadataValue.json(by_pattern), "by_option": dg.MetadataValue.json(by_option),
    })


class ReplyDraftsConfig(dg.Config):
    """How reply drafts are written."""

    generator: Literal["template", "openai"] = Field(  # type: ignore[valid-type]
        default="template", description="template (offline, default) or openai (needs OPENAI_MODEL etc.)")
    limit: int | None = Field(default=None, description="Draft at most this many tickets.")
    as_of: str | None = Field(default=None, description="YYYY-MM-DD; default NEXTBEST_AS_OF or today.")


def open_ticket_requests(con, as_of: str, limit: int | None = None) -> list[DraftRequest]:
    """A reply request per open ticket in `customer_service_context` (its pack pointed at the ticket)."""
    ctx = {c: r for c, r in load_service_context(con).items() if r.get("open_ticket_ids")}
    pairs = sorted((c, t) for c, r in ctx.items() for t in str(r["open_ticket_ids"]).split(", ") if t)
    pairs = pairs[:limit] if limit else pairs
    packs = load_context_packs(con, {c for c, _ in pairs}, as_of=as_of)
    catalog = load_catalog(con)
    briefs = load_briefs()
    brief = replies.load_reply_brief()
    return [DraftRequest(replies.reply_pack(packs[c], t, ctx[c]), brief, briefs.brand_voice, catalog)
            for c, t in pairs if c in packs]


@dg.asset(group_name="messaging", deps=[SERVICE_CONTEXT_KEY], kinds={"duckdb", "python"},
          description="A guardrail-checked reply draft per open ticket (nextbest.service_reply_drafts).")
def service_reply_drafts(context: dg.AssetExecutionContext, config: ReplyDraftsConfig,
                         warehouse: DuckDBWarehouse) -> dg.MaterializeResult:
    """Draft, check and store a reply per open ticket; a rerun replaces the day's batch."""
    as_of = config.as_of or default_as_of()
    with warehouse.connect() as con:
        requests = open_ticket_requests(con, as_of, config.limit)
    llm = None
    if config.generator == "openai":
        from dagster_project.messaging.generators.openai_chat import OpenAIGenerator
        llm = OpenAIGenerator()
    outcomes = replies.draft_replies(requests, llm, DraftingPolicy())
    batch_id, created_at = f"service_reply-{as_of}", _now()
    rows = pd.DataFrame([{**outcome_row(o, batch_id, as_of, created_at),
                          "draft_id": f"{batch_id}:{r.pack.last_ticket_id}", "ticket_id": r.pack.last_ticket_id}
                         for o, r in zip(outcomes, requests)])
    with warehouse.connect() as con:
        con.execute("create schema if not exists nextbest")
        if len(rows):
            con.register("_replies", rows)
            con.execute(f"create table if not exists {REPLIES_TABLE} as select * from _replies limit 0")
            con.execute(f"delete from {REPLIES_TABLE} where batch_id = ?", [batch_id])
            con.execute(f"insert into {REPLIES_TABLE} by name select * from _replies")
            con.unregister("_replies")
    summary = summarize(outcomes)
    return dg.MaterializeResult(metadata={
        "drafts": summary["drafts"], "by_status": dg.MetadataValue.json(summary["by_status"]),
        "sample": dg.MetadataValue.md(render_sample(outcomes)),
    })


@dg.asset(group_name="delivery", deps=[SERVICE_CONTEXT_KEY], kinds={"duckdb", "python"},
          description="Tags and agent-view fields to ESP profile properties and the helpdesk sink, "
                      "through nextbest.outbox (exactly once; changed customers only).")
def service_context_export(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse) -> dg.MaterializeResult:
    """Queue and send the properties of customers whose agent-view fields changed."""
    from dagster_project.delivery.esp import esp_from_env
    from dagster_project.service.export import (
        HELPDESK_PLAYBOOK, PROFILE_PLAYBOOK, export_service_context, helpdesk_sink_from_env,
    )

    as_of = default_as_of()
    with warehouse.connect() as con:
        rows = list(load_service_context(con).values())
    result = export_service_context(warehouse, rows, as_of, {PROFILE_PLAYBOOK: esp_from_env(),
                                                             HELPDESK_PLAYBOOK: helpdesk_sink_from_env()})
    context.log.info(f"service export: {result}")
    return dg.MaterializeResult(metadata={k: dg.MetadataValue.json(v) for k, v in result.items()})


@dg.asset_check(asset=save_offer_recommendations, description="Every recommendation has its assignment, "
                "in the same arm, in nextbest.assignments (so campaign_performance can measure it).")
def save_offer_assignments_recorded(warehouse: DuckDBWarehouse) -> dg.AssetCheckResult:
    with warehouse.connect(read_only=True) as con:
        if not table_exists(con, save_offers.RECOMMENDATIONS):
            return dg.AssetCheckResult(passed=True, metadata={"recommendations": 0})
        missing = con.execute(f"""
            select count(*) from {save_offers.RECOMMENDATIONS} r
            left join {save_offers.ASSIGNMENTS} a
              on a.assignment_id = r.assignment_id and a.playbook_id = '{save_offers.PLAYBOOK_ID}'
            where a.assignment_id is null or a.arm <> r.arm""").fetchone()[0]
    return dg.AssetCheckResult(passed=missing == 0, metadata={"without_matching_assignment": int(missing)})


@dg.asset_check(asset=service_reply_drafts, description="No reply awaiting review failed a guardrail.")
def service_replies_pass_guardrails(warehouse: DuckDBWarehouse) -> dg.AssetCheckResult:
    with warehouse.connect(read_only=True) as con:
        if not table_exists(con, REPLIES_TABLE):
            return dg.AssetCheckResult(passed=True, metadata={"drafts": 0})
        rows = con.execute(f"select verdicts from {REPLIES_TABLE} where status = 'pending_review'").fetchall()
    bad = sum(1 for (v,) in rows if not all(x["passed"] for x in json.loads(v)))
    return dg.AssetCheckResult(passed=bad == 0, metadata={"pending_with_failed_check": bad})


assets = [save_offer_recommendations, service_reply_drafts, service_context_export]
asset_checks = [save_offer_assignments_recorded, service_replies_pass_guardrails]

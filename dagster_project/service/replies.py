"""Reply drafts for open tickets, written and checked by the messaging generators and guardrails.

For each open ticket: the customer's context pack (messaging/context_pack.py) pointed at
the ticket being answered, plus the service situation in `pack.extras`: the ticket's topic,
whether it is a repeat contact (`repeat_contact`: the same topic within REPEAT_CONTACT_DAYS, or
while the earlier ticket was open), where the newest order is (`latest_order`: not shipped yet,
payment failed) and the latest shipment. `ReplyGenerator` is the template generator with the reply
templates in `service/templates/`, their extra phrases (`reply_slots`) and an angle chosen by the
situation, not at random;
the OpenAI generator works unchanged with the reply brief. Every draft goes through
`draft_batch` (generate -> guardrails -> retry -> fallback -> blocked) and then the
service checks below, which know what a support reply must not get wrong:

    delivery   a delivery claim matches the latest shipment (no "arrived" while in transit, no wrong date)
    private    nothing the customer doesn't know we keep: tiers, tags, value, "VIP"

Ticket bodies stay `customer_text` facts: never read by a template, never sent to an LLM,
and the injection guardrail blocks a draft that echoes or obeys them.

A ticket still open on a later day keeps its reply when nothing behind it changed: the
`service_reply_drafts` asset hands `draft_replies` the earlier ready replies of the chunk by
cache key (the pack pointed at the ticket, without the day; the brief; the generator), as the
message drafts' cache does. A reused reply's staleness and service checks are judged again
that day. At 1M customers the next day reused 8,486 of 8,879 replies (the same text as drafted
afresh).
"""

from __future__ import annotations

import dataclasses
import re
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Sequence

from dagster_project.messaging.briefs import BrandVoice, Brief, BriefError, load_briefs
from dagster_project.messaging.context_pack import Catalog, ContextPack, Fact, load_scoped_packs
from dagster_project.messaging.drafting import DraftCache, DraftingPolicy, DraftJob, DraftOutcome, draft_batch
from dagster_project.messaging.generators.base import Draft, DraftRequest, Generator
from dagster_project.messaging.generators.template import Slot, TemplateGenerator, say_past_date
from dagster_project.messaging.guardrails import Verdict, failure_reasons
from dagster_project.resources.warehouse import IN_CHUNK, KeyRange, WarehouseSession
from dagster_project.service.context import SERVICE_CONTEXT, context_columns, context_rows, read_context_chunk

REPLY_BRIEF_FILE = Path(__file__).resolve().parent / "service_reply.yaml"
REPLY_TEMPLATES = Path(__file__).resolve().parent / "templates"
TOPIC_KIND = {"delivery_delay": "delivery", "damaged_package": "damaged", "change_address": "general",
              "billing": "billing", "payment_issue": "billing", "cancel_request": "cancel",
              "product_question": "general", "grind_preference": "general"}
# A ticket is a repeat contact when the customer wrote about the same topic this many days before it or
# less, or while that earlier ticket was still open: dbt's repeat_issue_window_days, and the simulator's
# unsolved issues come back within two weeks. An older, solved ticket on the topic is history, not a repeat.
REPEAT_CONTACT_DAYS = 14
# Where the newest order (not a skipped one) is, as the agent view's int_service_recent_orders says it:
# the reply angle of a "where is my order?" ticket for each (the others follow the latest shipment).
ORDER_STATE_KIND = {"awaiting_shipment": "preparing", "failed": "payment_failed"}

# Customers of `customer_service_context` with a ticket to answer, and what a reply needs of their row.
HAS_OPEN_TICKETS = "open_ticket_ids is not null and open_ticket_ids <> ''"
# The customers of a chunk (its two `?` bounds) with open tickets: whose replies are drafted, and cached.
OPEN_TICKET_CUSTOMERS = f"select customer_id from {SERVICE_CONTEXT} where {IN_CHUNK} and ({HAS_OPEN_TICKETS})"
REPLY_CONTEXT_FIELDS = ("customer_id", "open_ticket_ids", "open_ticket_topics", "has_repeat_issue",
                        "repeat_issue_topic", "subscription_id", "next_charge_date")

_DELIVERY_CLAIM = re.compile(r"\b(arrived|was delivered|were delivered|has been delivered|got delivered|"
                             r"delivered on)\b", re.I)
_IN_TRANSIT_CLAIM = re.compile(r"\b(on its way|in transit|has shipped|is shipping)\b", re.I)
_SENTENCE = re.compile(r"[^.!?\n]+[.!?]?")
_PRIVATE = re.compile(r"\b(vip|high[- ]value|most valuable|top customers?|tier|tagged|tags?|brand advocate|"
                      r"lifetime|loyalty status|profile says|our records show|we've flagged|flagged)\b", re.I)


def load_reply_brief(folder: str | Path | None = None) -> Brief:
    """The reply brief: `service_reply` from the briefs folder if a marketer put one there, else
    `service/service_reply.yaml`; validated like every brief, same brand voice."""
    from dagster_project.messaging.briefs import parse_yaml

    briefs = load_briefs(folder)
    if "service_reply" in briefs.service:
        return briefs.service["service_reply"]  # load_briefs checked its brand voice
    voice = briefs.brand_voice
    brief: Brief = parse_yaml(REPLY_BRIEF_FILE, Brief)  # type: ignore[assignment]
    if brief.brand_voice != voice.id:
        raise BriefError(f"{REPLY_BRIEF_FILE}: brand_voice: {brief.brand_voice!r} is not {voice.id!r}")
    return brief


# --------------------------------------------------------------------------- the pack, pointed at a ticket


def latest_shipment(pack: ContextPack) -> tuple[str, str | None] | None:
    """(order id, delivered day or None) of the latest order that shipped, from the pack's facts."""
    shipped = [(f.value, fid.split(":")[1]) for fid, f in pack.facts.items()
               if fid.startswith("order:") and fid.endswith(":shipped_at") and f.value <= pack.as_of]
    if not shipped:
        return None
    _, order_id = max(shipped)
    delivered = pack.value(f"order:{order_id}:delivered_at")
    return order_id, delivered if delivered and delivered <= pack.as_of else None


def latest_order(pack: ContextPack) -> tuple[str, str] | None:
    """(order id, state) of the newest order that was not skipped (a skipped cycle has nothing to ship), the
    state as the agent view says it: delivered, in_transit, awaiting_shipment, failed or refunded."""
    orders = [(f.value, fid.split(":")[1]) for fid, f in pack.facts.items()
              if fid.startswith("order:") and fid.endswith(":ordered_at")
              and pack.value(f"order:{fid.split(':')[1]}:status") != "skipped"]
    if not orders:
        return None
    _, order_id = max(orders)
    status = pack.value(f"order:{order_id}:status")
    if status in ("failed", "refunded"):
        return order_id, status
    if pack.value(f"order:{order_id}:delivered_at"):  # the pack keeps only days up to as_of
        return order_id, "delivered"
    return order_id, "in_transit" if pack.value(f"order:{order_id}:shipped_at") else "awaiting_shipment"


def repeat_contact(pack: ContextPack, ticket_id: str, topic_flagged: bool = False) -> bool:
    """Whether the ticket repeats an earlier one of the customer's on its topic: opened at most
    REPEAT_CONTACT_DAYS before it, or still open when it was written (the pack's tickets).

    `topic_flagged`: the agent view says the customer had a repeat issue on this topic lately. It is the
    evidence only when the pack holds no ticket before this one (it keeps the newest few) and no later one on
    the topic that the flag could be about; otherwise the pack's own tickets decide.
    """
    def ticket(tid: str) -> tuple[str, str, str | None, str | None]:
        return (pack.value(f"ticket:{tid}:created_at") or "", tid, pack.value(f"ticket:{tid}:topic"),
                pack.value(f"ticket:{tid}:resolved_at"))

    tickets = [ticket(fid.split(":")[1]) for fid in pack.facts if fid.startswith("ticket:") and fid.endswith(":topic")]
    this = next((t for t in tickets if t[1] == ticket_id), None)
    if this is None or not this[0]:
        return topic_flagged
    earlier = [t for t in tickets if t[:2] < this[:2]]
    if not earlier:
        return topic_flagged and not any(t[2] == this[2] for t in tickets if t[:2] > this[:2])
    window_start = (date.fromisoformat(this[0]) - timedelta(days=REPEAT_CONTACT_DAYS)).isoformat()
    return any(t[2] == this[2] and (t[0] >= window_start or t[3] is None or t[3] >= this[0]) for t in earlier)


def reply_pack(pack: ContextPack, ticket_id: str, ctx: dict | None = None) -> ContextPack:
    """The customer's pack pointed at the ticket being answered, with the service situation in extras."""
    topic = None
    if ctx is not None:
        topic = next((t for tid, t in zip(str(ctx.get("open_ticket_ids") or "").split(", "),
                                          str(ctx.get("open_ticket_topics") or "").split(", ")) if tid == ticket_id),
                     None)
    shipment, order = latest_shipment(pack), latest_order(pack)
    flagged = bool(ctx and ctx.get("has_repeat_issue") and topic and ctx.get("repeat_issue_topic") == topic)
    extras = {**pack.extras, "answering_ticket_id": ticket_id, "ticket_topic": topic,
              "repeat_issue": repeat_contact(pack, ticket_id, flagged),
              "latest_shipment": None if shipment is None else ("delivered" if shipment[1] else "in_transit"),
              "latest_order": None if order is None else order[1]}
    return dataclasses.replace(pack, last_ticket_id=ticket_id, extras=extras, facts=_next_charge_as_of(pack, ctx))


def _next_charge_as_of(pack: ContextPack, ctx: dict | None) -> dict[str, Fact]:
    """The pack's facts with the next charge the as_of day knows. The pack keeps raw subscriptions' next
    charge only while it is ahead (`context_pack._ahead`); one already past (a payment being retried)
    becomes the agent view's `next_charge_date` (the mart counts on from the latest cycle) when that is
    ahead. None in the mart (not active on the day) drops it. A row of another subscription than the
    pack's current one changes nothing."""
    sid = pack.current_subscription_id
    fact_id = f"subscription:{sid}:next_charge_at"
    if not ctx or "next_charge_date" not in ctx or not sid or str(ctx.get("subscription_id")) != sid:
        return pack.facts
    day = ctx["next_charge_date"]
    day = day.isoformat()[:10] if isinstance(day, (date, datetime)) else (str(day)[:10] if day else None)
    raw = pack.facts.get(fact_id)
    if raw is not None and raw.value >= pack.as_of and day:
        return pack.facts  # still ahead: the store's own schedule, a rescheduled charge included
    if not day or day < pack.as_of:
        return {k: f for k, f in pack.facts.items() if k != fact_id}
    return {**pack.facts, fact_id: Fact(fact_id, "date", day)}


def reply_angle(pack: ContextPack) -> str:
    """reply_<kind>[_repeat]: the ticket's topic and, for "where is my order?", where the newest order is
    (not shipped yet, its payment failed) or else the latest shipment."""
    kind = TOPIC_KIND.get(pack.extras.get("ticket_topic") or "", "general")
    if kind == "delivery":
        kind = ORDER_STATE_KIND.get(pack.extras.get("latest_order") or "") or (
            "in_transit" if pack.extras.get("latest_shipment") == "in_transit" else "delivered")
    return f"reply_{kind}{'_repeat' if pack.extras.get('repeat_issue') else ''}"


def reply_slots(pack: ContextPack) -> dict[str, Slot]:
    """What reply templates print beyond a message's `situation`: the newest order (placed on, its state)
    and the ticket's topic said once ("your question about our coffee", never "about a question about")."""
    slots = {}
    order = latest_order(pack)
    if order is not None:
        placed, status = f"order:{order[0]}:ordered_at", f"order:{order[0]}:status"
        slots["order_placed"] = Slot(say_past_date(pack.value(placed), pack.as_of), (placed, status))
    topic_id = f"ticket:{pack.last_ticket_id}:topic"
    topic = pack.value(topic_id)
    if topic:
        # "a question about our coffee", "a billing question": their question; anything else, their message
        asked = topic.startswith("a ") and "question" in topic
        slots["ticket_subject"] = Slot(f"Your {topic[2:]}" if asked else f"About {topic}", (topic_id,))
        slots["ticket_message"] = Slot(f"your {topic[2:]}" if asked else f"your message about {topic}", (topic_id,))
    return slots


class ReplyGenerator(TemplateGenerator):
    """The template generator with the reply templates; the angle follows the ticket's situation."""

    name = "template"
    version = "service-reply-3"  # the reply wording: a new one must not reuse replies cached under the old

    def __init__(self, templates_dir: Path | str = REPLY_TEMPLATES):
        super().__init__(templates_dir)

    def slots(self, request: DraftRequest, seed: int) -> dict[str, Slot]:
        return {**super().slots(request, seed), **reply_slots(request.pack)}

    def choose_angle(self, request: DraftRequest, seed: int) -> str:
        wanted = reply_angle(request.pack)
        known = {a.id for a in request.brief.angles}
        return wanted if wanted in known else request.brief.angles[0].id


def open_ticket_requests(tx: WarehouseSession, chunk: KeyRange, as_of: str, fresh_at: str | None, catalog: Catalog,
                         voice: BrandVoice, brief: Brief, limit: int | None = None) -> list[DraftRequest]:
    """A reply request per open ticket of one chunk of customers (their packs pointed at the ticket),
    in (customer, ticket) order, at most `limit` of them. `fresh_at`: the run's `data_fresh_day`."""
    # the fields the mart has: one built before a column existed still reads
    ctx = context_rows(read_context_chunk(tx, chunk, context_columns(tx, REPLY_CONTEXT_FIELDS),
                                          where=HAS_OPEN_TICKETS))
    pairs = sorted((c, t) for c, r in ctx.items() for t in str(r["open_ticket_ids"]).split(", ") if t)
    pairs = pairs[:limit] if limit is not None else pairs
    packs = load_scoped_packs(tx, OPEN_TICKET_CUSTOMERS, chunk.bounds, as_of, fresh_at) if pairs else {}
    return [DraftRequest(reply_pack(packs[c], t, ctx[c]), brief, voice, catalog) for c, t in pairs if c in packs]


# --------------------------------------------------------------------------- service checks


def service_checks(draft: Draft, pack: ContextPack) -> list[Verdict]:
    """What a support reply must not get wrong, beyond the messaging guardrails."""
    text = draft.text()
    delivery: list[str] = []
    shipment = latest_shipment(pack)
    delivered_days = {f.value for fid, f in pack.facts.items() if fid.endswith(":delivered_at")
                      and f.value <= pack.as_of}
    for sentence in _SENTENCE.findall(text):
        claim = _DELIVERY_CLAIM.search(sentence)
        if claim and not re.search(r"\b(not|hasn't|has not|didn't|isn't|yet)\b", sentence, re.I):
            if shipment is None:
                delivery.append(f"says {claim.group(0)!r} but nothing has shipped to this customer")
            elif shipment[1] is None and re.search(r"\b(latest|last|recent|your order|your bag|shipment)\b",
                                                   sentence, re.I):
                delivery.append(f"says {claim.group(0)!r} about the latest shipment, but order {shipment[0]} "
                                f"has not been delivered yet")
            for day in _dates_in(sentence, pack.as_of):
                if day not in delivered_days:
                    delivery.append(f"says a delivery happened on {day}, which is no delivery date in the "
                                    "customer's orders")
        transit = _IN_TRANSIT_CLAIM.search(sentence)
        if transit and (shipment is None or shipment[1] is not None):
            delivery.append(f"says {transit.group(0)!r} but no shipment is in transit")
    private = [f"mentions {m.group(0)!r}: tags, tiers and value are for agents, never for the customer"
               for m in _PRIVATE.finditer(text)]
    return [Verdict("delivery", not delivery, delivery), Verdict("private", not private, private)]


_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september",
           "october", "november", "december")
_DAY = re.compile(r"\b(" + "|".join(_MONTHS) + r")\s+(\d{1,2})\b(?:,?\s+(\d{4}))?|\b(\d{4})-(\d{2})-(\d{2})\b", re.I)


def _dates_in(sentence: str, as_of: str) -> list[str]:
    """The days a sentence names, as ISO dates. A day without a year ("December 30") is its latest
    occurrence on or before `as_of`: a delivery is in the past, so in January it is last December's."""
    days = []
    for m in _DAY.finditer(sentence):
        if m.group(4):
            days.append(f"{m.group(4)}-{m.group(5)}-{m.group(6)}")
        else:
            month = _MONTHS.index(m.group(1).lower()) + 1
            day = f"{month:02d}-{int(m.group(2)):02d}"
            year = m.group(3) or (as_of[:4] if day <= as_of[5:10] else str(int(as_of[:4]) - 1))
            days.append(f"{year}-{day}")
    return days


def apply_service_checks(outcome: DraftOutcome, pack: ContextPack) -> DraftOutcome:
    """Add the service verdicts; a draft that fails them is blocked with the reasons.

    A reply reused from the cache carries the verdicts of the day it was written: its service
    verdicts are judged again against today's pack (what has been delivered since, say) and replace them.
    """
    if outcome.draft is None:
        return outcome
    extra = service_checks(outcome.draft, pack)
    verdicts = [v for v in outcome.verdicts if v.check not in {e.check for e in extra}] + extra
    reasons = failure_reasons(extra)
    if not reasons:
        return dataclasses.replace(outcome, verdicts=verdicts)
    block = "; ".join(filter(None, [outcome.block_reason, *reasons]))
    return dataclasses.replace(outcome, verdicts=verdicts, status="blocked", block_reason=block,
                               history=list(outcome.history) + reasons)


def draft_replies(requests: Sequence[DraftRequest], llm: Generator | None = None,
                  policy: DraftingPolicy = DraftingPolicy(), cache: DraftCache | None = None) -> list[DraftOutcome]:
    """Draft and check a reply per request (packs from `reply_pack`), same order in and out.

    `cache`: earlier replies by cache key (`draft_batch`); a hit is reused instead of drafted again.
    """
    outcomes = draft_batch([DraftJob(r) for r in requests], ReplyGenerator(), llm, policy, cache)
    return [apply_service_checks(o, r.pack) for o, r in zip(outcomes, requests)]

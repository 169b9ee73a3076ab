"""Save offers: when a subscriber tries to cancel, the one offer that fixes why they are leaving.

Triggers are portal `cancel_attempt` events and open `cancel_request` tickets. For each,
the customer's pattern picks the resolution (first match wins):

    stated or shown cadence mismatch  -> a longer cycle (the offered cycle closest to how often they take coffee)
    product fatigue                   -> swap to an active coffee they have not had
    price sensitive                   -> a discount, the deepest the brief's price rules allow them
    none of those                     -> a pause
and value decides how generous it is: high-LTV customers get the brief's generous offers
(a deeper discount, the first bag of the new coffee free, or the generous discount when no
pattern applies). Every recommendation records its reason and every option the customer
qualifies for, so an agent can pick another (logged append-only in
`nextbest.save_offer_choices`). Like any playbook, a randomized holdout gets the standard
cancel flow; arms go to `nextbest.assignments` (playbook `save_offer`).

Pure functions over plain rows (a `customer_service_context` row as a dict) plus the few
functions at the bottom that read and write the warehouse (DuckDB or Snowflake, a chunk of
customers at a time: a customer's triggers are always in one chunk, so arms stay sticky).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from dagster_project.messaging.briefs import Brief, BriefError, Offer, load_briefs
from dagster_project.messaging.context_pack import Catalog
from dagster_project.messaging.generators.template import suggested_cadence
from dagster_project.resources.warehouse import IN_CHUNK, KeyRange, WarehouseInterface, WarehouseSession, session_on

PLAYBOOK_ID = "save_offer"
SAVE_BRIEF_FILE = Path(__file__).resolve().parent / "save_offer.yaml"
# Offers only high-LTV customers get: the "more generous resolution" (ids in save_offer.yaml).
GENEROUS_OFFERS = ("loyal_save20", "free_bag")
# Behaviour that shows a cadence mismatch without a stated reason (dbt's cadence_mismatch rule).
CADENCE_MIN_CYCLES, CADENCE_MIN_SKIPS, CADENCE_MAX_SKIPS = 6, 2, 4
# Product fatigue without a stated reason: this many deliveries and only one coffee ever.
FATIGUE_MIN_ORDERS = 10
STATED_PATTERNS = {"too_much_coffee": "cadence_mismatch", "price": "price_sensitive", "taste": "product_fatigue"}

RECOMMENDATIONS = "nextbest.save_offer_recommendations"
CHOICES = "nextbest.save_offer_choices"
ASSIGNMENTS = "nextbest.assignments"


@dataclass(frozen=True)
class SaveOption:
    """One resolution an agent may offer: an action (brief angle + CTA) and maybe a priced offer."""

    id: str
    angle: str
    cta: str
    label: str
    offer_id: str | None = None
    percent_off: float | None = None
    to_cadence_days: int | None = None
    product_id: str | None = None
    product_name: str | None = None


@dataclass(frozen=True)
class CancelTrigger:
    """A cancel attempt: a portal event or a cancellation ticket."""

    trigger_id: str
    kind: str  # portal_cancel_attempt | cancellation_ticket
    customer_id: str
    occurred_at: datetime
    stated_reason: str | None = None


@dataclass
class SaveRecommendation:
    """The option chosen for one trigger, why, and what else the customer qualifies for."""

    recommendation_id: str
    trigger: CancelTrigger
    pattern: str
    option: SaveOption
    reason: str
    allowed: list[SaveOption] = field(default_factory=list)
    arm: str | None = None  # set by assign_arms
    assignment_id: str | None = None


# --------------------------------------------------------------------------- brief


def load_save_brief(folder: str | Path | None = None) -> Brief:
    """The save-offer brief: `save_offer` from the briefs folder if a marketer put one there,
    else `service/save_offer.yaml`; validated with the playbook Brief model and brand voice."""
    briefs = load_briefs(folder)
    source = SAVE_BRIEF_FILE  # the file an error names: the marketer's when theirs is used
    if PLAYBOOK_ID in briefs.service:
        brief = briefs.service[PLAYBOOK_ID]
        source = next(iter(sorted(briefs.folder.glob(f"{PLAYBOOK_ID}.y*ml"))), briefs.folder / f"{PLAYBOOK_ID}.yaml")
    else:
        from dagster_project.messaging.briefs import parse_yaml
        brief = parse_yaml(SAVE_BRIEF_FILE, Brief)  # type: ignore[assignment]
        if brief.brand_voice != briefs.brand_voice.id:
            raise BriefError(f"{SAVE_BRIEF_FILE}: brand_voice: {brief.brand_voice!r} is not "
                             f"{briefs.brand_voice.id!r} (brand_voice.yaml in {briefs.folder})")
    missing = [o for o in GENEROUS_OFFERS if brief.offer(o) is None]
    angles = {a.id for a in brief.angles}
    missing += [a for a in ("longer_cycle", "price_discount", "product_swap", "loyal_thanks", "pause_instead")
                if a not in angles]
    if missing:
        raise BriefError(f"{source}: offers/angles: the save flow needs {missing}")
    return brief


# --------------------------------------------------------------------------- pure rules


def meets_rules(offer: Offer, tenure_months: int, orders: int) -> bool:
    """Whether a customer qualifies for an offer under its price rules."""
    return tenure_months >= offer.rules.min_tenure_months and orders >= offer.rules.min_orders


def products_tried(ctx: dict) -> set[str]:
    return {p for p in str(ctx.get("products_tried") or "").split(",") if p}


def coffees_tried(ctx: dict, catalog: Catalog | None) -> set[str]:
    """The products tried that are what they subscribe to: `products_tried` holds add-ons too (filters,
    a mug), which say nothing about being tired of their coffee. A product counts when the catalog
    offers it by subscription or files it with their subscription's product (a retired coffee), or
    when the catalog does not know it."""
    tried = products_tried(ctx)
    if catalog is None:
        return tried
    by_id = {p.product_id: p for p in catalog.products}
    current = by_id.get(str(ctx.get("subscription_product_id")))
    return {p for p in tried if p not in by_id or by_id[p].subscription_eligible
            or (current is not None and by_id[p].category == current.category)}


def _int(ctx: dict, key: str) -> int:
    value = ctx.get(key)
    try:
        return int(value) if value is not None else 0
    except (TypeError, ValueError):
        return 0


def is_high_value(ctx: dict) -> bool:
    return bool(ctx.get("high_ltv")) or ctx.get("lifetime_value_tier") == "high"


def _option(brief: Brief, option_id: str, angle: str, **kw) -> SaveOption:
    angle_def = next(a for a in brief.angles if a.id == angle)
    cta = brief.cta(angle_def.cta) if angle_def.cta else brief.ctas[0]
    label = kw.pop("label", None) or angle_def.description
    return SaveOption(option_id, angle, cta.id, label, **kw)


def swap_candidate(ctx: dict, catalog: Catalog):
    """An active subscription coffee the customer has not had, closest in price to theirs."""
    current = next((p for p in catalog.products if p.product_id == str(ctx.get("subscription_product_id"))), None)
    return catalog.closest_untried_coffee(products_tried(ctx) | {str(ctx.get("subscription_product_id") or "")},
                                          current)


def allowed_options(ctx: dict, brief: Brief, catalog: Catalog) -> list[SaveOption]:
    """Every resolution this customer qualifies for (agent discretion picks among these)."""
    options: list[SaveOption] = []
    tenure, orders = _int(ctx, "tenure_months"), _int(ctx, "lifetime_fulfilled_orders")
    active = ctx.get("subscription_status") == "active"
    cadence = _int(ctx, "cadence_days")
    if active and cadence:
        longer = suggested_cadence(cadence, _int(ctx, "recent_cycle_skips"), _int(ctx, "recent_cycles"),
                                   catalog.cadence_options)
        if longer:
            options.append(_option(brief, "longer_cycle", "longer_cycle", to_cadence_days=longer,
                                   label=f"Every {longer} days instead of every {cadence}"))
    swap = swap_candidate(ctx, catalog) if ctx.get("subscription_status") in ("active", "paused") else None
    generous_ok = is_high_value(ctx)
    if swap is not None:
        options.append(_option(brief, "product_swap", "product_swap", product_id=swap.product_id,
                               product_name=swap.name, label=f"Swap to {swap.name}"))
    for offer in brief.offers:
        if not meets_rules(offer, tenure, orders) or (offer.id in GENEROUS_OFFERS and not generous_ok):
            continue
        if offer.kind == "percent_off":
            angle = "loyal_thanks" if offer.id in GENEROUS_OFFERS else "price_discount"
            options.append(_option(brief, offer.id, angle, offer_id=offer.id, percent_off=offer.percent_off,
                                   label=offer.label))
        elif offer.kind == "free_item" and swap is not None:
            options.append(_option(brief, f"product_swap_{offer.id}", "product_swap", offer_id=offer.id,
                                   product_id=swap.product_id, product_name=swap.name,
                                   label=f"Swap to {swap.name}; {offer.label[0].lower()}{offer.label[1:]}"))
    paused = ctx.get("subscription_status") == "paused"
    options.append(_option(brief, "pause_instead", "pause_instead",
                           label="Keep it paused instead of cancelling" if paused else "Pause instead of cancelling"))
    return options


def has_live_subscription(ctx: dict) -> bool:
    """Whether a cancel attempt has something to save: a live (active or paused) subscription. A customer
    who already cancelled, or never subscribed, gets no save offer (and no holdout assignment)."""
    return ctx.get("subscription_status") in ("active", "paused")


def customer_pattern(ctx: dict, stated_reason: str | None, catalog: Catalog | None = None) -> tuple[str, str]:
    """Why this customer is leaving, as (pattern, evidence in words); stated reasons win. `catalog` tells
    coffees from add-ons for product fatigue (without it, every product tried counts)."""
    if stated_reason in STATED_PATTERNS:
        return STATED_PATTERNS[stated_reason], f"said {stated_reason.replace('_', ' ')!r} when cancelling"
    cycles, skips = _int(ctx, "recent_cycles"), _int(ctx, "recent_cycle_skips")
    if cycles >= CADENCE_MIN_CYCLES and CADENCE_MIN_SKIPS <= skips <= CADENCE_MAX_SKIPS:
        return "cadence_mismatch", f"skipped {skips} of the last {cycles} deliveries"
    if _int(ctx, "consecutive_skips") >= CADENCE_MIN_SKIPS:
        return "cadence_mismatch", f"skipped the last {_int(ctx, 'consecutive_skips')} deliveries in a row"
    coffees = coffees_tried(ctx, catalog)
    if len(coffees) == 1 and _int(ctx, "lifetime_fulfilled_orders") >= FATIGUE_MIN_ORDERS:
        return "product_fatigue", (f"has had only {ctx.get('subscription_product_name') or next(iter(coffees))} "
                                   f"over {_int(ctx, 'lifetime_fulfilled_orders')} deliveries")
    if ctx.get("last_cancel_reason") == "price":
        return "price_sensitive", "cancelled over price before"
    return "no_pattern", "no stated reason or pattern"


def choose_option(pattern: str, high_value: bool, options: Sequence[SaveOption]) -> tuple[SaveOption, str]:
    """The option for a pattern and value tier, and the words of the choice."""
    by_id = {o.id: o for o in options}
    discounts = sorted((o for o in options if o.percent_off), key=lambda o: -(o.percent_off or 0))
    pause = by_id["pause_instead"]
    if pattern == "cadence_mismatch" and "longer_cycle" in by_id:
        return by_id["longer_cycle"], "longer cycle for a cadence mismatch"
    if pattern == "product_fatigue":
        generous = next((o for o in options if o.angle == "product_swap" and o.offer_id), None)
        if high_value and generous:
            return generous, "swap to an untried coffee, first bag free for a high-value customer"
        if "product_swap" in by_id:
            return by_id["product_swap"], "swap to a coffee they have not had"
    if pattern == "price_sensitive" and discounts:
        # high-value customers qualify for the generous offers, so the deepest is theirs
        return discounts[0], f"the deepest discount the price rules allow ({discounts[0].percent_off:g}%)"
    if high_value:
        generous = next((o for o in discounts if o.offer_id in GENEROUS_OFFERS), None)
        if generous:
            return generous, "the generous resolution for a high-value customer"
    return pause, "a pause keeps the door open at no cost"


def recommend(trigger: CancelTrigger, ctx: dict, brief: Brief, catalog: Catalog) -> SaveRecommendation:
    """The save offer for one cancel attempt, with its reason (pure); a ValueError for a customer without a
    live subscription (`has_live_subscription`): there is nothing to save."""
    if not has_live_subscription(ctx):
        raise ValueError(f"{trigger.trigger_id}: customer {trigger.customer_id} has no live subscription "
                         f"(status {ctx.get('subscription_status') or 'none'}); there is nothing to save")
    options = allowed_options(ctx, brief, catalog)
    pattern, evidence = customer_pattern(ctx, trigger.stated_reason, catalog)
    high_value = is_high_value(ctx)
    option, why = choose_option(pattern, high_value, options)
    if pattern == "price_sensitive" and not option.percent_off:
        why = f"{_no_discount_yet(brief, ctx)}; {why}"
    value = f"lifetime value tier {ctx.get('lifetime_value_tier') or 'unknown'}"
    reason = f"{pattern.replace('_', ' ')}: {evidence}; {value} -> {why}"
    return SaveRecommendation(f"{PLAYBOOK_ID}:{trigger.trigger_id}", trigger, pattern, option, reason, options)


def _no_discount_yet(brief: Brief, ctx: dict) -> str:
    """Why a price-sensitive customer gets no discount: each discount's price rule they do not meet yet."""
    tenure, orders = _int(ctx, "tenure_months"), _int(ctx, "lifetime_fulfilled_orders")
    unmet = [f"{o.id} needs {o.rules.min_orders} orders and {o.rules.min_tenure_months} months"
             for o in brief.offers if o.kind == "percent_off" and o.id not in GENEROUS_OFFERS
             and not meets_rules(o, tenure, orders)]
    return (f"no discount allowed yet ({'; '.join(unmet)}; they have {orders} and {tenure})" if unmet
            else "no discount in the brief")


def assign_arm(unit_id: str, holdout_share: float, salt: str = PLAYBOOK_ID) -> str:
    """'holdout' for a stable random `holdout_share` of ids, else 'treatment' (same id, same arm)."""
    digest = hashlib.sha256(f"{salt}:{unit_id}".encode()).digest()
    return "holdout" if int.from_bytes(digest[:8], "big") / 2 ** 64 < holdout_share else "treatment"


def assign_arms(recs: Sequence[SaveRecommendation], prior: dict[str, tuple[str, str, datetime]],
                brief: Brief) -> list[dict]:
    """Give each recommendation an arm; returns the new `nextbest.assignments` rows.

    `prior` maps customer -> (assignment_id, arm, assigned_at) of their latest save_offer
    assignment. A customer who tries again within the brief's frequency window keeps their
    arm (re-randomizing them would mix the arms); otherwise the trigger is randomized.
    """
    window = timedelta(days=brief.frequency_cap.per_days)
    latest = dict(prior)
    rows = []
    for rec in sorted(recs, key=lambda r: (r.trigger.occurred_at, r.trigger.trigger_id)):
        t = rec.trigger
        held = latest.get(t.customer_id)
        if held and t.occurred_at - held[2] < window:
            rec.assignment_id, rec.arm = held[0], held[1]
            continue
        rec.assignment_id = rec.recommendation_id
        rec.arm = assign_arm(t.trigger_id, brief.holdout_share)
        latest[t.customer_id] = (rec.assignment_id, rec.arm, t.occurred_at)
        rows.append({"assignment_id": rec.assignment_id,
                     "campaign_id": f"pb-{PLAYBOOK_ID}-{t.occurred_at.date().isoformat()}",
                     "playbook_id": PLAYBOOK_ID, "customer_id": t.customer_id, "assigned_at": t.occurred_at,
                     "arm": rec.arm, "message_id": rec.recommendation_id if rec.arm == "treatment" else None})
    return rows


def check_agent_choice(allowed_option_ids: Iterable[str], chosen: str) -> str | None:
    """None when an agent may give this option, else why not (only options the customer qualifies for)."""
    allowed = list(allowed_option_ids)
    if chosen not in allowed:
        return f"option {chosen!r} is not allowed for this customer (allowed: {', '.join(allowed)})"
    return None


# --------------------------------------------------------------------------- warehouse

RECOMMENDATIONS_DDL = f"""
create table if not exists {RECOMMENDATIONS} (
  recommendation_id varchar, assignment_id varchar, arm varchar, customer_id varchar,
  trigger_kind varchar, trigger_id varchar, triggered_at timestamp, stated_reason varchar,
  pattern varchar, option_id varchar, angle varchar, cta varchar, offer_id varchar,
  percent_off double, to_cadence_days integer, product_id varchar, reason varchar,
  allowed_options varchar, as_of date, created_at timestamp
)
"""
CHOICES_DDL = f"""
create table if not exists {CHOICES} (
  choice_id varchar, recommendation_id varchar, customer_id varchar, agent_id varchar,
  recommended_option_id varchar, chosen_option_id varchar, note varchar, chosen_at timestamp
)
"""
# The same columns the simulator writes (SHARED_SEMANTICS), for warehouses without past campaigns.
ASSIGNMENTS_DDL = f"""
create table if not exists {ASSIGNMENTS} (
  assignment_id varchar, campaign_id varchar, playbook_id varchar, customer_id varchar,
  assigned_at timestamp, arm varchar, message_id varchar
)
"""

# Cancel attempts in the portal and open cancellation tickets between two moments (the `?`s:
# start, end, start, end). The stated reason stays JSON text here and is read in Python: the
# engines spell JSON access differently.
_TRIGGERS_SQL = """
select 'portal:' || portal_event_id as trigger_id, 'portal_cancel_attempt' as kind, customer_id, occurred_at,
       properties
from staging.stg_raw__portal_events
where event_type = 'cancel_attempt' and occurred_at >= ? and occurred_at < ?
union all
select 'ticket:' || ticket_id, 'cancellation_ticket', customer_id, created_at, cast(null as varchar)
from intermediate.int_ticket_history
where topic = 'cancel_request' and is_open_as_of and created_at >= ? and created_at < ?
"""


def ensure_tables(source) -> None:
    """Create the save-offer tables if missing. `source`: a warehouse resource or a DuckDB connection
    (both take DDL through `execute`, each statement on its own, outside any transaction)."""
    for statement in ("create schema if not exists nextbest", RECOMMENDATIONS_DDL, CHOICES_DDL, ASSIGNMENTS_DDL):
        source.execute(statement)


def _window(as_of: str, lookback_days: int) -> list[datetime]:
    """The triggers' bounds as parameters of `_TRIGGERS_SQL`: from `lookback_days` before as_of to its end."""
    end = datetime.combine(date.fromisoformat(as_of) + timedelta(days=1), datetime.min.time())
    start = end - timedelta(days=lookback_days + 1)
    return [start, end] * 2


def trigger_chunks(warehouse: WarehouseInterface, as_of: str, lookback_days: int,
                   batch_rows: int) -> list[KeyRange]:
    """Ranges of `batch_rows` customers who tried to cancel in the window (see `load_triggers`)."""
    return warehouse.key_ranges(f"select distinct customer_id from ({_TRIGGERS_SQL}) t order by customer_id",
                                batch_rows, _window(as_of, lookback_days))


def _stated_reason(properties: Any) -> str | None:
    """The `reason` a portal cancel attempt gave (its properties are JSON text), if any."""
    if properties is None or (isinstance(properties, float) and pd.isna(properties)):
        return None
    try:
        parsed = json.loads(properties) if isinstance(properties, str) else properties
    except ValueError:
        return None
    reason = parsed.get("reason") if isinstance(parsed, dict) else None
    return None if reason is None else str(reason)


def load_triggers(source, as_of: str, lookback_days: int = 1, chunk: KeyRange | None = None) -> list[CancelTrigger]:
    """Cancel attempts in the portal and open cancellation tickets of the last `lookback_days`
    days up to `as_of` (read from the dbt staging/intermediate models), of one chunk of customers
    when given. `source`: a warehouse resource, a session of one, or a DuckDB connection."""
    where, params = (f"where {IN_CHUNK}", chunk.bounds) if chunk else ("", [])
    with session_on(source) as tx:
        rows = tx.read_df(f"select * from ({_TRIGGERS_SQL}) t {where} order by occurred_at, trigger_id",
                          [*_window(as_of, lookback_days), *params])
    return [CancelTrigger(str(t), str(k), str(c), pd.Timestamp(o).to_pydatetime(), _stated_reason(p))
            for t, k, c, o, p in zip(rows["trigger_id"], rows["kind"], rows["customer_id"], rows["occurred_at"],
                                     rows["properties"])]


def prior_assignments(tx: WarehouseSession, first: str, last: str) -> dict[str, tuple[str, str, datetime]]:
    """customer -> (assignment_id, arm, assigned_at) of their latest save_offer assignment, for customer ids
    from `first` to `last`."""
    rows = tx.read_df(f"""select customer_id, max_by(assignment_id, assigned_at) as assignment_id,
                                 max_by(arm, assigned_at) as arm, max(assigned_at) as assigned_at
                          from {ASSIGNMENTS} where playbook_id = ? and {IN_CHUNK} group by customer_id""",
                      [PLAYBOOK_ID, first, last])
    return {str(c): (str(a), str(arm), pd.Timestamp(at).to_pydatetime())
            for c, a, arm, at in zip(rows["customer_id"], rows["assignment_id"], rows["arm"], rows["assigned_at"])}


def recommendation_row(rec: SaveRecommendation, as_of: str, created_at: datetime) -> dict[str, Any]:
    o, t = rec.option, rec.trigger
    return {"recommendation_id": rec.recommendation_id, "assignment_id": rec.assignment_id, "arm": rec.arm,
            "customer_id": t.customer_id, "trigger_kind": t.kind, "trigger_id": t.trigger_id,
            "triggered_at": t.occurred_at, "stated_reason": t.stated_reason, "pattern": rec.pattern,
            "option_id": o.id, "angle": o.angle, "cta": o.cta, "offer_id": o.offer_id,
            "percent_off": o.percent_off, "to_cadence_days": o.to_cadence_days, "product_id": o.product_id,
            "reason": rec.reason, "allowed_options": json.dumps([asdict(a) for a in rec.allowed]),
            "as_of": date.fromisoformat(as_of), "created_at": created_at}


def _typed(rows: Sequence[dict], types: dict[str, str]) -> pd.DataFrame:
    """Rows as a DataFrame whose columns keep their type when a chunk's values are all blank (so both
    engines stage text as text); dates and times as timestamps, which both engines load as such."""
    frame = pd.DataFrame(list(rows))
    for column in frame.columns:
        frame[column] = frame[column].astype(types.get(column, "string"))
    return frame


RECOMMENDATION_TYPES = {"triggered_at": "datetime64[us]", "as_of": "datetime64[us]", "created_at": "datetime64[us]",
                        "percent_off": "Float64", "to_cadence_days": "Int64"}


def record_recommendations(source, recs: Sequence[SaveRecommendation], brief: Brief, as_of: str,
                           created_at: datetime) -> dict[str, int]:
    """Append new recommendations and their assignments (triggers already recorded are skipped), in one
    transaction. `recs`: one chunk of customers (their triggers all here, so arms stay sticky);
    `source`: a warehouse resource or a DuckDB connection."""
    ensure_tables(source)
    fresh: list[SaveRecommendation] = []
    assignments: list[dict] = []
    if recs:
        customers = sorted({r.trigger.customer_id for r in recs})
        with session_on(source) as tx:
            seen = set(tx.read_df(f"select trigger_id from {RECOMMENDATIONS} where {IN_CHUNK}",
                                  [customers[0], customers[-1]])["trigger_id"])
            fresh = [r for r in recs if r.trigger.trigger_id not in seen]
            assignments = assign_arms(fresh, prior_assignments(tx, customers[0], customers[-1]), brief)
            if assignments:
                tx.write_df("nextbest", "assignments", _typed(assignments, {"assigned_at": "datetime64[us]"}))
            if fresh:
                tx.write_df("nextbest", "save_offer_recommendations", _typed(
                    [recommendation_row(r, as_of, created_at) for r in fresh], RECOMMENDATION_TYPES))
    arms = [r.arm for r in fresh]
    return {"recommended": len(fresh), "already_recorded": len(recs) - len(fresh),
            "new_assignments": len(assignments), "treatment": arms.count("treatment"),
            "holdout": arms.count("holdout")}


def record_agent_choice(source, recommendation_id: str, chosen_option_id: str, agent_id: str,
                        note: str | None = None, now: datetime | None = None) -> dict[str, Any]:
    """Log an agent's pick (append-only); raises ValueError naming the allowed options.

    `source`: a warehouse resource or a DuckDB connection."""
    ensure_tables(source)
    with session_on(source) as tx:
        found = tx.read_df(f"select customer_id, option_id, allowed_options, arm from {RECOMMENDATIONS} "
                           f"where recommendation_id = ?", [recommendation_id])
        if found.empty:
            raise ValueError(f"no recommendation {recommendation_id!r} in {RECOMMENDATIONS}")
        customer_id, recommended, allowed_json, arm = found.iloc[0].tolist()
        if arm == "holdout":
            raise ValueError(f"{recommendation_id} is in the holdout: the standard cancel flow applies, no offer")
        problem = check_agent_choice([o["id"] for o in json.loads(allowed_json)], chosen_option_id)
        if problem:
            raise ValueError(f"{recommendation_id}: {problem}")
        moment = now or datetime.utcnow()
        choice = {"choice_id": hashlib.sha256(f"{recommendation_id}|{agent_id}|{moment.isoformat()}".encode())
                  .hexdigest()[:24], "recommendation_id": recommendation_id, "customer_id": customer_id,
                  "agent_id": agent_id, "recommended_option_id": recommended, "chosen_option_id": chosen_option_id,
                  "note": note, "chosen_at": moment}
        tx.write_df("nextbest", "save_offer_choices", _typed([choice], {"chosen_at": "datetime64[us]"}))
    return choice

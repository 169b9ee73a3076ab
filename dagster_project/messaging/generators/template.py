"""The default, offline generator: one Jinja template per angle (`templates/<angle>.j2`).

A template sees the customer's situation as named slots (`say('next_charge')`
prints "March 12" and cites `subscription:S1:next_charge_at`), their tone
(`brief` / `warm`), tenure, the eligible offer, and `pick(...)`, which varies
wording across a batch yet always picks the same words for the same customer.
Angles without a template of their own use `_generic.j2`.
"""

from __future__ import annotations

import hashlib
import random
import re
import zlib
from pathlib import Path
from typing import NamedTuple

import jinja2
import jinja2.compiler
import jinja2.ext
import jinja2.nodes

from dagster_project.messaging.briefs import Brief, Offer
from dagster_project.messaging.context_pack import TICKET_TOPICS, Catalog, ContextPack, months_between
from dagster_project.messaging.generators.base import Draft, DraftRequest, Generator

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")
NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}
# A past date this many months before the pack's day or more is said with its year ("January 20, 2024").
DATE_YEAR_AFTER_MONTHS = 10
# Ticket topics that were our fault, so a message apologises rather than thanks.
PROBLEM_TOPICS = {TICKET_TOPICS[t] for t in ("delivery_delay", "damaged_package", "billing", "payment_issue")}
_PARAGRAPHS = re.compile(r"\n\s*\n")
_TAGS = re.compile(r"{%.*?%}")
_OWNED = re.compile(r"\nproduct:([^:\n]*):")  # product:<id>:... facts: products the customer has had
_DELIVERED = re.compile(r"\norder:([^:\n]*):delivered_at(?=\n)")  # orders the pack has a delivery day for
_ORDERS = re.compile(r"\norder:([^:\n]*):status(?=\n)")


def say_date(iso: str) -> str:
    """'2026-03-12' -> 'March 12' (the form the guardrails parse back)."""
    return f"{MONTHS[int(iso[5:7]) - 1]} {int(iso[8:10])}"


def say_past_date(iso: str, as_of: str) -> str:
    """'2025-12-30' -> 'December 30'; with its year when long enough ago to be misread ('January 20, 2024')."""
    if months_between(iso, as_of) < DATE_YEAR_AFTER_MONTHS:
        return say_date(iso)
    return f"{say_date(iso)}, {iso[:4]}"


def say_month(iso: str) -> str:
    """'2024-01-10' -> 'January 2024'."""
    return f"{MONTHS[int(iso[5:7]) - 1]} {iso[:4]}"


class Slot(NamedTuple):
    """A phrase a template may print, and the fact ids it rests on (a tuple: a draft makes a dozen)."""

    text: str
    facts: tuple[str, ...]


def eligible_offer(brief: Brief, pack: ContextPack) -> Offer | None:
    """The brief's first offer whose price rules this customer meets, if any."""
    orders = int(pack.value(f"customer:{pack.customer_id}:fulfilled_orders", 0) or 0)
    for offer in brief.offers:
        if pack.tenure_months >= offer.rules.min_tenure_months and orders >= offer.rules.min_orders:
            return offer
    return None


def suggested_cadence(current: int, skips: int, window: int, options: tuple[int, ...]) -> int | None:
    """The offered cycle closest to how often they actually take coffee (longer than now)."""
    longer = [d for d in sorted(options) if d > current]
    if not longer:
        return None
    taken = max(window - skips, 1)
    ideal = current * window / taken if window else current * 1.5
    return next((d for d in longer if d >= ideal), longer[-1])


def situation(pack: ContextPack, catalog: Catalog, seed: int, currency: str = "$") -> dict[str, Slot]:
    """Named phrases about this customer's real situation, each tied to its facts; prices in `currency`
    (the brand voice's symbol, the one the guardrails read prices by)."""
    cid, slots = pack.customer_id, {}
    f = pack.facts
    get = f.get

    def value(fact_id: str, default=None):
        fact = get(fact_id)
        return default if fact is None else fact.value

    # What is found by id pattern rather than by id, from one string of all ids (faster than a loop).
    ids = "\n" + "\n".join(f) + "\n"
    owned = set(_OWNED.findall(ids))
    addon, end = None, ids.find(":one_time\n")
    while end >= 0:  # the first one-time add-on item (ids of product facts never end so)
        start = ids.rfind("\n", 0, end) + 1
        if not ids.startswith("product:", start):
            addon = ids[start:end + 9]
            break
        end = ids.find(":one_time\n", end + 1)

    def put(name: str, text, *fact_ids: str) -> None:
        if text is not None:
            slots[name] = Slot(str(text), fact_ids)

    put("first_name", pack.first_name, f"customer:{cid}:first_name")
    since = f"customer:{cid}:since"
    if since in f:
        put("since", say_month(f[since].value), since)
    skips_id, window_id = f"customer:{cid}:recent_skips", f"customer:{cid}:recent_deliveries"
    sid = pack.current_subscription_id
    if sid:
        base = f"subscription:{sid}"
        product, bags, cadence_id, price = f"{base}:product", f"{base}:bags", f"{base}:cadence_days", f"{base}:price"
        next_charge, cancelled = f"{base}:next_charge_at", f"{base}:cancelled_at"
        if product in f:
            name = f[product].value
            put("product", name, product)
            listed = _shelf(catalog).by_name.get(str(name).lower())
            # Said to be there to come back to only when the live catalog sells it: a retired coffee is history.
            if listed is not None and listed.active:
                put("product_on_shelf", name, product, f"catalog:{listed.product_id}:name")
            elif listed is not None:
                put("product_retired", name, product, f"catalog:{listed.product_id}:name")
        if bags in f:
            n = f[bags].value
            put("bags", f"{NUMBER_WORDS.get(n, n)} bag{'s' if n != 1 else ''}", bags)
        if cadence_id in f:
            put("cadence", f"every {f[cadence_id].value} days", cadence_id)
        if price in f:
            put("price", f"{currency}{f[price].value}", price)
        status = value(f"{base}:status")
        if next_charge in f and status == "active":
            put("next_charge", say_date(f[next_charge].value), next_charge)
        if status == "paused":  # nothing is on its way: the copy talks of restarting, never of the next delivery
            put("paused", "paused", f"{base}:status")
        if cancelled in f:
            put("cancelled_on", say_past_date(f[cancelled].value, pack.as_of), cancelled)
        reason = value(f"{base}:cancel_reason")
        if reason:
            put("cancel_reason", reason, f"{base}:cancel_reason")
        # Another coffee to suggest when theirs is no longer sold or was not to their taste.
        if reason == "taste" or ("product" in slots and "product_on_shelf" not in slots):
            current = value(product)
            swap = catalog.closest_untried_coffee(owned, _shelf(catalog).by_name.get(str(current).lower())
                                                  if current else None)
            if swap is not None:
                put("swap_item", swap.name, f"catalog:{swap.product_id}:name")
                put("swap_price", f"{currency}{swap.price}", f"catalog:{swap.product_id}:price")
        cadence = value(cadence_id)
        skips = value(skips_id, 0) or 0
        window = value(window_id, 0) or 0
        if skips:
            put("skips", _skipped(int(skips), int(window)), skips_id, window_id)
        if cadence:
            longer = suggested_cadence(int(cadence), int(skips), int(window), catalog.cadence_options)
            if longer:
                put("longer_cadence", f"every {longer} days", f"catalog:cadence:{longer}")
    fav = pack.favourite_product_id
    if fav:
        put("favourite", value(f"product:{fav}:name"), f"product:{fav}:name")
        times = value(f"product:{fav}:times_ordered", 0)
        if times and times > 1:
            put("favourite_times", f"{times} deliveries", f"product:{fav}:times_ordered")
    oid = pack.last_delivered_order_id
    if oid:
        put("last_delivery", say_past_date(f[f"order:{oid}:delivered_at"].value, pack.as_of),
            f"order:{oid}:delivered_at")
    orders = value(f"customer:{cid}:fulfilled_orders", 0)
    delivered = _DELIVERED.findall(ids) if orders else []
    # Their first bag only when the pack holds every fulfilled order (it keeps the newest few).
    if delivered and sum(value(f"order:{o}:status") == "fulfilled" for o in _ORDERS.findall(ids)) >= orders:
        first = min(delivered, key=lambda o: f[f"order:{o}:delivered_at"].value)
        put("first_delivery", say_past_date(f[f"order:{first}:delivered_at"].value, pack.as_of),
            f"order:{first}:delivered_at")
    if orders:
        put("orders", f"{orders} deliver{'y' if orders == 1 else 'ies'}", f"customer:{cid}:fulfilled_orders")
    if addon:
        product_fact = addon.rsplit(":", 1)[0] + ":product"
        put("addon", value(product_fact), product_fact)
    tid = pack.last_ticket_id
    if tid:
        topic_id = f"ticket:{tid}:topic"
        topic = value(topic_id)
        put("ticket_topic", topic, topic_id)
        if topic in PROBLEM_TOPICS:
            put("ticket_problem", topic, topic_id)
        resolved = f"ticket:{tid}:resolved_at"
        if resolved in f:
            put("ticket_resolved", say_past_date(f[resolved].value, pack.as_of), resolved)
    extras = [p for p in _shelf(catalog).extras if p.product_id not in owned]
    if extras:
        pick = extras[seed % len(extras)]
        put("bundle_item", pick.name, f"catalog:{pick.product_id}:name")
        put("bundle_price", f"{currency}{pick.price}", f"catalog:{pick.product_id}:price")
    return slots


def _skipped(skips: int, window: int) -> str:
    """What "you've skipped ..." ends with: '3 of your last 6 deliveries', 'your last delivery'."""
    if window == 1:
        return "your last delivery"
    if skips == window:
        return f"{'both' if window == 2 else 'all'} of your last {window} deliveries"
    return f"{skips} of your last {window} deliveries"


class _Shelf(NamedTuple):
    """What a template may suggest from one catalog, worked out once per catalog."""

    extras: list  # active accessories and equipment
    coffees: list  # active products sold by subscription
    by_name: dict  # every product (active or not) by its lower-cased name


_SHELVES: dict[int, tuple[Catalog, _Shelf]] = {}


def _shelf(catalog: Catalog) -> _Shelf:
    """The catalog's `_Shelf`, computed once per catalog."""
    hit = _SHELVES.get(id(catalog))
    if hit is None or hit[0] is not catalog:
        if len(_SHELVES) > 32:
            _SHELVES.clear()
        live = [p for p in catalog.products if p.active]
        hit = _SHELVES[id(catalog)] = (catalog, _Shelf(
            [p for p in live if p.category in ("accessory", "equipment")],
            [p for p in live if p.subscription_eligible],
            {str(p.name).lower(): p for p in catalog.products}))
    return hit[1]


class _Render:
    """Per-draft helpers exposed to a template; records the facts it prints."""

    def __init__(self, slots: dict[str, Slot], seed: int, offer: Offer | None):
        self.slots, self.cited, self.rng = slots, [], random.Random(seed)
        self.offer, self.offer_used = offer, False

    def offer_text(self) -> str:
        """The offer in words ('15% off'); marks the draft as carrying it."""
        self.offer_used = True
        if self.offer.kind == "percent_off":
            return f"{self.offer.percent_off:g}% off"
        return self.offer.label

    def use_offer(self) -> str:
        """Mark the offer as carried by the draft when the template words it itself."""
        self.offer_used = True
        return ""

    def hello(self) -> str:
        name = self.say("first_name") if "first_name" in self.slots else "there"
        return f"{self.pick('Hi', 'Hi', 'Hello')} {name},"

    def say(self, name: str) -> str:
        slot = self.slots[name]
        for fid in slot.facts:
            if fid not in self.cited:
                self.cited.append(fid)
        return slot.text

    def has(self, *names: str) -> bool:
        return names[0] in self.slots if len(names) == 1 else self.slots.keys() >= set(names)

    def pick(self, *options: str) -> str:
        return options[self.rng.randrange(len(options))]


class _KeepSentenceBreaks(jinja2.ext.Extension):
    """Keep the line break after a tag that ends a line of text.

    `trim_blocks` drops the newline after every tag, which is right for lines
    that hold only tags but glues "...better.{% endif %}" to the next sentence.
    """

    def preprocess(self, source: str, name: str | None, filename: str | None = None) -> str:
        lines = source.split("\n")
        for i, line in enumerate(lines):
            if line.rstrip().endswith("%}") and _TAGS.sub("", line).strip():
                lines[i] = line.rstrip() + " "
        return "\n".join(lines)


# The names under which `generate` hands a template the `_Render` helpers.
HELPERS = frozenset({"say", "has", "pick", "hello", "offer_text", "use_offer"})


class _DirectHelperCalls(jinja2.compiler.CodeGenerator):
    """Compiles a call of a helper (`say('product')`) to a plain Python call.

    Jinja routes every call through `Context.call`, which inspects the callee for
    `pass_context` each time; the helpers never take a context, and that detour was a
    third of the rendering time. Every other call (macros, globals) keeps Jinja's route.
    """

    def visit_Call(self, node: jinja2.nodes.Call, frame, forward_caller: bool = False) -> None:
        if not (isinstance(node.node, jinja2.nodes.Name) and node.node.name in HELPERS) or forward_caller:
            return super().visit_Call(node, frame, forward_caller=forward_caller)
        self.write("(")
        self.visit(node.node, frame)
        self.write(")(*()")  # `signature` writes each argument after a comma
        self.signature(node, frame)
        self.write(")")


def _tidy(text: str) -> str:
    """Lines of one paragraph run together; blank lines separate paragraphs."""
    # " ".join(p.split()) squeezes whitespace like re.sub(r"\s+", " ", p).strip(), only faster.
    text = text.strip()
    if "\n" not in text:  # a subject or preheader: one paragraph
        return " ".join(text.split())
    paragraphs = (" ".join(p.split()) for p in _PARAGRAPHS.split(text))
    return "\n\n".join(p for p in paragraphs if p)


_COMPILED: dict[tuple, dict[str, jinja2.Template | jinja2.TemplateError]] = {}


def compiled_templates(templates_dir: Path | str) -> dict[str, jinja2.Template | jinja2.TemplateError]:
    """Every `<angle>.j2` of a folder, compiled: once per process, again only when a file changes.

    A template that does not compile is kept as its error, raised when a draft needs that
    angle, so one broken template blocks its drafts and not the generator.
    """
    folder = Path(templates_dir)
    files = sorted(folder.glob("*.j2"))
    key = (str(folder.resolve()), tuple((f.name, f.stat().st_mtime_ns) for f in files))
    templates = _COMPILED.get(key)
    if templates is None:
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(folder)),
            undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True, autoescape=False,
            extensions=[_KeepSentenceBreaks],
        )
        env.code_generator_class = _DirectHelperCalls
        templates = {}
        for f in files:
            try:
                templates[f.stem] = env.get_template(f.name)
            except jinja2.TemplateError as error:
                templates[f.stem] = error
        if len(_COMPILED) > 16:  # folders edited over a long session: keep the newest
            _COMPILED.clear()
        _COMPILED[key] = templates
    return templates


def templates_digest(templates_dir: Path | str) -> str:
    """A short sha256 of a folder's `*.j2` files and of this module (which fills their slots): part of the
    generator's version, so a changed wording is drafted anew rather than served from the draft cache."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    for f in sorted(Path(templates_dir).glob("*.j2")):
        digest.update(f.name.encode() + b"\0" + f.read_bytes())
    return digest.hexdigest()[:12]


class TemplateGenerator(Generator):
    """Per-angle Jinja templates; deterministic per customer, fully offline."""

    name = "template"
    version = "template-1"  # with the templates' digest appended per instance (`templates_digest`)
    # The templates say dates as dates ("arrived on November 2"), never "today". A past date gains its year
    # once it is DATE_YEAR_AFTER_MONTHS old: the pack's tenure changes monthly, so a draft is redone in time.
    reads_the_day = False

    def __init__(self, templates_dir: Path | str = TEMPLATES_DIR):
        self.templates = compiled_templates(templates_dir)  # compiled here, not while drafting
        self.version = f"{type(self).version}+{templates_digest(templates_dir)}"
        # Every draft's context holds the template's globals: copied from a plain dict, not Jinja's ChainMap,
        # that costs a fraction.
        self._globals = {t: dict(t.globals) for t in self.templates.values() if isinstance(t, jinja2.Template)}

    def generic_angles(self, briefs) -> list[str]:
        """`playbook.angle` of each brief angle without a template of its own (drafted with `_generic.j2`)."""
        return [f"{playbook}.{angle.id}" for playbook, brief in sorted(briefs.playbooks.items())
                for angle in brief.angles if angle.id not in self.templates]

    def _template(self, angle: str) -> jinja2.Template:
        template = self.templates.get(angle, self.templates.get("_generic"))
        if template is None:
            raise jinja2.TemplateNotFound("_generic.j2")
        if isinstance(template, jinja2.TemplateError):
            raise template
        return template

    def slots(self, request: DraftRequest, seed: int) -> dict[str, Slot]:
        """The phrases a template may print for this request (`situation`); a generator with templates
        of its own (the support replies) adds the ones they need."""
        return situation(request.pack, request.catalog, seed, request.voice.currency_symbol)

    def choose_angle(self, request: DraftRequest, seed: int) -> str:
        """One of the brief's angles, the same one for the same customer."""
        angles = request.brief.angles
        return angles[seed % len(angles)].id

    def generate(self, request: DraftRequest) -> Draft:
        pack, brief, voice = request.pack, request.brief, request.voice
        seed = zlib.crc32(f"{pack.customer_id}|{brief.id}".encode())
        slots = self.slots(request, seed)
        angle_id = self.choose_angle(request, seed)
        angle = next(a for a in brief.angles if a.id == angle_id)
        cta = brief.cta(angle.cta) if angle.cta else brief.ctas[0]
        offer = eligible_offer(brief, pack)
        helper = _Render(slots, seed, offer)
        template = self._template(angle_id)
        context = template.new_context({  # shared: this dict, globals included, is the context's own
            **self._globals[template],
            "say": helper.say, "has": helper.has, "pick": helper.pick, "hello": helper.hello,
            "offer_text": helper.offer_text, "use_offer": helper.use_offer,
            "brief": pack.tone == "brief", "warm": pack.tone == "warm",
            "tenure_months": pack.tenure_months, "offer": offer,
            "cta_label": cta.label, "store": voice.store_name, "purpose": brief.purpose,
        }, shared=True)
        parts = {name: _tidy("".join(template.blocks[name](context))) for name in ("subject", "preheader", "body")}
        body = f"{parts['body']}\n\n{voice.sign_off}"
        return Draft(
            subject=parts["subject"], preheader=parts["preheader"], body=body, cta=cta.id,
            cited_fact_ids=helper.cited, offer_id=offer.id if helper.offer_used else None, angle=angle_id,
            generator=self.name, generator_version=self.version,
        )

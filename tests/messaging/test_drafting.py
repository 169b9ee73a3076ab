"""Generate -> check -> retry with feedback -> template fallback -> blocked; cache and cost control."""

from __future__ import annotations

import dataclasses
import json

from dagster_project.messaging.drafting import (DraftingPolicy, DraftJob, MemoryDraftCache, cache_key, draft_batch,
                                                generator_key, summarize)
from dagster_project.messaging.context_pack import Catalog
from dagster_project.messaging.generators.base import DraftRequest, Generator
from dagster_project.messaging.generators.openai_chat import OpenAIGenerator, OpenAISettings, build_messages
from dagster_project.messaging.generators.template import TemplateGenerator
from dagster_project.messaging.guardrails import check_draft, passed
from tests.messaging.fake_llm import FakeLLM, grounded_reply, hallucinating_reply


class Counting(Generator):
    """Wraps a generator and counts calls (to prove cache hits skip generation)."""

    def __init__(self, inner, mutate=None):
        self.inner, self.calls, self.mutate = inner, 0, mutate
        self.name, self.version, self.reads_the_day = inner.name, inner.version, inner.reads_the_day

    def generate(self, request):
        self.calls += 1
        draft = self.inner.generate(request)
        return self.mutate(draft) if self.mutate else draft


def _jobs(packs, briefs, catalog, playbook="re_engagement", value=None):
    return [DraftJob(DraftRequest(p, briefs.get(playbook), briefs.brand_voice, catalog), value) for p in packs.values()]


def _llm(fake, **kw):
    return OpenAIGenerator(OpenAISettings(model="fake", base_url=fake.base_url, api_key="k",
                                          requests_per_minute=60_000, backoff_seconds=0.01, **kw))


def test_template_drafts_go_to_review_and_cache_hits_skip_regeneration(packs, briefs, catalog):
    template, cache = Counting(TemplateGenerator()), MemoryDraftCache()
    first = draft_batch(_jobs(packs, briefs, catalog), template, cache=cache)
    assert [o.status for o in first] == ["pending_review"] * 3 and template.calls == 3
    again = draft_batch(_jobs(packs, briefs, catalog), template, cache=cache)
    assert template.calls == 3 and all(o.cached for o in again)
    assert [o.draft.body for o in again] == [o.draft.body for o in first]
    # a changed pack is a new key: only that customer is redrafted
    changed = dict(packs, C001=dataclasses.replace(packs["C001"], tenure_months=26))
    third = draft_batch(_jobs(changed, briefs, catalog), template, cache=cache)
    assert template.calls == 4 and [o.cached for o in third].count(False) == 1


def test_cache_key_follows_the_brief_the_generator_and_every_fact(packs, briefs, catalog):
    request = _jobs(packs, briefs, catalog)[0].request
    key = cache_key(request, "v1")
    assert cache_key(dataclasses.replace(request), "v1") == key  # same content, another request object
    assert cache_key(request, "v2") != key
    other_brief = request.brief.model_copy(update={"purpose": request.brief.purpose + " Now shorter."})
    assert cache_key(dataclasses.replace(request, brief=other_brief), "v1") != key
    assert cache_key(request, "v1") == key  # the first brief's encoding is not overwritten by the second
    fact_id = next(i for i, f in request.pack.facts.items() if f.kind == "money")
    facts = dict(request.pack.facts, **{fact_id: request.pack.facts[fact_id]._replace(value="0.01")})
    assert cache_key(dataclasses.replace(request, pack=dataclasses.replace(request.pack, facts=facts)), "v1") != key


def on_day(packs, as_of: str, fresh_at: str) -> dict:
    """The packs as read on `as_of`, the warehouse's newest data being of `fresh_at`."""
    return {c: dataclasses.replace(p, as_of=as_of, data_fresh_at=fresh_at) for c, p in packs.items()}


def test_the_template_key_leaves_out_the_day_and_a_key_for_a_generator_that_reads_it_does_not(packs, briefs, catalog):
    request = _jobs(packs, briefs, catalog)[0].request
    next_day = dataclasses.replace(request, pack=dataclasses.replace(request.pack, as_of="2026-02-23",
                                                                     data_fresh_at="2026-02-22"))
    assert not TemplateGenerator.reads_the_day and OpenAIGenerator.reads_the_day  # its prompt says "today"
    assert generator_key(next_day, TemplateGenerator()) == generator_key(request, TemplateGenerator())
    assert cache_key(next_day, "v1", dated=True) != cache_key(request, "v1", dated=True)
    renamed = dataclasses.replace(request, pack=dataclasses.replace(request.pack, first_name="Someone"))
    assert generator_key(renamed, TemplateGenerator()) != generator_key(request, TemplateGenerator())


def test_a_template_draft_is_reused_the_next_day_and_blocked_once_its_data_is_too_old(packs, briefs, catalog):
    template, cache = Counting(TemplateGenerator()), MemoryDraftCache()
    first = draft_batch(_jobs(on_day(packs, "2026-03-02", "2026-03-01"), briefs, catalog), template, cache=cache)
    assert [o.status for o in first] == ["pending_review"] * 3 and template.calls == 3
    next_day = draft_batch(_jobs(on_day(packs, "2026-03-03", "2026-03-02"), briefs, catalog), template, cache=cache)
    assert template.calls == 3 and all(o.cached and o.status == "pending_review" for o in next_day)
    assert [o.draft.body for o in next_day] == [o.draft.body for o in first]
    # re_engagement allows data 3 days old: a month on, with nothing newer, the same drafts are blocked
    later = draft_batch(_jobs(on_day(packs, "2026-04-01", "2026-03-02"), briefs, catalog), template, cache=cache)
    assert template.calls == 3 and all(o.cached and o.status == "blocked" for o in later)
    assert all(o.block_reason == "staleness: newest order data is 30 days old; the brief allows 3" for o in later)
    assert [v.check for v in later[0].verdicts if not v.passed] == ["staleness"]
    assert all(v.passed for o in next_day for v in o.verdicts)  # the later day changed no earlier outcome


def test_a_cached_draft_is_redrafted_when_the_catalog_it_could_quote_changes(packs, briefs, catalog):
    """Ben's expansion draft offers the kettle at $59.00: a dearer or withdrawn kettle must not reuse it."""
    template, cache = Counting(TemplateGenerator()), MemoryDraftCache()

    def draft(on_catalog):
        return draft_batch(_jobs({"C002": packs["C002"]}, briefs, on_catalog, "expansion"), template, cache=cache)[0]

    def kettle(**change):
        return dataclasses.replace(catalog, products=tuple(
            dataclasses.replace(p, **change) if p.name == "Gooseneck Kettle" else p for p in catalog.products))

    first = draft(catalog)
    assert first.status == "pending_review" and "Gooseneck Kettle" in first.draft.body and "$59.00" in first.draft.body
    assert draft(Catalog.from_dict(catalog.to_dict())).cached  # the same catalog read again keeps the key
    for changed in (kettle(price="69.00"), kettle(active=False), kettle(name="Swan Kettle"),
                    dataclasses.replace(catalog, cadence_options=(*catalog.cadence_options, 84))):
        again = draft(changed)
        assert not again.cached and again.status == "pending_review"
        assert passed(check_draft(again.draft, packs["C002"], briefs.get("expansion"), briefs.brand_voice, changed))
    assert template.calls == 5
    assert "$69.00" in draft(kettle(price="69.00")).draft.body and template.calls == 5  # the new draft is cached


def test_an_llm_draft_is_reused_the_same_day_only(packs, briefs, catalog):
    cache = MemoryDraftCache()
    with FakeLLM(reply=grounded_reply) as fake:
        llm = _llm(fake)
        first = draft_batch(_jobs(on_day(packs, "2026-03-02", "2026-03-01"), briefs, catalog), TemplateGenerator(), llm,
                            cache=cache)
        sent = len(fake.requests)
        again = draft_batch(_jobs(on_day(packs, "2026-03-02", "2026-03-01"), briefs, catalog), TemplateGenerator(), llm,
                            cache=cache)
        assert len(fake.requests) == sent and all(o.cached for o in again)
        next_day = draft_batch(_jobs(on_day(packs, "2026-03-03", "2026-03-02"), briefs, catalog), TemplateGenerator(),
                               llm, cache=cache)
    assert all(o.generator == "openai" and o.status == "pending_review" for o in first)
    assert len(fake.requests) == 2 * sent and not any(o.cached for o in next_day)


def test_the_llm_is_shown_the_catalog_by_the_ids_it_may_cite(packs, briefs, catalog):
    request = _jobs(packs, briefs, catalog, "expansion")[0].request
    shown = json.loads(build_messages(request)[1]["content"])["catalog"]
    assert shown["catalog:P005:name"] == "Gooseneck Kettle" and shown["catalog:P005:price"] == "59.00"
    assert shown["catalog:cadence:56"] == 56
    assert set(shown) <= set(catalog.facts())  # every id shown is one the citations check accepts
    assert not any(fid.startswith("catalog:P008:") for fid in shown)  # the gift box is not on sale


def test_llm_retries_with_the_guardrail_reasons_as_feedback(packs, briefs, catalog):
    with FakeLLM(reply=hallucinating_reply) as fake:
        outcomes = draft_batch(_jobs(packs, briefs, catalog), TemplateGenerator(), _llm(fake))
    assert all(o.status == "pending_review" and o.generator == "openai" and o.attempts == 2 for o in outcomes)
    assert any("Ethiopian Yirgacheffe" in h for h in outcomes[0].history)
    feedback = [r for r in fake.requests if len(r["messages"]) == 3]
    assert len(feedback) == 3 and "$9.99" in feedback[0]["messages"][2]["content"]
    assert outcomes[0].usage.requests == 2 and outcomes[0].usage.cost_usd > 0


def test_llm_that_never_complies_falls_back_to_the_template(packs, briefs, catalog):
    def bad(request):
        draft = grounded_reply(request)
        draft["body"] += "\nWe noticed you opened our last email."
        return draft

    with FakeLLM(reply=bad) as fake:
        fake.malformed = 1
        outcomes = draft_batch(_jobs(packs, briefs, catalog), TemplateGenerator(), _llm(fake),
                               DraftingPolicy(max_llm_attempts=2))
    assert all(o.status == "pending_review" and o.generator == "template" and o.fell_back for o in outcomes)
    assert all(o.attempts == 2 for o in outcomes)
    assert any("not valid JSON" in h for o in outcomes for h in o.history)
    assert any("surveillance" in h for h in outcomes[0].history)


def test_when_the_template_also_fails_the_draft_is_blocked_with_its_reason(packs, briefs, catalog):
    shouty = Counting(TemplateGenerator(), mutate=lambda d: dataclasses.replace(d, subject=d.subject + "!!!"))
    outcomes = draft_batch(_jobs(packs, briefs, catalog), shouty)
    assert all(o.status == "blocked" for o in outcomes)
    assert "exclamation marks" in outcomes[0].block_reason
    assert summarize(outcomes)["by_status"] == {"blocked": 3}


def test_value_gate_and_budget_keep_llm_spend_in_check(packs, briefs, catalog):
    with FakeLLM(reply=grounded_reply) as fake:
        jobs = _jobs(packs, briefs, catalog, value=0.5)
        jobs[0].expected_value = 5.0
        gated = draft_batch(jobs, TemplateGenerator(), _llm(fake), DraftingPolicy(value_threshold=1.0))
        assert [o.generator for o in gated] == ["openai", "template", "template"]
        sent = len(fake.requests)
        # A request costs about $1 at these prices: a $0.01 budget cannot cover a single one.
        budget = draft_batch(_jobs(packs, briefs, catalog), TemplateGenerator(),
                             _llm(fake, input_usd_per_mtok=1000.0), DraftingPolicy(budget_usd=0.01))
        assert len(fake.requests) == sent  # nothing was sent, so nothing was spent
    assert summarize(budget)["total_cost_usd"] == 0
    assert all(o.generator == "template" and o.fell_back and o.status == "pending_review" for o in budget)
    assert all(o.history[0].startswith("budget:") and o.attempts == 0 for o in budget)


def test_a_budget_is_never_overspent_and_the_rest_get_template_drafts(packs, briefs, catalog):
    jobs = [DraftJob(DraftRequest(p, brief, briefs.brand_voice, catalog))
            for brief in briefs.playbooks.values() for p in packs.values()]
    with FakeLLM(reply=grounded_reply, latency=0.02) as fake:
        llm = _llm(fake, input_usd_per_mtok=1.0, output_usd_per_mtok=2.0, max_concurrency=8, tokens_per_minute=1e9)
        budget = 2 * llm.worst_case_cost(build_messages(jobs[0].request))  # far less than the batch would cost
        outcomes = draft_batch(jobs, TemplateGenerator(), llm, DraftingPolicy(budget_usd=budget))
        sent = len(fake.requests)
    assert 0 < summarize(outcomes)["total_cost_usd"] <= budget
    assert sent == sum(o.usage.requests for o in outcomes)  # every request sent is paid for in the total
    by_llm = [o for o in outcomes if o.generator == "openai"]
    rest = [o for o in outcomes if o.generator == "template"]
    assert by_llm and rest and len(by_llm) + len(rest) == len(jobs)
    assert all(o.status == "pending_review" and o.fell_back and o.history[-1].startswith("budget:") for o in rest)

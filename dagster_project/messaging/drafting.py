"""From context pack to reviewed-ready draft: generate, check, retry, fall back, or block.

For each customer:

    cache hit (same pack, brief, catalog, generator version)  -> reuse, no generation (a draft made
                                                                  on an earlier day has its staleness
                                                                  judged again)
    LLM (when configured, value above the gate, budget left)  -> check; on failure retry with the
                                                                  reasons as feedback, up to N attempts
    template (default, or fallback after the LLM failed or    -> check
              the budget could not cover its next request)
    all checks pass -> `pending_review`, otherwise `blocked` with the reasons. Nothing is sent silently.

Pure orchestration: generators and the cache are passed in; no database, no Dagster.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol, Sequence

from dagster_project.messaging.generators.base import (
    Budget, Draft, DraftRequest, GenerationError, Generator, OverBudget, Usage,
)
from dagster_project.messaging.guardrails import Verdict, check_draft, failure_reasons, passed, staleness_verdict

Status = Literal["pending_review", "blocked"]


@dataclass
class DraftJob:
    """One customer to write to: the request and, once routing exists, their expected value."""

    request: DraftRequest
    expected_value: float | None = None


@dataclass
class DraftOutcome:
    """What happened for one customer: the draft (if any), its verdicts, status and cost."""

    customer_id: str
    playbook_id: str
    status: Status
    draft: Draft | None
    verdicts: list[Verdict]
    generator: str
    attempts: int = 0  # LLM attempts made (0 for template-only)
    fell_back: bool = False  # the LLM failed and the template wrote the draft
    block_reason: str | None = None
    history: list[str] = field(default_factory=list)  # reasons of rejected attempts, in order
    usage: Usage = field(default_factory=Usage)
    cache_key: str = ""
    cached: bool = False


@dataclass(frozen=True)
class DraftingPolicy:
    """Cost control: how many LLM attempts, who is worth an LLM draft, and the campaign budget."""

    max_llm_attempts: int = 3
    value_threshold: float = 0.0  # LLM only when the customer's expected value is at least this
    # The most a batch may spend on the LLM, never exceeded: a request is sent only once its worst-case
    # cost fits in what is left (see `generators.base.Budget`); the rest get template drafts.
    budget_usd: float | None = None


class DraftCache(Protocol):
    """Where outcomes are remembered between runs, keyed by `cache_key`."""

    def get(self, key: str) -> DraftOutcome | None: ...

    def put(self, key: str, outcome: DraftOutcome) -> None: ...


class MemoryDraftCache:
    """A dict-backed cache (the asset pre-fills it from earlier `nextbest.message_drafts` rows)."""

    def __init__(self, outcomes: dict[str, DraftOutcome] | None = None):
        self.outcomes = dict(outcomes or {})

    def get(self, key: str) -> DraftOutcome | None:
        return self.outcomes.get(key)

    def put(self, key: str, outcome: DraftOutcome) -> None:
        self.outcomes[key] = outcome


def cache_key(request: DraftRequest, generator_version: str, dated: bool = True) -> str:
    """sha256 of (context pack, brief, brand voice, catalog, generator version): unchanged customers are not
    redrafted. The catalog is in it because a draft quotes products' names and prices from it: a price
    change or a withdrawn product must not reuse a draft the guardrails would now reject.

    `dated=False` (a generator that never reads the day): the pack without the run's day, so a customer
    whose facts did not change keeps yesterday's draft.
    """
    shared = _shared_part(request.brief, request.voice, request.catalog, generator_version)
    payload = shared + "\n" + request.pack.fingerprint(dated)
    return hashlib.sha256(payload.encode()).hexdigest()


def generator_key(request: DraftRequest, generator: Generator) -> str:
    """`cache_key` for what `generator` writes."""
    return cache_key(request, generator.version, dated=generator.reads_the_day)


def reused(hit: DraftOutcome, request: DraftRequest) -> DraftOutcome:
    """A cached outcome for today's request: the same draft and verdicts, its staleness judged today.

    Only a `pending_review` outcome is cached, so staleness is the one verdict that can change (its key
    may leave out the day); a draft whose data is now too old is blocked as a fresh one would be.
    """
    today = staleness_verdict(request.pack, request.brief)
    verdicts = [v for v in hit.verdicts if v.check != today.check] + [today]  # staleness is the last check
    if today.passed:
        return replace(hit, verdicts=verdicts, cached=True, usage=Usage())
    reasons = failure_reasons(verdicts)
    return replace(hit, status="blocked", verdicts=verdicts, block_reason="; ".join(reasons),
                   history=[*hit.history, *reasons], cached=True, usage=Usage())


_SHARED: dict[tuple[int, int, int, str], tuple[object, object, object, str]] = {}


def _shared_part(brief, voice, catalog, generator_version: str) -> str:
    """The brief, brand voice, catalog and generator version as canonical JSON, encoded once per brief object.

    Keyed by the objects' ids and kept with them, so a new brief or catalog at a reused id is encoded again.
    """
    key = (id(brief), id(voice), id(catalog), generator_version)
    held = _SHARED.get(key)
    if held is None or held[0] is not brief or held[1] is not voice or held[2] is not catalog:
        text = json.dumps({"brief": brief.model_dump(mode="json"), "voice": voice.model_dump(mode="json"),
                           "generator": generator_version}, sort_keys=True, separators=(",", ":"))
        text += "\n" + catalog.fingerprint()
        if len(_SHARED) > 256:
            _SHARED.clear()
        held = _SHARED[key] = (brief, voice, catalog, text)
    return held[3]


def _check(draft: Draft, request: DraftRequest) -> list[Verdict]:
    return check_draft(draft, request.pack, request.brief, request.voice, request.catalog)


def _template_outcome(request: DraftRequest, template: Generator, key: str,
                      history: list[str] | None = None, usage: Usage | None = None,
                      attempts: int = 0) -> DraftOutcome:
    pack, brief = request.pack, request.brief
    fell_back = history is not None
    try:
        draft = template.generate(replace(request, feedback=()))
    except Exception as error:  # a broken template blocks one draft, never the batch
        reason = f"template generator failed: {error}"
        return DraftOutcome(pack.customer_id, brief.id, "blocked", None, [], template.name, attempts, fell_back,
                            reason, list(history or []) + [reason], usage or Usage(), key)
    verdicts = _check(draft, request)
    ok = passed(verdicts)
    reasons = failure_reasons(verdicts)
    return DraftOutcome(
        pack.customer_id, brief.id, "pending_review" if ok else "blocked", draft, verdicts, template.name,
        attempts, fell_back, None if ok else "; ".join(reasons),
        list(history or []) + ([] if ok else reasons), usage or Usage(), key,
    )


def draft_batch(jobs: Sequence[DraftJob], template: Generator, llm: Generator | None = None,
                policy: DraftingPolicy = DraftingPolicy(), cache: DraftCache | None = None) -> list[DraftOutcome]:
    """Draft every job (same order in, same order out); see the module docstring for the flow."""
    outcomes: list[DraftOutcome | None] = [None] * len(jobs)
    llm_queue: list[int] = []
    for i, job in enumerate(jobs):
        use_llm = llm is not None and (
            (job.expected_value if job.expected_value is not None else 0.0) >= policy.value_threshold
            if policy.value_threshold > 0 else True)
        key = generator_key(job.request, llm if use_llm else template)
        hit = cache.get(key) if cache is not None else None
        if hit is not None:
            outcomes[i] = reused(hit, job.request)
        elif use_llm:
            llm_queue.append(i)
        else:
            outcomes[i] = _template_outcome(job.request, template, key)
    if llm_queue:
        _run_llm(jobs, llm_queue, outcomes, template, llm, policy)
    if cache is not None:
        for outcome in outcomes:
            if outcome is not None and not outcome.cached and outcome.status == "pending_review":
                cache.put(outcome.cache_key, outcome)
    return outcomes  # type: ignore[return-value]


def _run_llm(jobs, queue, outcomes, template, llm, policy) -> None:
    """LLM attempts in rounds; each round retries what the guardrails rejected, with their reasons.

    One `Budget` spans every round, so retries are paid from the same money as first attempts.
    """
    state = {i: {"feedback": [], "history": [], "usage": Usage(), "attempts": 0,
                 "key": generator_key(jobs[i].request, llm)} for i in queue}
    budget = Budget(policy.budget_usd) if policy.budget_usd is not None else None
    pending = list(queue)
    for _ in range(policy.max_llm_attempts):
        if not pending:
            break
        still: list[int] = []
        requests = [replace(jobs[i].request, feedback=tuple(state[i]["feedback"])) for i in pending]
        for i, result in zip(pending, llm.generate_many(requests, budget=budget)):
            s = state[i]
            if isinstance(result, OverBudget):  # never sent: the template writes this one
                s["history"].append(result.reason)
                continue
            s["attempts"] += 1
            s["usage"].add(result.usage)
            if isinstance(result, GenerationError):
                reasons = [f"generation: {result.reason}"]
            else:
                verdicts = _check(result, jobs[i].request)
                if passed(verdicts):
                    result.usage = s["usage"]
                    outcomes[i] = DraftOutcome(
                        jobs[i].request.pack.customer_id, jobs[i].request.brief.id, "pending_review", result, verdicts,
                        llm.name, s["attempts"], False, None, s["history"], s["usage"], s["key"])
                    continue
                reasons = failure_reasons(verdicts)
            s["history"].extend(reasons)
            s["feedback"] = reasons
            if s["attempts"] < policy.max_llm_attempts:
                still.append(i)
        pending = still
    for i in queue:
        if outcomes[i] is None:
            s = state[i]
            # Kept under the LLM's key: an unchanged customer reuses this fallback next run.
            outcomes[i] = _template_outcome(jobs[i].request, template, s["key"], s["history"], s["usage"],
                                            s["attempts"])


def summarize(outcomes: Sequence[DraftOutcome]) -> dict:
    """Counts by status and generator, fallbacks, cache hits and total cost of a batch."""
    by_status: dict[str, int] = {}
    by_generator: dict[str, int] = {}
    for o in outcomes:
        by_status[o.status] = by_status.get(o.status, 0) + 1
        by_generator[o.generator] = by_generator.get(o.generator, 0) + 1
    return {
        "drafts": len(outcomes),
        "by_status": by_status,
        "by_generator": by_generator,
        "fallbacks": sum(o.fell_back for o in outcomes),
        "cache_hits": sum(o.cached for o in outcomes),
        "total_cost_usd": round(sum(o.usage.cost_usd for o in outcomes), 6),
        "prompt_tokens": sum(o.usage.prompt_tokens for o in outcomes),
        "completion_tokens": sum(o.usage.completion_tokens for o in outcomes),
    }

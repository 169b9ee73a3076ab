"""The `openai` generator: chat completions with structured JSON output, via the official SDK.

Works with OpenAI, Azure, vLLM or Ollama: model, base URL and key come from
`OPENAI_MODEL`, `OPENAI_BASE_URL`, `OPENAI_API_KEY`. A batch runs async with
bounded concurrency inside request and token per-minute buckets; 429, 5xx and
timeouts are retried with exponential backoff, honouring Retry-After (the pacing
and backoff the ESP sender uses too: `delivery/ratelimit.py`). Every
draft carries its own tokens and cost; with a `Budget`, a request is sent only
once its worst-case cost is reserved. Ticket bodies are never sent: the model
sees facts, and customer-written text is not a fact.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass, replace
from typing import Sequence

import openai

from dagster_project.messaging.generators.base import (
    Budget, Draft, DraftRequest, GenerationError, Generator, OverBudget, Usage,
)
from dagster_project.delivery.ratelimit import RateLimit, RateLimiter, backoff, parse_retry_after
from dagster_project.messaging.generators.template import eligible_offer

PROMPT_VERSION = "prompt-1"
MAX_BACKOFF_SECONDS = 30.0
FRAMING_TOKENS = 8  # per chat message (role, separators), more than any chat format spends
BUDGET_POLL_SECONDS = 0.02

DRAFT_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["subject", "preheader", "body", "cta", "offer_id", "cited_fact_ids"],
    "properties": {
        "subject": {"type": "string"},
        "preheader": {"type": "string"},
        "body": {"type": "string"},
        "cta": {"type": "string"},
        "offer_id": {"type": ["string", "null"]},
        "cited_fact_ids": {"type": "array", "items": {"type": "string"}},
    },
}


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    try:
        return float(raw) if raw not in (None, "") else default
    except ValueError:
        raise ValueError(f"environment variable {name} must be a number, got {raw!r}") from None


@dataclass(frozen=True)
class OpenAISettings:
    """Where and how fast to call the model, and what its tokens cost (USD per million)."""

    model: str
    base_url: str | None = None
    api_key: str | None = None
    requests_per_minute: float = 500
    tokens_per_minute: float = 200_000
    max_concurrency: int = 16
    max_retries: int = 5
    timeout_seconds: float = 60
    input_usd_per_mtok: float = 0.15
    output_usd_per_mtok: float = 0.60
    max_output_tokens: int = 700
    temperature: float = 0.7
    response_format: str = "json_schema"  # or "json_object" for servers without JSON schema support
    backoff_seconds: float = 0.5

    @classmethod
    def from_env(cls) -> "OpenAISettings":
        """Settings from `OPENAI_*` and `NEXTBEST_LLM_*` (see messaging/README.md)."""
        model = os.environ.get("OPENAI_MODEL")
        if not model:
            raise ValueError("OPENAI_MODEL is not set; the openai generator needs a model name")
        return cls(
            model=model,
            base_url=os.environ.get("OPENAI_BASE_URL") or None,
            api_key=os.environ.get("OPENAI_API_KEY") or None,
            requests_per_minute=_env_float("NEXTBEST_LLM_RPM", 500),
            tokens_per_minute=_env_float("NEXTBEST_LLM_TPM", 200_000),
            max_concurrency=int(_env_float("NEXTBEST_LLM_CONCURRENCY", 16)),
            max_retries=int(_env_float("NEXTBEST_LLM_MAX_RETRIES", 5)),
            timeout_seconds=_env_float("NEXTBEST_LLM_TIMEOUT", 60),
            input_usd_per_mtok=_env_float("NEXTBEST_LLM_INPUT_USD_PER_MTOK", 0.15),
            output_usd_per_mtok=_env_float("NEXTBEST_LLM_OUTPUT_USD_PER_MTOK", 0.60),
            response_format=os.environ.get("NEXTBEST_LLM_RESPONSE_FORMAT", "json_schema"),
        )


def build_messages(request: DraftRequest) -> list[dict]:
    """The chat messages for one draft: rules and voice (system), facts and brief (user)."""
    pack, brief, voice = request.pack, request.brief, request.voice
    offer = eligible_offer(brief, pack)
    facts = {fid: f.value for fid, f in pack.facts.items() if f.kind != "customer_text"}
    # The catalog by the ids a draft may cite (`catalog:<product_id>:name|price`, `catalog:cadence:<days>`),
    # products on sale only: the guardrails accept no other product's price.
    on_sale = replace(request.catalog, products=tuple(p for p in request.catalog.products if p.active))
    catalog = {fid: f.value for fid, f in on_sale.facts().items()}
    system = (
        f"You write one {brief.channel} message for {voice.store_name}, a coffee subscription roastery. "
        f"Voice: {', '.join(voice.tone_words)}. End the body with the sign-off '{voice.sign_off}'.\n"
        "Rules:\n"
        "- Use only the facts given. Every price, date, number and product name must come from a fact; "
        f"write dates like 'March 12' and prices like '{voice.currency_symbol}25.20'. "
        "List the ids of the facts you used in cited_fact_ids.\n"
        "- Never mention email opens, clicks, browsing, tracking, scores, segments or being 'at risk'.\n"
        "- Use only the customer's first name; no other personal data.\n"
        f"- At most {voice.max_exclamations} exclamation mark(s); never use: {'; '.join(voice.banned_phrases)}.\n"
        f"- Body at most {voice.max_words_brief if pack.tone == 'brief' else voice.max_words} words; "
        f"subject at most {voice.max_subject_chars} characters.\n"
        "- cta must be one of the CTA ids given; offer_id must be the offer id given, or null.\n"
        "Reply with one JSON object: subject, preheader, body, cta, offer_id, cited_fact_ids."
    )
    user = {
        "playbook": brief.id,
        "purpose": " ".join(brief.purpose.split()),
        "angles": [{"id": a.id, "description": a.description} for a in brief.angles],
        "ctas": [{"id": c.id, "label": c.label} for c in brief.ctas],
        "offer": None if offer is None else {"id": offer.id, "label": offer.label,
                                             "percent_off": offer.percent_off or None},
        "customer": {"first_name": pack.first_name, "tenure_months": pack.tenure_months,
                     "writes": pack.tone, "today": pack.as_of},
        "facts": facts,
        "catalog": catalog,
    }
    messages = [{"role": "system", "content": system}, {"role": "user", "content": json.dumps(user)}]
    if request.feedback:
        messages.append({"role": "user", "content": "Your previous draft was rejected for these reasons; "
                         "write a new draft that fixes them:\n- " + "\n- ".join(request.feedback)})
    return messages


def retry_after_seconds(headers) -> float | None:
    """Seconds the server asked us to wait (`retry-after-ms`, else `retry-after` seconds or HTTP date)."""
    if headers is None:
        return None
    if headers.get("retry-after-ms"):
        try:
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        except ValueError:
            pass
    return parse_retry_after(headers.get("retry-after"))


def parse_draft(content: str | None, request: DraftRequest, generator: "OpenAIGenerator") -> Draft:
    """Turn the model's JSON reply into a Draft, or raise GenerationError saying what was wrong."""
    try:
        data = json.loads(content or "")
    except json.JSONDecodeError as error:
        raise GenerationError(f"the reply was not valid JSON ({error.msg} at character {error.pos})") from None
    if not isinstance(data, dict):
        raise GenerationError("the reply was JSON but not an object")
    missing = [k for k in ("subject", "body", "cta") if not isinstance(data.get(k), str) or not data.get(k)]
    if missing:
        raise GenerationError(f"the reply is missing {missing}")
    body = data["body"].strip()
    sign_off = request.voice.sign_off
    if sign_off.lower() not in body.lower():
        body = f"{body}\n\n{sign_off}"
    cited = data.get("cited_fact_ids") or []
    return Draft(
        subject=data["subject"].strip(), preheader=str(data.get("preheader") or "").strip(), body=body,
        cta=data["cta"].strip(), cited_fact_ids=[str(c) for c in cited if isinstance(c, (str, int))],
        offer_id=data.get("offer_id") or None, angle=None,
        generator=generator.name, generator_version=generator.version,
    )


class OpenAIGenerator(Generator):
    """Drafts from an OpenAI-compatible chat completions endpoint."""

    name = "openai"

    def __init__(self, settings: OpenAISettings | None = None):
        self.settings = settings or OpenAISettings.from_env()
        self.version = f"openai:{self.settings.model}:{PROMPT_VERSION}"
        # Starts nearly empty: an LLM counts a minute's allowance, so the batch runs at the steady rate at once.
        self.limiter = RateLimiter([RateLimit.per_minute("requests", self.settings.requests_per_minute),
                                    RateLimit.per_minute("tokens", self.settings.tokens_per_minute)],
                                   start_full=False)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        s = self.settings
        return (prompt_tokens * s.input_usd_per_mtok + completion_tokens * s.output_usd_per_mtok) / 1_000_000

    def worst_case_cost(self, messages: list[dict]) -> float:
        """The most one request can cost: a token per prompt byte (a token is never shorter) plus
        the framing of each message, and the full `max_output_tokens` back."""
        prompt = sum(len(m["content"].encode()) + FRAMING_TOKENS for m in messages)
        return self.cost(prompt, self.settings.max_output_tokens)

    def _client(self) -> openai.AsyncOpenAI:
        s = self.settings
        # Retries are ours (shared rate limiter, Retry-After pauses everyone), so the SDK's are off.
        return openai.AsyncOpenAI(api_key=s.api_key or "not-needed", base_url=s.base_url,
                                  max_retries=0, timeout=s.timeout_seconds)

    def generate(self, request: DraftRequest) -> Draft:
        result = self.generate_many([request])[0]
        if isinstance(result, GenerationError):
            raise result
        return result

    def generate_many(self, requests: Sequence[DraftRequest],
                      budget: Budget | None = None) -> list[Draft | GenerationError]:
        return asyncio.run(self.agenerate_many(requests, budget))

    async def agenerate_many(self, requests: Sequence[DraftRequest],
                             budget: Budget | None = None) -> list[Draft | GenerationError]:
        """Generate a batch concurrently; each slot holds a Draft or the error that stopped it
        (`OverBudget` for a request `budget` could not cover, which was never sent)."""
        semaphore = asyncio.Semaphore(self.settings.max_concurrency)
        async with self._client() as client:
            async def one(request: DraftRequest) -> Draft | GenerationError:
                async with semaphore:
                    try:
                        return await self._generate_one(client, request, budget)
                    except GenerationError as error:
                        return error
            return list(await asyncio.gather(*(one(r) for r in requests)))

    async def _generate_one(self, client: openai.AsyncOpenAI, request: DraftRequest,
                            budget: Budget | None = None) -> Draft:
        messages = build_messages(request)
        if budget is None:
            return await self._send(client, request, messages)
        # Reserved inside the concurrency slot: only requests about to be sent hold budget.
        worst = self.worst_case_cost(messages)
        while not budget.reserve(worst):
            if not budget.in_flight:  # nothing can hand budget back: what is left is all there is
                raise OverBudget(f"budget: ${budget.available_usd:.4f} of the campaign's ${budget.limit_usd:.2f} "
                                 f"LLM budget left, and this request could cost ${worst:.4f}")
            await asyncio.sleep(BUDGET_POLL_SECONDS)  # requests in flight settle below their worst case
        actual = worst  # kept if the request is cancelled mid-flight: it may have been billed
        try:
            draft = await self._send(client, request, messages)
            actual = draft.usage.cost_usd
            return draft
        except GenerationError as error:  # failed calls cost nothing; a malformed reply costs its tokens
            actual = error.usage.cost_usd
            raise
        finally:
            budget.settle(worst, actual)

    async def _send(self, client: openai.AsyncOpenAI, request: DraftRequest, messages: list[dict]) -> Draft:
        s = self.settings
        estimate = sum(len(m["content"]) for m in messages) // 4 + s.max_output_tokens
        if s.response_format == "json_schema":
            response_format = {"type": "json_schema",
                               "json_schema": {"name": "message_draft", "strict": True, "schema": DRAFT_SCHEMA}}
        else:
            response_format = {"type": "json_object"}
        usage = Usage()
        attempt = 0
        while True:
            await self.limiter.aacquire([("requests", 1), ("tokens", estimate)])
            usage.requests += 1
            try:
                completion = await client.chat.completions.create(
                    model=s.model, messages=messages, response_format=response_format,
                    temperature=s.temperature, max_completion_tokens=s.max_output_tokens,
                )
                break
            except (openai.RateLimitError, openai.InternalServerError, openai.APITimeoutError,
                    openai.APIConnectionError, openai.APIStatusError) as error:
                status = getattr(error, "status_code", None)
                retryable = status is None or status == 429 or status >= 500 or status == 408
                self.limiter.give_back("tokens", estimate)  # nothing was generated
                if not retryable or attempt >= s.max_retries:
                    what = f"HTTP {status}" if status else type(error).__name__
                    raise GenerationError(f"the LLM call failed after {attempt + 1} attempt(s): {what}",
                                          usage) from None
                response = getattr(error, "response", None)
                retry_after = retry_after_seconds(response.headers if response is not None else None)
                attempt += 1
                wait = backoff(attempt, s.backoff_seconds, MAX_BACKOFF_SECONDS, retry_after)
                if retry_after is not None:
                    self.limiter.pause(wait)  # the server said it is busy: every request of the batch waits
                else:
                    await asyncio.sleep(wait)
                usage.retries += 1
        reported = completion.usage
        text = completion.choices[0].message.content if completion.choices else None
        if reported is not None:
            usage.prompt_tokens += reported.prompt_tokens or 0
            usage.completion_tokens += reported.completion_tokens or 0
        else:  # some servers omit usage: estimate at ~4 characters a token
            usage.prompt_tokens += sum(len(m["content"]) for m in messages) // 4
            usage.completion_tokens += len(text or "") // 4
        self.limiter.give_back("tokens", estimate - (usage.prompt_tokens + usage.completion_tokens))
        usage.cost_usd = self.cost(usage.prompt_tokens, usage.completion_tokens)
        try:
            draft = parse_draft(text, request, self)
        except GenerationError as error:
            error.usage = usage
            raise
        draft.usage = usage
        return draft

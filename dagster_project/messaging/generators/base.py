"""The one generator interface: a request (pack + brief) in, a draft out.

Every generator returns `Draft`s with the same fields, so the guardrails, the
drafting flow, the asset and the CLI never care which one wrote the copy.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from dagster_project.messaging.briefs import BrandVoice, Brief
from dagster_project.messaging.context_pack import Catalog, ContextPack


@dataclass
class Usage:
    """What producing one draft cost: tokens, money and HTTP requests (zero for templates)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    requests: int = 0
    retries: int = 0  # transport retries (429 / 5xx / timeouts), not guardrail retries

    def add(self, other: "Usage") -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cost_usd += other.cost_usd
        self.requests += other.requests
        self.retries += other.retries


@dataclass
class Draft:
    """One message draft. `cta` and `offer_id` are ids from the brief; facts are cited by id."""

    subject: str
    preheader: str
    body: str
    cta: str
    cited_fact_ids: list[str] = field(default_factory=list)
    offer_id: str | None = None
    angle: str | None = None
    generator: str = "manual"
    generator_version: str = ""
    usage: Usage = field(default_factory=Usage)

    def text(self) -> str:
        """All customer-facing text, as the guardrails read it."""
        return f"{self.subject}\n{self.preheader}\n{self.body}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Draft":
        """A draft from JSON (see messaging/README.md); unknown keys are a clear error."""
        data = dict(data)
        usage = Usage(**data.pop("usage", None) or {})
        allowed = set(cls.__dataclass_fields__) - {"usage"}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ValueError(f"unknown draft fields {unknown} (allowed: {sorted(allowed)})")
        missing = [k for k in ("subject", "body", "cta") if not data.get(k)]
        if missing:
            raise ValueError(f"draft is missing {missing}")
        data.setdefault("preheader", "")
        data["cited_fact_ids"] = [str(i) for i in data.get("cited_fact_ids") or []]
        return cls(usage=usage, **data)


@dataclass
class DraftRequest:
    """Everything a generator may use for one customer: their facts, the brief, the voice, the catalog.

    `feedback` carries the guardrail reasons of a rejected attempt, so the next
    attempt can fix exactly those.
    """

    pack: ContextPack
    brief: Brief
    voice: BrandVoice
    catalog: Catalog
    feedback: Sequence[str] = ()


class GenerationError(Exception):
    """A generator could not produce a usable draft (bad JSON, exhausted retries, ...)."""

    def __init__(self, reason: str, usage: Usage | None = None):
        super().__init__(reason)
        self.reason = reason
        self.usage = usage or Usage()


class OverBudget(GenerationError):
    """The request was not sent: what is left of the budget cannot cover what it could cost."""


class Budget:
    """A campaign's LLM money, shared by a batch's requests, that is never overspent.

    Before a request is sent its worst-case cost is reserved; once its usage is known
    the reservation is settled to the actual cost. A request whose worst case the rest
    of the budget cannot cover is not sent. Safe to share across threads.
    """

    def __init__(self, limit_usd: float):
        self.limit_usd = limit_usd
        self.spent_usd = 0.0  # settled, actual costs
        self.reserved_usd = 0.0  # worst cases of the requests in flight
        self.in_flight = 0
        self._lock = threading.Lock()

    @property
    def available_usd(self) -> float:
        return self.limit_usd - self.spent_usd - self.reserved_usd

    def reserve(self, worst_case_usd: float) -> bool:
        """Hold `worst_case_usd` for one request; False (nothing held) when it does not fit."""
        with self._lock:
            if worst_case_usd > self.limit_usd - self.spent_usd - self.reserved_usd:
                return False
            self.reserved_usd += worst_case_usd
            self.in_flight += 1
            return True

    def settle(self, reserved_usd: float, actual_usd: float) -> None:
        """Release a reservation and book what the request really cost."""
        with self._lock:
            self.in_flight -= 1
            self.reserved_usd = max(0.0, self.reserved_usd - reserved_usd) if self.in_flight else 0.0
            self.spent_usd += actual_usd


class Generator:
    """Base of every generator: `generate` one draft, `generate_many` a batch.

    A batch returns, in order, a `Draft` or a `GenerationError` per request, so
    one failure never loses the rest of the batch. A generator that spends money
    reserves each request in `budget` (when given) and returns `OverBudget` for
    the requests it could not afford; a free one ignores it.
    """

    name: str = "base"
    version: str = "0"
    # Whether a draft may depend on the run's day (pack.as_of) as well as on the facts: a cached
    # draft is then reused only on the day it was written. False for a generator that never reads it.
    reads_the_day: bool = True

    def generate(self, request: DraftRequest) -> Draft:
        raise NotImplementedError

    def generate_many(self, requests: Sequence[DraftRequest],
                      budget: Budget | None = None) -> list[Draft | GenerationError]:
        out: list[Draft | GenerationError] = []
        for request in requests:
            try:
                out.append(self.generate(request))
            except GenerationError as error:
                out.append(error)
        return out

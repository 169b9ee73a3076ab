"""The one generator interface: a request (pack + brief) in, a draft out.

Every generator returns `Draft`s with the same fields, so the guardrails, the
drafting flow, the asset and the CLI never care which one wrote the copy.
"""

from __future__ import annotations

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


class Generator:
    """Base of every generator: `generate` one draft, `generate_many` a batch.

    A batch returns, in order, a `Draft` or a `GenerationError` per request, so
    one failure never loses the rest of the batch.
    """

    name: str = "base"
    version: str = "0"

    def generate(self, request: DraftRequest) -> Draft:
        raise NotImplementedError

    def generate_many(self, requests: Sequence[DraftRequest]) -> list[Draft | GenerationError]:
        out: list[Draft | GenerationError] = []
        for request in requests:
            try:
                out.append(self.generate(request))
            except GenerationError as error:
                out.append(error)
        return out

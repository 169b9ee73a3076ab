"""Draft generators behind one interface (`base.Generator`).

    template   default, offline: per-angle Jinja templates (`templates/<angle>.j2`)
    openai     any OpenAI-compatible chat completions endpoint (OPENAI_MODEL, OPENAI_BASE_URL, OPENAI_API_KEY)
"""

from __future__ import annotations

from dagster_project.messaging.generators.base import Draft, DraftRequest, GenerationError, Generator, Usage

GENERATORS = ("template", "openai")


def get_generator(name: str) -> Generator:
    """A generator by name; `openai` reads its settings from the environment."""
    if name == "template":
        from dagster_project.messaging.generators.template import TemplateGenerator
        return TemplateGenerator()
    if name == "openai":
        from dagster_project.messaging.generators.openai_chat import OpenAIGenerator
        return OpenAIGenerator()
    raise ValueError(f"unknown generator {name!r}; choose one of {', '.join(GENERATORS)}")


__all__ = ["Draft", "DraftRequest", "GenerationError", "Generator", "Usage", "GENERATORS", "get_generator"]

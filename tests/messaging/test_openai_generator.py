"""The openai generator, through the real SDK, against a loopback OpenAI-compatible server."""

from __future__ import annotations

import time

import pytest

from dagster_project.messaging.generators.base import Budget, Draft, DraftRequest, GenerationError, OverBudget
from dagster_project.messaging.generators.openai_chat import OpenAIGenerator, OpenAISettings, build_messages
from dagster_project.messaging.guardrails import check_draft, passed
from tests.messaging.fake_llm import FakeLLM, grounded_reply


def _settings(llm: FakeLLM, **overrides) -> OpenAISettings:
    values = dict(model="fake-model", base_url=llm.base_url, api_key="test-key", requests_per_minute=6000,
                  tokens_per_minute=10_000_000, max_concurrency=8, max_retries=3, timeout_seconds=5,
                  backoff_seconds=0.05)
    values.update(overrides)
    return OpenAISettings(**values)


def _request(packs, briefs, catalog, customer="C001", playbook="re_engagement"):
    return DraftRequest(packs[customer], briefs.get(playbook), briefs.brand_voice, catalog)


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("OPENAI_MODEL", "gpt-test")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    monkeypatch.setenv("NEXTBEST_LLM_RPM", "120")
    settings = OpenAISettings.from_env()
    assert (settings.model, settings.base_url, settings.api_key, settings.requests_per_minute) == (
        "gpt-test", "http://127.0.0.1:9/v1", "k", 120)
    monkeypatch.delenv("OPENAI_MODEL")
    with pytest.raises(ValueError, match="OPENAI_MODEL"):
        OpenAISettings.from_env()


def test_structured_draft_with_usage_and_cost(packs, briefs, catalog):
    with FakeLLM(reply=grounded_reply) as llm:
        gen = OpenAIGenerator(_settings(llm, input_usd_per_mtok=1.0, output_usd_per_mtok=2.0))
        request = _request(packs, briefs, catalog)
        draft = gen.generate(request)
    sent = llm.requests[0]
    assert sent["model"] == "fake-model"
    assert sent["response_format"]["type"] == "json_schema"
    assert "Hi there! My last bag" not in str(sent)  # ticket bodies are never sent to the model
    assert draft.body.startswith("Hi Anna,") and draft.body.endswith("Sam at Ridgeline Coffee")
    assert draft.usage.prompt_tokens > 0 and draft.usage.completion_tokens > 0
    expected = (draft.usage.prompt_tokens * 1.0 + draft.usage.completion_tokens * 2.0) / 1e6
    assert draft.usage.cost_usd == pytest.approx(expected)
    assert passed(check_draft(draft, request.pack, request.brief, request.voice, request.catalog))


def test_429_with_retry_after_is_honoured(packs, briefs, catalog):
    with FakeLLM(reply=grounded_reply) as llm:
        llm.rate_limited, llm.retry_after = 1, "0.4"
        gen = OpenAIGenerator(_settings(llm))
        started = time.monotonic()
        draft = gen.generate(_request(packs, briefs, catalog))
        elapsed = time.monotonic() - started
    assert llm.status_codes == [429, 200]
    assert llm.request_times[1] - llm.request_times[0] >= 0.38
    assert draft.usage.retries == 1 and draft.usage.requests == 2
    assert elapsed < 3


def test_server_errors_back_off_and_give_up_with_a_reason(packs, briefs, catalog):
    with FakeLLM(reply=grounded_reply) as llm:
        llm.server_errors = 2
        draft = OpenAIGenerator(_settings(llm)).generate(_request(packs, briefs, catalog))
        assert isinstance(draft, Draft) and llm.status_codes == [500, 500, 200]
        llm.server_errors = 10
        with pytest.raises(GenerationError, match="after 3 attempt"):
            OpenAIGenerator(_settings(llm, max_retries=2)).generate(_request(packs, briefs, catalog))


def test_slow_server_times_out_and_is_retried(packs, briefs, catalog):
    with FakeLLM(reply=grounded_reply, latency=0.6) as llm:
        gen = OpenAIGenerator(_settings(llm, timeout_seconds=0.2, max_retries=1))
        with pytest.raises(GenerationError, match="APITimeoutError"):
            gen.generate(_request(packs, briefs, catalog))
        assert len(llm.requests) == 2  # the first try and one retry


def test_malformed_json_is_an_error_not_a_crash(packs, briefs, catalog):
    with FakeLLM(reply=grounded_reply) as llm:
        llm.malformed = 1
        results = OpenAIGenerator(_settings(llm)).generate_many(
            [_request(packs, briefs, catalog), _request(packs, briefs, catalog, "C002")])
    errors = [r for r in results if isinstance(r, GenerationError)]
    assert len(errors) == 1 and "not valid JSON" in errors[0].reason
    assert errors[0].usage.prompt_tokens > 0  # a broken reply still costs tokens
    assert sum(isinstance(r, Draft) for r in results) == 1


def test_concurrency_is_bounded_and_requests_per_minute_respected(packs, briefs, catalog):
    with FakeLLM(reply=grounded_reply, latency=0.1) as llm:
        gen = OpenAIGenerator(_settings(llm, requests_per_minute=600, max_concurrency=4))
        requests = [_request(packs, briefs, catalog, c) for c in ("C001", "C002", "C003")] * 4
        started = time.monotonic()
        results = gen.generate_many(requests)
        elapsed = time.monotonic() - started
    assert all(isinstance(r, Draft) for r in results) and len(results) == 12
    # 600/min = 10/s from a near-empty bucket: 12 requests take at least 1.1 s
    assert elapsed >= 1.0
    assert len(llm.requests) == 12


def test_a_budget_sends_only_the_requests_it_can_cover(packs, briefs, catalog):
    with FakeLLM(reply=grounded_reply) as llm:
        gen = OpenAIGenerator(_settings(llm, input_usd_per_mtok=1.0, output_usd_per_mtok=2.0))
        requests = [_request(packs, briefs, catalog, c) for c in ("C001", "C002", "C003")] * 3
        budget = Budget(2 * gen.worst_case_cost(build_messages(requests[0])))
        results = gen.generate_many(requests, budget=budget)
    drafts = [r for r in results if isinstance(r, Draft)]
    refused = [r for r in results if isinstance(r, OverBudget)]
    assert drafts and refused and len(drafts) + len(refused) == len(requests)
    assert len(llm.requests) == len(drafts)  # a request the budget cannot cover is never sent
    assert all(r.usage.requests == 0 and r.reason.startswith("budget:") for r in refused)
    assert budget.spent_usd == pytest.approx(sum(d.usage.cost_usd for d in drafts))
    assert budget.spent_usd <= budget.limit_usd and budget.in_flight == 0

"""An OpenAI-compatible chat completions server on 127.0.0.1, for tests and the benchmark.

Stdlib `http.server` in a thread. It answers with a draft built by a callback,
and can be told to be slow, to answer 429 with Retry-After for the first N
calls, to fail with 500, or to return malformed JSON.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable


class FakeLLM:
    """Start with `with FakeLLM(reply=...) as llm:`; `llm.base_url` goes into OPENAI_BASE_URL."""

    def __init__(self, reply: Callable[[dict], dict] | None = None, latency: float = 0.0):
        self.reply = reply or (lambda request: {"subject": "Hi", "preheader": "", "body": "Hi", "cta": "x",
                                                "offer_id": None, "cited_fact_ids": []})
        self.latency = latency
        self.rate_limited = 0  # answer the next N calls with 429
        self.retry_after = "1"
        self.server_errors = 0  # answer the next N calls with 500
        self.malformed = 0  # answer the next N calls with broken JSON content
        self.requests: list[dict] = []
        self.request_times: list[float] = []
        self.status_codes: list[int] = []
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> "FakeLLM":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _next(self, body: dict) -> tuple[int, dict, dict]:
        with self._lock:
            if self.rate_limited > 0:
                self.rate_limited -= 1
                return 429, {"error": {"message": "slow down", "type": "rate_limit"}}, {"Retry-After": self.retry_after}
            if self.server_errors > 0:
                self.server_errors -= 1
                return 500, {"error": {"message": "boom", "type": "server_error"}}, {}
            broken = self.malformed > 0
            if broken:
                self.malformed -= 1
        content = '{"subject": "Hi", "body": ' if broken else json.dumps(self.reply(body))
        prompt_tokens = sum(len(m.get("content") or "") for m in body.get("messages", [])) // 4
        return 200, {
            "id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(content) // 4,
                      "total_tokens": prompt_tokens + len(content) // 4},
        }, {}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with fake._lock:
                    fake.requests.append(body)
                    fake.request_times.append(time.monotonic())
                if fake.latency:
                    time.sleep(fake.latency)
                status, payload, headers = fake._next(body)
                with fake._lock:
                    fake.status_codes.append(status)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out first
                    pass

        return Handler


MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")


def grounded_reply(request: dict) -> dict:
    """What a well-behaved model would answer: short copy from the facts it was given, cited."""
    prompt = json.loads(request["messages"][1]["content"])
    facts = prompt["facts"]
    name = next((v for k, v in facts.items() if k.endswith(":first_name")), None) or "there"
    product_id = next((k for k in facts if k.startswith("subscription:") and k.endswith(":product")), None)
    charge_id = next((k for k in facts if k.endswith(":next_charge_at")), None)
    cited, lines = [], [f"Hi {name},", ""]
    if product_id:
        cited.append(product_id)
        lines.append(f"Your {facts[product_id]} is on its way to being just right for you.")
    if charge_id:
        cited.append(charge_id)
        iso = facts[charge_id]
        lines.append(f"Your next delivery is {MONTHS[int(iso[5:7]) - 1]} {int(iso[8:10])}.")
    lines.append("You can change it any time from your account.")
    return {"subject": "About your coffee", "preheader": "One small note.", "body": "\n".join(lines),
            "cta": prompt["ctas"][0]["id"], "offer_id": None, "cited_fact_ids": cited}


def hallucinating_reply(request: dict) -> dict:
    """A model that invents a product and a price the first time, and fixes it when given feedback."""
    if len(request["messages"]) > 2:  # feedback present
        return grounded_reply(request)
    draft = grounded_reply(request)
    draft["body"] += "\nTry our new Ethiopian Yirgacheffe for just $9.99."
    return draft

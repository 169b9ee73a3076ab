"""A JSONL file sink: one line per message or profile update, for any tool that picks up files.

Each line has a `kind`: `message` (recipient and personalised fields) or
`properties` (the customer and their `properties`). The sink is idempotent: it
reads the send ids already in the file, never writes one twice, and can tell
the outbox after a crash which rows made it out.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, Mapping

from pydantic import Field, PrivateAttr

from dagster_project.delivery.esp.base import EspResource, OutboundMessage, PermanentEspError, SendResult


class FileEsp(EspResource):
    """Append messages to a JSONL file (`NEXTBEST_OUTBOX_FILE`)."""

    esp_name = "file"

    base_url: str = "file://"
    path: str = Field(description="JSONL file messages are appended to")
    fsync: bool = Field(default=True, description="flush each line to disk before reporting it sent")

    _seen: Any = PrivateAttr(default=None)
    _lock: Any = PrivateAttr(default_factory=threading.Lock)

    def _load(self) -> set[str]:
        if self._seen is None:
            seen: set[str] = set()
            file = Path(self.path)
            if file.exists():
                for number, line in enumerate(file.read_text().splitlines(), start=1):
                    if not line.strip():
                        continue
                    try:
                        seen.add(json.loads(line)["send_id"])
                    except (ValueError, KeyError):
                        # A torn last line from a crash mid-write: that message was not written.
                        continue
            self._seen = seen
        return self._seen

    def send(self, message: OutboundMessage) -> SendResult:
        line = {"kind": "message", "customer_id": message.customer_id, "email": message.email,
                "first_name": message.first_name, **message.personalised_fields()}
        return self._append(message.send_id, line)

    def update_profile(self, customer_id: str, email: str | None, properties: Mapping[str, Any],
                       idempotency_key: str) -> SendResult:
        line = {"kind": "properties", "customer_id": customer_id, "email": email, "send_id": idempotency_key,
                "properties": dict(properties)}
        return self._append(idempotency_key, line)

    def _append(self, send_id: str, payload: dict) -> SendResult:
        line = json.dumps(payload, sort_keys=True)
        with self._lock:
            seen = self._load()
            if send_id in seen:
                return SendResult(send_id, duplicate=True)
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a", encoding="utf-8") as handle:
                    # Start on a fresh line even if a crash tore the previous one.
                    if handle.tell() > 0 and not _ends_with_newline(self.path):
                        handle.write("\n")
                    handle.write(line + "\n")
                    handle.flush()
                    if self.fsync:
                        os.fsync(handle.fileno())
            except OSError as exc:
                raise PermanentEspError(f"file: cannot write {self.path}: {exc.strerror}") from None
            seen.add(send_id)
        return SendResult(send_id, esp_message_id=send_id)

    def reconcile(self, message: OutboundMessage) -> bool | None:
        with self._lock:
            self._seen = None  # re-read: another process may have written since
            return message.send_id in self._load()


def _ends_with_newline(path: str) -> bool:
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"

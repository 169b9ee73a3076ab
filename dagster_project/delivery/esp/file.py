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
    """Append messages to a JSONL file (`NEXTBEST_OUTBOX_FILE`).

    Each line is handed to the OS as it is written (so a killed process loses nothing
    it reported), and the file is fsynced once per chunk in `sync()`, which the outbox
    calls before it records the chunk as sent: one fsync per line capped the sink at
    about 250 lines/s on a disk with 4 ms fsyncs.
    """

    esp_name = "file"
    parallel_sends = False  # 200k profile updates: 10.6 s on 8 threads, 5.7 s on one

    base_url: str = "file://"
    path: str = Field(description="JSONL file messages are appended to")
    fsync: bool = Field(default=True, description="fsync the file before the outbox records a chunk as sent")

    _seen: Any = PrivateAttr(default=None)
    _offset: int = PrivateAttr(default=0)  # bytes of the file read into _seen (whole lines only)
    _torn: bool = PrivateAttr(default=False)  # the file ends in a partial line (a crash mid-write)
    _handle: Any = PrivateAttr(default=None)
    _dirty: bool = PrivateAttr(default=False)
    _lock: Any = PrivateAttr(default_factory=threading.Lock)

    def _refresh(self) -> set[str]:
        """Read the send ids of lines appended since the last read (by any process)."""
        if self._seen is None:
            self._seen, self._offset = set(), 0
        file = Path(self.path)
        if not file.exists():
            return self._seen
        with open(file, "rb") as handle:
            handle.seek(self._offset)
            new = handle.read()
        complete = new.rfind(b"\n") + 1
        for line in new[:complete].splitlines():
            if not line.strip():
                continue
            try:
                self._seen.add(json.loads(line)["send_id"])
            except (ValueError, KeyError):
                # A torn line from a crash mid-write: that message was not written.
                continue
        self._offset += complete
        self._torn = complete < len(new)
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
            seen = self._seen if self._seen is not None else self._refresh()
            if send_id in seen:
                return SendResult(send_id, duplicate=True)
            try:
                if self._handle is None:
                    Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                    self._refresh()
                    self._handle = open(self.path, "a", encoding="utf-8")
                    if self._torn:  # start on a fresh line after a torn one
                        self._handle.write("\n")
                        self._torn = False
                self._handle.write(line + "\n")
                self._handle.flush()  # in the OS's hands: survives this process being killed
                self._dirty = True
            except OSError as exc:
                raise PermanentEspError(f"file: cannot write {self.path}: {exc.strerror}") from None
            seen.add(send_id)
        return SendResult(send_id, esp_message_id=send_id)

    def sync(self) -> None:
        """fsync what was written since the last sync (before the outbox marks it sent)."""
        with self._lock:
            if self._handle is not None and self._dirty:
                if self.fsync:
                    os.fsync(self._handle.fileno())
                self._dirty = False

    def reconcile(self, message: OutboundMessage) -> bool | None:
        with self._lock:
            return message.send_id in self._refresh()  # picks up lines another process wrote since

    def close(self) -> None:
        self.sync()
        with self._lock:
            if self._handle is not None:
                self._handle.close()
                self._handle = None

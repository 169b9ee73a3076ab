"""A JSONL file sink: one line per message or profile update, for any tool that picks up files.

Each line has a `kind`: `message` (recipient and personalised fields) or
`properties` (the customer and their `properties`). The sink is idempotent: it
reads the send ids already in the file, never writes one twice, and can tell
the outbox after a crash which rows made it out.
"""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path
from typing import Any, Mapping, Sequence

from pydantic import Field, PrivateAttr

from dagster_project.delivery.esp.base import (
    EspError, EspResource, OutboundMessage, PermanentEspError, ProfileUpdate, SendResult,
)
from dagster_project.delivery.outbox import parse_json


# The end of a line that closes its object with its send id, as every profile update's line does
# (`_profile_line`): `, "send_id": "<id>"}`. In JSON text those quotes cannot be inside a string
# (they would be escaped), and a nested object would need another `}` before the line ends.
# Reading the ids of a file of such lines this way took 1.3 s for 844 MB, parsing each line 2.5 s.
_TRAILING_SEND_ID = re.compile(rb', "send_id": "([^"\\\r\n]*)"\}\r?\n')

# The file is read back this many bytes at a time (not all 850 MB at once after a 1M export).
READ_BLOCK_BYTES = 64 * 2**20


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
        """Read the send ids of lines appended since the last read (by any process), a block at a time."""
        if self._seen is None:
            self._seen, self._offset = set(), 0
        file = Path(self.path)
        if not file.exists():
            return self._seen
        rest = b""  # a line not yet ended
        with open(file, "rb") as handle:
            handle.seek(self._offset)
            while block := handle.read(READ_BLOCK_BYTES):
                new = rest + block
                complete = new.rfind(b"\n") + 1
                self._read_ids(new[:complete])
                self._offset += complete
                rest = new[complete:]
        self._torn = bool(rest)
        return self._seen

    def _read_ids(self, lines: bytes) -> None:
        """Add the send ids of these whole lines to `_seen`."""
        ids = _TRAILING_SEND_ID.findall(lines)
        if len(ids) == lines.count(b"\n"):  # every line a profile update's: none needs parsing
            self._seen.update(found.decode() for found in ids)
            return
        for line in lines.splitlines():
            if not line.strip():
                continue
            try:
                self._seen.add(parse_json(line)["send_id"])
            except (ValueError, KeyError):
                # A torn line from a crash mid-write: that message was not written.
                continue

    def send(self, message: OutboundMessage) -> SendResult:
        line = {"kind": "message", "customer_id": message.customer_id, "email": message.email,
                "first_name": message.first_name, **message.personalised_fields()}
        return self._append(message.send_id, line)

    def update_profile(self, customer_id: str, email: str | None, properties: Mapping[str, Any],
                       idempotency_key: str) -> SendResult:
        line = {"kind": "properties", "customer_id": customer_id, "email": email, "send_id": idempotency_key,
                "properties": dict(properties)}
        return self._append(idempotency_key, line)

    def update_profiles(self, updates: Sequence[ProfileUpdate]) -> list[SendResult | EspError]:
        """A round of profile updates in one write (a line each, the properties as queued)."""
        return self._append_lines([(update.idempotency_key, _profile_line(update)) for update in updates])

    def _append(self, send_id: str, payload: dict) -> SendResult:
        (result,) = self._append_lines([(send_id, json.dumps(payload, sort_keys=True))])
        if isinstance(result, EspError):
            raise result
        return result

    def _append_lines(self, lines: list[tuple[str, str]]) -> list[SendResult | EspError]:
        """Append the (send id, line) pairs whose send id the file does not hold yet, in one write;
        a result per pair, in order (a duplicate for the ids already there)."""
        with self._lock:
            try:
                handle = self._open()  # reads what other processes appended first
            except OSError as exc:
                return [self._write_failed(exc)] * len(lines)
            seen = self._seen
            results: list[SendResult | EspError] = []
            fresh: dict[str, int] = {}  # send id -> its position in `lines`
            for position, (send_id, _) in enumerate(lines):
                duplicate = send_id in seen or send_id in fresh
                if not duplicate:
                    fresh[send_id] = position
                results.append(SendResult(send_id, duplicate=True) if duplicate
                               else SendResult(send_id, esp_message_id=send_id))
            if not fresh:
                return results
            try:
                handle.write("".join(lines[position][1] + "\n" for position in fresh.values()))
                handle.flush()  # in the OS's hands: survives this process being killed
                self._dirty = True
            except OSError as exc:
                error = self._write_failed(exc)
                for position in fresh.values():
                    results[position] = error
                return results
            seen.update(fresh)
        return results

    def _write_failed(self, exc: OSError) -> PermanentEspError:
        """After a failed write: part of it may be in the file, so the next write reads the file
        again and starts on a fresh line."""
        self._close_handle()
        self._seen = None
        return PermanentEspError(f"file: cannot write {self.path}: {exc.strerror}")

    def _open(self) -> Any:
        """The append handle, opened on first use (on a fresh line after a torn one)."""
        if self._handle is None:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._refresh()
            self._handle = open(self.path, "a", encoding="utf-8")
            if self._torn:
                self._handle.write("\n")
                self._torn = False
        return self._handle

    def _close_handle(self) -> None:
        if self._handle is not None:
            try:
                self._handle.close()
            except OSError:
                pass
            self._handle = None

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
            self._close_handle()


def _profile_line(update: ProfileUpdate) -> str:
    """The line of one profile update, its body written as queued (JSON already: not parsed and
    written again). A body spread over several lines is put on one: in JSON a raw line break can
    only be whitespace between tokens (inside a string it is escaped)."""
    body = update.body.replace("\r", " ").replace("\n", " ")
    return (f'{{"customer_id": {json.dumps(update.customer_id)}, "email": {json.dumps(update.email)}, '
            f'"kind": "properties", "properties": {body}, "send_id": {json.dumps(update.idempotency_key)}}}')

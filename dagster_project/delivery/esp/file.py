"""A JSONL file sink: one line per message or profile update, for any tool that picks up files.

Each line has a `kind`: `message` (recipient and personalised fields) or
`properties` (the customer and their `properties`). The sink is idempotent: it
reads the send ids already in the file, never writes one twice, and can tell
the outbox after a crash which rows made it out.

Beside the file, `<file>.ids` indexes it: the send id of each line written, and after each
write the file's size then (`@<bytes>`). A sink starts from the index and reads only the lines
after the last size it records (what a crash or another writer left unindexed), not the whole
file: after a year of daily profile exports the file holds millions of lines (at 1M customers,
3.4 s to read the ids of 940 MB, 0.4 s from the index). An index that does not fit its file is
ignored, the file is read whole and the index written again. Writes, and the index line that
follows them, hold an exclusive lock on the file, so writers in other processes interleave
whole writes.
"""

from __future__ import annotations

import json
import os
import re
import threading
from contextlib import contextmanager
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
# The index beside the file: `=<send id>` per line written, `@<file size>` after each write.
INDEX_SUFFIX = ".ids"
_INDEX_ID = re.compile(r"^=(.*)$", re.MULTILINE)
# How far back from an index's last recorded size its last line is looked for (to check it holds
# the last indexed id); a longer line makes the index unusable, and the file is read whole.
INDEX_CHECK_BYTES = 64 * 2**10

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock, one writer at a time is up to the user
    fcntl = None


@contextmanager
def _exclusive(handle):
    """An exclusive lock on the open file while the block runs (none where fcntl is missing)."""
    if fcntl is None:
        yield
        return
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
    try:
        yield
    finally:
        if not handle.closed:  # a failed write closes the handle, which lets the lock go
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


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
    _unindexed: list = PrivateAttr(default_factory=list)  # ids read from the file that its index lacks
    _index_mode: str = PrivateAttr(default="w")  # "a": the index fits the file; "w": write it anew
    _index_broken: bool = PrivateAttr(default=False)  # an index write failed: stop keeping one

    @property
    def index_path(self) -> Path:
        return Path(self.path + INDEX_SUFFIX)

    def _load_index(self) -> None:
        """Start `_seen` from the index when it fits the file: its ids, and `_offset` at the size it
        records last. Otherwise start empty (the whole file is read) and write the index anew."""
        self._seen, self._offset, self._unindexed, self._index_mode = set(), 0, [], "w"
        file, index = Path(self.path), self.index_path
        if not file.exists() or not index.exists():
            return
        try:
            text = index.read_bytes().decode("utf-8")
            text = text[:text.rfind("\n") + 1]  # whole lines: a crash may have torn the last one
            marker = text.rfind("\n@") + 1  # where the last `@<size>` line starts (0: first, or none)
            if not text.startswith("@", marker):
                return
            covered = int(text[marker + 1:text.index("\n", marker)])
            ids = _INDEX_ID.findall(text, 0, marker)
            with open(file, "rb") as handle:
                start = max(0, covered - INDEX_CHECK_BYTES)
                handle.seek(start)
                before = handle.read(covered - start)
        except (OSError, UnicodeDecodeError, ValueError):
            return
        last_line = before[before.rfind(b"\n", 0, len(before) - 1) + 1:]
        fits = (covered <= file.stat().st_size and (covered == 0 or before.endswith(b"\n"))
                and (not ids or ids[-1].encode() in last_line) and (ids or covered == 0))
        if fits:
            self._seen, self._offset, self._index_mode = set(ids), covered, "a"

    def _write_index(self, written: list[str]) -> None:
        """Index the ids read from the file since the last index line and `written`, then the file's
        size: called with the file locked, right after a write (`_offset` is the file's end)."""
        if self._index_broken:
            return
        ids = self._unindexed + written
        if any("\n" in i or "\r" in i for i in ids):  # an id an index line cannot hold: keep none
            self._give_up_index()
            return
        try:
            with open(self.index_path, self._index_mode, encoding="utf-8") as index:
                index.write("".join(f"={i}\n" for i in ids) + f"@{self._offset}\n")
        except OSError:
            self._give_up_index()
            return
        self._unindexed, self._index_mode = [], "a"

    def _give_up_index(self) -> None:
        """An index missing some lines' ids must not be read: remove it, and keep none from now on."""
        self._index_broken = True
        try:
            self.index_path.unlink(missing_ok=True)
        except OSError:
            pass

    def _refresh(self) -> set[str]:
        """Read the send ids of lines appended since the last read (by any process), a block at a time."""
        if self._seen is None:
            self._load_index()
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
        """Add the send ids of these whole lines to `_seen` (and to what the index lacks)."""
        ids = _TRAILING_SEND_ID.findall(lines)
        if len(ids) == lines.count(b"\n"):  # every line a profile update's: none needs parsing
            found = [one.decode() for one in ids]
        else:
            found = []
            for line in lines.splitlines():
                if not line.strip():
                    continue
                try:
                    found.append(parse_json(line)["send_id"])
                except (ValueError, KeyError):
                    # A torn line from a crash mid-write: that message was not written.
                    continue
        self._seen.update(found)
        self._unindexed.extend(found)

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
                handle = self._open()
            except OSError as exc:
                return [self._write_failed(exc)] * len(lines)
            with _exclusive(handle):
                try:
                    seen = self._refresh()  # what other processes appended since, before deciding
                except OSError as exc:
                    return [self._write_failed(exc)] * len(lines)
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
                    # After a torn line (another writer's crash), start on a fresh one.
                    handle.write(("\n" if self._torn else "")
                                 + "".join(lines[position][1] + "\n" for position in fresh.values()))
                    handle.flush()  # in the OS's hands: survives this process being killed
                    self._dirty, self._torn = True, False
                    self._offset = os.fstat(handle.fileno()).st_size  # locked: nobody wrote since
                except OSError as exc:
                    error = self._write_failed(exc)
                    for position in fresh.values():
                        results[position] = error
                    return results
                seen.update(fresh)
                self._write_index(list(fresh))
        return results

    def _write_failed(self, exc: OSError) -> PermanentEspError:
        """After a failed write: part of it may be in the file, so the next write reads the file
        again and starts on a fresh line."""
        self._close_handle()
        self._seen = None
        return PermanentEspError(f"file: cannot write {self.path}: {exc.strerror}")

    def _open(self) -> Any:
        """The append handle, opened on first use. What the file holds is read under its lock, by
        the write (`_append_lines`): a partial line seen without it may be another writer's, mid-write."""
        if self._handle is None:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.path, "a", encoding="utf-8")
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

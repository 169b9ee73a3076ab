"""A loopback HTTP server that speaks one ESP's API shape, with faults on demand.

Shapes: `klaviyo` (JSON:API profile-import + events), `customerio` (Track API v1
over TLS: PUT customer, POST event), `hubspot` (contacts batch upsert +
transactional single send) and `webhook` (NextBest-signed POST). Each keeps the
idempotency keys it accepted, deduplicating as the real ESP does, and counts
what it delivered. Profile updates (a profile/contact/person write carrying more
than the recipient's identity, or a webhook `profile_update`) are kept per
customer in `profiles` and counted in `profile_updates`. Faults are queued per request kind: `429` (with Retry-After),
`500`, `hang` (no answer until the client times out), `drop` (close the connection
before answering) and `drop_after` (accept, then drop: the client cannot know).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import random
import re
import ssl
import threading
import time
from collections import Counter, deque
from typing import NamedTuple
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from dagster_project.delivery.signing import SignatureError, verify

NOW = "2026-01-01T00:00:00+00:00"
# What a message send writes onto the profile before the event; anything more is a profile update.
IDENTITY = {"email", "external_id", "first_name", "firstname", "nextbest_customer_id"}


class ProfileWrite(NamedTuple):
    """A profile update the server received: the customer, the properties, the idempotency key if any."""

    customer_id: str
    properties: dict
    key: str | None = None


def _profile_write(customer_id, attributes: dict) -> ProfileWrite | None:
    extra = {k: v for k, v in attributes.items() if k not in IDENTITY}
    return ProfileWrite(str(customer_id), extra) if extra else None


def _klaviyo(server, method, path, headers, body):
    if not headers.get("Authorization", "").startswith("Klaviyo-API-Key ") or not headers.get("revision"):
        return 401, {"errors": [{"status": 401, "detail": "missing key or revision"}]}, None
    if method == "POST" and path == "/api/profile-import":
        attrs = body["data"]["attributes"]
        write = ProfileWrite(str(attrs["external_id"]), attrs["properties"]) if "properties" in attrs else None
        return 200, {"data": {"type": "profile", "id": f"P{attrs.get('external_id')}",
                              "attributes": {"email": attrs.get("email")},
                              "links": {"self": f"/api/profiles/P{attrs.get('external_id')}/"}}}, write
    if method == "POST" and path == "/api/events":
        attrs = body["data"]["attributes"]
        return 202, None, (attrs["unique_id"], attrs["properties"]["send_id"])
    return 404, {"errors": [{"status": 404}]}, None


def _customerio(server, method, path, headers, body):
    if not headers.get("Authorization", "").startswith("Basic "):
        return 401, {"meta": {"error": "unauthorized"}}, None
    if method == "PUT" and re.fullmatch(r"/api/v1/customers/[^/]+", path):
        return 200, {}, _profile_write(path.rsplit("/", 1)[1], body)
    if method == "POST" and re.fullmatch(r"/api/v1/customers/[^/]+/events", path):
        return 200, {}, (body["id"], body["data"]["send_id"])
    return 404, {"meta": {"error": "not found"}}, None


def _hubspot(server, method, path, headers, body):
    if not headers.get("Authorization", "").startswith("Bearer "):
        return 401, {"status": "error", "message": "no token", "category": "INVALID_AUTHENTICATION"}, None
    if method == "POST" and path.startswith("/crm/v3/objects/contacts/batch/upsert"):
        if server.upsert_conflict:
            return 409, {"status": "error", "message": "Contact already exists", "category": "CONFLICT"}, None
        results = [{"id": str(100 + i), "properties": item["properties"], "createdAt": NOW, "updatedAt": NOW,
                    "archived": False, "new": True} for i, item in enumerate(body["inputs"])]
        props = body["inputs"][0]["properties"]
        write = _profile_write(props.get("nextbest_customer_id"), props) if len(body["inputs"]) == 1 else None
        return 200, {"status": "COMPLETE", "results": results, "startedAt": NOW, "completedAt": NOW}, write
    if method == "POST" and path == "/marketing/v3/transactional/single-email/send":
        key = body["message"]["sendId"]
        status = {"statusId": f"S{key[:8]}", "status": "PENDING", "requestedAt": NOW,
                  "eventId": {"id": key, "created": NOW}}
        return 200, status, (key, body["customProperties"]["send_id"])
    return 404, {"status": "error", "message": "not found"}, None


def _webhook(server, method, path, headers, body_bytes):
    try:
        verify(server.secret, headers, body_bytes)
    except SignatureError as error:
        return 401, {"error": str(error)}, None
    body = json.loads(body_bytes)
    if body.get("type") == "profile_update":
        return 200, {"ok": True}, ProfileWrite(body["customer_id"], body["properties"], headers["Idempotency-Key"])
    return 200, {"ok": True}, (headers["Idempotency-Key"], body["send_id"])


SHAPES = {"klaviyo": _klaviyo, "customerio": _customerio, "hubspot": _hubspot, "webhook": _webhook}
DUPLICATE_STATUS = {"hubspot": 409, "webhook": 409}  # others accept a repeat silently


class FakeEsp(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, shape: str, secret: str = "whsec_test", failure_rate: float = 0.0, seed: int = 7,
                 hang_seconds: float = 2.0, tls_dir: Path | None = None):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.shape, self.secret, self.hang_seconds = shape, secret, hang_seconds
        self.failure_rate, self._rng = failure_rate, random.Random(seed)
        self.faults: deque[str] = deque()
        self.lock = threading.Lock()
        self.accepted: dict[str, str] = {}  # idempotency key -> send id, first time only
        self.deliveries: Counter[str] = Counter()  # send id -> times a message was actually delivered
        self.profiles: dict[str, dict] = {}  # customer id -> properties written by profile updates
        self.profile_updates: Counter[str] = Counter()  # customer id -> profile updates applied
        self.repeats = 0  # requests the idempotency key deduplicated
        self.requests = 0
        self.injected = Counter()
        self.upsert_conflict = False  # HubSpot: answer every contact upsert with 409 CONFLICT
        self.ca_file: str | None = None
        if tls_dir is not None:
            cert, key = make_self_signed(tls_dir)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert, key)
            self.socket = context.wrap_socket(self.socket, server_side=True)
            self.ca_file = str(cert)
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def base_url(self) -> str:
        scheme = "https" if self.ca_file else "http"
        return f"{scheme}://127.0.0.1:{self.server_address[1]}"

    def plan(self, *faults: str) -> None:
        """Queue faults for the next requests that would deliver a message."""
        self.faults.extend(faults)

    def next_fault(self) -> str | None:
        with self.lock:
            if self.faults:
                return self.faults.popleft()
            if self.failure_rate and self._rng.random() < self.failure_rate:
                return self._rng.choice(["429", "500", "503", "drop", "drop_after"])
        return None

    def record(self, key: str, send_id: str) -> bool:
        """Deliver unless the key was seen; returns False for a deduplicated repeat."""
        with self.lock:
            if key in self.accepted:
                self.repeats += 1
                return False
            self.accepted[key] = send_id
            self.deliveries[send_id] += 1
            return True

    def record_profile(self, write: ProfileWrite) -> bool:
        """Apply a profile update unless its idempotency key was seen; False for a deduplicated repeat."""
        with self.lock:
            if write.key is not None:
                if write.key in self.accepted:
                    self.repeats += 1
                    return False
                self.accepted[write.key] = write.key
            self.profile_updates[write.customer_id] += 1
            self.profiles.setdefault(write.customer_id, {}).update(write.properties)
            return True

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms delayed-ACK stalls
    server: FakeEsp

    def log_message(self, *args):
        pass

    def _answer(self, status: int, payload=None, headers: dict | None = None):
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _drop(self):
        self.close_connection = True
        try:
            self.connection.shutdown(2)
        except OSError:
            pass

    def _handle(self):
        server = self.server
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in self.headers.items()}
        with server.lock:
            server.requests += 1
        handler = SHAPES[server.shape]
        body = raw if server.shape == "webhook" else (json.loads(raw) if raw else {})
        # Faults hit only the request that delivers (events / send / hook / profile update), like an outage would.
        probe_status, probe_payload, delivery = handler(server, self.command, self.path, headers, body)
        fault = server.next_fault() if delivery else None
        if fault:
            server.injected[fault] += 1
        if fault == "429":
            return self._answer(429, {"errors": [{"status": 429, "detail": "throttled"}]}, {"Retry-After": "1"})
        if fault in ("500", "503"):
            return self._answer(int(fault), {"errors": [{"status": int(fault)}]})
        if fault == "hang":
            time.sleep(server.hang_seconds)
            return self._drop()
        if fault == "drop":
            return self._drop()
        if delivery:
            fresh = server.record_profile(delivery) if isinstance(delivery, ProfileWrite) else server.record(*delivery)
            if not fresh and server.shape in DUPLICATE_STATUS:
                probe_status, probe_payload = DUPLICATE_STATUS[server.shape], {"message": "duplicate"}
        if fault == "drop_after":
            return self._drop()
        return self._answer(probe_status, probe_payload)

    do_POST = do_PUT = _handle


def make_self_signed(folder: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1 (the Customer.io SDK only speaks https)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "esp-cert.pem", folder / "esp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class SimulatedCrash(BaseException):
    """Stands in for a kill: not an Exception, so the sender neither classifies nor settles it."""


class CrashAfter:
    """Wraps an adapter and dies right after its K-th delivery (a send or a profile update), before
    the outbox can record it; a dead process delivers nothing more (the pool's worker may still be
    handed the rest)."""

    def __init__(self, esp, k: int):
        self.esp, self.k, self.count, self.lock = esp, k, 0, threading.Lock()
        self.esp_name = esp.esp_name

    def send(self, message):
        return self._deliver(self.esp.send, message)

    def update_profile(self, *args):
        return self._deliver(self.esp.update_profile, *args)

    def update_profiles(self, updates):
        """A round at once, as the file sink writes it, dying after the K-th update of the run."""
        return [result for update in updates for result in self._deliver(self.esp.update_profiles, [update])]

    def _deliver(self, deliver, *args):
        with self.lock:
            if self.count >= self.k:
                raise SimulatedCrash("already dead")
        result = deliver(*args)
        with self.lock:
            self.count += 1
            if self.count >= self.k:
                raise SimulatedCrash(f"killed after {self.count} sends")
        return result

    def __getattr__(self, name):
        return getattr(self.esp, name)

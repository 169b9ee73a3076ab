"""HMAC-SHA256 webhook signatures: one scheme for what NextBest sends and what it receives.

NextBest's scheme: `X-NextBest-Timestamp: <unix seconds>` and
`X-NextBest-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>`.
Signing the timestamp with the body lets a receiver refuse old (replayed)
requests. Customer.io's reporting webhooks use the same idea
(`X-CIO-Timestamp`, `X-CIO-Signature` = hex HMAC of `v0:<timestamp>:<body>`).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Mapping

SIGNATURE_HEADER = "X-NextBest-Signature"
TIMESTAMP_HEADER = "X-NextBest-Timestamp"
DEFAULT_TOLERANCE_SECONDS = 300  # a signed request older (or newer) than this is refused as a replay


class SignatureError(Exception):
    """A request whose signature is missing, wrong or too old; the message says which."""


def _hex_hmac(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """Headers that sign `body` with NextBest's scheme."""
    ts = str(int(time.time() if timestamp is None else timestamp))
    digest = _hex_hmac(secret, ts.encode() + b"." + body)
    return {TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: f"sha256={digest}"}


def _get(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None


def _check_time(ts_text: str | None, now: float, tolerance: float, header: str) -> int:
    if not ts_text:
        raise SignatureError(f"missing {header} header")
    try:
        ts = int(ts_text)
    except ValueError:
        raise SignatureError(f"{header} {ts_text!r} is not unix seconds") from None
    if abs(now - ts) > tolerance:
        raise SignatureError(f"{header} is {int(now - ts)}s off (more than {int(tolerance)}s): refused as a replay")
    return ts


def verify(secret: str, headers: Mapping[str, str], body: bytes, now: float | None = None,
           tolerance: float = DEFAULT_TOLERANCE_SECONDS) -> str:
    """Check a NextBest-signed request; returns the signature (a replay id) or raises `SignatureError`."""
    now = time.time() if now is None else now
    signature = _get(headers, SIGNATURE_HEADER)
    if not signature:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    ts = _check_time(_get(headers, TIMESTAMP_HEADER), now, tolerance, TIMESTAMP_HEADER)
    expected = "sha256=" + _hex_hmac(secret, str(ts).encode() + b"." + body)
    if not hmac.compare_digest(expected, signature.strip()):
        raise SignatureError(f"{SIGNATURE_HEADER} does not match the body")
    return signature


def verify_customerio(secret: str, headers: Mapping[str, str], body: bytes, now: float | None = None,
                      tolerance: float = DEFAULT_TOLERANCE_SECONDS) -> str:
    """Check a Customer.io reporting webhook (`X-CIO-Timestamp`, `X-CIO-Signature`)."""
    now = time.time() if now is None else now
    signature = _get(headers, "X-CIO-Signature")
    if not signature:
        raise SignatureError("missing X-CIO-Signature header")
    ts = _check_time(_get(headers, "X-CIO-Timestamp"), now, tolerance, "X-CIO-Timestamp")
    expected = _hex_hmac(secret, b"v0:" + str(ts).encode() + b":" + body)
    if not hmac.compare_digest(expected, signature.strip()):
        raise SignatureError("X-CIO-Signature does not match the body")
    return signature


def sign_customerio(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """Headers as Customer.io would send them (for tests and local replays)."""
    ts = str(int(time.time() if timestamp is None else timestamp))
    return {"X-CIO-Timestamp": ts, "X-CIO-Signature": _hex_hmac(secret, b"v0:" + ts.encode() + b":" + body)}

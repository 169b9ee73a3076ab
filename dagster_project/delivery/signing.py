"""HMAC-SHA256 webhook signatures: one scheme for what NextBest sends and what it receives.

NextBest's scheme: `X-NextBest-Timestamp: <unix seconds>` and
`X-NextBest-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>`.
Signing the timestamp with the body lets a receiver refuse old (replayed)
requests. Customer.io's reporting webhooks use the same idea
(`X-CIO-Timestamp`, `X-CIO-Signature` = hex HMAC of `v0:<timestamp>:<body>`).
HubSpot (signature v3) and Klaviyo (system webhooks) are checked here too; their
docstrings name the documentation each follows.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import json
from datetime import datetime
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


# -- HubSpot -----------------------------------------------------------------------------------
# https://developers.hubspot.com/docs/apps/legacy-apps/authentication/validating-requests and the
# changelog "Introducing version 3 of Webhook signatures": base64(HMAC-SHA256(client secret,
# method + URI + body + X-HubSpot-Request-Timestamp)); refuse timestamps older than 5 minutes.
# The timestamp is in milliseconds (HubSpot's samples compare it with Date.now()).
HUBSPOT_SIGNATURE_HEADER = "X-HubSpot-Signature-v3"
HUBSPOT_TIMESTAMP_HEADER = "X-HubSpot-Request-Timestamp"
# HubSpot signs the URI with these characters decoded (its docs list them); others stay encoded.
_HUBSPOT_DECODED = {"%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$", "%27": "'",
                    "%28": "(", "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";"}


def _hubspot_uri(uri: str) -> str:
    for encoded, char in _HUBSPOT_DECODED.items():
        uri = uri.replace(encoded, char).replace(encoded.lower(), char)
    return uri


def _hubspot_digest(secret: str, method: str, uri: str, body: bytes, ts: str) -> str:
    message = method.upper().encode() + _hubspot_uri(uri).encode() + body + ts.encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def verify_hubspot(secret: str, headers: Mapping[str, str], body: bytes, now: float | None = None,
                   tolerance: float = DEFAULT_TOLERANCE_SECONDS, *, method: str = "POST", uri: str = "") -> str:
    """Check a HubSpot request signed with signature v3; `uri` is the full URL HubSpot called.

    v1/v2 signatures (`X-HubSpot-Signature`) carry no timestamp, so a captured request could be
    replayed forever; HubSpot sends v3 alongside them, and only v3 is accepted.
    """
    now = time.time() if now is None else now
    signature = _get(headers, HUBSPOT_SIGNATURE_HEADER)
    if not signature:
        raise SignatureError(f"missing {HUBSPOT_SIGNATURE_HEADER} header")
    ts_text = (_get(headers, HUBSPOT_TIMESTAMP_HEADER) or "").strip()
    if not ts_text.isdigit():
        raise SignatureError(f"missing or unreadable {HUBSPOT_TIMESTAMP_HEADER} header (expected unix milliseconds)")
    _check_time(str(int(ts_text) // 1000), now, tolerance, HUBSPOT_TIMESTAMP_HEADER)
    if not hmac.compare_digest(_hubspot_digest(secret, method, uri, body, ts_text), signature.strip()):
        raise SignatureError(f"{HUBSPOT_SIGNATURE_HEADER} does not match the method, URL and body")
    return signature


def sign_hubspot(secret: str, body: bytes, uri: str, method: str = "POST",
                 timestamp_ms: int | None = None) -> dict[str, str]:
    """Headers as HubSpot would send them (for tests and local replays)."""
    ts = str(int(time.time() * 1000 if timestamp_ms is None else timestamp_ms))
    return {HUBSPOT_TIMESTAMP_HEADER: ts, HUBSPOT_SIGNATURE_HEADER: _hubspot_digest(secret, method, uri, body, ts)}


# -- Klaviyo -----------------------------------------------------------------------------------
# https://developers.klaviyo.com/en/docs/working_with_system_webhooks names the headers
# (Klaviyo-Signature, Klaviyo-Timestamp, Klaviyo-Webhook-Id) and says meta.klaviyo_webhook_id must
# equal Klaviyo-Webhook-Id. Its "HMAC signature verification" section was not in the stored copy:
# hex HMAC-SHA256(secret, body + Klaviyo-Timestamp) follows secondary sources (hookdeck's
# klaviyo-webhooks guide), and the timestamp's unit is unconfirmed, so seconds, milliseconds and
# ISO 8601 are all read. Check against Klaviyo's page before relying on it in production.
KLAVIYO_SIGNATURE_HEADER = "Klaviyo-Signature"
KLAVIYO_TIMESTAMP_HEADER = "Klaviyo-Timestamp"
KLAVIYO_WEBHOOK_ID_HEADER = "Klaviyo-Webhook-Id"


def _klaviyo_seconds(ts_text: str) -> str:
    if ts_text.isdigit():
        return str(int(ts_text) // 1000 if int(ts_text) > 10**11 else int(ts_text))
    try:
        return str(int(datetime.fromisoformat(ts_text.replace("Z", "+00:00")).timestamp()))
    except ValueError:
        return ts_text  # `_check_time` names the header and the bad value


def verify_klaviyo(secret: str, headers: Mapping[str, str], body: bytes, now: float | None = None,
                   tolerance: float = DEFAULT_TOLERANCE_SECONDS) -> str:
    """Check a Klaviyo system webhook (`Klaviyo-Signature`, `Klaviyo-Timestamp`, `Klaviyo-Webhook-Id`)."""
    now = time.time() if now is None else now
    signature = _get(headers, KLAVIYO_SIGNATURE_HEADER)
    if not signature:
        raise SignatureError(f"missing {KLAVIYO_SIGNATURE_HEADER} header")
    ts_text = (_get(headers, KLAVIYO_TIMESTAMP_HEADER) or "").strip()
    _check_time(_klaviyo_seconds(ts_text) if ts_text else None, now, tolerance, KLAVIYO_TIMESTAMP_HEADER)
    if not hmac.compare_digest(_hex_hmac(secret, body + ts_text.encode()), signature.strip()):
        raise SignatureError(f"{KLAVIYO_SIGNATURE_HEADER} does not match the body")
    webhook_id = _get(headers, KLAVIYO_WEBHOOK_ID_HEADER)
    try:
        meta_id = (json.loads(body).get("meta") or {}).get("klaviyo_webhook_id")
    except (ValueError, AttributeError):
        meta_id = None
    if webhook_id and meta_id and webhook_id != meta_id:  # Klaviyo: do not process such a request
        raise SignatureError(f"{KLAVIYO_WEBHOOK_ID_HEADER} {webhook_id!r} differs from meta.klaviyo_webhook_id {meta_id!r}")
    return signature


def sign_klaviyo(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """Headers as Klaviyo would send them (for tests and local replays)."""
    ts = str(int(time.time() if timestamp is None else timestamp))
    return {KLAVIYO_TIMESTAMP_HEADER: ts, KLAVIYO_SIGNATURE_HEADER: _hex_hmac(secret, body + ts.encode())}

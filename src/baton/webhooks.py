"""Signing and verifying Baton's webhooks, for receivers (no server code needed).

Each delivery is a POST of one JSON event with these headers:

- `Baton-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" under the secret>`
- `Baton-Event-Id`: the event's id (also `id` in the body); the same on every retry, so a receiver
  that stores the ids it has handled drops a second delivery (delivery is at least once).
- `Baton-Event-Type`: `reuse_detected` or `grant.revoked` (also `type` in the body).

A receiver checks the signature over the raw body before parsing it::

    from baton.webhooks import InvalidSignature, verify

    try:
        event = verify(secret, request.headers, raw_body)
    except InvalidSignature:
        return 400

The timestamp is signed too, and a delivery older than `tolerance` seconds is refused, so a
captured request cannot be replayed later. Several `v1=` values are accepted (secret rotation).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

SIGNATURE_HEADER = "Baton-Signature"
EVENT_ID_HEADER = "Baton-Event-Id"
EVENT_TYPE_HEADER = "Baton-Event-Type"
DEFAULT_TOLERANCE = 300


class InvalidSignature(Exception):
    """The delivery is not from a holder of the secret, or is too old (or too new)."""


def sign(secret: str | bytes, body: bytes, timestamp: int) -> str:
    """The `Baton-Signature` header value for `body` sent at `timestamp`."""
    return f"t={timestamp},v1={_mac(secret, timestamp, body)}"


def verify(
    secret: str | bytes,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    now: int | None = None,
) -> dict[str, Any]:
    """The event, if `body` was signed with `secret` within `tolerance` seconds of `now`.

    `headers` is any mapping (names are matched without regard to case). Raises
    `InvalidSignature` otherwise. The comparison takes constant time.
    """
    header = _header(headers, SIGNATURE_HEADER)
    if header is None:
        raise InvalidSignature(f"no {SIGNATURE_HEADER} header")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        raise InvalidSignature(f"malformed {SIGNATURE_HEADER} header")
    current = int(time.time()) if now is None else now
    if abs(current - timestamp) > tolerance:
        raise InvalidSignature("the signature's timestamp is outside the tolerance")
    expected = _mac(secret, timestamp, body).encode()
    # Every candidate is compared, so the time taken does not depend on which one matched.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(expected, candidate.encode())
    if not matched:
        raise InvalidSignature("the signature does not match")
    try:
        event: dict[str, Any] = json.loads(body)
    except ValueError as exc:
        raise InvalidSignature("the body is not JSON") from exc
    return event


def _mac(secret: str | bytes, timestamp: int, body: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def _header(headers: Mapping[str, str], name: str) -> str | None:
    found = headers.get(name)
    if found is not None:
        return found
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None

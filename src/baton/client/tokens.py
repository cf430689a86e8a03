"""The stored token pair: what a token response becomes, and when it needs a refresh."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from baton.core.tokens import digest


def fingerprint(token: str | None) -> str | None:
    """A short, non-reversible name for a token, safe to log or hand to a hook: the first 12 hex
    digits of the SHA-256 digest under which Baton stores it."""
    if token is None:
        return None
    return digest(token).hex()[:12]


@dataclass(frozen=True, slots=True)
class TokenPair:
    """An access token, its companion refresh token, and the SDK's bookkeeping about them.

    Times are seconds since the epoch. `exchanging_since` is the intent mark: it is written to the
    store *before* the refresh token is sent to the server, so that a process that dies after the
    server rotated (and before the new pair was stored) leaves enough behind for the next process
    to retry the same refresh token inside the server's leeway. `retry_until` is the end of that
    leeway as the SDK knew it when the token left: after it, the token is never presented again
    (the server would take the retry for reuse and revoke the grant).
    """

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_at: float | None = None
    refresh_expires_at: float | None = None
    scope: str | None = None
    token_type: str = "Bearer"
    obtained_at: float = 0.0
    rotations: int = 0
    exchanging_since: float | None = None
    retry_until: float | None = None
    reauthorize: str | None = None  # set on a tombstone: why the session ended
    reauthorize_error: str | None = None  # and the server's error code, if the server ended it
    # Where the pair was issued, recorded when it is first stored and kept across rotations: the
    # refresh token is only ever sent to that issuer's token endpoint (RFC 6749 §6: a refresh
    # token is bound to the client, and the server, it was issued by), and each refresh names the
    # resource the grant was made for (RFC 8707 §2). None: not recorded (a pair stored by an
    # older version, or by an application that did not say).
    issuer: str | None = None
    token_endpoint: str | None = None
    resource: str | None = None

    @classmethod
    def tombstone(cls, reason: str, error: str | None = None) -> TokenPair:
        """What the store keeps once the session is over (the server said so, or the SDK lost a
        response it can no longer recover)."""
        return cls(access_token="", refresh_token=None, reauthorize=reason, reauthorize_error=error)

    @classmethod
    def from_response(
        cls, body: dict[str, Any], sent_at: float, previous: TokenPair | None = None
    ) -> TokenPair:
        """RFC 6749 §5.1. Lifetimes count from when the request was *sent* (never later than the
        server's clock). Without a new `refresh_token`, the previous one stays (RFC 6749 §6)."""
        access = body.get("access_token")
        if not isinstance(access, str) or not access:
            raise ValueError("token response without an access_token")
        token_type = body.get("token_type", "Bearer")
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise ValueError(f"unsupported token_type {token_type!r}")
        refresh = body.get("refresh_token")
        if refresh is not None and not isinstance(refresh, str):
            raise ValueError("refresh_token is not a string")
        rotated = refresh is not None
        if refresh is None and previous is not None:
            refresh = previous.refresh_token
        expires_in = body.get("expires_in")
        refresh_expires_in = body.get("refresh_token_expires_in")  # used when present
        scope = body.get("scope")
        if scope is None and previous is not None:
            scope = previous.scope  # RFC 6749 §5.1: omitted means unchanged
        return cls(
            access_token=access,
            refresh_token=refresh,
            expires_at=_deadline(sent_at, expires_in),
            refresh_expires_at=(
                _deadline(sent_at, refresh_expires_in)
                if rotated or previous is None
                else previous.refresh_expires_at
            ),
            scope=scope if isinstance(scope, str) else None,
            obtained_at=sent_at,
            rotations=0 if previous is None else previous.rotations + 1,
            issuer=None if previous is None else previous.issuer,
            token_endpoint=None if previous is None else previous.token_endpoint,
            resource=None if previous is None else previous.resource,
        )

    def expires_within(self, margin: float, now: float) -> bool:
        """True when the access token is expired or will be within `margin` seconds."""
        return self.expires_at is not None and now + margin >= self.expires_at

    def marked_exchanging(self, now: float, retry_until: float) -> TokenPair:
        return replace(self, exchanging_since=now, retry_until=retry_until)

    def unmarked(self) -> TokenPair:
        """The pair as it was before the mark: for an exchange that never reached the server."""
        return replace(self, exchanging_since=None, retry_until=None)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> TokenPair:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("stored token pair is not a JSON object")
        known = {f.name for f in fields(cls)}
        return cls(**{name: value for name, value in data.items() if name in known})

    def describe(self) -> dict[str, Any]:
        """What a log line or a hook may see: fingerprints and times, never a token."""
        return {
            "access_token": fingerprint(self.access_token),
            "refresh_token": fingerprint(self.refresh_token),
            "expires_at": self.expires_at,
            "rotations": self.rotations,
        }


def _deadline(sent_at: float, seconds: object) -> float | None:
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return None
    return sent_at + float(seconds)

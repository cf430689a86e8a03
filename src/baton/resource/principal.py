"""Who is calling: what a verified access token says."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from baton.resource.errors import InsufficientScope

TokenFormat = Literal["opaque", "jwt"]


@dataclass(frozen=True, slots=True)
class Principal:
    """A verified access token. `subject` is the user name (the client id for
    `client_credentials` JWTs, None for such opaque tokens); `claims` holds everything the token
    or the introspection answer carried.

    `dies_at`: set when the token is *superseded* (its companion refresh token was exchanged,
    issue 28): the instant (seconds since the epoch) the feed, or the introspection answer's
    `revocation_at`, says it dies, before its `exp`. The adapters answer it to the client as
    `Baton-Token-Superseded: dies-at=<seconds>`. None for a token with no death announced."""

    subject: str | None
    client_id: str
    scopes: frozenset[str]
    grant_id: str | None
    jti: str | None
    expires_at: int
    issued_at: int | None
    token_format: TokenFormat
    claims: Mapping[str, Any] = field(repr=False, compare=False)
    dies_at: int | None = field(default=None, compare=False)

    def has_scopes(self, required: Iterable[str]) -> bool:
        return set(required) <= self.scopes

    def require(self, *required: str) -> Principal:
        """Raises `InsufficientScope` (403) unless the token carries every scope given."""
        if not self.has_scopes(required):
            raise InsufficientScope(required)
        return self


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def from_claims(claims: Mapping[str, Any], token_format: TokenFormat) -> Principal:
    """A principal from JWT claims or an RFC 7662 answer (same member names)."""
    scope = claims.get("scope")
    expires_at = _int(claims.get("exp"))
    client_id = _str(claims.get("client_id"))
    if expires_at is None or client_id is None:
        raise ValueError("exp and client_id are required")
    return Principal(
        subject=_str(claims.get("sub")),
        client_id=client_id,
        scopes=frozenset(scope.split()) if isinstance(scope, str) else frozenset(),
        grant_id=_str(claims.get("grant_id")),
        jti=_str(claims.get("jti")),
        expires_at=expires_at,
        issued_at=_int(claims.get("iat")),
        token_format=token_format,
        claims=dict(claims),
    )

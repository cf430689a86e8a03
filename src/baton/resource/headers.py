"""Reading the bearer token from a request (RFC 6750 §2.1), the plain, framework-free entry
point `verify_request(verifier, headers, *scopes)`, and the header that tells a client its
token is superseded (`superseded_header`)."""

from __future__ import annotations

from typing import Protocol

from baton.resource.errors import InvalidRequest, MissingToken
from baton.resource.principal import Principal
from baton.resource.verifier import Verifier

# RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/=")


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header value.

    No header, or another scheme: `MissingToken` (401 with a bare challenge, RFC 6750 §3.1);
    a malformed Bearer header: `InvalidRequest` (400)."""
    if not authorization:
        raise MissingToken()
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise MissingToken()
    token = token.strip()
    if not token or not set(token) <= _B64TOKEN:
        raise InvalidRequest("malformed Authorization header")
    return token


class Headers(Protocol):
    """Anything with `get(name)`: a dict, Flask's and Django's case-insensitive headers."""

    def get(self, key: str, /) -> str | None: ...


def header_of(headers: Headers, name: str) -> str | None:
    for spelling in (name, name.title(), name.lower()):
        value = headers.get(spelling)
        if value is not None:
            return value
    return None


# Issue 28: the answer to a request whose access token is superseded (its companion refresh
# token was exchanged; the token dies at the end of the leeway, before its `exp`). An RFC 8941
# dictionary, so that members can be added: `dies-at` is an Integer, seconds since the epoch.
# `baton.client` reads it (`Hooks.on_superseded`).
SUPERSEDED_HEADER = "Baton-Token-Superseded"


def superseded_header(verifier: Verifier, principal: Principal) -> tuple[str, str] | None:
    """The `Baton-Token-Superseded` header (name, value) for a request `principal` made, or None
    when its token is not superseded or the verifier's `superseded_header` is off."""
    if principal.dies_at is None or not verifier.superseded_header:
        return None
    return SUPERSEDED_HEADER, f"dies-at={principal.dies_at}"


def verify_request(verifier: Verifier, headers: Headers, *scopes: str) -> Principal:
    """Verifies the request that carries these headers (any mapping: Flask's, Django's
    `request.headers`, a dict). Returns the principal or raises an `AuthError`, whose
    `response_parts(realm)` gives the RFC 6750 status, headers and body."""
    return verifier.verify(bearer_token(header_of(headers, "authorization")), *scopes)

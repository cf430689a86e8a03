"""The authorization code flow with PKCE: build the URL, read the callback, exchange the code."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx

from baton.client.endpoint import OAuthClient, Retryable, verdict
from baton.client.errors import AuthorizationFlowError, TokenEndpointError
from baton.client.pkce import Pkce
from baton.client.tokens import TokenPair


@dataclass(frozen=True)
class AuthorizationRequest:
    """Keep this (e.g. in the user's session) until the callback arrives."""

    url: str
    state: str
    redirect_uri: str
    pkce: Pkce = field(repr=False)
    issuer: str | None = None


def authorization_url(
    authorization_endpoint: str,
    client_id: str,
    redirect_uri: str,
    scope: str | None = None,
    *,
    issuer: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> AuthorizationRequest:
    """RFC 6749 §4.1.1 with a fresh `state` and an S256 PKCE challenge (RFC 7636 §4.3)."""
    pkce = Pkce.new()
    state = secrets.token_urlsafe(24)
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "state": state,
        "code_challenge": pkce.challenge,
        "code_challenge_method": pkce.method,
    }
    if scope is not None:
        params["scope"] = scope
    params.update(extra or {})
    parts = urlsplit(authorization_endpoint)
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    url = urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
    return AuthorizationRequest(url, state, redirect_uri, pkce, issuer)


def code_from_callback(request: AuthorizationRequest, callback_url: str) -> str:
    """The code from the redirect back to the client, after checking `state` (CSRF) and, when the
    request names the server's issuer, `iss` (RFC 9207, against mix-up): a callback without `iss`
    or with another one is refused (§2.4)."""
    query = parse_qs(urlsplit(callback_url).query)

    def one(name: str) -> str | None:
        values = query.get(name)
        return values[0] if values else None

    if not secrets.compare_digest(one("state") or "", request.state):
        raise AuthorizationFlowError("the callback's state does not match the request")
    iss = one("iss")
    if request.issuer is not None:
        # RFC 9207 §2.4: a client that knows its server sends `iss` MUST reject a response
        # without it, and compare it by simple string comparison (RFC 3986 §6.2.1).
        if iss is None:
            raise AuthorizationFlowError(
                f"the callback carries no iss, and the request expects issuer {request.issuer!r}"
            )
        if iss != request.issuer:
            raise AuthorizationFlowError(
                f"the callback comes from issuer {iss!r}, not {request.issuer!r}"
            )
    error = one("error")
    if error is not None:
        description = one("error_description") or ""
        raise AuthorizationFlowError(f"authorization refused: {error} {description}".strip())
    code = one("code")
    if not code:
        raise AuthorizationFlowError("the callback carries no code")
    return code


def exchange_code(
    client: OAuthClient,
    request: AuthorizationRequest,
    code: str,
    *,
    http: httpx.Client | None = None,
    clock: Callable[[], float] = time.time,
) -> TokenPair:
    """RFC 6749 §4.1.3 with the PKCE verifier. Store the result (e.g. `store_pair`)."""
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": request.redirect_uri,
        "code_verifier": request.pkce.verifier,
    }
    own = http is None
    http = http or httpx.Client(timeout=10.0)
    try:
        sent_at = clock()
        # A code is single use: never retried (a replayed code revokes its grant, RFC 6749 §4.1.2).
        result = verdict(client.post(http, data), sent_at, None)
    finally:
        if own:
            http.close()
    if isinstance(result, Retryable):
        raise TokenEndpointError(f"code exchange failed: {result.problem}")
    return result

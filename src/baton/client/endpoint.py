"""The client's side of the token endpoint (RFC 6749 §3.2, §5): one request, one verdict."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from baton.client.errors import ReauthorizationRequired, TokenEndpointError
from baton.client.tokens import TokenPair

AuthMethod = Literal["client_secret_basic", "client_secret_post", "none"]

# Answers that say nothing about the grant: the request may be retried.
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class OAuthClient:
    """A registered client and the token endpoint it talks to."""

    token_endpoint: str
    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    auth_method: AuthMethod | None = None  # default: basic with a secret, none without

    @property
    def method(self) -> AuthMethod:
        if self.auth_method is not None:
            return self.auth_method
        return "client_secret_basic" if self.client_secret is not None else "none"

    def post(
        self, http: httpx.Client, data: dict[str, str], timeout: float | None = None
    ) -> httpx.Response:
        body = dict(data)
        auth: httpx.Auth | httpx._client.UseClientDefault = httpx.USE_CLIENT_DEFAULT
        if self.method == "client_secret_basic":
            # RFC 6749 §2.3.1: id and secret are form-urlencoded before Basic encoding.
            from urllib.parse import quote_plus

            auth = httpx.BasicAuth(quote_plus(self.client_id), quote_plus(self.client_secret or ""))
        else:
            body["client_id"] = self.client_id
            if self.method == "client_secret_post":
                body["client_secret"] = self.client_secret or ""
        return http.post(
            self.token_endpoint,
            data=body,
            auth=auth,
            headers={"Accept": "application/json"},
            timeout=timeout if timeout is not None else http.timeout,
        )


@dataclass(frozen=True)
class Retryable:
    """No verdict on the grant: the request may be sent again."""

    problem: str


def verdict(
    response: httpx.Response, sent_at: float, previous: TokenPair | None
) -> TokenPair | Retryable:
    """A token response becomes a pair, a reason to retry, or an exception.

    `invalid_grant` is definitive (RFC 6749 §5.2): `ReauthorizationRequired` with the server's
    description. Other errors (`invalid_client`, ...) raise `TokenEndpointError`.
    """
    if response.status_code == 200:
        try:
            body = response.json()
            if not isinstance(body, dict):
                raise ValueError("token response is not a JSON object")
            return TokenPair.from_response(body, sent_at, previous)
        except ValueError as exc:
            return Retryable(f"unreadable token response: {exc}")
    if response.status_code in RETRYABLE_STATUS:
        return Retryable(f"token endpoint answered {response.status_code}")
    error, description = _error_of(response)
    if error == "invalid_grant":
        raise ReauthorizationRequired(description or "invalid_grant", error)
    raise TokenEndpointError(
        f"token endpoint refused the request ({response.status_code} {error}): {description}",
        error,
        response.status_code,
    )


def _error_of(response: httpx.Response) -> tuple[str | None, str | None]:
    try:
        body: Any = response.json()
    except ValueError:
        return None, response.text[:200] or None
    if not isinstance(body, dict):
        return None, None
    error = body.get("error")
    description = body.get("error_description")
    return (
        error if isinstance(error, str) else None,
        description if isinstance(description, str) else None,
    )

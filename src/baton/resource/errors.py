"""RFC 6750 failures: what a resource server answers when a bearer token does not do.

Every failure is an `AuthError` that knows its status and its `WWW-Authenticate` challenge, so
the ASGI middleware, the Flask helper and the Django helper all answer the same way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

# RFC 6750 §3: error_description and scope values use %x20-21 / %x23-5B / %x5D-7E only
# (no double quote, no backslash).
_UNSAFE = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")


def quoted(value: str) -> str:
    """`value` as an RFC 6750 §3 quoted attribute value (unsafe characters replaced)."""
    return '"' + _UNSAFE.sub("?", value) + '"'


class AuthError(Exception):
    """A request that does not carry an acceptable bearer token."""

    status: int = 401
    error: str | None = None

    def __init__(self, description: str = "") -> None:
        super().__init__(description)
        self.description = description

    def challenge(self, realm: str, resource_metadata: str | None = None) -> str | None:
        """The `WWW-Authenticate` value (RFC 6750 §3), or None when none applies.

        `resource_metadata`: the URL of the resource's RFC 9728 metadata, which the challenge
        then names (RFC 9728 §5.1: "resource_metadata: The URL of the protected resource
        metadata"), so that a client learns which authorization server to ask (MCP
        authorization: servers "MUST use the HTTP header WWW-Authenticate when returning a 401
        Unauthorized to indicate the location of the resource server metadata URL")."""
        parts = [f"realm={quoted(realm)}"]
        if self.error is not None:
            parts.append(f"error={quoted(self.error)}")
            if self.description:
                parts.append(f"error_description={quoted(self.description)}")
        parts.extend(self._extra())
        if resource_metadata is not None:
            parts.append(f"resource_metadata={quoted(resource_metadata)}")
        return "Bearer " + ", ".join(parts)

    def _extra(self) -> list[str]:
        return []

    def response_parts(
        self, realm: str, resource_metadata: str | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """Status, headers and JSON body, for any framework (`resource_metadata`: see
        `challenge`)."""
        headers = {"content-type": "application/json", "cache-control": "no-store"}
        challenge = self.challenge(realm, resource_metadata)
        if challenge is not None:
            headers["www-authenticate"] = challenge
        body: dict[str, str] = {"error": self.error or "unauthorized"}
        if self.description:
            body["error_description"] = self.description
        return self.status, headers, json.dumps(body).encode()


class MissingToken(AuthError):
    """RFC 6750 §3.1: a request without authentication gets a challenge and no error code."""

    status = 401
    error = None


class InvalidRequest(AuthError):
    """RFC 6750 §3.1 `invalid_request`: a malformed Authorization header."""

    status = 400
    error = "invalid_request"


class InvalidToken(AuthError):
    """RFC 6750 §3.1 `invalid_token`: expired, revoked, malformed or otherwise invalid."""

    status = 401
    error = "invalid_token"


class InsufficientScope(AuthError):
    """RFC 6750 §3.1 `insufficient_scope`: 403, naming the scope the resource needs."""

    status = 403
    error = "insufficient_scope"

    def __init__(self, required: Iterable[str], description: str = "") -> None:
        self.required = tuple(required)
        super().__init__(description or f"requires scope: {' '.join(self.required)}")

    def _extra(self) -> list[str]:
        return [f"scope={quoted(' '.join(self.required))}"]


class VerifierUnavailable(AuthError):
    """The authorization server could not be asked (introspection or keys unreachable) while
    the verifier needed it: 503, never a silent acceptance."""

    status = 503
    error = "temporarily_unavailable"

    retry_after = 1  # seconds (RFC 9110 §10.2.3 Retry-After)

    def challenge(self, realm: str, resource_metadata: str | None = None) -> str | None:
        # No challenge: the token may be good, and a client told to authenticate again would
        # start a new authorization against a server that cannot be reached.
        return None

    def response_parts(
        self, realm: str, resource_metadata: str | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        status, headers, body = super().response_parts(realm, resource_metadata)
        headers["retry-after"] = str(self.retry_after)
        return status, headers, body


def json_object(response: Any, what: str) -> Mapping[str, Any]:
    """The JSON object a 200 answer of the authorization server carries, or VerifierUnavailable
    saying what was wrong with `what` (the JWKS, the introspection answer)."""
    if response.status_code != 200:
        raise VerifierUnavailable(f"{what} answered {response.status_code}")
    try:
        body = response.json()
    except (ValueError, RecursionError) as exc:  # RecursionError: deeply nested JSON
        raise VerifierUnavailable(f"{what} is not JSON") from exc
    if not isinstance(body, dict):
        raise VerifierUnavailable(f"{what} is not a JSON object")
    return body

"""Authorization server metadata (RFC 8414)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from baton.config import Settings
from baton.server.runtime.context import baton

CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]


def metadata_document(settings: Settings, paths: Mapping[str, str]) -> dict[str, Any]:
    """The metadata, its endpoints' URLs from `paths` (member name -> path: the route table's,
    `baton.server.routes`), served at /.well-known/oauth-authorization-server."""
    issuer = settings.issuer.rstrip("/")
    policy = settings.policy
    return {
        "issuer": issuer,
        **{member: issuer + path for member, path in paths.items()},
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "introspection_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS[:2],
        # RFC 9207: the authorization response carries `iss`, against mix-up attacks.
        "authorization_response_iss_parameter_supported": True,
        # Baton's rotation, advertised so that clients can plan retries inside the leeway.
        "refresh_token_rotation": {
            "retry_policy": policy.retry.value,
            "leeway_seconds": policy.leeway,
        },
    }


async def jwks_endpoint(request: Request) -> JSONResponse:
    """RFC 7517 key set of the keys that sign (or will soon sign) JWT access tokens."""
    app = baton(request)
    return JSONResponse(
        app.keys.jwks(app.clock.now()), headers={"Cache-Control": "public, max-age=60"}
    )

"""Authorization server metadata (RFC 8414) and OpenID Provider metadata (OIDC Discovery 1.0).

One document serves both: RFC 8414 §2 lets the authorization server metadata carry OpenID
Provider members ("Authorization servers MAY ... use additional metadata parameters"), and an
OpenID Connect relying party reads /.well-known/openid-configuration (Discovery §4) where an OAuth
client reads /.well-known/oauth-authorization-server. While OpenID Connect is off, the OAuth
document names neither /userinfo nor any OpenID member, and the discovery document is not served.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from baton.config import Settings
from baton.core.claims import OIDC_SCOPES, STANDARD_CLAIMS
from baton.core.client_assertion import ASYMMETRIC_ALGS, PRIVATE_KEY_JWT
from baton.server.runtime.context import baton

# The confidential clients' methods (introspection takes no other, RFC 7662 §2.1), and `none`.
CONFIDENTIAL_AUTH_METHODS = ["client_secret_basic", "client_secret_post", PRIVATE_KEY_JWT]
CLIENT_AUTH_METHODS = [*CONFIDENTIAL_AUTH_METHODS, "none"]

# The route table's metadata members whose endpoint answers 404 while OpenID Connect is off, and is
# then not advertised. (/session/end signs the browser out either way: RP-Initiated Logout needs
# no ID token, only a registered `post_logout_redirect_uri` to return to.)
OIDC_ENDPOINTS = frozenset({"userinfo_endpoint"})
# RFC 7591 §3's endpoint, advertised (RFC 8414 §2) only while registration is on.
REGISTRATION_ENDPOINT = "registration_endpoint"


# The `alg` an ID token's JWS header carries, per client (`id_token_signed_response_alg`): RS256
# first, which OIDC Core §15.1 requires every provider to support. An Ed25519 key signs under
# RFC 9864's name `Ed25519` (`baton.core.keys`): `EdDSA` is not listed, since no ID token of
# Baton's ever carries it, and a relying party that chose it from this list would get ID tokens
# it cannot accept.
ID_TOKEN_ALGS = ["RS256", "ES256", "Ed25519"]

# The ID token's own claims (Core §2, §3.1.3.6, Back-Channel Logout's `sid`) and the standard
# claims of the `profile` and `email` scopes that users may hold (Core §5.1, §5.4).
ID_TOKEN_CLAIMS = ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "at_hash"]
ID_TOKEN_CLAIMS += ["sid", "azp", "acr", "amr"]
CLAIMS_SUPPORTED = [*ID_TOKEN_CLAIMS, *sorted(STANDARD_CLAIMS)]

# Core §3.1.2.1: `prompt` values; each is answered (`select_account` by the sign-in page, since
# a browser holds one session at a time).
PROMPT_VALUES = ["none", "login", "consent", "select_account"]


def metadata_document(
    settings: Settings, paths: Mapping[str, str], oidc: bool = False
) -> dict[str, Any]:
    """The metadata, its endpoints' URLs from `paths` (member name -> path: the route table's,
    `baton.server.routes`), served at /.well-known/oauth-authorization-server; with the OpenID
    Provider members when `oidc` (OpenID Connect is on), and then at
    /.well-known/openid-configuration too."""
    issuer = settings.issuer_identifier
    policy = settings.policy
    hidden = set() if oidc else set(OIDC_ENDPOINTS)
    if settings.registration == "off":
        hidden.add(REGISTRATION_ENDPOINT)  # /register answers 404
    document: dict[str, Any] = {
        "issuer": issuer,
        **{member: issuer + path for member, path in paths.items() if member not in hidden},
        # RFC 8414 §2 (RECOMMENDED); what MCP clients ask for when their server names none.
        "scopes_supported": scopes_supported(settings, oidc),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "introspection_endpoint_auth_methods_supported": CONFIDENTIAL_AUTH_METHODS,
        # RFC 8414 §2: the JWS algorithms of `private_key_jwt` assertions ("none" MUST NOT be
        # used); the revocation and introspection endpoints take the same.
        "token_endpoint_auth_signing_alg_values_supported": list(ASYMMETRIC_ALGS),
        "revocation_endpoint_auth_signing_alg_values_supported": list(ASYMMETRIC_ALGS),
        "introspection_endpoint_auth_signing_alg_values_supported": list(ASYMMETRIC_ALGS),
        # RFC 9207: the authorization response carries `iss`, against mix-up attacks.
        "authorization_response_iss_parameter_supported": True,
        # draft-ietf-oauth-client-id-metadata-document §4: an https `client_id` with a path is
        # the URL of the client's metadata, fetched at /authorize.
        "client_id_metadata_document_supported": settings.client_metadata_documents,
        # Baton's rotation, advertised so that clients can plan retries inside the leeway: the
        # server's defaults. A client's own policy and its scheduled change (issue 28) are per
        # client, so at `client_policy_endpoint` (from the route table), not in this document.
        "refresh_token_rotation": {
            "retry_policy": policy.retry.value,
            "leeway_seconds": policy.leeway,
        },
    }
    if oidc:
        document |= openid_members()
    return document


def scopes_supported(settings: Settings, oidc: bool) -> list[str]:
    """RFC 8414 `scopes_supported`: the OpenID Connect scopes while it is on (Discovery §3: "The
    server MUST support the openid scope value"), the scopes a client no operator registered may
    be granted, and those the operator lists (`--scopes-supported`). Operator-registered clients
    may hold others (RFC 8414 §2: "Servers MAY choose not to advertise some supported scope
    values")."""
    listed = [*(OIDC_SCOPES if oidc else ()), *settings.dynamic_client_scopes]
    listed += settings.scopes_supported
    return list(dict.fromkeys(listed))


def openid_members() -> dict[str, Any]:
    """The OpenID Provider metadata (Discovery §3) beyond RFC 8414's members."""
    return {
        # Core §8: public subjects, or pairwise ones per client (`--subject-type pairwise`).
        "subject_types_supported": ["public", "pairwise"],
        "id_token_signing_alg_values_supported": ID_TOKEN_ALGS,
        # Discovery §3 userinfo_signing_alg_values_supported is left out: the UserInfo response
        # is plain JSON (Core §5.3.2), never a signed JWT.
        "claims_supported": CLAIMS_SUPPORTED,
        # Discovery §3: "If omitted, the implementation supports only normal Claims."
        "claim_types_supported": ["normal"],
        # Core §5.5: the `claims` request parameter; no request objects (Core §6).
        "claims_parameter_supported": True,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "require_request_uri_registration": False,
        "prompt_values_supported": PROMPT_VALUES,
        # Back-Channel Logout 1.0 §2.1, with the logout token's `sid`; no front-channel logout.
        "frontchannel_logout_supported": False,
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
    }


# The members the OpenID Provider configuration always carries (the OpenAPI document requires
# them): the UserInfo endpoint's URL and every OpenID member above.
OIDC_REQUIRED = ("userinfo_endpoint", "scopes_supported", *openid_members())


async def jwks_endpoint(request: Request) -> JSONResponse:
    """RFC 7517 key set of the keys that sign (or will soon sign) JWT access tokens."""
    app = baton(request)
    return JSONResponse(
        app.keys.jwks(app.clock.now()), headers={"Cache-Control": "public, max-age=60"}
    )

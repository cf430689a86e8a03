"""The OpenAPI 3.1 description of every HTTP endpoint, served at /openapi.json.

It describes what the server really does, errors included, precisely enough for schemathesis to
drive it (`tests/hardening/test_schemathesis.py`, `bench/fuzz.py`): every status an operation can
answer, the RFC 6749 §5.2 error body with its headers (`WWW-Authenticate` on 401, `Retry-After`
on 429 and 503), and links from a token response to the operations that take its tokens. Objects
the server may extend later carry `additionalProperties: true`; the few that are fixed by an RFC
(an inactive introspection answer is exactly `{"active": false}`) are closed.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from baton.config import Settings
from baton.core.vocabulary import ErrorCode, FeedEntryKind
from baton.server.runtime.context import baton

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
HTML = "text/html"

Schema = dict[str, Any]


def _ref(kind: str, name: str) -> Schema:
    return {"$ref": f"#/components/{kind}/{name}"}


def _string(description: str, **extra: Any) -> Schema:
    return {"type": "string", "description": description, **extra}


# Every parameter is refused (400) if its name or value holds a control character; any other
# parameter is ignored (RFC 6749 §3.1), so form bodies are open to more of them.
PRINTABLE = "^[^\\u0000-\\u001f\\u007f]*$"


def _param(description: str, **extra: Any) -> Schema:
    return {"type": "string", "pattern": PRINTABLE, "description": description, **extra}


def _form(required: list[str], properties: dict[str, Schema], description: str = "") -> Schema:
    form: Schema = {
        "type": "object",
        "required": required,
        "properties": properties,
        "propertyNames": {"pattern": PRINTABLE},
        "additionalProperties": {"type": "string", "pattern": PRINTABLE},
    }
    if description:
        form["description"] = description
    return form


def _form_body(schema: Schema, required: bool = True) -> Schema:
    return {"required": required, "content": {FORM: {"schema": schema}}}


def _json(description: str, schema: Schema, headers: dict[str, Any] | None = None) -> Schema:
    response: Schema = {"description": description, "content": {JSON: {"schema": schema}}}
    if headers:
        response["headers"] = headers
    return response


def _page(description: str, headers: dict[str, Any] | None = None) -> Schema:
    content = {HTML: {"schema": {"type": "string"}}}
    response: Schema = {"description": description, "content": content}
    if headers:
        response["headers"] = headers
    return response


def _redirect(description: str) -> Schema:
    return {"description": description, "headers": {"Location": _ref("headers", "Location")}}


# The statuses every form-reading OAuth endpoint (token, revoke, introspect) can answer besides
# its success, each an RFC 6749 §5.2 JSON body.
def _oauth_errors(bad_request: str) -> dict[str, Any]:
    return {
        "400": _bad_request(bad_request),
        "401": _ref("responses", "InvalidClient"),
        "413": _ref("responses", "TooLarge"),
        "415": _ref("responses", "WrongContentType"),
        "429": _ref("responses", "TooManyRequests"),
        "503": _ref("responses", "Unavailable"),
    }


def _bad_request(description: str) -> Schema:
    return _json(description, _ref("schemas", "OAuthError"), {"Cache-Control": _no_store()})


def _no_store() -> Schema:
    return {
        "description": "`no-store`: token responses and errors are never cached (RFC 6749 §5.1).",
        "required": True,
        "schema": {"type": "string", "pattern": "no-store"},
    }


# The pages' forms (login, consent, logout) answer errors as an HTML page, not JSON.
_PAGE_FORM_ERRORS: dict[str, Any] = {
    "400": _page("A malformed form (repeated or non-UTF-8 parameters), or no decision."),
    "403": _page("The form's CSRF token is missing or does not match the session's."),
    "413": _page("The form exceeds the body size limit."),
    "415": _page("The form is not `application/x-www-form-urlencoded`."),
    "503": _ref("responses", "UnavailablePage"),
}

_AUTHORIZE_LIMITED = _page(
    "The address's rate limit is spent: the error page.",
    {"Retry-After": _ref("headers", "Retry-After")},
)

_AUTHORIZATION_REQUEST: dict[str, Schema] = {
    "response_type": _param("Must be `code` (RFC 6749 §4.1.1)."),
    "client_id": _param("The client's identifier."),
    "redirect_uri": _param(
        "One of the client's registered redirect URIs, compared as exact strings (RFC 9700 "
        "§4.1.3); optional when the client registered exactly one."
    ),
    "scope": _param("Space-separated scope tokens (RFC 6749 §3.3); default: the client's."),
    "resource": _param(
        "RFC 8707 resource indicator, may repeat: an absolute URI, no fragment, among the "
        "client's allowed resources (else `invalid_target`); default: all of them."
    ),
    "state": _param("Opaque value returned unchanged in the redirect."),
    "code_challenge": _param(
        "PKCE S256 challenge: 43 base64url characters (RFC 7636 §4.2); required unless an "
        "operator registered a confidential client with PKCE optional."
    ),
    "code_challenge_method": _param("Must be `S256` when a challenge is sent."),
}

_CLIENT_CREDENTIALS_IN_BODY: dict[str, Schema] = {
    "client_id": _param(
        "`client_secret_post` or `none` (public clients): the client's identifier. With Basic "
        "credentials it may be repeated here, and must then be equal."
    ),
    "client_secret": _param(
        "`client_secret_post`: the client's secret. Never together with Basic credentials "
        "(RFC 6749 §2.3)."
    ),
}

_TOKEN_BODIES: dict[str, Schema] = {
    "AuthorizationCodeGrant": _form(
        ["grant_type", "code"],
        {
            "grant_type": {"const": "authorization_code"},
            "code": _param("The code from the authorization response (`bat_ac_...`)."),
            "redirect_uri": _param(
                "Required, and identical, if the authorization request carried one."
            ),
            "code_verifier": _param("The PKCE verifier: 43 to 128 unreserved characters."),
            "resource": _param(
                "RFC 8707 resource indicator (may repeat): some of the resources the user "
                "consented to; default: all of them. The token's `aud`."
            ),
            **_CLIENT_CREDENTIALS_IN_BODY,
        },
        "RFC 6749 §4.1.3 with PKCE (RFC 7636 §4.5).",
    ),
    "RefreshTokenGrant": _form(
        ["grant_type", "refresh_token"],
        {
            "grant_type": {"const": "refresh_token"},
            "refresh_token": _param("The refresh token (`bat_rt_...`)."),
            "scope": _param("A subset of the grant's scope."),
            "resource": _param(
                "RFC 8707 resource indicator (may repeat): some of the grant's resources, "
                "never another (`invalid_target`); default: all of them. The token's `aud`."
            ),
            **_CLIENT_CREDENTIALS_IN_BODY,
        },
        (
            "RFC 6749 §6 with rotation: an active token is exchanged for a new pair; inside the "
            "leeway a retry gets the same pair (`replay`) or a sibling (`fork`); after it, reuse "
            "revokes the grant."
        ),
    ),
    "ClientCredentialsGrant": _form(
        ["grant_type"],
        {
            "grant_type": {"const": "client_credentials"},
            "scope": _param("A subset of the client's registered scope; default: all of it."),
            "resource": _param(
                "RFC 8707 resource indicator (may repeat): some of the client's allowed "
                "resources (`--resource`); default: all of them. The token's `aud`."
            ),
            **_CLIENT_CREDENTIALS_IN_BODY,
        },
        "RFC 6749 §4.4, for confidential clients; issues no refresh token.",
    ),
}

_SCHEMAS: dict[str, Schema] = {
    "OAuthError": {
        "type": "object",
        "description": "RFC 6749 §5.2 error response.",
        "required": ["error", "error_description"],
        "properties": {
            "error": {
                "type": "string",
                "enum": [
                    ErrorCode.INVALID_REQUEST,
                    ErrorCode.INVALID_CLIENT,
                    ErrorCode.INVALID_GRANT,
                    ErrorCode.UNAUTHORIZED_CLIENT,
                    ErrorCode.UNSUPPORTED_GRANT_TYPE,
                    ErrorCode.INVALID_SCOPE,
                    ErrorCode.INVALID_TARGET,
                    ErrorCode.TEMPORARILY_UNAVAILABLE,
                    ErrorCode.TOO_MANY_REQUESTS,
                    ErrorCode.SLOW_DOWN,
                    ErrorCode.SERVER_ERROR,
                ],
            },
            "error_description": {"type": "string", "description": "Which rule fired."},
            "error_uri": {"type": "string"},
        },
        "additionalProperties": True,
    },
    "TokenResponse": {
        "type": "object",
        "description": (
            "RFC 6749 §5.1, plus `refresh_token_expires_in`. A refresh token comes with its "
            "lifetime; `client_credentials` issues none."
        ),
        "required": ["access_token", "token_type", "expires_in", "scope"],
        "properties": {
            "access_token": _string("`bat_at_...` (opaque) or a JWT (RFC 9068)."),
            "token_type": {"const": "Bearer"},
            "expires_in": {"type": "integer", "minimum": 0},
            "refresh_token": _string("`bat_rt_...`", pattern="^bat_rt_[0-9A-Za-z]{49}$"),
            "refresh_token_expires_in": {"type": "integer", "minimum": 0},
            "scope": {"type": "string"},
        },
        "dependentRequired": {
            "refresh_token": ["refresh_token_expires_in"],
            "refresh_token_expires_in": ["refresh_token"],
        },
        "additionalProperties": True,
    },
    "ActiveToken": {
        "type": "object",
        "description": "RFC 7662 §2.2 for an active token, with Baton's grant and generation.",
        "required": [
            "active",
            "scope",
            "client_id",
            "token_type",
            "exp",
            "iat",
            "iss",
            "grant_id",
            "generation",
        ],
        "properties": {
            "active": {"const": True},
            "scope": {"type": "string"},
            "client_id": {"type": "string"},
            "token_type": {"enum": ["Bearer", "refresh_token"]},
            "exp": {"type": "integer"},
            "iat": {"type": "integer"},
            "iss": {"type": "string"},
            "sub": {"type": "string"},
            "username": {"type": "string"},
            "aud": {"type": "string"},
            "jti": {"type": "string"},
            "grant_id": {"type": "string"},
            "generation": {"type": "integer", "minimum": 0},
            "revocation_at": {
                "type": "integer",
                "description": "When a live token already scheduled to die will die.",
            },
        },
        "additionalProperties": True,
    },
    "InactiveToken": {
        "type": "object",
        "description": "RFC 7662 §2.2: an inactive, unknown or foreign token; nothing more.",
        "required": ["active"],
        "properties": {"active": {"const": False}},
        "additionalProperties": False,
    },
    "Introspection": {
        "oneOf": [_ref("schemas", "ActiveToken"), _ref("schemas", "InactiveToken")],
    },
    "Metadata": {
        "type": "object",
        "description": "RFC 8414 authorization server metadata.",
        "required": [
            "issuer",
            "authorization_endpoint",
            "token_endpoint",
            "revocation_endpoint",
            "introspection_endpoint",
            "jwks_uri",
            "response_types_supported",
            "grant_types_supported",
            "code_challenge_methods_supported",
            "token_endpoint_auth_methods_supported",
            "refresh_token_rotation",
        ],
        "properties": {
            "issuer": {"type": "string"},
            "authorization_endpoint": {"type": "string"},
            "token_endpoint": {"type": "string"},
            "revocation_endpoint": {"type": "string"},
            "introspection_endpoint": {"type": "string"},
            "jwks_uri": {"type": "string"},
            "response_types_supported": {"type": "array", "items": {"type": "string"}},
            "response_modes_supported": {"type": "array", "items": {"type": "string"}},
            "grant_types_supported": {"type": "array", "items": {"type": "string"}},
            "code_challenge_methods_supported": {"type": "array", "items": {"type": "string"}},
            "token_endpoint_auth_methods_supported": {
                "type": "array",
                "items": {"type": "string"},
            },
            "revocation_endpoint_auth_methods_supported": {
                "type": "array",
                "items": {"type": "string"},
            },
            "introspection_endpoint_auth_methods_supported": {
                "type": "array",
                "items": {"type": "string"},
            },
            "authorization_response_iss_parameter_supported": {"type": "boolean"},
            "refresh_token_rotation": {
                "type": "object",
                "required": ["retry_policy", "leeway_seconds"],
                "properties": {
                    "retry_policy": {"enum": ["replay", "fork", "strict"]},
                    "leeway_seconds": {"type": "integer", "minimum": 0},
                },
                "additionalProperties": True,
            },
        },
        "additionalProperties": True,
    },
    "JWKS": {
        "type": "object",
        "description": "RFC 7517 key set: the keys that sign, or will soon sign, JWTs.",
        "required": ["keys"],
        "properties": {
            "keys": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["kty", "kid", "alg", "use"],
                    "properties": {
                        "kty": {"enum": ["EC", "RSA", "OKP"]},
                        "kid": {"type": "string"},
                        "alg": {"enum": ["ES256", "RS256", "Ed25519"]},
                        "use": {"const": "sig"},
                    },
                    "additionalProperties": True,
                },
            }
        },
        "additionalProperties": True,
    },
    "RevocationEvent": {
        "type": "object",
        "required": ["id", "kind", "grant_id", "effective_at", "expires_at"],
        "properties": {
            "id": {"type": "integer", "minimum": 1},
            "kind": {"enum": [FeedEntryKind.ACCESS_TOKEN, FeedEntryKind.GRANT]},
            "grant_id": {"type": "string"},
            "effective_at": {"type": "integer"},
            "expires_at": {"type": "integer"},
            "jti": {"type": ["string", "null"]},
            "token_digest": {"type": ["string", "null"], "pattern": "^[0-9a-f]{64}$"},
        },
        "additionalProperties": True,
    },
    "RevocationPage": {
        "type": "object",
        "required": ["events", "watermark"],
        "properties": {
            "events": {"type": "array", "items": _ref("schemas", "RevocationEvent")},
            "watermark": {
                "type": "integer",
                "minimum": 0,
                "description": "Resume from here with `since`: nothing after it is missed.",
            },
        },
        "additionalProperties": True,
    },
    **_TOKEN_BODIES,
    "TokenRequest": {
        "oneOf": [_ref("schemas", name) for name in _TOKEN_BODIES],
        "discriminator": {
            "propertyName": "grant_type",
            "mapping": {
                "authorization_code": "#/components/schemas/AuthorizationCodeGrant",
                "refresh_token": "#/components/schemas/RefreshTokenGrant",
                "client_credentials": "#/components/schemas/ClientCredentialsGrant",
            },
        },
    },
    "TokenParameter": _form(
        ["token"],
        {
            "token": _param("An access or refresh token; the kind is read from its prefix."),
            "token_type_hint": _param(
                "`access_token` or `refresh_token`; never needed, and never hides a token "
                "(RFC 7009 §2.1)."
            ),
            **_CLIENT_CREDENTIALS_IN_BODY,
        },
    ),
}

_HEADERS: dict[str, Any] = {
    "Location": {"required": True, "schema": {"type": "string"}},
    "WWW-Authenticate": {
        "description": '`Basic realm="baton"`: the scheme that works (RFC 6749 §5.2).',
        "required": True,
        "schema": {"type": "string", "pattern": "^Basic "},
    },
    "Retry-After": {
        "description": "Seconds to wait before trying again (RFC 9110 §10.2.3).",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    },
}


def _responses() -> dict[str, Any]:
    error = _ref("schemas", "OAuthError")
    no_store = {"Cache-Control": _no_store()}
    retry = _ref("headers", "Retry-After")
    return {
        "InvalidClient": _json(
            "`invalid_client`: unknown client, wrong secret, malformed or missing credentials.",
            error,
            {**no_store, "WWW-Authenticate": _ref("headers", "WWW-Authenticate")},
        ),
        "TooLarge": _json("The body exceeds the size limit.", error, no_store),
        "WrongContentType": _json(
            "The body is not `application/x-www-form-urlencoded`.", error, no_store
        ),
        "TooManyRequests": _json(
            "Rate limited, per client and per source address.", error, {"Retry-After": retry}
        ),
        "Unavailable": _json(
            "The database is unreachable; the server recovers by itself.",
            error,
            {"Retry-After": retry},
        ),
        "UnavailablePage": {
            "description": "The database is unreachable; the server recovers by itself.",
            "headers": {"Retry-After": retry},
            "content": {HTML: {"schema": {"type": "string"}}, JSON: {"schema": error}},
        },
    }


def _token_links() -> dict[str, Any]:
    """From a token response to every operation that takes one of its tokens."""
    refresh = "$response.body#/refresh_token"
    access = "$response.body#/access_token"
    exact = {"x-schemathesis": {"merge_body": False}}
    return {
        "RefreshWithTheNewToken": {
            "operationId": "token",
            "description": "Rotate: the refresh token just issued is exchanged for the next pair.",
            "requestBody": {"grant_type": "refresh_token", "refresh_token": refresh},
            **exact,
        },
        "RetryTheRefresh": {
            "operationId": "token",
            "description": (
                "The refresh request that produced this response, again: a retry inside the "
                "leeway (the same pair under `replay`)."
            ),
            "requestBody": "$request.body",
            **exact,
        },
        "RevokeTheRefreshToken": {
            "operationId": "revoke",
            "requestBody": {"token": refresh},
            **exact,
        },
        "RevokeTheAccessToken": {
            "operationId": "revoke",
            "requestBody": {"token": access},
            **exact,
        },
        "IntrospectTheRefreshToken": {
            "operationId": "introspect",
            "requestBody": {"token": refresh},
            **exact,
        },
        "IntrospectTheAccessToken": {
            "operationId": "introspect",
            "requestBody": {"token": access},
            **exact,
        },
    }


def _paths(settings: Settings) -> dict[str, Any]:
    policy = settings.policy
    security: list[dict[str, list[str]]] = [{"client_secret_basic": []}, {}]
    basic_only: list[dict[str, list[str]]] = [{"client_secret_basic": []}]
    auth_note = (
        " Client authentication: `client_secret_basic` (the `Authorization: Basic` header), "
        "`client_secret_post` (`client_id` and `client_secret` in the body) or, for public "
        "clients, `none` (`client_id` alone); one method per request."
    )
    cursor = {"type": "string", "pattern": "^[0-9]{0,18}$"}
    return {
        "/.well-known/oauth-authorization-server": {
            "get": {
                "operationId": "metadata",
                "summary": "RFC 8414 authorization server metadata",
                "responses": {"200": _json("The metadata.", _ref("schemas", "Metadata"))},
            }
        },
        "/jwks.json": {
            "get": {
                "operationId": "jwks",
                "summary": "RFC 7517 key set of the JWT signing keys",
                "responses": {"200": _json("The key set.", _ref("schemas", "JWKS"))},
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "responses": {"200": _json("OpenAPI 3.1.", {"type": "object"})},
            }
        },
        "/": {
            "get": {
                "operationId": "home",
                "summary": "Home page (signed in or not)",
                "responses": {"200": _page("The page.")},
            }
        },
        "/static/baton.css": {
            "get": {
                "operationId": "stylesheet",
                "summary": "The pages' stylesheet",
                "responses": {
                    "200": {
                        "description": "CSS.",
                        "content": {"text/css": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/authorize": {
            "get": {
                "operationId": "authorize",
                "summary": "RFC 6749 §4.1.1 authorization request (code flow, PKCE S256)",
                "description": (
                    "Errors before the redirect URI is trusted (unknown client, unregistered "
                    "redirect URI, malformed query) are shown as a page; later ones are "
                    "redirected to the client with `state` and `iss` (RFC 9207)."
                ),
                "parameters": [
                    {"name": name, "in": "query", "required": False, "schema": schema}
                    for name, schema in _AUTHORIZATION_REQUEST.items()
                ],
                "responses": {
                    "200": _page("The consent page (signed in, scope not yet consented to)."),
                    "302": _redirect(
                        "To the client's redirect URI with `code` (or `error`), `state`, `iss`."
                    ),
                    "303": _redirect("To `/login?next=...` when nobody is signed in."),
                    "400": _page("The request cannot be redirected to the client: why."),
                    "429": _AUTHORIZE_LIMITED,
                    "503": _ref("responses", "UnavailablePage"),
                },
            },
            "post": {
                "operationId": "consent",
                "summary": "The consent form's Allow or Deny",
                "requestBody": _form_body(
                    _form(
                        ["csrf", "decision"],
                        {
                            "csrf": _param("The CSRF token of the session."),
                            "decision": {"enum": ["allow", "deny"]},
                            **_AUTHORIZATION_REQUEST,
                        },
                    )
                ),
                "responses": {
                    "303": _redirect(
                        "To the client with `code` or `error=access_denied`; or to `/login`."
                    ),
                    "429": _AUTHORIZE_LIMITED,
                    **_PAGE_FORM_ERRORS,
                },
            },
        },
        "/login": {
            "get": {
                "operationId": "loginPage",
                "summary": "The sign-in form",
                "parameters": [
                    {
                        "name": "next",
                        "in": "query",
                        "required": False,
                        "description": "Where to continue: only ever `/authorize?...`.",
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {"200": _page("The form.")},
            },
            "post": {
                "operationId": "login",
                "summary": "Sign in (a fresh session: no fixation)",
                "requestBody": _form_body(
                    _form(
                        ["csrf", "username", "password"],
                        {
                            "csrf": _param("The CSRF token of the session."),
                            "next": _param("Where to continue: only ever `/authorize?...`."),
                            "username": _param("The user's name."),
                            "password": _param("The password.", format="password"),
                        },
                    )
                ),
                "responses": {
                    "303": _redirect("Signed in: on to `next` (or `/`)."),
                    "401": _page("Unknown username or wrong password."),
                    "429": {
                        "description": "Too many attempts: try again later.",
                        "headers": {"Retry-After": _ref("headers", "Retry-After")},
                        "content": {
                            HTML: {"schema": {"type": "string"}},
                            JSON: {"schema": _ref("schemas", "OAuthError")},
                        },
                    },
                    **_PAGE_FORM_ERRORS,
                },
            },
        },
        "/logout": {
            "get": {
                "operationId": "logoutPage",
                "summary": "The sign-out form",
                "responses": {"200": _page("The form.")},
            },
            "post": {
                "operationId": "logout",
                "summary": "End the browser session (grants stay: revoke them with /revoke)",
                "requestBody": _form_body(
                    _form(["csrf"], {"csrf": _param("The CSRF token of the session.")})
                ),
                "responses": {
                    "200": _page("Signed out."),
                    **{k: v for k, v in _PAGE_FORM_ERRORS.items() if k != "503"},
                },
            },
        },
        "/token": {
            "post": {
                "operationId": "token",
                "summary": "RFC 6749 §3.2 token endpoint",
                "description": (
                    "`authorization_code`, `refresh_token` (rotating; the "
                    f"`{policy.retry.value}` retry policy with a {policy.leeway} s leeway) and "
                    "`client_credentials`. Request bodies over "
                    f"{settings.max_body_bytes} bytes get 413; repeated parameters 400; empty "
                    "values count as omitted (RFC 6749 §3.1)." + auth_note
                ),
                "security": security,
                "requestBody": _form_body(_ref("schemas", "TokenRequest")),
                "responses": {
                    "200": _json(
                        "A token response (the same pair again for a retry under `replay`).",
                        _ref("schemas", "TokenResponse"),
                        {"Cache-Control": _no_store()},
                    )
                    | {"links": _token_links()},
                    **_oauth_errors(
                        "`invalid_request`, `invalid_grant` (naming the rule that fired), "
                        "`invalid_scope`, `invalid_target`, `unauthorized_client` or "
                        "`unsupported_grant_type`."
                    ),
                },
            }
        },
        "/revoke": {
            "post": {
                "operationId": "revoke",
                "summary": "RFC 7009 token revocation",
                "description": (
                    "A refresh token revokes its grant at once; an access token only itself. "
                    "Unknown tokens answer 200; another client's token 400." + auth_note
                ),
                "security": security,
                "requestBody": _form_body(_ref("schemas", "TokenParameter")),
                "responses": {
                    "200": {
                        "description": "Revoked, or nothing to revoke.",
                        "headers": {"Cache-Control": _no_store()},
                    },
                    **_oauth_errors(
                        "`invalid_request`: a missing token, or a token issued to another client."
                    ),
                },
            }
        },
        "/introspect": {
            "post": {
                "operationId": "introspect",
                "summary": "RFC 7662 token introspection (confidential clients)",
                "description": (
                    "A client sees its own tokens; a client registered with "
                    "`--resource-server` any token. Anything else looks inactive."
                ),
                "security": security,
                "requestBody": _form_body(_ref("schemas", "TokenParameter")),
                "responses": {
                    "200": _json(
                        "The token's state at this instant.",
                        _ref("schemas", "Introspection"),
                        {"Cache-Control": _no_store()},
                    ),
                    **_oauth_errors("`invalid_request`: a missing or malformed parameter."),
                },
            }
        },
        "/revocations": {
            "get": {
                "operationId": "revocations",
                "summary": "The revocation feed as a page, for resource servers",
                "security": basic_only,
                "parameters": [
                    {
                        "name": "since",
                        "in": "query",
                        "required": False,
                        "description": "A watermark from an earlier page; default 0.",
                        "schema": cursor,
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "description": "At most this many events (at most 1000).",
                        "schema": cursor,
                    },
                ],
                "responses": {
                    "200": _json(
                        "Events after `since`, and the watermark to resume from.",
                        _ref("schemas", "RevocationPage"),
                        {"Cache-Control": _no_store()},
                    ),
                    "400": _bad_request("`since` or `limit` is not a non-negative integer."),
                    "401": _ref("responses", "InvalidClient"),
                    "403": _json(
                        "`unauthorized_client`: not registered with `--resource-server`.",
                        _ref("schemas", "OAuthError"),
                        {"Cache-Control": _no_store()},
                    ),
                    "503": _ref("responses", "Unavailable"),
                },
            }
        },
        "/revocations/stream": {
            "get": {
                "operationId": "revocationStream",
                "summary": "The revocation feed as Server-Sent Events",
                "description": (
                    "Every event after the cursor, then each new one as it is committed; each "
                    "message's `id:` is a watermark to resume from. Comment lines keep the "
                    "connection alive."
                ),
                "security": basic_only,
                "parameters": [
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "required": False,
                        "description": "Resume after this watermark (wins over `since`).",
                        "schema": cursor,
                    },
                    {
                        "name": "since",
                        "in": "query",
                        "required": False,
                        "description": "Resume after this watermark.",
                        "schema": cursor,
                    },
                ],
                "responses": {
                    "200": {
                        "description": "`event: revocation` messages, JSON `data:` each.",
                        "headers": {"Cache-Control": _no_store()},
                        "content": {
                            "text/event-stream": {
                                "schema": {"type": "string"},
                                # OpenAPI 3.2 names this `itemSchema`; 3.1 only has extensions.
                                "x-itemSchema": _ref("schemas", "RevocationEvent"),
                            }
                        },
                    },
                    "400": _bad_request("The cursor is not a non-negative integer."),
                    "401": _ref("responses", "InvalidClient"),
                    "403": _json(
                        "`unauthorized_client`: not registered with `--resource-server`.",
                        _ref("schemas", "OAuthError"),
                        {"Cache-Control": _no_store()},
                    ),
                    "429": _json(
                        "`too_many_requests`: this resource server already holds as many"
                        " streams open on this server process as it may.",
                        _ref("schemas", "OAuthError"),
                        {
                            "Cache-Control": _no_store(),
                            "Retry-After": _ref("headers", "Retry-After"),
                        },
                    ),
                    "503": _ref("responses", "Unavailable"),
                },
            }
        },
    }


def metrics_paths(settings: Settings) -> dict[str, Any]:
    """/metrics, when it is served (baton.server.observability.metrics)."""
    if settings.metrics_token is None and not settings.metrics_public:
        return {}
    responses: dict[str, Any] = {
        "200": {
            "description": "Prometheus text exposition format.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    }
    if settings.metrics_token is not None:
        responses["401"] = {
            "description": "No or another bearer token than the configured metrics token.",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    return {
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics"
                + (" (Authorization: Bearer <metrics token>)" if settings.metrics_token else ""),
                "responses": responses,
            }
        }
    }


def openapi_document(settings: Settings) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Baton",
            "version": "0.1.0",
            "description": (
                "An OAuth 2.0 authorization server with rotating refresh tokens. Errors are RFC "
                "6749 §5.2 JSON, except on the browser pages (login, consent, logout), which "
                "answer HTML. Any path answers 404, and any method a path does not list 405 "
                "with `Allow`, as `invalid_request` JSON."
            ),
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": settings.issuer.rstrip("/")}],
        "paths": {**_paths(settings), **metrics_paths(settings)},
        "components": {
            "schemas": _SCHEMAS,
            "responses": _responses(),
            "headers": _HEADERS,
            "securitySchemes": {
                "client_secret_basic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": (
                        "RFC 6749 §2.3.1: client_id and secret, each form-encoded, then Base64."
                    ),
                }
            },
        },
    }


async def openapi_endpoint(request: Request) -> JSONResponse:
    return JSONResponse(openapi_document(baton(request).settings))

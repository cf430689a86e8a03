"""The OpenAPI 3.1 description of every HTTP endpoint, served at /openapi.json.

It describes what the server really does, errors included, precisely enough for schemathesis to
drive it (`tests/hardening/test_schemathesis.py`, `bench/fuzz.py`): every status an operation can
answer, the RFC 6749 §5.2 error body with its headers (`WWW-Authenticate` on 401, `Retry-After`
on 429 and 503), and links from a token response to the operations that take its tokens. Objects
the server may extend later carry `additionalProperties: true`; the few that are fixed by an RFC
(an inactive introspection answer is exactly `{"active": false}`) are closed.

The paths come from the route table (`baton.server.routes`), each route naming one of the
operations below and giving it its summary; the schemas of the request forms and of the response
bodies are generated from their types (`baton.wire`).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import types
from functools import cache
from typing import (
    Annotated,
    Any,
    Literal,
    NotRequired,
    Required,
    Union,
    get_args,
    get_origin,
    get_type_hints,
    is_typeddict,
)

import baton
from baton import wire
from baton.config import Settings
from baton.core.claims import STANDARD_CLAIMS
from baton.core.tokens import DIGEST_TEXT_PATTERN
from baton.core.vocabulary import ErrorCode
from baton.server.endpoints.metadata import OIDC_REQUIRED
from baton.server.routing import Operation, Table

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
HTML = "text/html"

Schema = dict[str, Any]


def _ref(kind: str, name: str) -> Schema:
    return {"$ref": f"#/components/{kind}/{name}"}


# -- schemas generated from the wire types ------------------------------------------------------

# The components' names of the wire types (a member of one of these types refers to it).
_NAMES: dict[type, str] = {
    wire.TokenResponse: "TokenResponse",
    wire.ErrorResponse: "OAuthError",
    wire.ActiveToken: "ActiveToken",
    wire.InactiveToken: "InactiveToken",
    wire.FeedEvent: "RevocationEvent",
    wire.FeedPage: "RevocationPage",
}
_JSON_TYPES: dict[Any, str] = {str: "string", int: "integer", bool: "boolean", type(None): "null"}


def _member(hint: Any) -> Schema:
    """The JSON Schema of one member's type hint."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (NotRequired, Required):
        return _member(args[0])
    if origin is Annotated:
        schema = _member(args[0])
        for facet in hint.__metadata__:
            if isinstance(facet, wire.Facet):
                schema |= {k: v for k, v in dataclasses.asdict(facet).items() if v is not None}
        return schema
    if origin is Literal:
        return {"const": args[0]} if len(args) == 1 else {"enum": list(args)}
    if origin in (Union, types.UnionType):
        if all(arg in _JSON_TYPES for arg in args):
            return {"type": [_JSON_TYPES[arg] for arg in args]}
        return {"anyOf": [_member(arg) for arg in args]}
    if origin is list:
        return {"type": "array", "items": _member(args[0])}
    if hint in _NAMES:
        return _ref("schemas", _NAMES[hint])
    if is_typeddict(hint):  # a member object without a name of its own
        return object_schema(hint)
    return {"type": _JSON_TYPES[hint]}


def object_schema(shape: type, **extra: Any) -> Schema:
    """The schema of a wire TypedDict: its docstring, members and required members."""
    hints = get_type_hints(shape, include_extras=True)
    schema: Schema = {"type": "object"}
    if shape.__doc__:
        schema["description"] = " ".join(shape.__doc__.split())
    required: frozenset[str] = getattr(shape, "__required_keys__", frozenset())
    schema["required"] = [name for name in hints if name in required]
    schema["properties"] = {name: _member(hint) for name, hint in hints.items()}
    return {**schema, "additionalProperties": True, **extra}


# Every parameter is refused (400) if its name or value holds a control character; any other
# parameter is ignored (RFC 6749 §3.1), so form bodies are open to more of them.
PRINTABLE = "^[^\\u0000-\\u001f\\u007f]*$"


def form_schema(shape: type) -> Schema:
    """The schema of a wire form (a TypedDict of string parameters): each string printable, and
    any other parameter allowed (and ignored)."""
    schema = object_schema(
        shape,
        propertyNames={"pattern": PRINTABLE},
        additionalProperties={"type": "string", "pattern": PRINTABLE},
    )
    for member in schema["properties"].values():
        if member.get("type") == "string":
            member["pattern"] = PRINTABLE
    return schema


# -- building blocks ----------------------------------------------------------------------------

CURSOR = {"type": "string", "pattern": "^[0-9]{0,18}$"}


def query_parameter(name: str, description: str, schema: Schema, where: str = "query") -> Schema:
    parameter = {"name": name, "in": where, "required": False, "description": description}
    return parameter | {"schema": schema}


def path_parameter(name: str, description: str) -> Schema:
    """A path's `{name}`: required, a string."""
    parameter = {"name": name, "in": "path", "required": True, "description": description}
    return parameter | {"schema": {"type": "string"}}


def _form_body(schema: Schema) -> Schema:
    return {"required": True, "content": {FORM: {"schema": schema}}}


def response(description: str, headers: dict[str, Any] | None, **content: Schema) -> Schema:
    response: Schema = {"description": description}
    if content:
        response["content"] = {
            {"json": JSON, "html": HTML}.get(kind, kind): {"schema": schema}
            for kind, schema in content.items()
        }
    return response | ({"headers": headers} if headers else {})


def _json(description: str, schema: Schema, headers: dict[str, Any] | None = None) -> Schema:
    return response(description, headers, json=schema)


def _page(description: str, headers: dict[str, Any] | None = None) -> Schema:
    return response(description, headers, html={"type": "string"})


def _redirect(description: str) -> Schema:
    return response(description, {"Location": _ref("headers", "Location")})


_ERROR = _ref("schemas", "OAuthError")
_RETRY = {"Retry-After": _ref("headers", "Retry-After")}
NO_STORE = {
    "Cache-Control": {
        "description": "`no-store`: token responses and errors are never cached (RFC 6749 §5.1).",
        "required": True,
        "schema": {"type": "string", "pattern": "no-store"},
    }
}


def no_store_json(description: str, schema: Schema = _ERROR, **headers: Any) -> Schema:
    return _json(description, schema, {**NO_STORE, **headers})


# The statuses every form-reading OAuth endpoint (token, revoke, introspect) can answer besides
# its success, each an RFC 6749 §5.2 JSON body.
def _oauth_errors(bad_request: str) -> dict[str, Any]:
    refs = {"401": "InvalidClient", "413": "TooLarge", "415": "WrongContentType"}
    refs |= {"429": "TooManyRequests", "503": "Unavailable"}
    return {"400": no_store_json(bad_request)} | {
        status: _ref("responses", name) for status, name in refs.items()
    }


# The feed's refusals (GET /revocations and /revocations/stream).
def _feed_errors(bad_cursor: str) -> dict[str, Any]:
    return {
        "400": no_store_json(bad_cursor),
        "401": _ref("responses", "InvalidClient"),
        "403": no_store_json("`unauthorized_client`: not registered with `--resource-server`."),
        "503": _ref("responses", "Unavailable"),
    }


# The pages' forms (login, consent, logout) answer errors as an HTML page, not JSON.
_PAGE_FORM_ERRORS: dict[str, Any] = {
    "400": _page("A malformed form (repeated or non-UTF-8 parameters), or no decision."),
    "403": _page("The form's CSRF token is missing or does not match the session's."),
    "413": _page("The form exceeds the body size limit."),
    "415": _page("The form is not `application/x-www-form-urlencoded`."),
    "503": _ref("responses", "UnavailablePage"),
}
_AUTHORIZE_LIMITED = _page("The address's rate limit is spent: the error page.", _RETRY)

# -- components ---------------------------------------------------------------------------------


def _error_schema() -> Schema:
    schema = object_schema(wire.ErrorResponse)
    # The codes Baton answers: RFC 6749 §5.2's, RFC 8707's `invalid_target`, and those of a
    # refusal to serve (rate limits, an unreachable database, a bug).
    schema["properties"]["error"]["enum"] = [
        *(ErrorCode.INVALID_REQUEST, ErrorCode.INVALID_CLIENT, ErrorCode.INVALID_GRANT),
        *(ErrorCode.UNAUTHORIZED_CLIENT, ErrorCode.UNSUPPORTED_GRANT_TYPE, ErrorCode.INVALID_SCOPE),
        *(ErrorCode.INVALID_TARGET, ErrorCode.TEMPORARILY_UNAVAILABLE, ErrorCode.TOO_MANY_REQUESTS),
        ErrorCode.SERVER_ERROR,
    ]
    return schema


# The forms of POST /token, /revoke and /introspect, components named by their wire types (the
# pages' forms are written in their operations); /token's is told apart by `grant_type`.
GRANTS: tuple[type, ...] = get_args(wire.TokenRequest)
FORMS: dict[str, Schema] = {
    shape.__name__: form_schema(shape) for shape in (*GRANTS, wire.TokenParameter)
}


def _grant_type(grant: type) -> str:
    grant_type: str = get_args(get_type_hints(grant)["grant_type"])[0]
    return grant_type


SCHEMAS: dict[str, Schema] = {
    "OAuthError": _error_schema(),
    "TokenResponse": object_schema(
        wire.TokenResponse,
        dependentRequired={
            "refresh_token": ["refresh_token_expires_in"],
            "refresh_token_expires_in": ["refresh_token"],
        },
    ),
    "ActiveToken": object_schema(wire.ActiveToken),
    "InactiveToken": object_schema(wire.InactiveToken, additionalProperties=False),
    "Introspection": {
        "oneOf": [_ref("schemas", "ActiveToken"), _ref("schemas", "InactiveToken")],
    },
    "Metadata": object_schema(wire.Metadata),
    # OIDC Discovery 1.0 §3: the same document, its OpenID members then always present.
    "OpenIDConfiguration": {
        "allOf": [
            _ref("schemas", "Metadata"),
            {"required": list(OIDC_REQUIRED)},
        ],
    },
    # OIDC Core §5.3.2: `sub`, and the standard claims (§5.1) the token's scope and the grant's
    # `claims` request release (unset ones left out).
    "UserInfo": {
        "type": "object",
        "description": "The claims about the user the access token was granted for.",
        "required": ["sub"],
        "properties": {
            "sub": {"type": "string"},
            "email_verified": {"type": "boolean"},
            "updated_at": {"type": "integer"},
            **{
                name: {"type": "string"}
                for name in sorted(STANDARD_CLAIMS - {"email_verified", "updated_at"})
            },
        },
        "additionalProperties": True,
    },
    # RFC 6750 §3: a bearer token's refusal; no `error` when the request carried no token.
    "BearerError": {
        "type": "object",
        "required": ["error_description"],
        "properties": {
            "error": {
                "enum": [
                    ErrorCode.INVALID_REQUEST,
                    ErrorCode.INVALID_TOKEN,
                    ErrorCode.INSUFFICIENT_SCOPE,
                ]
            },
            "error_description": {"type": "string"},
        },
        "additionalProperties": True,
    },
    "UserInfoForm": form_schema(wire.UserInfoForm),
    "JWKS": object_schema(wire.KeySet),
    "RevocationEvent": object_schema(wire.FeedEvent),
    "RevocationPage": object_schema(wire.FeedPage),
    **FORMS,
    "TokenRequest": {
        "oneOf": [_ref("schemas", grant.__name__) for grant in GRANTS],
        "discriminator": {
            "propertyName": "grant_type",
            "mapping": {
                _grant_type(grant): f"#/components/schemas/{grant.__name__}" for grant in GRANTS
            },
        },
    },
}
_HEADERS: dict[str, Any] = {
    "Bearer-Challenge": {
        "description": (
            '`Bearer realm="baton"`, with `error`, `error_description` (and, for '
            "`insufficient_scope`, `scope`) when a token was presented (RFC 6750 §3)."
        ),
        "required": True,
        "schema": {"type": "string", "pattern": "^Bearer "},
    },
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

_UNREACHABLE = "The database is unreachable; the server recovers by itself."
_RESPONSES: dict[str, Any] = {
    "InvalidClient": no_store_json(
        "`invalid_client`: unknown client, wrong secret, malformed or missing credentials.",
        **{"WWW-Authenticate": _ref("headers", "WWW-Authenticate")},
    ),
    "TooLarge": no_store_json("The body exceeds the size limit."),
    "WrongContentType": no_store_json("The body is not `application/x-www-form-urlencoded`."),
    "TooManyRequests": _json("Rate limited, per client and per source address.", _ERROR, _RETRY),
    "Unavailable": _json(_UNREACHABLE, _ERROR, _RETRY),
    "UnavailablePage": response(_UNREACHABLE, _RETRY, html={"type": "string"}, json=_ERROR),
}


def _token_links() -> dict[str, Any]:
    """From a token response to every operation that takes one of its tokens."""
    refresh = "$response.body#/refresh_token"
    access = "$response.body#/access_token"
    exact = {"x-schemathesis": {"merge_body": False}}
    links: dict[str, Any] = {
        "RefreshWithTheNewToken": {
            "operationId": "token",
            "description": "Rotate: the refresh token just issued is exchanged for the next pair.",
            "requestBody": {"grant_type": "refresh_token", "refresh_token": refresh},
        },
        "RetryTheRefresh": {
            "operationId": "token",
            "description": (
                "The refresh request that produced this response, again: a retry inside the "
                "leeway (the same pair under `replay`)."
            ),
            "requestBody": "$request.body",
        },
    }
    links["UserInfoWithTheAccessToken"] = {
        "operationId": "userinfoPost",
        "description": "The user's claims, while the access token lives (OpenID Connect on).",
        "requestBody": {"access_token": access},
    }
    for operation in ("revoke", "introspect"):
        for kind, token in (("Refresh", refresh), ("Access", access)):
            name = f"{operation.capitalize()}The{kind}Token"
            links[name] = {"operationId": operation, "requestBody": {"token": token}}
    return {name: link | exact for name, link in links.items()}


# -- the operations, each named by its route in baton.server.routes -----------------------------

_CLIENT_AUTH: list[dict[str, list[str]]] = [{"client_secret_basic": []}, {}]
_BASIC_ONLY: list[dict[str, list[str]]] = [{"client_secret_basic": []}]
_AUTH_NOTE = (
    " Client authentication: `client_secret_basic` (the `Authorization: Basic` header), "
    "`client_secret_post` (`client_id` and `client_secret` in the body), `private_key_jwt` "
    "(`client_assertion_type` and `client_assertion` in the body, for clients registered so) "
    "or, for public clients, `none` (`client_id` alone); one method per request."
)


def operation(operation_id: str, responses: dict[str, Any], **more: Any) -> Operation:
    """An operation; its summary is its route's (`baton.server.routes`)."""
    return {"operationId": operation_id, **more, "responses": responses}


METADATA = operation(
    "metadata",
    {"200": _json("The metadata.", _ref("schemas", "Metadata"))},
)
OPENID_CONFIGURATION = operation(
    "openidConfiguration",
    {
        "200": _json("The OpenID Provider configuration.", _ref("schemas", "OpenIDConfiguration")),
        "404": no_store_json("OpenID Connect is off (no key-encryption key)."),
    },
)
JWKS = operation(
    "jwks",
    {"200": _json("The key set.", _ref("schemas", "JWKS"))},
)
OPENAPI = operation("openapi", {"200": _json("OpenAPI 3.1.", {"type": "object"})})
_PROBE_CHECKS: Schema = {
    "type": "object",
    "description": "Each check and its result: `ok`, or what is wrong.",
    "additionalProperties": {"type": "string"},
}
HEALTHZ = operation(
    "healthz",
    {
        "200": _json(
            "The process is up.",
            {
                "type": "object",
                "required": ["status"],
                "properties": {"status": {"const": "ok"}},
            },
            NO_STORE,
        )
    },
)
_READINESS: Schema = {
    "type": "object",
    "required": ["status", "checks"],
    "properties": {"status": {"enum": ["ready", "not_ready"]}, "checks": _PROBE_CHECKS},
}
READYZ = operation(
    "readyz",
    {
        "200": _json("Ready for traffic.", _READINESS, NO_STORE),
        "503": _json("Not ready: `checks` says why.", _READINESS, NO_STORE),
    },
)
HOME = operation("home", {"200": _page("The page.")})
STYLESHEET = operation(
    "staticFile",
    {
        "200": response(
            "The file: the theme's (`--theme-dir` `static/`), else the built-in one.",
            None,
            **{"text/css": {"type": "string"}, "application/octet-stream": {"type": "string"}},
        ),
        "404": response("No such file, or a name that is not one plain file name.", None),
    },
    parameters=[
        {
            "name": "name",
            "in": "path",
            "required": True,
            "description": "A file name (no `/`, not starting with `.`), e.g. `baton.css`.",
            "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"},
        }
    ],
)
AUTHORIZE = operation(
    "authorize",
    {
        "200": _page("The consent page (signed in, scope not yet consented to)."),
        "302": _redirect("To the client's redirect URI with `code` (or `error`), `state`, `iss`."),
        "303": _redirect(
            "To `/login?next=...` when nobody is signed in; or, when a login or consent app "
            "applies, to it with a `login_challenge` or `consent_challenge` (and the "
            "`baton_flow` cookie)."
        ),
        "400": _page("The request cannot be redirected to the client: why."),
        "429": _AUTHORIZE_LIMITED,
        "503": _ref("responses", "UnavailablePage"),
    },
    description=(
        "Errors before the redirect URI is trusted (unknown client, unregistered redirect URI, "
        "malformed query) are shown as a page; later ones are redirected to the client with "
        "`state` and `iss` (RFC 9207)."
    ),
    parameters=[
        {"name": name, "in": "query", "required": False, "schema": schema}
        for name, schema in form_schema(wire.AuthorizationRequest)["properties"].items()
    ],
)
CONSENT = operation(
    "consent",
    {
        "303": _redirect("To the client with `code` or `error=access_denied`; or to `/login`."),
        "429": _AUTHORIZE_LIMITED,
        **_PAGE_FORM_ERRORS,
    },
    requestBody=_form_body(form_schema(wire.ConsentForm)),
)
_LOGIN = form_schema(wire.LoginForm)
LOGIN_PAGE = operation(
    "loginPage",
    {"200": _page("The form.")},
    parameters=[
        query_parameter("next", _LOGIN["properties"]["next"]["description"], {"type": "string"})
    ],
)
LOGIN = operation(
    "login",
    {
        "303": _redirect("Signed in: on to `next` (or `/`)."),
        "401": _page("Unknown username or wrong password."),
        "429": response(
            "Too many attempts: try again later.", _RETRY, html={"type": "string"}, json=_ERROR
        ),
        **_PAGE_FORM_ERRORS,
    },
    requestBody=_form_body(_LOGIN),
)
LOGOUT_PAGE = operation("logoutPage", {"200": _page("The form.")})
LOGOUT = operation(
    "logout",
    {
        "200": _page("Signed out."),
        **{k: v for k, v in _PAGE_FORM_ERRORS.items() if k != "503"},
    },
    requestBody=_form_body(form_schema(wire.LogoutForm)),
)


_BEARER_CHALLENGE = {"WWW-Authenticate": _ref("headers", "Bearer-Challenge")}
_BEARER_ERROR = _ref("schemas", "BearerError")


def _userinfo(operation_id: str, **more: Any) -> Operation:
    return operation(
        operation_id,
        {
            "200": no_store_json("The user's claims.", _ref("schemas", "UserInfo")),
            "400": no_store_json(
                "`invalid_request`: a malformed `Authorization` header, the token sent twice "
                "(header and body), or a malformed form.",
                _BEARER_ERROR,
            ),
            "401": no_store_json(
                "No bearer token (a challenge without `error`), or `invalid_token`: unknown, "
                "expired, revoked, or dead with its refresh token.",
                _BEARER_ERROR,
                **_BEARER_CHALLENGE,
            ),
            "403": no_store_json(
                "`insufficient_scope`: the token was not granted `openid` for a user.",
                _BEARER_ERROR,
                **_BEARER_CHALLENGE,
            ),
            "404": no_store_json("OpenID Connect is off (no key-encryption key)."),
            "429": _ref("responses", "TooManyRequests"),
            "503": _ref("responses", "Unavailable"),
        },
        description=(
            "OpenID Connect Core §5.3. The access token is a bearer token (RFC 6750): in the "
            "`Authorization` header, or in a POST's form body; a token in the query is ignored. "
            "The answer holds `sub` (pairwise for a pairwise client) and the claims the token's "
            "scope (`profile`, `email`) and the grant's `claims` request release."
        ),
        security=[{"bearer": []}, {}],
        **more,
    )


USERINFO = _userinfo("userinfo")
USERINFO_POST = _userinfo(
    "userinfoPost",
    requestBody={
        "required": False,
        "content": {FORM: {"schema": _ref("schemas", "UserInfoForm")}},
    },
)
USERINFO_POST["responses"] |= {
    "413": _ref("responses", "TooLarge"),
    "415": _ref("responses", "WrongContentType"),
}


def token(settings: Settings) -> Operation:
    policy = settings.policy
    return operation(
        "token",
        {
            "200": no_store_json(
                "A token response (the same pair again for a retry under `replay`).",
                _ref("schemas", "TokenResponse"),
            )
            | {"links": _token_links()},
            **_oauth_errors(
                "`invalid_request`, `invalid_grant` (naming the rule that fired), "
                "`invalid_scope`, `invalid_target`, `unauthorized_client` or "
                "`unsupported_grant_type`."
            ),
        },
        description=(
            "`authorization_code`, `refresh_token` (rotating; the "
            f"`{policy.retry.value}` retry policy with a {policy.leeway} s leeway) and "
            "`client_credentials`. Request bodies over "
            f"{settings.max_body_bytes} bytes get 413; repeated parameters 400; empty "
            "values count as omitted (RFC 6749 §3.1)." + _AUTH_NOTE
        ),
        security=_CLIENT_AUTH,
        requestBody=_form_body(_ref("schemas", "TokenRequest")),
    )


REVOKE = operation(
    "revoke",
    {
        "200": response("Revoked, or nothing to revoke.", NO_STORE),
        **_oauth_errors("`invalid_request`: a missing token, or a token issued to another client."),
    },
    description=(
        "A refresh token revokes its grant at once; an access token only itself. Unknown tokens "
        "answer 200; another client's token 400." + _AUTH_NOTE
    ),
    security=_CLIENT_AUTH,
    requestBody=_form_body(_ref("schemas", "TokenParameter")),
)
INTROSPECT = operation(
    "introspect",
    {
        "200": no_store_json(
            "The token's state at this instant.", _ref("schemas", "Introspection")
        ),
        **_oauth_errors("`invalid_request`: a missing or malformed parameter."),
    },
    description=(
        "A client sees its own tokens; a client registered with `--resource-server` any token. "
        "Anything else looks inactive."
    ),
    security=_CLIENT_AUTH,
    requestBody=_form_body(_ref("schemas", "TokenParameter")),
)
REVOCATIONS = operation(
    "revocations",
    {
        "200": no_store_json(
            "Events after `since`, and the watermark to resume from.",
            _ref("schemas", "RevocationPage"),
        ),
        **_feed_errors("`since` or `limit` is not a non-negative integer."),
    },
    security=_BASIC_ONLY,
    parameters=[
        query_parameter("since", "A watermark from an earlier page; default 0.", CURSOR),
        query_parameter("limit", "At most this many events (at most 1000).", CURSOR),
    ],
)
REVOCATION_STREAM = operation(
    "revocationStream",
    {
        "200": {
            "description": "`event: revocation` messages, JSON `data:` each.",
            "headers": NO_STORE,
            "content": {
                "text/event-stream": {
                    "schema": {"type": "string"},
                    # OpenAPI 3.2 names this `itemSchema`; 3.1 only has extensions.
                    "x-itemSchema": _ref("schemas", "RevocationEvent"),
                }
            },
        },
        **_feed_errors("The cursor is not a non-negative integer."),
        "429": no_store_json(
            "`too_many_requests`: this resource server already holds as many streams open on "
            "this server process as it may.",
            **_RETRY,
        ),
    },
    description=(
        "Every event after the cursor, then each new one as it is committed; each message's "
        "`id:` is a watermark to resume from. Comment lines keep the connection alive."
    ),
    security=_BASIC_ONLY,
    parameters=[
        query_parameter(
            "Last-Event-ID", "Resume after this watermark (wins over `since`).", CURSOR, "header"
        ),
        query_parameter("since", "Resume after this watermark.", CURSOR),
    ],
)


# -- dynamic client registration: RFC 7591 and RFC 7592 -------------------------------------------

_URL = {"type": "string", "maxLength": 2000}
_STRINGS = {"type": "array", "items": {"type": "string"}}
# RFC 7591 §2 client metadata as /register reads it (`baton.core.registration`): unknown members
# are ignored (RFC 7591 §2), a null member counts as absent.
_CLIENT_METADATA: Schema = {
    "type": "object",
    "description": (
        "RFC 7591 §2 client metadata. `redirect_uris` is required for `authorization_code` (the "
        "default grant); `application_type` `web` (the default) takes only https redirect URIs "
        "off localhost, `native` also http on 127.0.0.1 or [::1] (any port) and private-use "
        "schemes. `scope` is narrowed to the scopes the server allows such clients."
    ),
    "properties": {
        "redirect_uris": {**_STRINGS, "maxItems": 20},
        "token_endpoint_auth_method": {
            "enum": ["none", "client_secret_basic", "client_secret_post", "private_key_jwt"]
        },
        "grant_types": {
            "type": "array",
            "items": {"enum": ["authorization_code", "refresh_token", "client_credentials"]},
        },
        "response_types": {"type": "array", "items": {"const": "code"}},
        "application_type": {"enum": ["web", "native"]},
        "scope": {"type": "string"},
        "client_name": {"type": "string", "maxLength": 200},
        "contacts": {**_STRINGS, "maxItems": 10},
        "client_uri": _URL,
        "logo_uri": _URL,
        "tos_uri": _URL,
        "policy_uri": _URL,
        "jwks_uri": _URL,
        "software_id": {"type": "string", "maxLength": 200},
        "software_version": {"type": "string", "maxLength": 200},
    },
    "additionalProperties": True,
}
SCHEMAS["ClientMetadata"] = _CLIENT_METADATA
# RFC 7591 §3.2.1 / RFC 7592 §3: the metadata as registered, and the server's members.
SCHEMAS["ClientInformation"] = {
    "allOf": [
        _ref("schemas", "ClientMetadata"),
        {
            "type": "object",
            "required": [
                "client_id",
                "client_id_issued_at",
                "registration_access_token",
                "registration_client_uri",
            ],
            "properties": {
                "client_id": {"type": "string"},
                "client_secret": {"type": "string"},
                "client_id_issued_at": {"type": "integer"},
                "client_secret_expires_at": {"const": 0},
                "registration_access_token": {"type": "string"},
                "registration_client_uri": {"type": "string"},
            },
            "dependentRequired": {"client_secret": ["client_secret_expires_at"]},
        },
    ]
}
# RFC 7591 §3.2.2: a refused registration.
SCHEMAS["RegistrationError"] = {
    "type": "object",
    "required": ["error", "error_description"],
    "properties": {
        "error": {
            "enum": [
                ErrorCode.INVALID_REDIRECT_URI,
                ErrorCode.INVALID_CLIENT_METADATA,
                ErrorCode.INVALID_REQUEST,
            ]
        },
        "error_description": {"type": "string"},
    },
    "additionalProperties": True,
}
_REGISTRATION_OFF = no_store_json("Registration is off (`--registration off`, the default).")
_REGISTRATION_TOKEN = no_store_json(
    "`invalid_token`: the registration access token is missing or wrong, or the client is "
    "unknown or deleted (one answer for all).",
    _BEARER_ERROR,
    **_BEARER_CHALLENGE,
)
_REGISTRATION_BODY = {
    "required": True,
    "content": {
        JSON: {
            "schema": _ref("schemas", "ClientMetadata"),
            "example": {
                "redirect_uris": ["http://127.0.0.1/callback"],
                "application_type": "native",
                "token_endpoint_auth_method": "none",
                "grant_types": ["authorization_code", "refresh_token"],
                "client_name": "An MCP client",
            },
        }
    },
}
_REGISTRATION_REFUSED = no_store_json(
    "`invalid_redirect_uri` or `invalid_client_metadata` (RFC 7591 §3.2.2), saying which member "
    "and why.",
    _ref("schemas", "RegistrationError"),
)
# What else a metadata body (POST /register, PUT /register/{client_id}) may be refused with.
_BODY_REFUSED = {
    "413": _ref("responses", "TooLarge"),
    "415": no_store_json("The body is not `application/json`."),
}
_CLIENT_PATH = path_parameter("client_id", "The `client_id` the registration answered.")
_INFORMATION = _ref("schemas", "ClientInformation")

REGISTER = operation(
    "register",
    {
        "201": no_store_json(
            "The client information response (RFC 7591 §3.2.1): its `client_id`, a "
            "`client_secret` for the secret methods (shown once), and the registration access "
            "token for RFC 7592.",
            _INFORMATION,
        ),
        "400": _REGISTRATION_REFUSED,
        "401": no_store_json(
            "`invalid_token`: `--registration token` and no or another initial access token.",
            _BEARER_ERROR,
            **_BEARER_CHALLENGE,
        ),
        "404": _REGISTRATION_OFF,
        **_BODY_REFUSED,
        "429": _ref("responses", "TooManyRequests"),
        "503": _ref("responses", "Unavailable"),
    },
    description=(
        "RFC 7591 §3. Open (`--registration open`) or with the initial access token as a bearer "
        "token (`--registration token`); rate-limited per source address. The client gets "
        "PKCE required, the scopes and resources the server allows such clients, and is "
        "deleted if no grant used it within `--registration-expiry`."
    ),
    security=[{"bearer": []}, {}],
    requestBody=_REGISTRATION_BODY,
)
_MANAGED = {
    "401": _REGISTRATION_TOKEN,
    "404": _REGISTRATION_OFF,
    "429": _ref("responses", "TooManyRequests"),
    "503": _ref("responses", "Unavailable"),
}
REGISTRATION_READ = operation(
    "readRegistration",
    {"200": no_store_json("The client information (RFC 7592 §3).", _INFORMATION), **_MANAGED},
    description="RFC 7592 §2.1, with the registration access token as a bearer token.",
    security=[{"bearer": []}],
    parameters=[_CLIENT_PATH],
)
REGISTRATION_UPDATE = operation(
    "updateRegistration",
    {
        "200": no_store_json("The client information as updated (RFC 7592 §3).", _INFORMATION),
        "400": _REGISTRATION_REFUSED,
        **_BODY_REFUSED,
        **_MANAGED,
    },
    description=(
        "RFC 7592 §2.2: the metadata replaced (a member left out takes its default); "
        "`client_id` must be the client's and a `client_secret` its secret; the token endpoint "
        "authentication method cannot change between none, a secret and `private_key_jwt`."
    ),
    security=[{"bearer": []}],
    parameters=[_CLIENT_PATH],
    requestBody=_REGISTRATION_BODY,
)
REGISTRATION_DELETE = operation(
    "deleteRegistration",
    {"204": response("Deleted: every grant of the client revoked.", NO_STORE), **_MANAGED},
    description="RFC 7592 §2.3, as `baton client delete`: the id is never given again.",
    security=[{"bearer": []}],
    parameters=[_CLIENT_PATH],
)


_TEXT = {"text/plain": {"type": "string"}}


def metrics_paths(settings: Settings) -> dict[str, Any]:
    """/metrics, when it is served (baton.server.observability.metrics)."""
    if settings.metrics_token is None and not settings.metrics_public:
        return {}
    responses = {"200": response("Prometheus text exposition format.", None, **_TEXT)}
    if settings.metrics_token is not None:
        responses["401"] = _json(
            "No or another bearer token than the configured metrics token.", {"type": "object"}
        )
    summary = "Prometheus metrics" + (
        " (Authorization: Bearer <metrics token>)" if settings.metrics_token else ""
    )
    return {"/metrics": {"get": operation("metrics", responses, summary=summary)}}


@cache
def version() -> str:
    """The installed distribution's version (`baton-oauth`: another project's `baton` may be
    installed beside it); the package's own when it runs from a source tree not installed."""
    try:
        return importlib.metadata.version(baton.DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return baton.__version__


def openapi_document(settings: Settings, table: Table) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Baton",
            "version": version(),
            "description": (
                "An OAuth 2.0 authorization server with rotating refresh tokens. Errors are RFC "
                "6749 §5.2 JSON, except on the browser pages (login, consent, logout), which "
                "answer HTML. Any path answers 404, and any method a path does not list 405 "
                "with `Allow`, as `invalid_request` JSON."
            ),
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": settings.issuer.rstrip("/")}],
        "paths": {**table.operations(settings), **metrics_paths(settings)},
        "components": {
            "schemas": SCHEMAS,
            "responses": _RESPONSES,
            "headers": _HEADERS,
            "securitySchemes": {
                "client_secret_basic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": (
                        "RFC 6749 §2.3.1: client_id and secret, each form-encoded, then Base64."
                    ),
                },
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": (
                        "RFC 6750 §2.1: an access token (`/userinfo`), the initial access "
                        "token (`POST /register`) or a registration access token (RFC 7592)."
                    ),
                },
            },
        },
    }


# -- login and consent delegation: /authorize/continue and the admin API ---------------------------

AUTHORIZE_CONTINUE = operation(
    "authorizeContinue",
    {
        "200": _page("The consent page (a login app signed the user in; no consent app)."),
        "303": _redirect(
            "To the client with `code` or `error`, `state`, `iss`; or on to the consent app."
        ),
        "400": _page("No verifier, or an unknown, used or expired one: the error page."),
        "403": _page(
            "A verifier from another browser, of the other kind, or of another client; or the "
            "sign-in a consent was asked for has ended: the error page, never followed."
        ),
        "429": _AUTHORIZE_LIMITED,
        "503": _ref("responses", "UnavailablePage"),
    },
    description=(
        "Where a login or consent app sends the browser back (the `redirect_to` of its accept or "
        "reject). Honoured once, in the browser that started the challenge (its `baton_flow` "
        "cookie), before the challenge expires."
    ),
    parameters=[
        query_parameter("client_id", "The client the challenge was made for.", {"type": "string"}),
        query_parameter("login_verifier", "A login app's one-time verifier.", {"type": "string"}),
        query_parameter(
            "consent_verifier", "A consent app's one-time verifier.", {"type": "string"}
        ),
    ],
)

PROBLEM_JSON = "application/problem+json"
PROBLEM_SCHEMA: Schema = {
    "type": "object",
    "description": "RFC 9457 problem details.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
    },
    "additionalProperties": True,
}


def problem(description: str, **headers: Any) -> Schema:
    return response(description, {**NO_STORE, **headers}, **{PROBLEM_JSON: PROBLEM_SCHEMA})


ADMIN_AUTH_ERRORS: dict[str, Any] = {
    "400": problem(
        "`invalid_request`: credentials that are no bearer token (Basic, say), or a bad body, "
        "query or path value.",
        **_BEARER_CHALLENGE,
    ),
    "401": problem(
        "No bearer token, or one unknown, expired, revoked, or of a disabled or public client.",
        **_BEARER_CHALLENGE,
    ),
    "403": problem(
        "`insufficient_scope`: not a client_credentials token, or without the admin scope.",
        **_BEARER_CHALLENGE,
    ),
    "404": response(
        "No such challenge or subject (or no such path).",
        None,
        **{PROBLEM_JSON: PROBLEM_SCHEMA, JSON: _ERROR},
    ),
    "429": problem("The client's rate limit is spent.", **_RETRY),
    "503": _ref("responses", "Unavailable"),
}
_CHALLENGE_PATH = path_parameter("challenge", "The challenge /authorize handed the app.")
_SUBJECT_PATH = path_parameter("subject", "A local subject (`users.username`).")
_OIDC_SUMMARY: Schema = {
    "type": ["object", "null"],
    "properties": {
        "prompt": {"type": "array", "items": {"type": "string"}},
        "max_age": {"type": ["integer", "null"]},
        "login_hint": {"type": ["string", "null"]},
        "ui_locales": {"type": "array", "items": {"type": "string"}},
        "acr_values": {"type": "array", "items": {"type": "string"}},
        "id_token_hint_subject": {"type": ["string", "null"]},
    },
    "additionalProperties": True,
}
_CLIENT_SUMMARY: Schema = {
    "type": "object",
    "required": ["client_id", "client_name", "client_uri", "redirect_uri"],
    "properties": {
        "client_id": {"type": "string"},
        "client_name": {"type": "string"},
        "client_uri": {"type": ["string", "null"]},
        "redirect_uri": {"type": "string"},
        # Who registered the client, as the built-in consent page says it: show "not verified"
        # when `verified` is false (its name and details are its own claim).
        "registered_via": {
            "type": ["string", "null"],
            "enum": ["dynamic", "document", None],
            "description": "null: registered by an operator; dynamic: RFC 7591 registration; "
            "document: a client ID metadata document (its URL is the client_id)",
        },
        "verified": {
            "type": "boolean",
            "description": "false: the name and details are the client's own claim, not "
            "verified by this server (say so to the person); true: an operator's client, or "
            "a metadata document on a host the operator trusts",
        },
        "host": {
            "type": ["string", "null"],
            "description": "a metadata document's host, or the host of the homepage a "
            "dynamically registered client claims; null for an operator's client",
        },
    },
    "additionalProperties": True,
}
STRINGS: Schema = {"type": "array", "items": {"type": "string"}}
_LOGIN_CHALLENGE: Schema = {
    "type": "object",
    "required": ["challenge", "client", "requested_scope", "requested_resource", "expires_at"],
    "properties": {
        "challenge": {"type": "string"},
        "client": _CLIENT_SUMMARY,
        "requested_scope": STRINGS,
        "requested_resource": STRINGS,
        "oidc": _OIDC_SUMMARY,
        "session": {"type": ["object", "null"]},
        "expires_at": {"type": "integer"},
    },
    "additionalProperties": True,
}
_CONSENT_CHALLENGE: Schema = {
    "type": "object",
    "required": ["challenge", "client", "subject", "requested_scope", "expires_at"],
    "properties": {
        "challenge": {"type": "string"},
        "client": _CLIENT_SUMMARY,
        "subject": {"type": "string"},
        "requested_scope": STRINGS,
        "requested_resource": STRINGS,
        "requested_claims": {"type": "object"},
        "oidc": _OIDC_SUMMARY,
        "remembered": {"type": ["object", "null"]},
        "expires_at": {"type": "integer"},
    },
    "additionalProperties": True,
}
_REDIRECT_TO: Schema = {
    "type": "object",
    "required": ["redirect_to"],
    "properties": {"redirect_to": {"type": "string"}},
    "additionalProperties": True,
}
_DECIDED = {
    "409": problem(
        "The challenge was already decided or used (or, a login accept: the user is disabled)."
    ),
    "410": problem("The challenge has expired."),
}
BODY_ERRORS = {
    "400": problem("The body is not the JSON object the contract describes."),
    "413": problem("The body exceeds the size limit."),
}


def json_request_body(schema: Schema) -> Schema:
    return {"required": True, "content": {JSON: {"schema": schema}}}


def _admin_get(operation_id: str, schema: Schema, description: str) -> Operation:
    return operation(
        operation_id,
        {"200": no_store_json("The challenge.", schema), **ADMIN_AUTH_ERRORS, **_DECIDED},
        description=description,
        parameters=[_CHALLENGE_PATH],
    )


def _admin_put(operation_id: str, body: Schema, description: str) -> Operation:
    return operation(
        operation_id,
        {
            "200": no_store_json("Where to send the browser: back to Baton.", _REDIRECT_TO),
            **BODY_ERRORS,
            **ADMIN_AUTH_ERRORS,
            **_DECIDED,
        },
        description=description,
        parameters=[_CHALLENGE_PATH],
        requestBody=json_request_body(body),
    )


_REJECT_BODY: Schema = {
    "type": "object",
    "required": ["error"],
    "properties": {
        # `baton.core.challenges.REJECT_ERRORS`, each named (the vocabulary test reads these).
        "error": {
            "enum": [
                ErrorCode.ACCESS_DENIED,
                ErrorCode.LOGIN_REQUIRED,
                ErrorCode.INTERACTION_REQUIRED,
                ErrorCode.ACCOUNT_SELECTION_REQUIRED,
                ErrorCode.CONSENT_REQUIRED,
                ErrorCode.TEMPORARILY_UNAVAILABLE,
            ]
        },
        "error_description": {"type": "string"},
    },
}
LOGIN_CHALLENGE = _admin_get(
    "getLoginChallenge",
    _LOGIN_CHALLENGE,
    "Needs `admin:challenges`. The authorization request a login app decides on.",
)
LOGIN_ACCEPT = _admin_put(
    "acceptLoginChallenge",
    {
        "type": "object",
        "required": ["subject"],
        "properties": {
            "subject": {"type": "string", "minLength": 1, "maxLength": 200},
            "remember": {"type": "boolean"},
            "remember_for": {"type": "integer", "minimum": 0},
            "acr": {"type": ["string", "null"]},
            "amr": STRINGS,
        },
    },
    "Needs `admin:challenges`. Signs `subject` in (made on first use, with no password).",
)
LOGIN_REJECT = _admin_put(
    "rejectLoginChallenge", _REJECT_BODY, "Needs `admin:challenges`. The client gets `error`."
)
CONSENT_CHALLENGE = _admin_get(
    "getConsentChallenge",
    _CONSENT_CHALLENGE,
    "Needs `admin:challenges`. What a consent app asks the signed-in user.",
)
CONSENT_ACCEPT = _admin_put(
    "acceptConsentChallenge",
    {
        "type": "object",
        "properties": {
            "grant_scope": STRINGS,
            "grant_resource": STRINGS,
            "remember": {"type": "boolean"},
            "remember_for": {"type": "integer", "minimum": 0},
            "session": {
                "type": "object",
                "properties": {"id_token": {"type": "object"}, "userinfo": {"type": "object"}},
            },
        },
    },
    "Needs `admin:challenges`. `grant_scope` and `grant_resource` within what was requested; "
    "`session` claims never registered JWT claim names.",
)
CONSENT_REJECT = _admin_put(
    "rejectConsentChallenge", _REJECT_BODY, "Needs `admin:challenges`. The client gets `error`."
)


def _admin_delete(operation_id: str, description: str, **more: Any) -> Operation:
    return operation(
        operation_id,
        {"204": response("Done.", NO_STORE), **ADMIN_AUTH_ERRORS},
        description=description,
        parameters=[_SUBJECT_PATH, *more.pop("parameters", [])],
        **more,
    )


SUBJECT_SESSIONS = _admin_delete(
    "deleteSubjectSessions",
    "Needs `admin:sessions`. Sign out everywhere: every session of the subject ends, its "
    "grants without `offline_access` are revoked and the relying parties told (Back-Channel "
    "Logout).",
)
SUBJECT_CONSENTS = _admin_delete(
    "deleteSubjectConsents",
    "Needs `admin:sessions`. Forgets the subject's remembered consent (of one client, or all) "
    "and revokes the subject's grants of those clients.",
    parameters=[query_parameter("client_id", "Only this client's.", {"type": "string"})],
)
SUBJECT_CONSENTS["responses"]["400"] = problem("`client_id` is not a client identifier.")


# -- issue 28: stale access-token reports, and a client's policy ------------------------------
_TOKEN_USE_BODY = {
    "required": True,
    "content": {
        JSON: {
            "schema": {
                "type": "object",
                "required": ["uses"],
                "additionalProperties": False,
                "properties": {
                    "uses": {
                        "type": "array",
                        "maxItems": 1000,
                        "items": {
                            "type": "object",
                            "required": ["token_digest", "at"],
                            "additionalProperties": False,
                            "properties": {
                                "token_digest": {
                                    "type": "string",
                                    "pattern": DIGEST_TEXT_PATTERN,
                                    "description": (
                                        "SHA-256 of the access token as presented, base64url "
                                        "without padding; never the token"
                                    ),
                                },
                                "at": {"type": "integer", "description": "Unix seconds"},
                                "count": {"type": "integer", "minimum": 1, "default": 1},
                            },
                        },
                    }
                },
            },
            "example": {
                "uses": [
                    {
                        "token_digest": "LXEWQrcmsEQBYnyp-6wy9chTD7GQPMTbAiWHF5IaSIE",
                        "at": 1764950400,
                        "count": 3,
                    }
                ]
            },
        }
    },
}
TOKEN_USE = operation(
    "reportTokenUse",
    {
        "202": no_store_json(
            "The uses were counted (`accepted`: how many named a known access token).",
            {"type": "object", "properties": {"accepted": {"type": "integer"}}},
        ),
        "400": no_store_json("`invalid_request`: the body is not a batch of uses."),
        "401": _ref("responses", "InvalidClient"),
        "403": no_store_json("`unauthorized_client`: not registered with `--resource-server`."),
        **_BODY_REFUSED,
        "429": _ref("responses", "TooManyRequests"),
        "503": _ref("responses", "Unavailable"),
    },
    description=(
        "A resource server (`baton.resource`) reports, in batches, each use of an access token "
        "whose companion refresh token had already been exchanged: the SHA-256 digest of the "
        "token and when, never the token; only the uses it accepted without introspecting "
        "(`/introspect` counts those itself). Baton counts them per client "
        "(`baton report enforcement`)."
    ),
    security=_BASIC_ONLY,
    requestBody=_TOKEN_USE_BODY,
)


def _knob(hint: Any) -> Schema:
    """The JSON schema of one knob of `PolicySettings`, from its type (None aside)."""
    from enum import Enum

    from baton.core.client_policy import MAX_LIFETIME
    from baton.core.registration import GRANT_TYPES

    (kind,) = [arg for arg in get_args(hint) if arg is not type(None)]
    if kind is bool:
        return {"type": "boolean"}
    if kind is int:
        return {"type": "integer", "minimum": 0, "maximum": MAX_LIFETIME}
    if isinstance(kind, type) and issubclass(kind, Enum):
        return {"enum": [member.value for member in kind]}
    return {"type": "array", "items": {"enum": list(GRANT_TYPES)}}


def _policy_schemas() -> tuple[Schema, Schema]:
    """A client's own settings (each knob optional, null: the server's default) and the same
    knobs resolved (each present; `grant_types` null: every grant the client's kind allows),
    both derived from `PolicySettings` (issue 28: declared once)."""
    from baton.core.client_policy import PolicySettings

    hints = get_type_hints(PolicySettings)
    knobs = {f.name: _knob(hints[f.name]) for f in dataclasses.fields(PolicySettings)}
    own = {
        "type": "object",
        "properties": {
            name: {**schema, "type": [schema.get("type", "string"), "null"]}
            if "type" in schema
            else {"enum": [*schema["enum"], None]}
            for name, schema in knobs.items()
        },
        "additionalProperties": False,
    }
    # Resolved values are the server's too, whose options have their own bounds.
    resolved_knobs = {
        name: {k: v for k, v in schema.items() if k not in ("minimum", "maximum")}
        for name, schema in knobs.items()
    }
    resolved_knobs["grant_types"] = {**knobs["grant_types"], "type": ["array", "null"]}
    resolved = {
        "type": "object",
        "required": list(knobs),
        "properties": resolved_knobs,
        "additionalProperties": True,
    }
    return own, resolved


POLICY_SETTINGS, RESOLVED_POLICY = _policy_schemas()
_INSTANT = {"type": ["integer", "null"], "description": "Unix seconds"}
CLIENT_POLICY_DOCUMENT: Schema = {
    "type": "object",
    "required": ["client_id", "in_force", "scheduled"],
    "properties": {
        "client_id": {"type": "string"},
        "in_force": {
            **RESOLVED_POLICY,
            "required": [*RESOLVED_POLICY["required"], "since"],
            "properties": {**RESOLVED_POLICY["properties"], "since": _INSTANT},
        },
        "scheduled": {
            "type": ["object", "null"],
            "required": ["settings", "effective_at", "report_only", "scheduled_at"],
            "properties": {
                "settings": RESOLVED_POLICY,
                "effective_at": _INSTANT,
                "report_only": {"type": "boolean"},
                "scheduled_at": {"type": "integer"},
            },
        },
    },
    "additionalProperties": True,
}
CLIENT_POLICY = operation(
    "clientPolicy",
    {
        "200": no_store_json(
            "The client's policy in force (`in_force`, with `since`: when it came into force, "
            "null for the server's own) and its scheduled change (`scheduled`: null, or its "
            "settings, `effective_at` and `report_only`), every value resolved over the "
            "server's defaults.",
            CLIENT_POLICY_DOCUMENT,
        ),
        "400": no_store_json("`invalid_request`: no `client_id`."),
        "404": no_store_json("`invalid_client`: no such client, or it is disabled."),
    },
    description=(
        "What an integrator's app needs to check itself before a stricter policy takes effect "
        "(`baton.client` reads it). Nothing secret: lifetimes, leeway, retry policy, rotation, "
        "grant types, PKCE."
    ),
    parameters=[query_parameter("client_id", "The client.", {"type": "string"})],
)

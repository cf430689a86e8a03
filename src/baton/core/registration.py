"""RFC 7591 §2 client metadata, validated: the one parser that dynamic client registration
(`/register`, RFC 7591 and RFC 7592) and client ID metadata documents
(draft-ietf-oauth-client-id-metadata-document) both call. Pure: no I/O.

`client_metadata(raw, policy)` takes the JSON object a client sent (or published) and the
operator's policy, and returns `ClientMetadata`, a typed value with every default applied, or
raises `RegistrationError` with the RFC 7591 §3.2.2 code (`invalid_redirect_uri` or
`invalid_client_metadata`) and a one-line description that says what to change.

What is checked, and where the rule comes from:
- `redirect_uris`: the rule every redirect URI obeys (`baton.core.redirects`: https, http on a
  loopback IP literal, or a private-use scheme; never `javascript:`, `data:`, a fragment or user
  information), then the `application_type`'s (OpenID Connect Registration §2): `web` (the
  default when every redirect URI is https) only https and not on localhost; `native` (the
  default otherwise: `_implied_type`) also loopback http, `localhost` included (any port matches at
  `/authorize`, RFC 8252 §7.3) and private-use schemes (RFC 8252 §7.1);
- `grant_types` and `response_types` (RFC 7591 §2.1): only what Baton's token endpoint serves
  (`authorization_code`, `refresh_token`, `client_credentials`; `code`: others are dropped,
  as RFC 7591 §2 allows), consistent with each other, `client_credentials` for confidential
  clients only (RFC 6749 §4.4);
- `token_endpoint_auth_method`: `none`, `client_secret_basic`, `client_secret_post`,
  `private_key_jwt` (RFC 7523 §2.2, with an https `jwks_uri`); a metadata document has no
  secret, so only `none` or `private_key_jwt`;
- `scope`: narrowed to the scopes the operator allows ("the authorization server MAY ...
  replace the requested scope", RFC 7591 §2);
- `client_uri`, `logo_uri`, `tos_uri`, `policy_uri`: https (plain http on a loopback IP
  literal), printable, bounded; `contacts`, `client_name`, `software_id`, `software_version`:
  bounded printable strings;
- every other member is ignored ("the authorization server MUST ignore any client metadata sent
  by the client that it does not understand", RFC 7591 §2). A JSON `null` counts as absent.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar
from urllib.parse import urlsplit

from baton.core.challenges import app_url_problem
from baton.core.claims import OIDC_SCOPES
from baton.core.redirects import LOOPBACK, redirect_uri_problem
from baton.core.scope import ADMIN_PREFIX, ScopeError
from baton.core.scope import parse as parse_scope
from baton.core.scope import render as render_scope
from baton.core.vocabulary import ErrorCode

# Bounds on what a client may make the server store and show (no RFC sets them).
MAX_REDIRECT_URIS = 20
MAX_URI = 2000
MAX_NAME = 200  # `clients.name`
MAX_TEXT = 200  # software_id, software_version
MAX_CONTACTS = 10
MAX_CONTACT = 320  # an e-mail address at most 64 + 1 + 255 (RFC 5321 §4.5.3.1)

# The grant types the token endpoint serves, and the response types `/authorize` serves.
AUTHORIZATION_CODE = "authorization_code"
REFRESH_TOKEN = "refresh_token"
CLIENT_CREDENTIALS = "client_credentials"
GRANT_TYPES = (AUTHORIZATION_CODE, REFRESH_TOKEN, CLIENT_CREDENTIALS)
RESPONSE_TYPES = ("code",)

# RFC 7591 §2 `token_endpoint_auth_method` values Baton accepts (RFC 7523 §2.2 for the last).
NONE = "none"
CLIENT_SECRET_BASIC = "client_secret_basic"
CLIENT_SECRET_POST = "client_secret_post"
PRIVATE_KEY_JWT = "private_key_jwt"
AUTH_METHODS = (NONE, CLIENT_SECRET_BASIC, CLIENT_SECRET_POST, PRIVATE_KEY_JWT)
SECRET_METHODS = (CLIENT_SECRET_BASIC, CLIENT_SECRET_POST)
# A metadata document is public: nothing could hand its client a secret.
DOCUMENT_AUTH_METHODS = (NONE, PRIVATE_KEY_JWT)

WEB = "web"
NATIVE = "native"
APPLICATION_TYPES = (WEB, NATIVE)

_URL_MEMBERS = ("client_uri", "logo_uri", "tos_uri", "policy_uri")

# The server's own record, in `clients.registration`, that the client was registered with the
# initial access token (RFC 7591 §3): an operator vouched for it, so it may hold
# `client_credentials` (`RegistrationPolicy.machine_grants`). Set by the server only (the
# metadata a client sends is read member by member, and this one is never read from it), kept
# through RFC 7592 updates, never shown to the client. The colon keeps it apart from every
# RFC 7591 member name. A registration without it never gains machine grants: not at an update
# once the operator switched `--registration` from `open` to `token`, not at the token endpoint.
VOUCHED_MEMBER = "baton:initial_access_token"


def vouched(registration: Mapping[str, Any]) -> bool:
    """Whether a client's stored registration (`clients.registration`) was made with the initial
    access token (`VOUCHED_MEMBER`)."""
    return registration.get(VOUCHED_MEMBER) is True


def dynamic_scopes(configured: Iterable[str], oidc: bool) -> frozenset[str]:
    """The scopes a client no operator registered may be granted: the operator's
    `--dynamic-client-scopes` and, while OpenID Connect is on, its scopes; never an admin API
    scope (`admin:*`: `baton serve` refuses them in the option, and a Settings built otherwise
    still never hands one to such a client)."""
    scopes = frozenset(configured) | frozenset(OIDC_SCOPES if oidc else ())
    return frozenset(s for s in scopes if not s.startswith(ADMIN_PREFIX))


C = TypeVar("C")


class RegistrationError(ValueError):
    """Client metadata refused, with its RFC 7591 §3.2.2 code and a one-line description."""

    def __init__(self, code: ErrorCode, description: str) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description


def _metadata_error(description: str) -> RegistrationError:
    # RFC 7591 §3.2.2: "The value of one of the client metadata fields is invalid and the
    # server has rejected this request."
    return RegistrationError(ErrorCode.INVALID_CLIENT_METADATA, description)


def _redirect_error(description: str) -> RegistrationError:
    # RFC 7591 §3.2.2: "The value of one or more redirection URIs is invalid."
    return RegistrationError(ErrorCode.INVALID_REDIRECT_URI, description)


@dataclass(frozen=True, slots=True)
class RegistrationPolicy:
    """What the operator allows a client no operator registered.

    `scopes`: the scopes it may be given (what it asks for is narrowed to them; when it asks
    for none, it gets them all). `resources`: the RFC 8707 resources it may ask tokens for,
    carried into `ClientMetadata.resources`. `document`: the metadata is a client ID metadata
    document's (public: only `none` or `private_key_jwt`, and `none` by default)."""

    scopes: frozenset[str] = frozenset()
    resources: tuple[str, ...] = ()
    document: bool = False
    # `client_credentials`: tokens with no user behind them, for every resource of `resources`
    # and every scope of `scopes`, with no person's consent. Only for a registration an operator
    # vouched for (the initial access token was presented at the registration, and an update
    # keeps what the registration had: `vouched`); never for a metadata document or an open one.
    machine_grants: bool = False


@dataclass(frozen=True, slots=True)
class ClientMetadata:
    """A client's RFC 7591 §2 metadata, checked, with every default applied."""

    redirect_uris: tuple[str, ...]
    token_endpoint_auth_method: str
    grant_types: tuple[str, ...]
    response_types: tuple[str, ...]
    scope: str
    application_type: str = WEB
    client_name: str | None = None
    contacts: tuple[str, ...] = ()
    client_uri: str | None = None
    logo_uri: str | None = None
    tos_uri: str | None = None
    policy_uri: str | None = None
    jwks_uri: str | None = None
    software_id: str | None = None
    software_version: str | None = None
    # The RFC 8707 resources the policy allows (not a member of the metadata).
    resources: tuple[str, ...] = field(default=())
    # Registered with the initial access token (the policy's `machine_grants`): recorded in
    # the stored registration as `VOUCHED_MEMBER` (not a member of the metadata either).
    vouched: bool = False

    @property
    def is_public(self) -> bool:
        """No client authentication at the token endpoint (RFC 6749 §2.1)."""
        return self.token_endpoint_auth_method == NONE

    @property
    def uses_secret(self) -> bool:
        """Authenticates with a client secret the server issues (RFC 7591 §3.2.1)."""
        return self.token_endpoint_auth_method in SECRET_METHODS

    def members(self) -> dict[str, Any]:
        """The metadata as registered, JSON-ready, as RFC 7591 §3.2.1 answers it ("all
        registered metadata about the client") and as `clients.registration` stores it: every
        member that has a value, lists as lists; never a secret."""
        shown: dict[str, Any] = {
            "redirect_uris": list(self.redirect_uris),
            "token_endpoint_auth_method": self.token_endpoint_auth_method,
            "grant_types": list(self.grant_types),
            "response_types": list(self.response_types),
            "scope": self.scope,
            "application_type": self.application_type,
        }
        optional = {
            "client_name": self.client_name,
            "contacts": list(self.contacts) or None,
            "client_uri": self.client_uri,
            "logo_uri": self.logo_uri,
            "tos_uri": self.tos_uri,
            "policy_uri": self.policy_uri,
            "jwks_uri": self.jwks_uri,
            "software_id": self.software_id,
            "software_version": self.software_version,
        }
        shown.update({k: v for k, v in optional.items() if v is not None})
        return shown

    def applied_to(self, client: C, name: str) -> C:
        """`client` (a `baton.store.base.Client`) as this metadata describes it: the members
        the server enforces, the metadata kept as registered, PKCE required (OAuth 2.1 §7.5.1,
        RFC 9700 §2.1.1: every client registered so), and `name` shown on the consent page."""
        return replace(
            client,  # type: ignore[type-var]
            name=name,
            is_public=self.is_public,
            redirect_uris=self.redirect_uris,
            scope=self.scope,
            allowed_resources=self.resources,
            require_pkce=True,
            client_uri=self.client_uri,
            # With `vouched`, the server's record `VOUCHED_MEMBER` beside the metadata (the
            # answer to the client leaves it out).
            registration={**self.members(), **({VOUCHED_MEMBER: True} if self.vouched else {})},
            grant_types=self.grant_types,
            token_endpoint_auth_method=self.token_endpoint_auth_method,
            jwks_uri=self.jwks_uri,
        )


def client_metadata(raw: object, policy: RegistrationPolicy) -> ClientMetadata:
    """`raw` (any decoded JSON value) checked as RFC 7591 §2 client metadata under `policy`;
    `RegistrationError` with the first problem found. Never raises anything else."""
    if not isinstance(raw, dict):
        raise _metadata_error("the client metadata must be a JSON object (RFC 7591 §2)")
    members: dict[str, Any] = {k: v for k, v in raw.items() if v is not None}

    application_type = _choice(
        members, "application_type", APPLICATION_TYPES, _implied_type(members.get("redirect_uris"))
    )
    method = _auth_method(members, policy)
    grant_types, response_types = _grant_and_response_types(members, method, policy)
    redirect_uris = _redirect_uris(members, application_type, grant_types)
    jwks_uri = _jwks_uri(members, method)
    urls = {name: _url(members, name) for name in _URL_MEMBERS}
    return ClientMetadata(
        redirect_uris=redirect_uris,
        token_endpoint_auth_method=method,
        grant_types=grant_types,
        response_types=response_types,
        scope=_scope(members, policy.scopes),
        application_type=application_type,
        client_name=_text(members, "client_name", MAX_NAME),
        contacts=_contacts(members),
        client_uri=urls["client_uri"],
        logo_uri=urls["logo_uri"],
        tos_uri=urls["tos_uri"],
        policy_uri=urls["policy_uri"],
        jwks_uri=jwks_uri,
        software_id=_text(members, "software_id", MAX_TEXT),
        software_version=_text(members, "software_version", MAX_TEXT),
        resources=tuple(dict.fromkeys(policy.resources)),
        vouched=policy.machine_grants and not policy.document,
    )


# -- the members ---------------------------------------------------------------------------------


def _implied_type(redirect_uris: object) -> str:
    """The `application_type` of metadata that names none. OpenID Connect Registration §2's
    default is `web`; RFC 7591 has no `application_type` at all, and the OAuth native apps that
    register without one (every MCP client: desktop apps, CLIs, agents) register loopback or
    private-use scheme redirect URIs (RFC 8252 §7), which a web application may not. So such
    metadata is a native app's, and metadata with https redirect URIs only a web app's."""
    if isinstance(redirect_uris, list) and any(
        isinstance(uri, str) and not uri.lower().startswith("https:") for uri in redirect_uris
    ):
        return NATIVE
    return WEB


def _choice(members: dict[str, Any], name: str, allowed: Sequence[str], default: str) -> str:
    value = members.get(name, default)
    if not isinstance(value, str) or value not in allowed:
        raise _metadata_error(f"{name} must be one of {', '.join(allowed)}")
    return value


def _auth_method(members: dict[str, Any], policy: RegistrationPolicy) -> str:
    if policy.document:
        # A document's client is public: "the client MUST NOT use a shared secret"; nothing
        # could hand it one. RFC 7591 §2's default (client_secret_basic) cannot apply.
        return _choice(members, "token_endpoint_auth_method", DOCUMENT_AUTH_METHODS, NONE)
    # RFC 7591 §2: "If unspecified or omitted, the default is client_secret_basic".
    return _choice(members, "token_endpoint_auth_method", AUTH_METHODS, CLIENT_SECRET_BASIC)


def _strings(members: dict[str, Any], name: str, most: int, longest: int) -> tuple[str, ...]:
    """A JSON array of at most `most` non-empty printable strings of at most `longest`
    characters each, without repeats (first spelling kept); () when absent."""
    value = members.get(name, [])
    if not isinstance(value, list):
        raise _metadata_error(f"{name} must be a JSON array of strings")
    if len(value) > most:
        raise _metadata_error(f"{name} may list at most {most} values")
    for item in value:
        if not (isinstance(item, str) and 0 < len(item) <= longest and item.isprintable()):
            raise _metadata_error(
                f"each of {name} must be a printable string of 1 to {longest} characters"
            )
    return tuple(dict.fromkeys(value))


def _grant_and_response_types(
    members: dict[str, Any], method: str, policy: RegistrationPolicy
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    # RFC 7591 §2: grant_types "If omitted, the default behavior is that the client will use
    # only the authorization_code Grant Type"; response_types "If omitted, the default is
    # that the client will use only the code response type" (when it uses that grant at all).
    # RFC 7591 §2: "The authorization server MAY reject or replace any of the client's
    # requested metadata values": grant and response types this server does not serve (a
    # device code grant a client asks for just in case, `token`) are dropped, as a narrowed
    # scope is; the client information response says what was registered.
    grant_types = _strings(members, "grant_types", 20, 200)
    if "grant_types" not in members:
        grant_types = (AUTHORIZATION_CODE,)
    served = tuple(grant for grant in grant_types if grant in GRANT_TYPES)
    if not served:
        raise _metadata_error(
            f"grant_types must name one this server serves: {', '.join(GRANT_TYPES)}"
        )
    response_types = _strings(members, "response_types", 20, 200)
    if "response_types" not in members:
        response_types = ("code",) if AUTHORIZATION_CODE in served else ()
    response_types = tuple(kind for kind in response_types if kind in RESPONSE_TYPES)
    grant_types = served
    # RFC 7591 §2.1: authorization_code goes with the code response type, and back.
    if (AUTHORIZATION_CODE in grant_types) != ("code" in response_types):
        raise _metadata_error(
            "grant_types authorization_code and response_types code go together (RFC 7591 §2.1)"
        )
    if REFRESH_TOKEN in grant_types and AUTHORIZATION_CODE not in grant_types:
        raise _metadata_error(
            "grant_types refresh_token needs authorization_code: no other grant of this "
            "server issues refresh tokens"
        )
    if CLIENT_CREDENTIALS in grant_types and method == NONE:
        # RFC 6749 §4.4: "The client credentials grant type MUST only be used by
        # confidential clients."
        raise _metadata_error(
            "grant_types client_credentials needs a confidential client: choose a "
            "token_endpoint_auth_method other than none (RFC 6749 §4.4)"
        )
    if CLIENT_CREDENTIALS in grant_types and not policy.machine_grants:
        # Anyone may publish a document or register openly: a token no person consented to,
        # for every dynamic scope and resource, is not theirs to mint (RFC 9700 §4.15 asks the
        # server to keep self-registered clients from privileges beyond a user's consent).
        raise _metadata_error(
            "grant_types client_credentials is not open to this registration: only a client "
            "an operator registers, or one registered with the initial access token, may use it"
        )
    return grant_types, response_types


def _redirect_uris(
    members: dict[str, Any], application_type: str, grant_types: tuple[str, ...]
) -> tuple[str, ...]:
    value = members.get("redirect_uris", [])
    if not isinstance(value, list) or not all(isinstance(uri, str) for uri in value):
        raise _redirect_error("redirect_uris must be a JSON array of strings")
    if len(value) > MAX_REDIRECT_URIS:
        raise _redirect_error(f"redirect_uris may list at most {MAX_REDIRECT_URIS} URIs")
    uris: tuple[str, ...] = tuple(dict.fromkeys(value))
    if AUTHORIZATION_CODE in grant_types and not uris:
        # RFC 7591 §2: redirect_uris are REQUIRED "for redirect-based flows"; RFC 6749 §3.1.2.2
        # makes public clients register them.
        raise _redirect_error("redirect_uris are required for the authorization_code grant")
    for uri in uris:
        if len(uri) > MAX_URI:
            raise _redirect_error(f"a redirect URI may be at most {MAX_URI} characters")
        # A native app may name `localhost` (core.redirects: what MCP clients register).
        if (problem := redirect_uri_problem(uri, localhost=application_type == NATIVE)) is not None:
            raise _redirect_error(problem)
        if application_type == WEB and (problem := _web_redirect_problem(uri)) is not None:
            raise _redirect_error(problem)
    return uris


def _web_redirect_problem(uri: str) -> str | None:
    # OpenID Connect Registration §2 application_type: "Web Clients ... MUST only register
    # URLs using the https scheme as redirect_uris; they MUST NOT use localhost as the
    # hostname." Loopback and private-use redirects are a native app's (RFC 8252 §7).
    parts = urlsplit(uri)  # redirect_uri_problem has parsed it already
    if parts.scheme != "https":
        return (
            f"redirect URI {uri!r} must use https for a web application: register "
            'application_type "native" for loopback or private-use scheme redirects'
        )
    if parts.hostname in ("localhost", *LOOPBACK):
        return (
            f"redirect URI {uri!r} must not be on localhost for a web application "
            '(OpenID Connect Registration §2): register application_type "native"'
        )
    return None


def _jwks_uri(members: dict[str, Any], method: str) -> str | None:
    if "jwks" in members and "jwks_uri" in members:
        # RFC 7591 §2: "The jwks_uri and jwks parameters MUST NOT both be present".
        raise _metadata_error("jwks_uri and jwks must not both be present (RFC 7591 §2)")
    uri = members.get("jwks_uri")
    if uri is None:
        if method == PRIVATE_KEY_JWT:
            raise _metadata_error(
                "token_endpoint_auth_method private_key_jwt needs a jwks_uri (keys by value, "
                "jwks, are not supported)"
            )
        return None
    if not isinstance(uri, str) or len(uri) > MAX_URI:
        raise _metadata_error(f"jwks_uri must be a URL of at most {MAX_URI} characters")
    if (problem := app_url_problem(uri, "jwks_uri")) is not None:
        raise _metadata_error(problem)
    if urlsplit(uri).scheme != "https":
        # The keys that authenticate the client: fetched over TLS only (RFC 7591 §2 "the
        # jwks_uri ... MUST use the https scheme" is OpenID Connect Registration §2's wording).
        raise _metadata_error("jwks_uri must use https")
    return uri


def _url(members: dict[str, Any], name: str) -> str | None:
    value = members.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= MAX_URI:
        raise _metadata_error(f"{name} must be a URL of at most {MAX_URI} characters")
    # https, or plain http on a loopback IP literal; absolute, no user information, no
    # fragment: the rule for a client's homepage (`client_uri`), shown on the consent page.
    if (problem := app_url_problem(value, name)) is not None:
        raise _metadata_error(problem)
    return value


def _text(members: dict[str, Any], name: str, longest: int) -> str | None:
    value = members.get(name)
    if value is None:
        return None
    if not (isinstance(value, str) and 0 < len(value) <= longest and value.isprintable()):
        raise _metadata_error(f"{name} must be a printable string of 1 to {longest} characters")
    return value


def _contacts(members: dict[str, Any]) -> tuple[str, ...]:
    return _strings(members, "contacts", MAX_CONTACTS, MAX_CONTACT)


def _scope(members: dict[str, Any], allowed: Collection[str]) -> str:
    value = members.get("scope")
    if value is None:
        # RFC 7591 §2: "If omitted, an authorization server MAY register a client with a
        # default set of scopes": every scope the operator allows such clients.
        return render_scope(frozenset(allowed))
    if not isinstance(value, str):
        raise _metadata_error("scope must be a string of space-separated scope values")
    try:
        asked = parse_scope(value)
    except ScopeError as exc:
        raise _metadata_error(str(exc)) from None
    # RFC 7591 §2: "The authorization server MAY reject or replace any of the client's
    # requested metadata values": what is not allowed is dropped, not refused.
    return render_scope(asked & frozenset(allowed))

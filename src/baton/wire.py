"""The JSON bodies Baton's endpoints answer, and the forms they read, declared once.

The server builds the bodies and reads the forms (`baton.server.endpoints`), the SDK and the
resource-server middleware read the bodies (`baton.client`, `baton.resource`), and the OpenAPI
document's schemas are generated from both (`baton.server.endpoints.openapi`). So this module
imports nothing but the standard library: installing the SDK must not install the server.

A member's Python type says what JSON type it holds; `Facet` adds what the type cannot say (a
description, a minimum, a pattern, a format), for the schema. A reader still checks every value
it receives: these types say what is sent, not what arrived.
"""

# No `from __future__ import annotations`: under Python 3.11 it hides `NotRequired` from
# TypedDict's required keys, which the schemas are generated from.
from dataclasses import dataclass
from typing import Annotated, Literal, NotRequired, Required, TypedDict


@dataclass(frozen=True, slots=True)
class Facet:
    """JSON Schema keywords narrowing a member beyond its Python type."""

    description: str | None = None
    minimum: int | None = None
    pattern: str | None = None
    format: str | None = None


NonNegative = Annotated[int, Facet(minimum=0)]
# What a revocation names: one access token, or every token of a grant.
RevocationKind = Literal["access_token", "grant"]


class TokenResponse(TypedDict):
    """RFC 6749 §5.1, plus `refresh_token_expires_in`. A refresh token comes with its lifetime;
    `client_credentials` issues none, nor does an OpenID Connect grant without `offline_access`
    (OIDC Core §11). An OpenID Connect grant's responses carry an `id_token` (§3.1.3.3, §12.2)."""

    access_token: Annotated[str, Facet("`bat_at_...` (opaque) or a JWT (RFC 9068).")]
    token_type: Literal["Bearer"]
    expires_in: NonNegative
    refresh_token: NotRequired[
        Annotated[str, Facet("`bat_rt_...`", pattern="^bat_rt_[0-9A-Za-z]{49}$")]
    ]
    refresh_token_expires_in: NotRequired[NonNegative]
    scope: str
    id_token: NotRequired[
        Annotated[str, Facet("A signed JWT (OpenID Connect Core §2), for `openid` grants.")]
    ]


class ErrorResponse(TypedDict):
    """RFC 6749 §5.2 error response."""

    error: str
    error_description: Annotated[str, Facet("Which rule fired.")]
    error_uri: NotRequired[str]


class ActiveToken(TypedDict):
    """RFC 7662 §2.2 for an active token, with Baton's grant and generation."""

    active: Literal[True]
    scope: str
    client_id: str
    token_type: Literal["Bearer", "refresh_token"]
    exp: int
    iat: int
    iss: str
    sub: NotRequired[str]
    username: NotRequired[str]
    aud: NotRequired[str | list[str]]  # one audience is a string, several an array
    jti: NotRequired[str]
    grant_id: str
    generation: NonNegative
    revocation_at: NotRequired[
        Annotated[int, Facet("When a live token already scheduled to die will die.")]
    ]


class InactiveToken(TypedDict):
    """RFC 7662 §2.2: an inactive, unknown or foreign token; nothing more."""

    active: Literal[False]


Introspection = ActiveToken | InactiveToken

INACTIVE: InactiveToken = {"active": False}


class FeedEvent(TypedDict):
    """One revocation, as the feed (`GET /revocations`, `/revocations/stream`) carries it: the
    tokens it names die at `effective_at`; after `expires_at` they would have expired anyway."""

    id: Annotated[int, Facet(minimum=1)]
    kind: RevocationKind
    grant_id: str
    effective_at: int
    expires_at: int
    jti: NotRequired[str | None]
    token_digest: NotRequired[Annotated[str | None, Facet(pattern="^[0-9a-f]{64}$")]]


class FeedPage(TypedDict):
    """A page of the revocation feed, and the watermark to resume from."""

    events: list[FeedEvent]
    watermark: Annotated[
        int, Facet("Resume from here with `since`: nothing after it is missed.", minimum=0)
    ]


# How this server rotates refresh tokens (`baton.core.policy`), so clients can plan retries.
class RotationPolicy(TypedDict):
    retry_policy: Literal["replay", "fork", "strict"]
    leeway_seconds: NonNegative


class Metadata(TypedDict):
    """RFC 8414 authorization server metadata."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    revocation_endpoint: str
    introspection_endpoint: str
    jwks_uri: str
    end_session_endpoint: NotRequired[str]  # OpenID Connect RP-Initiated Logout 1.0 §2.1
    response_types_supported: list[str]
    response_modes_supported: NotRequired[list[str]]
    grant_types_supported: list[str]
    code_challenge_methods_supported: list[str]
    token_endpoint_auth_methods_supported: list[str]
    revocation_endpoint_auth_methods_supported: NotRequired[list[str]]
    introspection_endpoint_auth_methods_supported: NotRequired[list[str]]
    # RFC 8414 §2: the algorithms of `private_key_jwt` assertions at each endpoint.
    token_endpoint_auth_signing_alg_values_supported: NotRequired[list[str]]
    revocation_endpoint_auth_signing_alg_values_supported: NotRequired[list[str]]
    introspection_endpoint_auth_signing_alg_values_supported: NotRequired[list[str]]
    authorization_response_iss_parameter_supported: NotRequired[bool]
    refresh_token_rotation: RotationPolicy
    # RFC 8414 §2 (always present: may be empty); draft-ietf-oauth-client-id-metadata-document
    # §4; RFC 7591 §3's endpoint, while registration is on.
    scopes_supported: list[str]
    client_id_metadata_document_supported: bool
    registration_endpoint: NotRequired[str]
    # Baton's own (issue 28): where a client's app reads its policy in force and its scheduled
    # change (`GET /client-policy?client_id=`); `refresh_token_rotation` stays the server's.
    client_policy_endpoint: str
    # OpenID Provider metadata (OIDC Discovery 1.0 §3), present while OpenID Connect is on: the
    # document is then /.well-known/openid-configuration too.
    # (`end_session_endpoint`, RP-Initiated Logout's, is declared with the logout part.)
    userinfo_endpoint: NotRequired[str]
    subject_types_supported: NotRequired[list[str]]
    id_token_signing_alg_values_supported: NotRequired[list[str]]
    claims_supported: NotRequired[list[str]]
    claim_types_supported: NotRequired[list[str]]
    claims_parameter_supported: NotRequired[bool]
    request_parameter_supported: NotRequired[bool]
    request_uri_parameter_supported: NotRequired[bool]
    require_request_uri_registration: NotRequired[bool]
    prompt_values_supported: NotRequired[list[str]]
    frontchannel_logout_supported: NotRequired[bool]
    backchannel_logout_supported: NotRequired[bool]
    backchannel_logout_session_supported: NotRequired[bool]


# One public key of the key set (RFC 7517 §4); the key's own members (`crv`, `x`, `n`, ...)
# depend on its type. An Ed25519 key made before RFC 9864 is published as `EdDSA`.
class PublicKey(TypedDict):
    kty: Literal["EC", "RSA", "OKP"]
    kid: str
    alg: Literal["ES256", "RS256", "Ed25519", "EdDSA"]
    use: Literal["sig"]


class KeySet(TypedDict):
    """RFC 7517 key set: the keys that sign, or will soon sign, JWTs."""

    keys: list[PublicKey]


# -- request forms --------------------------------------------------------------------------------
# The parameters the endpoints read from a form body (`application/x-www-form-urlencoded`) or, for
# GET /authorize, the query. Each is a string (or one of a few fixed values); a form may carry
# other parameters, which are ignored (RFC 6749 §3.1). The handlers read them by these names
# (`tests/server/test_openapi.py` holds them to it).


class ClientAuthForm(TypedDict, total=False):
    """The client's credentials in the body: `client_secret_post`, `private_key_jwt`, or `none`
    for a public client; `client_secret_basic` sends them in the `Authorization` header
    instead."""

    client_id: Annotated[
        str,
        Facet(
            "`client_secret_post` or `none` (public clients): the client's identifier. With "
            "Basic credentials or a client assertion it may be repeated here, and must then be "
            "equal."
        ),
    ]
    client_secret: Annotated[
        str,
        Facet(
            "`client_secret_post`: the client's secret. Never together with Basic credentials "
            "(RFC 6749 §2.3)."
        ),
    ]
    client_assertion_type: Annotated[
        Literal["urn:ietf:params:oauth:client-assertion-type:jwt-bearer"],
        Facet("`private_key_jwt` (RFC 7523 §2.2): with `client_assertion`."),
    ]
    client_assertion: Annotated[
        str,
        Facet(
            "`private_key_jwt`: a JWT signed with a key of the client's `jwks_uri` (RS256, PS256, "
            "ES256, EdDSA or Ed25519); `iss` and `sub` the client's id, `aud` the token "
            "endpoint's URL or the issuer, `exp` at most an hour ahead, a `jti` never used "
            "before. Never with another method (RFC 6749 §2.3)."
        ),
    ]


class AuthorizationCodeGrant(ClientAuthForm, total=False):
    """RFC 6749 §4.1.3 with PKCE (RFC 7636 §4.5)."""

    grant_type: Required[Literal["authorization_code"]]
    code: Required[
        Annotated[str, Facet("The code from the authorization response (`bat_ac_...`).")]
    ]
    redirect_uri: Annotated[
        str, Facet("Required, and identical, if the authorization request carried one.")
    ]
    code_verifier: Annotated[str, Facet("The PKCE verifier: 43 to 128 unreserved characters.")]
    resource: Annotated[
        str,
        Facet(
            "RFC 8707 resource indicator (may repeat): some of the resources the user consented "
            "to; default: all of them. The token's `aud`."
        ),
    ]


class RefreshTokenGrant(ClientAuthForm, total=False):
    """RFC 6749 §6 with rotation: an active token is exchanged for a new pair; inside the
    leeway a retry gets the same pair (`replay`) or a sibling (`fork`); after it, reuse revokes
    the grant."""

    grant_type: Required[Literal["refresh_token"]]
    refresh_token: Required[Annotated[str, Facet("The refresh token (`bat_rt_...`).")]]
    scope: Annotated[str, Facet("A subset of the grant's scope.")]
    resource: Annotated[
        str,
        Facet(
            "RFC 8707 resource indicator (may repeat): some of the grant's resources, never "
            "another (`invalid_target`); default: all of them. The token's `aud`."
        ),
    ]


class ClientCredentialsGrant(ClientAuthForm, total=False):
    """RFC 6749 §4.4, for confidential clients; issues no refresh token."""

    grant_type: Required[Literal["client_credentials"]]
    scope: Annotated[str, Facet("A subset of the client's registered scope; default: all of it.")]
    resource: Annotated[
        str,
        Facet(
            "RFC 8707 resource indicator (may repeat): some of the client's allowed resources "
            "(`--resource`); default: all of them. The token's `aud`."
        ),
    ]


# The body of POST /token: one form per grant type, told apart by `grant_type`.
TokenRequest = AuthorizationCodeGrant | RefreshTokenGrant | ClientCredentialsGrant


class TokenParameter(ClientAuthForm, total=False):
    """The body of POST /revoke (RFC 7009 §2.1) and POST /introspect (RFC 7662 §2.1)."""

    token: Required[
        Annotated[str, Facet("An access or refresh token; the kind is read from its prefix.")]
    ]
    token_type_hint: Annotated[
        str,
        Facet(
            "`access_token` or `refresh_token`; never needed, and never hides a token "
            "(RFC 7009 §2.1)."
        ),
    ]


class UserInfoForm(TypedDict, total=False):
    """The body of POST /userinfo (RFC 6750 §2.2), when the token is not in the header."""

    access_token: Annotated[
        str, Facet("The access token, if not sent as `Authorization: Bearer` (never both).")
    ]


class AuthorizationRequest(TypedDict, total=False):
    """RFC 6749 §4.1.1: the query of GET /authorize, carried through login and consent, in
    this order."""

    response_type: Annotated[str, Facet("Must be `code` (RFC 6749 §4.1.1).")]
    client_id: Annotated[str, Facet("The client's identifier.")]
    redirect_uri: Annotated[
        str,
        Facet(
            "One of the client's registered redirect URIs, compared as exact strings (RFC 9700 "
            "§4.1.3); optional when the client registered exactly one."
        ),
    ]
    scope: Annotated[
        str, Facet("Space-separated scope tokens (RFC 6749 §3.3); default: the client's.")
    ]
    resource: Annotated[
        str,
        Facet(
            "RFC 8707 resource indicator, may repeat: an absolute URI, no fragment, among the "
            "client's allowed resources (else `invalid_target`); default: all of them."
        ),
    ]
    state: Annotated[str, Facet("Opaque value returned unchanged in the redirect.")]
    code_challenge: Annotated[
        str,
        Facet(
            "PKCE S256 challenge: 43 base64url characters (RFC 7636 §4.2); required unless an "
            "operator registered a confidential client with PKCE optional."
        ),
    ]
    code_challenge_method: Annotated[str, Facet("Must be `S256` when a challenge is sent.")]
    # OpenID Connect Core §3.1.2.1 (read when `scope` holds `openid`; `request`, `request_uri`
    # and `registration` are refused with their own errors, §6.1, §6.2, §7.2.1).
    nonce: Annotated[
        str,
        Facet(
            "OpenID Connect: returned in the ID token, to tie it to the browser session; "
            "required for clients registered with `require_nonce`."
        ),
    ]
    prompt: Annotated[
        str,
        Facet(
            "OpenID Connect: space-separated `none`, `login`, `consent`, `select_account`; "
            "`none` alone, and it answers `login_required` or `consent_required` rather than "
            "showing a page."
        ),
    ]
    max_age: Annotated[
        str,
        Facet(
            "OpenID Connect: seconds a sign-in may be old (a non-negative integer); an older "
            "one signs in again (`0`: like `prompt=login`)."
        ),
    ]
    login_hint: Annotated[str, Facet("OpenID Connect: the username to fill in at sign-in.")]
    id_token_hint: Annotated[
        str,
        Facet(
            "OpenID Connect: an ID token Baton issued (expired or not) naming the user "
            "expected to be signed in; another user signs in again (`prompt=none`: "
            "`login_required`)."
        ),
    ]
    claims: Annotated[
        str,
        Facet(
            "OpenID Connect §5.5: a JSON object asking for individual claims in the ID token "
            "(`id_token`) or the UserInfo response (`userinfo`)."
        ),
    ]
    display: Annotated[str, Facet("OpenID Connect: accepted; the pages adapt by themselves.")]
    ui_locales: Annotated[str, Facet("OpenID Connect: accepted; the pages are in English.")]
    claims_locales: Annotated[str, Facet("OpenID Connect: accepted; claims are as stored.")]
    acr_values: Annotated[
        str, Facet("OpenID Connect: accepted; Baton signs in with a password (no `acr`).")
    ]


Csrf = Annotated[str, Facet("The CSRF token of the session.")]
Next = Annotated[
    str,
    Facet(
        "Where to continue: only ever `/authorize?...` or the admin console (`/admin`, "
        "`/admin/...`); "
        "anything else is `/`."
    ),
]


class ConsentForm(AuthorizationRequest, total=False):
    """The consent page's form (POST /authorize): the decision, and the request again."""

    csrf: Required[Csrf]
    decision: Required[Literal["allow", "deny"]]


class LoginForm(TypedDict, total=False):
    """The sign-in page's form (POST /login)."""

    csrf: Required[Csrf]
    next: Next
    username: Required[Annotated[str, Facet("The user's name.")]]
    password: Required[Annotated[str, Facet("The password.", format="password")]]


class LogoutForm(TypedDict):
    """The sign-out page's form (POST /logout)."""

    csrf: Csrf

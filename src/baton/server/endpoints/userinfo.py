"""The UserInfo endpoint (OpenID Connect Core §5.3): the claims about the signed-in user that an
access token of an OpenID Connect grant releases.

The token is a bearer token (RFC 6750): in the `Authorization` header (§2.1) or, in a POST, the
form body's `access_token` (§2.2); never the query (§2.3 is not offered, as RFC 9700 §2.4 asks).
It is looked up as introspection looks it up, and lives by the same rule
(`baton.core.rules.access_liveness`: it dies with its grant and with its companion refresh
token). Failures are RFC 6750 §3 challenges, each with a JSON body.
"""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from baton.core import rules
from baton.core.claims import OPENID, released, user_claims
from baton.core.signals import Source, access_signals
from baton.core.subject import SectorError, subject_for
from baton.core.tokens import TokenKind, digest
from baton.core.vocabulary import ErrorCode
from baton.server.endpoints.errors import NoStoreJSON, error_description
from baton.server.endpoints.forms import read_form
from baton.server.endpoints.revocation import token_kind
from baton.server.runtime.context import Baton, baton, source_address
from baton.server.runtime.cors import about_client

REALM = "baton"

# RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/=")


class BearerError(Exception):
    """A request the UserInfo endpoint refuses, as RFC 6750 §3 answers it."""

    def __init__(self, status: int, error: ErrorCode | None, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = error_description(description)

    def response(self) -> NoStoreJSON:
        challenge = f'Bearer realm="{REALM}"'
        body: dict[str, str] = {}
        if self.error is not None:
            challenge += f', error="{self.error}", error_description="{self.description}"'
            body["error"] = self.error
            if self.error is ErrorCode.INSUFFICIENT_SCOPE:
                # RFC 6750 §3: the `scope` attribute names the scope the resource needs.
                challenge += f', scope="{OPENID}"'
        # A request without any token gets no error code (RFC 6750 §3.1: "If the request lacks
        # any authentication information ... SHOULD NOT include an error code"): its body only
        # says what to send.
        body["error_description"] = self.description
        return NoStoreJSON(body, self.status, {"WWW-Authenticate": challenge})


def missing(description: str) -> BearerError:
    return BearerError(401, None, description)


def invalid_token(description: str) -> BearerError:
    return BearerError(401, ErrorCode.INVALID_TOKEN, description)


def insufficient_scope(description: str) -> BearerError:
    return BearerError(403, ErrorCode.INSUFFICIENT_SCOPE, description)


def invalid_request(description: str) -> BearerError:
    return BearerError(400, ErrorCode.INVALID_REQUEST, description)


async def userinfo_endpoint(request: Request) -> Response:
    app = baton(request)
    if not app.oidc:  # OpenID Connect is off: there is no UserInfo endpoint to speak of
        raise HTTPException(404)
    await app.limits.check_address(source_address(request))
    try:
        token = await presented_token(request, app)
        return NoStoreJSON(await claims_for(request, app, token))
    except BearerError as refused:
        return refused.response()


async def presented_token(request: Request, app: Baton) -> str:
    """The bearer token of the request: the header's, or a POST body's `access_token`."""
    header = request.headers.get("authorization")
    in_header = bearer_of(header) if header else None
    in_body = None
    if request.method == "POST":
        form = await read_form(request, app.settings.max_body_bytes)
        in_body = form.get("access_token")
    if in_header is not None and in_body is not None:
        # RFC 6750 §2: "Clients MUST NOT use more than one method to transmit the token in
        # each request"; §3.1 answers that `invalid_request`.
        raise invalid_request("send the access token once: in the header or in the body")
    token = in_header if in_header is not None else in_body
    if token is None:
        # Nothing (a token in the query is no token: RFC 6750 §2.3 is not offered), or another
        # scheme than Bearer: RFC 6750 §3 "attempted using an unsupported authentication
        # method" gets the bare challenge too.
        raise missing("an access token is required: Authorization: Bearer <token>")
    return token


def bearer_of(header: str) -> str | None:
    """The token of an `Authorization: Bearer <token>` value; None for another scheme."""
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    if not token or not set(token) <= _B64TOKEN:
        raise invalid_request("malformed Authorization header (RFC 6750 section 2.1)")
    return token


async def claims_for(request: Request, app: Baton, token: str) -> dict[str, Any]:
    """The UserInfo response of a live access token of an OpenID Connect grant."""
    if token_kind(token) is not TokenKind.ACCESS:
        raise invalid_token("not an access token")
    facts = await app.store.find_access_token(digest(token))
    now = app.clock.now()
    # The liveness introspection answers with (RFC 7662 `active`): expired, revoked, of a dead
    # grant, or dead with its companion refresh token (rotated past its leeway, or revoked).
    if facts is None or not rules.access_liveness(facts, now).active:
        raise invalid_token("the access token is unknown, expired or revoked")
    grant = facts.grant
    # The answer is about the token's client: CORS answers it for that client's origins only.
    about_client(request.scope, grant.client_id)
    # Core §5.3.1: the access token was obtained through an OpenID Connect authentication
    # request, so it holds `openid`. A client_credentials token is about no user: it gets the
    # same 403 (a valid token, the wrong authorization), not `invalid_token`, which would have a
    # client refresh it and try again in vain.
    scope = frozenset(facts.scope.split())
    if OPENID not in scope or grant.user_id is None or grant.subject is None:
        raise insufficient_scope("the access token was not granted the openid scope for a user")
    client = await app.store.get_client(grant.client_id)
    user = await app.store.get_user_by_id(grant.user_id)
    if client is None or user is None:  # deleted since: the token speaks for nobody now
        raise invalid_token("the access token's client or user no longer exists")
    # A use of a live access token the server sees (issue 28): stale after its companion's
    # exchange, or refused by its client's report-only policy (noted, never enforced).
    shadow = client.policy.shadow_policy(app.settings.policy, now)
    app.signals.note(access_signals(facts, now, shadow, Source.INTROSPECTION))
    assert app.pairwise_salt is not None  # OpenID Connect is on
    # Core §5.3.2: "The sub Claim in the UserInfo Response MUST be verified to exactly match
    # the sub Claim in the ID Token": the same rule computes both (`baton.core.subject`).
    try:
        sub = subject_for(
            grant.subject,
            client.subject_type,
            client.redirect_uris,
            client.sector_identifier_uri,
            app.pairwise_salt,
        )
    except SectorError as exc:
        # A pairwise client whose registration no longer tells its sector (Core §8.1; changed
        # behind the registration checks, or registered before they were strict): its `sub`
        # cannot be computed, so the token speaks for no subject the client knows, as when its
        # client is gone above. RFC 6750 §3.1 `invalid_token` ("invalid for other reasons"),
        # not 403 `insufficient_scope`: no wider scope would help. The client's refresh then
        # meets the token endpoint's `unauthorized_client`, which names the registration.
        raise invalid_token(f"the client's pairwise subject cannot be computed: {exc}") from exc
    # Core §5.4: the claims the scope releases; §5.5: those asked for by name for UserInfo.
    asked = frozenset(grant.sign_in.userinfo) if grant.sign_in is not None else frozenset()
    values = user_claims(
        user.username, user.email, user.email_verified, user.profile, user.updated_at
    )
    # A consent app's `session.userinfo` values (never a registered claim: the admin API
    # refuses those), given at the decision; `sub` is always the server's own.
    given = grant.sign_in.userinfo_claims if grant.sign_in is not None else {}
    return {**released(values, scope, asked), **given, "sub": sub}

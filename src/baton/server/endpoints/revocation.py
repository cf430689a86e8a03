"""Token revocation (RFC 7009) and introspection (RFC 7662)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from baton.core import rules
from baton.core.audience import aud_claim
from baton.core.facts import AccessFacts
from baton.core.keys import looks_like_jwt
from baton.core.signals import Source, access_signals
from baton.core.tokens import TokenKind, digest, kind_of
from baton.core.vocabulary import ErrorCode
from baton.server.endpoints.clientauth import confirmed, owner_policy
from baton.server.endpoints.errors import NO_STORE, NoStoreJSON, OAuthError
from baton.server.endpoints.forms import Form, read_form
from baton.server.observability import metrics
from baton.server.runtime.context import baton, source_address
from baton.store.base import Client, ClientChanged, RevokeResult, TokenFacts
from baton.wire import INACTIVE, ActiveToken


async def revocation_endpoint(request: Request) -> Response:
    app = baton(request)
    await app.limits.check_address(source_address(request))
    form = await read_form(request, app.settings.max_body_bytes)

    async def revoke(client: Client) -> RevokeResult | ClientChanged:
        # The kind is in the token's prefix, so `token_type_hint` can never hide a token (RFC
        # 7009 §2.1: a server unable to locate the token by the hint MUST extend its search).
        token_digest, is_refresh = presented_token(form)
        return await app.store.revoke_token(client, token_digest, is_refresh, app.clock.now())

    outcome: RevokeResult = await confirmed(
        request, form, app, revoke, owned=lambda done: done in ("grant", "access_token")
    )
    metrics.of(request).client_revoked(outcome)
    if outcome == "other_client":
        # RFC 7009 §2.1: "verifies whether the token was issued to the client making the
        # revocation request. If this validation fails, the request is refused and the client
        # is informed of the error". The answer says a token exists only to a client that holds
        # it already, so it is no oracle worth departing from the RFC for.
        raise OAuthError(ErrorCode.INVALID_REQUEST, "the token was issued to another client")
    # RFC 7009 §2.2: invalid, unknown and already revoked tokens get 200 as well.
    return Response(status_code=200, headers=NO_STORE)


async def introspection_endpoint(request: Request) -> NoStoreJSON:
    app = baton(request)
    await app.limits.check_address(source_address(request))
    form = await read_form(request, app.settings.max_body_bytes)

    async def find(client: Client) -> tuple[Client, TokenFacts | None] | ClientChanged:
        facts = await app.store.find_token(client, *presented_token(form), app.clock.now())
        return facts if isinstance(facts, ClientChanged) else (client, facts)

    client, facts = await confirmed(request, form, app, find, allow_public=False)
    now = app.clock.now()
    # A client may introspect its own tokens; a registered resource server any token. Any
    # other case looks exactly like an unknown token.
    if facts is None or not (client.is_resource_server or facts.grant.client_id == client.id):
        return NoStoreJSON(INACTIVE)
    # The policy that matters is the token's owner's (its grant's client, not the
    # introspecting resource server's; issue 28), asked for only when it decides something.
    if isinstance(facts, AccessFacts):
        # An access token's `exp` is stamped: no later policy moves it.
        state, scope, exp = rules.access_liveness(facts, now), facts.scope, facts.expires_at
        if state.active and client.is_resource_server:
            # A use of a live access token the server sees at an API: stale after its
            # companion's exchange, or refused by the owner's report-only policy (noted, never
            # enforced). Only a resource server's introspection is such a use: a client
            # checking its own token (RFC 7662 allows it) uses no API with it.
            owner = await owner_policy(app, facts.grant.client_id, client)
            shadow = owner.shadow_policy(app.settings.policy, now)
            app.signals.note(access_signals(facts, now, shadow, Source.INTROSPECTION))
    else:
        # A refresh token lives as the policy in force for its owner says (its caps), and its
        # `exp` is when that policy ends it: its own expiry, or sooner under a cap of its idle
        # or its grant's absolute lifetime (RFC 7662 §2.2: when "this token will expire").
        # Decided on the owner's row as it is now, never a cached copy: a change written
        # elsewhere (the CLI, another process) holds from its instant for every decision.
        in_force = (await owner_policy(app, facts.grant.client_id, client, fresh=True)).at(
            app.settings.policy, now
        )
        state, scope = rules.refresh_liveness(facts, now, in_force), facts.grant.scope
        exp = min(
            facts.expires_at,
            in_force.refresh_deadline(facts.issued_at, facts.expires_at),
            in_force.grant_deadline(facts.grant.created_at, facts.grant.expires_at),
        )
    if not state.active:
        return NoStoreJSON(INACTIVE)
    grant = facts.grant
    body: ActiveToken = {
        "active": True,
        "scope": scope,
        "client_id": grant.client_id,
        # RFC 7662 §2.2 names the type of an access token as in RFC 6749 §5.1.
        "token_type": "Bearer" if isinstance(facts, AccessFacts) else "refresh_token",
        "exp": exp,
        "iat": facts.issued_at,
        "iss": app.settings.issuer_identifier,
        "grant_id": grant.id,
        "generation": facts.generation,
    }
    if grant.subject is not None:
        body["sub"] = body["username"] = grant.subject
    if isinstance(facts, AccessFacts):
        if facts.jti is not None:
            body["jti"] = facts.jti
        if facts.audience:  # RFC 7662 §2.2: the token's intended audience(s)
            body["aud"] = aud_claim(facts.audience)
    if state.revocation_at is not None:
        body["revocation_at"] = state.revocation_at
    return NoStoreJSON(body)


def presented_token(form: Form) -> tuple[bytes | None, bool]:
    """The `token` parameter's digest (None for no kind of Baton token: nothing to look up) and
    whether it is a refresh token."""
    token = form.require("token")
    kind = token_kind(token)
    if kind not in (TokenKind.ACCESS, TokenKind.REFRESH):
        return None, False
    return digest(token), kind is TokenKind.REFRESH


def token_kind(token: str) -> TokenKind | None:
    """The kind of a presented token: from its prefix, or an access token if it is a JWT
    (JWT access tokens are stored under the digest of their compact form, like any other)."""
    kind = kind_of(token)
    if kind is None and looks_like_jwt(token):
        return TokenKind.ACCESS
    return kind

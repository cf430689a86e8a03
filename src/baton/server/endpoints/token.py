"""The token endpoint (RFC 6749 §3.2): authorization_code, refresh_token, client_credentials."""

from __future__ import annotations

from dataclasses import replace

from starlette.requests import Request

from baton import spans
from baton.core import rules
from baton.core.audience import narrowed, requested_resource_problem
from baton.core.client_policy import grant_types_in_force
from baton.core.idtoken import IdTokenError, IdTokenIssuer
from baton.core.pairs import IssuedPair, MintedPair
from baton.core.policy import Policy, RetryPolicy
from baton.core.registration import vouched
from baton.core.scope import ScopeError
from baton.core.scope import parse as parse_scope
from baton.core.scope import render as render_scope
from baton.core.seal import opener, sealer
from baton.core.signals import Source, grant_type_signal
from baton.core.tokens import TokenKind, digest, kind_of
from baton.core.vocabulary import ErrorCode
from baton.server.endpoints.clientauth import authenticate, charge_after, charge_before, confirmed
from baton.server.endpoints.errors import NoStoreJSON, OAuthError, invalid_client
from baton.server.endpoints.forms import Form, read_form
from baton.server.observability import metrics
from baton.server.runtime.context import Baton, baton, source_address
from baton.store.base import (
    Client,
    ClientChanged,
    ClientDisabled,
    CodeRefused,
    ExchangeAsk,
    ExchangeResult,
    Issued,
    RedeemResult,
    Refused,
    RegisteredVia,
    Replayed,
    ScopeRefused,
    TargetRefused,
)


async def token_endpoint(request: Request) -> NoStoreJSON:
    app = baton(request)
    await app.limits.check_address(source_address(request))
    form = await read_form(request, app.settings.max_body_bytes)
    grant_type = form.require("grant_type")
    if grant_type == "refresh_token":  # the hot path: the client from the cache, confirmed
        pair = await confirmed(
            request, form, app, lambda client: _refresh_token(request, app, client, form)
        )
    else:
        handler = _HANDLERS.get(grant_type)
        if handler is None:
            raise OAuthError(
                ErrorCode.UNSUPPORTED_GRANT_TYPE, f"grant_type {grant_type!r} is not supported"
            )
        client = await authenticate(request, form, app.store)
        _registered_grant(app, client, grant_type, app.clock.now())
        await charge_before(app, client)
        pair = await handler(request, app, client, form)
        await charge_after(app, client)  # the code was its own (L3)
    # Remaining lifetimes counted from the ceiling of this second: never more than is left.
    return NoStoreJSON(pair.token_response(app.clock.ceiling()))


EXCHANGE_SPAN = "baton.token.exchange"  # a code or refresh token exchanged (baton.spans)
# What an exchange came to, as the span's `baton.outcome`.
_OUTCOMES: dict[type, str] = {
    Issued: "issued",
    Replayed: "replayed",
    Refused: "refused",
    CodeRefused: "refused",
    ScopeRefused: "scope_refused",
    TargetRefused: "target_refused",
    ClientChanged: "client_changed",
}


def _begun(span: spans.Span, grant_type: str, client_id: str) -> None:
    if span is spans.OFF:
        return
    span.set("baton.grant_type", grant_type)
    span.set("baton.client_id", client_id)


def _outcome(span: spans.Span, result: ExchangeResult | RedeemResult) -> None:
    if span is spans.OFF:
        return
    span.set("baton.outcome", _OUTCOMES[type(result)])
    if isinstance(result, Issued):
        span.set("baton.grant_id", result.pair.grant_id)
        span.set("baton.retry", result.retry)


def invalid_grant(description: str) -> OAuthError:
    return OAuthError(ErrorCode.INVALID_GRANT, description)


def _registered_grant(app: Baton, client: Client, grant_type: str, now: int) -> None:
    """RFC 7591 §2: `grant_types` are those the client "will restrict itself to using"; the
    server holds it to them. A client registered without (`grant_types` None: every operator's
    client) may use any grant its type allows. RFC 6749 §5.2 `unauthorized_client`: "The
    authenticated client is not authorized to use this authorization grant type."

    The grant types in force are its policy's when it sets them (issue 28), else those it
    registered; a report-only policy that would refuse `grant_type` is noted, not enforced."""
    in_force = grant_types_in_force(client.grant_types, client.policy.settings_at(now))
    if in_force is not None and grant_type not in in_force:
        raise OAuthError(
            ErrorCode.UNAUTHORIZED_CLIENT,
            f"this client is not registered for the {grant_type} grant type",
        )
    signal = grant_type_signal(client.id, grant_type, client.policy.shadow(now), now, Source.TOKEN)
    if signal is not None:
        app.signals.note((signal,))


def _issues_refresh(app: Baton, client: Client) -> bool:
    """Whether a code of `client` gets a refresh token: not when the grant types in force
    (its policy's, else those it registered) leave `refresh_token` out (it could never use one,
    RFC 7591 §2)."""
    in_force = grant_types_in_force(client.grant_types, client.policy.settings_at(app.clock.now()))
    return in_force is None or "refresh_token" in in_force


def client_policies(app: Baton, client: Client, now: int) -> tuple[Policy, Policy | None]:
    """The policy in force for `client` at `now` over the server's (issue 28), and its
    report-only policy (None: none pending). A public client's refresh tokens always rotate
    (RFC 9700 §4.14.2), whatever a policy stored before that check says."""
    server = app.settings.policy
    policy = client.policy.at(server, now)
    if client.is_public and not policy.rotate:
        policy = replace(policy, rotate=True)
    return policy, client.policy.shadow_policy(server, now)


def invalid_target(description: str) -> OAuthError:
    return OAuthError(ErrorCode.INVALID_TARGET, description)


def _new_pair(
    app: Baton,
    resources: tuple[str, ...],
    with_refresh: bool = True,
    client: Client | None = None,
) -> MintedPair:
    """The pair to issue, for `resources` (none: every resource of the grant); a grant that
    holds none gets the default audience (`--access-token-audience`, else the issuer). With
    `client`, and OpenID Connect on, the pair comes with an ID token when its grant is an
    OpenID Connect one (`plan_pair` decides, on the grant's scope and sign-in)."""
    return MintedPair.new(
        with_refresh,
        app.access_format,
        resources,
        app.clock.ceiling(),
        default_audience=app.settings.default_audience,
        id_tokens=id_token_issuer(app, client) if client is not None else None,
    )


def id_token_issuer(app: Baton, client: Client) -> IdTokenIssuer | None:
    """The ID tokens of `client` (None while OpenID Connect is off): signed with the key of its
    `id_token_signed_response_alg` (`KeyRing.key_for`), `sub` as its subject type says."""
    if app.pairwise_salt is None:
        return None
    return IdTokenIssuer(
        issuer=app.settings.issuer_identifier,
        lifetime=app.settings.id_token_lifetime,
        salt=app.pairwise_salt,
        alg=client.id_token_signed_response_alg,
        subject_type=client.subject_type,
        redirect_uris=client.redirect_uris,
        sector_identifier_uri=client.sector_identifier_uri,
        key_for=app.keys.key_for,
    )


def id_token_refused(app: Baton, exc: IdTokenError) -> OAuthError:
    """No ID token could be made, so no token was issued (the transaction rolled back: the code
    or refresh token is still good). A missing key is created by the next key reload: 503 with
    `Retry-After`, as for an unavailable database; a registration the ID token cannot follow
    (a pairwise client without a sector) is the client's (RFC 6749 §5.2 unauthorized_client)."""
    if exc.transient:
        return OAuthError(
            ErrorCode.TEMPORARILY_UNAVAILABLE,
            exc.description,
            503,
            {"Retry-After": str(app.settings.key_reload_interval)},
        )
    return OAuthError(ErrorCode.UNAUTHORIZED_CLIENT, exc.description)


def _resource(form: Form) -> tuple[str, ...]:
    """RFC 8707 §2: each `resource` (the parameter may repeat) is an absolute URI without a
    fragment; the token is for those (`aud`), which must be among those the grant holds."""
    resources = form.every("resource")
    for resource in resources:
        problem = requested_resource_problem(resource)
        if problem is not None:
            raise invalid_target(problem)
    return resources


def _requested_scope(form: Form) -> frozenset[str] | None:
    text = form.get("scope")
    if text is None:
        return None
    try:
        return parse_scope(text)
    except ScopeError as exc:
        raise OAuthError(ErrorCode.INVALID_SCOPE, str(exc)) from None


async def _authorization_code(
    request: Request, app: Baton, client: Client, form: Form
) -> IssuedPair:
    code = form.require("code")
    verifier = form.get("code_verifier")
    now = app.clock.now()
    policy, _ = client_policies(app, client, now)
    ask = rules.CodeRedemption(client.id, form.get("redirect_uri"), verifier)
    if kind_of(code) is not TokenKind.CODE:
        raise invalid_grant(rules.CodeProblem.UNKNOWN.value)
    try:
        with spans.span(EXCHANGE_SPAN) as span:
            _begun(span, "authorization_code", client.id)
            result = await app.store.redeem_code(
                digest(code),
                ask,
                _new_pair(app, _resource(form), _issues_refresh(app, client), client=client),
                now,
                source_address(request),
                policy,
            )
            _outcome(span, result)
    except ClientDisabled:
        raise _disabled_meanwhile(app, client) from None
    except IdTokenError as exc:
        raise id_token_refused(app, exc) from None
    metrics.of(request).redeemed(result)
    if isinstance(result, CodeRefused):
        raise invalid_grant(result.problem.value)
    if isinstance(result, TargetRefused):
        raise invalid_target("a requested resource was not granted by the resource owner")
    return result.pair


async def _refresh_token(
    request: Request, app: Baton, client: Client, form: Form
) -> IssuedPair | ClientChanged:
    now = app.clock.now()
    _registered_grant(app, client, "refresh_token", now)
    presented = form.require("refresh_token")
    scope = _requested_scope(form)
    resources = _resource(form)
    # A malformed or truncated token fails its checksum here, without a database read.
    if kind_of(presented) is not TokenKind.REFRESH:
        raise invalid_grant(rules.Reason.UNKNOWN.value)
    presented_digest = digest(presented)
    # The client's policy in force decides the exchange (issue 28); its report-only policy is
    # only evaluated beside it, for the signals.
    policy, shadow = client_policies(app, client, now)
    seal = (
        sealer(presented, presented_digest)
        if policy.retry is RetryPolicy.REPLAY and policy.rotate
        else None
    )
    ask = ExchangeAsk(
        digest=presented_digest,
        client_id=client.id,
        scope=scope,
        now=now,
        source_address=source_address(request),
        child=_new_pair(app, resources, client=client),
        seal=seal,
        client=client,
        policy=policy,
        shadow=shadow,
    )
    try:
        with spans.span(EXCHANGE_SPAN) as span:
            _begun(span, "refresh_token", client.id)
            result = await app.store.exchange(ask)
            _outcome(span, result)
    except IdTokenError as exc:
        raise id_token_refused(app, exc) from None
    metrics.of(request).exchanged(result)
    if isinstance(result, Issued | Replayed | Refused):
        app.signals.note(result.signals)  # in memory: written by the flush loop
    if isinstance(result, Issued):
        if result.kept:
            # RFC 6749 §6: the client keeps its refresh token. It is sent again, so a client
            # that expects one in every response keeps working; the store never held it.
            return replace(result.pair, refresh_token=presented)
        return result.pair
    if isinstance(result, ClientChanged):
        return result
    if isinstance(result, Replayed):
        opened = opener(presented, presented_digest)
        payload = opened(result.sealed_response)
        id_token = None
        if result.sealed_id_token is not None:
            id_token = opened(result.sealed_id_token)
        if payload is None or (result.sealed_id_token is not None and id_token is None):
            # Cannot happen unless the row was tampered with.
            raise OAuthError(ErrorCode.SERVER_ERROR, "the sealed response could not be opened", 500)
        return IssuedPair.from_seal_payload(
            payload, None if id_token is None else id_token.decode()
        )
    if isinstance(result, ScopeRefused):
        raise OAuthError(ErrorCode.INVALID_SCOPE, "requested scope exceeds the scope of the grant")
    if isinstance(result, TargetRefused):
        raise invalid_target("a requested resource is not one of the grant's resources")
    assert isinstance(result, Refused)
    raise invalid_grant(result.reason.value)


async def _client_credentials(
    _request: Request, app: Baton, client: Client, form: Form
) -> IssuedPair:
    if client.is_public:
        raise OAuthError(
            ErrorCode.UNAUTHORIZED_CLIENT, "client_credentials is for confidential clients only"
        )
    if client.registered_via == RegisteredVia.DOCUMENT:
        # Whatever its row says (a row stored before the rule, an edited one): a document is
        # anyone's to publish, and a token with no person behind it is not theirs to mint.
        raise OAuthError(
            ErrorCode.UNAUTHORIZED_CLIENT,
            "client_credentials is not open to a client ID metadata document's client",
        )
    if client.registered_via == RegisteredVia.DYNAMIC and not vouched(client.registration):
        # Likewise a client registered without the initial access token (`--registration
        # open`, whatever the mode is now): anyone may have registered it (RFC 9700 §4.15).
        raise OAuthError(
            ErrorCode.UNAUTHORIZED_CLIENT,
            "client_credentials is only for a client registered with the initial access token",
        )
    allowed = parse_scope(client.scope)
    scope = _requested_scope(form)
    if scope is None:
        scope = allowed  # RFC 6749 §3.3: the pre-defined default is the client's scope
    elif not scope <= allowed:
        raise OAuthError(
            ErrorCode.INVALID_SCOPE, "requested scope exceeds the client's registered scope"
        )
    # RFC 8707 §2: only resources the client is allowed (none named: all of them); the grant
    # records them, and the token is for them.
    resources = narrowed(client.allowed_resources, _resource(form))
    if resources is None:
        raise invalid_target("a requested resource is not one the client may ask for")
    now = app.clock.now()
    policy, _ = client_policies(app, client, now)
    try:
        return await app.store.issue_client_credentials(
            client.id,
            render_scope(scope),
            _new_pair(app, (), with_refresh=False),
            now,
            resources,
            note_use=client.registered_via == RegisteredVia.DYNAMIC,
            policy=policy,
        )
    except ClientDisabled:
        raise _disabled_meanwhile(app, client) from None


def _disabled_meanwhile(app: Baton, client: Client) -> OAuthError:
    """The client was disabled while its request was served: refused as a disabled client is
    (`clientauth.enabled_client`), and forgotten by this process's cache."""
    app.clients.forget(client.id)
    return invalid_client("unknown client")


_HANDLERS = {
    "authorization_code": _authorization_code,
    "client_credentials": _client_credentials,
}

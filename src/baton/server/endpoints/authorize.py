"""The authorization endpoint (RFC 6749 §4.1) with its login, consent and logout pages.

Errors before the redirect URI is trusted (unknown client, unregistered redirect URI) are shown
as a page: redirecting there would make Baton an open redirector (RFC 6749 §4.1.2.1). Every later
error is redirected to the client with `state` and `iss`.

A request whose scope holds `openid` is an OpenID Connect authentication request (Core §3.1.2):
its `prompt`, `max_age`, `id_token_hint` and `claims` decide whether the user signs in again,
chooses an account or sees the consent page, and its code carries the `nonce`, the session's
`sid` and the sign-in (`SignIn`) that the ID token will repeat. Without `openid`, nothing of this
is read: plain OAuth is answered as it always was.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from baton import wire
from baton.core import pkce
from baton.core.audience import TargetError
from baton.core.audience import requested as choose_resources
from baton.core.claims import (
    OFFLINE_ACCESS,
    OPENID,
    STANDARD_CLAIMS,
    ClaimsRequest,
    ClaimsRequestError,
    for_scope,
    user_claims,
)
from baton.core.facts import LiveSession, SignIn
from baton.core.prompt import (
    CONSENT,
    LOGIN,
    NONE,
    SELECT_ACCOUNT,
    PromptError,
    parse_max_age,
    parse_prompt,
    sign_in_too_old,
)
from baton.core.redirects import is_https, matching_redirect_uri, redirect_uri_problem
from baton.core.scope import ScopeError
from baton.core.scope import parse as parse_scope
from baton.core.scope import render as render_scope
from baton.core.subject import SectorError, subject_for
from baton.core.tokens import TokenKind, mint
from baton.core.vocabulary import ErrorCode
from baton.server.endpoints.clientauth import enabled_client
from baton.server.endpoints.consent import ALLOW_ONLINE, account_page, consent_page
from baton.server.endpoints.errors import OAuthError, error_description
from baton.server.endpoints.forms import REPEATABLE, Form, browser_form, parse_pairs
from baton.server.endpoints.hints import IdTokenHint, read_id_token_hint
from baton.server.runtime.context import Baton, baton, source_address
from baton.server.runtime.pages import error_page
from baton.server.runtime.sessions import (
    live_session,
)
from baton.store.base import Client, NewCode, User

# The parameters that make up an authorization request, carried through login and consent
# (`resource` may repeat, RFC 8707 §2), in their declared order.
REQUEST_PARAMS = tuple(wire.AuthorizationRequest.__annotations__)


class PageError(Exception):
    """An error shown to the user, because the redirect URI cannot be trusted."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class RedirectError(Exception):
    """An error sent back to the client's redirect URI (RFC 6749 §4.1.2.1)."""

    def __init__(self, error: ErrorCode, description: str) -> None:
        super().__init__(description)
        self.error = error
        # The same characters as a JSON error's (RFC 6749 §4.1.2.1): it may quote the request.
        self.description = error_description(description)


@dataclass(frozen=True)
class OidcRequest:
    """What an OpenID Connect authentication request asks beyond OAuth (Core §3.1.2.1)."""

    nonce: str | None = None
    prompt: frozenset[str] = frozenset()
    max_age: int | None = None
    login_hint: str | None = None
    hint: IdTokenHint | None = None  # `id_token_hint`, verified
    hint_client: Client | None = None  # the client the hint was issued to (its `sub`'s sector)
    claims: ClaimsRequest = field(default_factory=ClaimsRequest)
    # `claims.id_token.sub.value` (§5.5.1): only that user may be answered.
    sub: str | None = None

    @property
    def silent(self) -> bool:
        """`prompt=none`: answer without showing any page, or with an error (§3.1.2.1)."""
        return NONE in self.prompt

    @property
    def named_claims(self) -> frozenset[str]:
        """The standard claims asked for by name, for the ID token or the UserInfo response."""
        return (self.claims.id_token | self.claims.userinfo) & STANDARD_CLAIMS


@dataclass(frozen=True)
class AuthorizationRequest:
    client: Client
    redirect_uri: str
    redirect_uri_given: bool
    scope: frozenset[str]
    resources: tuple[str, ...]  # RFC 8707, sorted: those named, or all the client may have
    state: str | None
    code_challenge: str | None
    params: tuple[tuple[str, str], ...]  # as received, to carry through login and consent
    oidc: OidcRequest | None = None  # None: not an OpenID Connect request (no `openid`)


async def validate(app: Baton, form: Form) -> AuthorizationRequest:
    client_id = form.get("client_id")
    if client_id is None:
        raise PageError("The request names no client (client_id is missing).")
    client = await enabled_client(app.store, client_id)
    if client is None:
        raise PageError("The request names an unknown client.")
    given = form.get("redirect_uri")
    if given is not None:
        # RFC 9700 §4.1.3: exact string matching, but a loopback port (RFC 8252 §7.3).
        if matching_redirect_uri(client.redirect_uris, given) is None:
            raise PageError("The redirect URI is not registered for this client.")
        redirect_uri = given
    elif len(client.redirect_uris) == 1:
        redirect_uri = client.redirect_uris[0]
    else:
        raise PageError("The request must name one of the client's registered redirect URIs.")
    # The rule registration applies, applied again: a URI stored before it (a `javascript:`,
    # a `data:`, plain http off loopback) is never redirected to.
    if (problem := redirect_uri_problem(redirect_uri)) is not None:
        raise PageError(f"The client's redirect URI is not allowed: {problem}.")
    params = tuple(
        (name, value)
        for name in REQUEST_PARAMS
        for value in (form.every(name) if name in REPEATABLE else (form.get(name),))
        if value is not None
    )
    request = AuthorizationRequest(
        client, redirect_uri, given is not None, frozenset(), (), form.get("state"), None, params
    )
    try:
        return await _checked(app, request, form)
    except RedirectError as exc:
        raise _WithRequest(exc, request) from None


class _WithRequest(Exception):
    def __init__(self, error: RedirectError, request: AuthorizationRequest) -> None:
        super().__init__(error.description)
        self.error = error
        self.request = request


async def _checked(app: Baton, request: AuthorizationRequest, form: Form) -> AuthorizationRequest:
    response_type = form.get("response_type")
    if response_type != "code":
        raise RedirectError(ErrorCode.UNSUPPORTED_RESPONSE_TYPE, "response_type must be code")
    allowed = parse_scope(request.client.scope)
    try:
        # RFC 6749 §3.3: an omitted scope is the client's registered scope (which may be empty:
        # a token for no particular scope). §3.1: `scope=` with no value counts as omitted.
        asked = form.get("scope")
        scope = allowed if asked is None else parse_scope(asked)
    except ScopeError as exc:
        raise RedirectError(ErrorCode.INVALID_SCOPE, str(exc)) from None
    if OPENID in scope and not app.oidc:
        # ID tokens are signed: without a key-encryption key the server keeps no keys.
        raise RedirectError(
            ErrorCode.INVALID_SCOPE,
            "OpenID Connect needs a key-encryption key: set BATON_KEY_ENCRYPTION_KEY",
        )
    if not scope <= allowed:
        raise RedirectError(ErrorCode.INVALID_SCOPE, "requested scope exceeds the client's scope")
    try:
        # RFC 8707 §2: each `resource` an absolute URI the client may have, else invalid_target.
        resources = choose_resources(form.every("resource"), request.client.allowed_resources)
    except TargetError as exc:
        raise RedirectError(ErrorCode.INVALID_TARGET, str(exc)) from None
    challenge = form.get("code_challenge")
    method = form.get("code_challenge_method")
    if challenge is None:
        if request.client.is_public:
            # RFC 9700 §2.1.1: public clients MUST use PKCE.
            raise RedirectError(
                ErrorCode.INVALID_REQUEST, "PKCE is required: send code_challenge (S256)"
            )
        if request.client.require_pkce:
            # OAuth 2.1 §4.1.1: confidential clients too, unless the operator opted this one out.
            raise RedirectError(
                ErrorCode.INVALID_REQUEST,
                "PKCE is required for this client: send code_challenge (S256)",
            )
        if method is not None:
            raise RedirectError(
                ErrorCode.INVALID_REQUEST, "code_challenge_method without code_challenge"
            )
    else:
        # RFC 7636 §4.3 defaults the method to `plain`, which Baton does not accept.
        if method != "S256":
            raise RedirectError(
                ErrorCode.INVALID_REQUEST,
                "code_challenge_method must be S256 (plain is not supported)",
            )
        if not pkce.is_valid_challenge(challenge):
            raise RedirectError(
                ErrorCode.INVALID_REQUEST, "code_challenge must be 43 base64url characters"
            )
    oidc = await _oidc_request(app, request.client, form) if OPENID in scope else None
    return replace(request, scope=scope, resources=resources, code_challenge=challenge, oidc=oidc)


async def _oidc_request(app: Baton, client: Client, form: Form) -> OidcRequest:
    """The OpenID Connect parameters of an authentication request (Core §3.1.2.1), checked."""
    # Core §6: Baton supports no request objects; §6.1/§6.2 name the errors ("request_not_
    # supported", "request_uri_not_supported"), and §7.2.1 does for self-issued `registration`.
    if "request" in form:
        raise RedirectError(ErrorCode.REQUEST_NOT_SUPPORTED, "request objects are not supported")
    if "request_uri" in form:
        raise RedirectError(ErrorCode.REQUEST_URI_NOT_SUPPORTED, "request_uri is not supported")
    if "registration" in form:
        raise RedirectError(
            ErrorCode.REGISTRATION_NOT_SUPPORTED, "the registration parameter is not supported"
        )
    nonce = form.get("nonce")
    if nonce is None and client.require_nonce:
        # The client registered `require_nonce`: an ID token without one would not be tied to
        # the browser session that asked for it (Core §3.1.2.1, §15.5.2).
        raise RedirectError(ErrorCode.INVALID_REQUEST, "nonce is required for this client")
    try:
        prompt = parse_prompt(form.get("prompt"))
        max_age = parse_max_age(form.get("max_age"))
    except PromptError as exc:
        raise RedirectError(ErrorCode.INVALID_REQUEST, str(exc)) from None
    text = form.get("claims")
    try:
        claims = ClaimsRequest.parse(text)
        sub = _requested_sub(text)
    except (ClaimsRequestError, RecursionError) as exc:
        message = str(exc) if isinstance(exc, ClaimsRequestError) else "claims is nested too deep"
        raise RedirectError(ErrorCode.INVALID_REQUEST, message) from None
    hint = hint_client = None
    if (token := form.get("id_token_hint")) is not None:
        # Core §3.1.2.1: an ID Token previously issued by this server; expired ones too.
        hint = read_id_token_hint(app, token)
        if hint is not None and hint.client_id is not None:
            hint_client = (
                client
                if hint.client_id == client.id
                else await enabled_client(app.store, hint.client_id)
            )
        if hint_client is None:
            raise RedirectError(
                ErrorCode.INVALID_REQUEST, "id_token_hint is not an ID token this server issued"
            )
    # `display`, `ui_locales`, `claims_locales` and `acr_values` are accepted and carried: the
    # pages are in one language and adapt to the screen, and a password sign-in has no `acr`.
    return OidcRequest(
        nonce=nonce,
        prompt=prompt,
        max_age=max_age,
        login_hint=form.get("login_hint"),
        hint=hint,
        hint_client=hint_client,
        claims=claims,
        sub=sub,
    )


def _requested_sub(text: str | None) -> str | None:
    """`claims.id_token.sub.value` of a (well-formed) `claims` request, if it names one."""
    if not text:
        return None
    asked = json.loads(text).get("id_token") or {}
    sub = asked.get("sub") if isinstance(asked, dict) else None
    value = sub.get("value") if isinstance(sub, dict) else None
    return value if isinstance(value, str) else None


def _redirect(
    app: Baton, request: AuthorizationRequest, params: dict[str, str], status: int
) -> Response:
    if request.state is not None:
        params["state"] = request.state
    params["iss"] = app.settings.issuer_identifier
    sep = "&" if "?" in request.redirect_uri else "?"
    return RedirectResponse(
        request.redirect_uri + sep + urlencode(params),
        status_code=status,
        headers={"Cache-Control": "no-store"},
    )


async def _rate_limited(request: Request) -> Response | None:
    """The per-address bucket, charged for every GET and POST of /authorize: each one reads the
    client, the user and the consent, and a POST writes (429 with Retry-After, as a page)."""
    try:
        await baton(request).limits.check_address(source_address(request))
    except OAuthError as exc:
        message = "Too many requests from your address. Wait a moment and try again."
        return error_page(request, message, exc.status, exc.headers)
    return None


async def authorize_get(request: Request) -> Response:
    if (limited := await _rate_limited(request)) is not None:
        return limited
    try:
        form = Form(parse_pairs(request.url.query))
    except OAuthError as exc:
        return error_page(request, exc.description, exc.status)
    return await _authorize(request, form, decision=None, status=302)


async def authorize_post(request: Request) -> Response:
    """The consent form posts here: Allow or Deny, with the request's parameters."""
    if (limited := await _rate_limited(request)) is not None:
        return limited
    form = await browser_form(request)
    if isinstance(form, Response):
        return form
    decision = form.get("decision")
    if decision not in ("allow", "deny", ALLOW_ONLINE):
        return error_page(request, "Choose Allow or Deny.", 400)
    return await _authorize(request, form, decision=decision, status=303)


def _remembers_consent(auth: AuthorizationRequest) -> bool:
    """Whether a remembered consent may stand in for asking. A public client cannot prove who
    it is (RFC 6749 §10.2, RFC 8252 §8.6): any program can send its id with its own PKCE pair,
    so the user is asked every time, unless the operator opted this client in and the code goes
    to a claimed https redirect URI, which only the app that claimed it receives."""
    if not auth.client.is_public:
        return True
    return auth.client.remember_consent and is_https(auth.redirect_uri)


async def _authorize(request: Request, form: Form, decision: str | None, status: int) -> Response:
    app = baton(request)
    try:
        auth = await validate(app, form)
    except PageError as exc:
        return error_page(request, exc.message, exc.status)
    except _WithRequest as exc:
        params = {"error": exc.error.error, "error_description": exc.error.description}
        return _redirect(app, exc.request, params, status)

    live = live_session(request)
    user = await app.store.get_user_by_id(live.user_id) if live is not None else None
    oidc = auth.oidc
    # The consent page's "only while I am signed in" answer (offered to an OpenID request with
    # offline_access): allow the rest, decline offline access (§11). No other request offers it
    # (a plain OAuth grant always gets its refresh token).
    declined_offline = decision == ALLOW_ONLINE
    if declined_offline:
        if oidc is None or OFFLINE_ACCESS not in auth.scope:
            return error_page(request, "Choose Allow or Deny.", 400)
        decision = "allow"
    if oidc is not None:
        try:
            return await _authenticate(
                request, app, auth, oidc, live, user, decision, status, declined_offline
            )
        except RedirectError as exc:
            params = {"error": exc.error, "error_description": exc.description}
            return _redirect(app, auth, params, status)

    if user is None:
        return _to_login(auth.params)

    if decision == "deny":
        return _denied(app, auth, status)
    now = app.clock.now()
    if decision == "allow":
        await app.store.remember_consent(user.id, auth.client.id, auth.scope, auth.resources, now)
    else:
        # Consent is a decision this user recorded for this client, covering this request's
        # scope and resources; never inferred (an empty scope is a subset of any scope).
        consent = await app.store.consent(user.id, auth.client.id)
        remembered = consent is not None and consent.covers(auth.scope, auth.resources)
        if not (remembered and _remembers_consent(auth)):
            return await consent_page(request, app, auth, user.username)
    return await _issue_code(app, auth, user, auth.scope, status)


def _denied(app: Baton, auth: AuthorizationRequest, status: int) -> Response:
    params = {"error": ErrorCode.ACCESS_DENIED, "error_description": "the user denied the request"}
    return _redirect(app, auth, params, status)


async def _issue_code(
    app: Baton,
    auth: AuthorizationRequest,
    user: User,
    scope: frozenset[str],
    status: int,
    sign_in: SignIn | None = None,
    sid: str | None = None,
) -> Response:
    now = app.clock.now()
    code = mint(TokenKind.CODE)
    await app.store.save_code(
        NewCode(
            digest=code.digest,
            client_id=auth.client.id,
            user_id=user.id,
            redirect_uri=auth.redirect_uri if auth.redirect_uri_given else None,
            scope=render_scope(scope),
            code_challenge=auth.code_challenge,
            created_at=now,
            expires_at=now + app.settings.policy.lifetimes.code_ttl,
            resources=auth.resources,
            nonce=auth.oidc.nonce if auth.oidc is not None else None,
            sid=sid,
            sign_in=sign_in,
        )
    )
    return _redirect(app, auth, {"code": code.plaintext}, status)


async def _authenticate(
    request: Request,
    app: Baton,
    auth: AuthorizationRequest,
    oidc: OidcRequest,
    live: LiveSession | None,
    user: User | None,
    decision: str | None,
    status: int,
    declined_offline: bool = False,
) -> Response:
    """An OpenID Connect authentication request (Core §3.1.2), once it is valid: sign in (again)
    if it asks, let the user choose the account, ask consent, and issue the code with the
    sign-in's facts. With `prompt=none`, each page that would be shown is an error instead
    (§3.1.2.6), redirected to the client."""
    now = app.clock.now()
    if live is None or user is None:
        if oidc.silent:
            # §3.1.2.1, prompt=none: "An error is returned if an End-User is not already
            # authenticated".
            raise RedirectError(ErrorCode.LOGIN_REQUIRED, "no one is signed in")
        return _to_login(_continuation(auth))
    if (reason := _sign_in_again(app, auth, oidc, live, user, now)) is not None:
        if oidc.silent:
            raise RedirectError(ErrorCode.LOGIN_REQUIRED, _SIGN_IN_AGAIN[reason])
        return _to_login(_continuation(auth), reason)

    if SELECT_ACCOUNT in oidc.prompt and decision is None:
        # §3.1.2.1, select_account: "The Authorization Server SHOULD prompt the End-User to
        # select a user account." This browser holds one session: the choice is to go on with
        # it, or to sign in with another account.
        return account_page(request, auth.client, user.username, _continuation(auth))

    if decision == "deny":
        return _denied(app, auth, status)
    scope = auth.scope
    asked_now = decision == "allow"
    if asked_now and declined_offline:
        # §11: offline access is the user's to allow; the rest of what they allowed stands.
        scope = scope - {OFFLINE_ACCESS}
    if asked_now:
        await app.store.remember_consent(user.id, auth.client.id, scope, auth.resources, now)
    else:
        consent = await app.store.consent(user.id, auth.client.id)
        remembered = (
            consent is not None
            and consent.covers(scope - {OFFLINE_ACCESS}, auth.resources)
            and _remembers_consent(auth)
        )
        # §11: offline access needs the user's consent: "the prompt parameter MUST contain
        # consent unless other conditions for processing the request permitting offline access
        # are in place". A remembered consent that covered offline_access is such a condition;
        # one that did not is not, so the page asks now, rather than silently dropping what the
        # relying party asked for. Under prompt=none, which cannot ask, offline_access is
        # ignored (the §11 answer when no such condition holds) and the rest is answered.
        offline_pending = OFFLINE_ACCESS in scope and not (
            consent is not None and consent.covers(scope, auth.resources)
        )
        # Claims asked for by name beyond what the scope releases are released only when the
        # consent page listed them (a remembered consent records scopes, not claims).
        claims_pending = bool(oidc.named_claims - for_scope(scope))
        if not remembered or CONSENT in oidc.prompt:
            if oidc.silent:
                raise RedirectError(
                    ErrorCode.CONSENT_REQUIRED, "the user has not allowed this client this access"
                )
            return await consent_page(request, app, auth, user.username)
        if (offline_pending or claims_pending) and not oidc.silent:
            return await consent_page(request, app, auth, user.username)
        if offline_pending:
            scope = scope - {OFFLINE_ACCESS}
    # What the user agreed to see released: the claims of the granted scopes (§5.4), and those
    # asked for by name when the consent page, which lists them, was answered now.
    consented = for_scope(scope) | (oidc.named_claims if asked_now else frozenset())
    values = user_claims(
        user.username, user.email, user.email_verified, user.profile, user.updated_at
    )
    sign_in = SignIn(
        auth_time=live.auth_time,
        acr=live.acr,
        amr=live.amr,
        claims={k: v for k, v in values.items() if k in oidc.claims.id_token & consented},
        userinfo=tuple(sorted(oidc.claims.userinfo & consented)),
    )
    return await _issue_code(app, auth, user, scope, status, sign_in, live.sid)


# Why a signed-in user must sign in again, as the login page tells it (and `login_required`).
_SIGN_IN_AGAIN = {
    "login": "the client asks the user to sign in again",
    "account": "the signed-in user is not the one the client asked for",
}


def _sign_in_again(
    app: Baton,
    auth: AuthorizationRequest,
    oidc: OidcRequest,
    live: LiveSession,
    user: User,
    now: int,
) -> str | None:
    """Why the signed-in user must sign in (again) first, or None."""
    # §3.1.2.1, prompt=login: "The Authorization Server SHOULD prompt the End-User for
    # reauthentication." max_age: "If the elapsed time is greater than this value, the OP MUST
    # attempt to actively re-authenticate the End-User" (0: every time).
    if LOGIN in oidc.prompt or sign_in_too_old(live.auth_time, now, oidc.max_age):
        return "login"
    # §3.1.2.1, id_token_hint: "If the End-User identified by the ID Token is logged in or is
    # logged in by the request, then the Authorization Server returns a positive response;
    # otherwise, it SHOULD return an error". Its `sub` is the one its own client saw (§8).
    hint, hint_client = oidc.hint, oidc.hint_client
    if (
        hint is not None
        and hint_client is not None
        and _subject(app, user, hint_client) != hint.sub
    ):
        return "account"
    # §5.5.1: with a `sub` value asked for the ID token, "the Authorization Server MUST NOT
    # reply with an ID Token or Access Token for a different user".
    if oidc.sub is not None and _subject(app, user, auth.client) != oidc.sub:
        return "account"
    return None


def _subject(app: Baton, user: User, client: Client) -> str | None:
    """The `sub` `client` knows `user` by (None if the client's sector cannot be told)."""
    try:
        return subject_for(
            user.username,
            client.subject_type,
            client.redirect_uris,
            client.sector_identifier_uri,
            app.pairwise_salt or b"",
        )
    except SectorError:
        return None


def _continuation(auth: AuthorizationRequest) -> tuple[tuple[str, str], ...]:
    """The request as it goes on once the user signed in: what asked for that sign-in is done
    (`prompt`'s `login`, and `select_account`: signing in is choosing the account; `max_age`:
    the sign-in is new), so coming back does not ask again. The ID token's `auth_time` tells
    the client when that sign-in was (§3.1.2.1: the client checks it against its max_age)."""
    kept: list[tuple[str, str]] = []
    for name, value in auth.params:
        if name == "max_age":
            continue
        if name == "prompt":
            value = " ".join(p for p in value.split(" ") if p and p not in (LOGIN, SELECT_ACCOUNT))
            if not value:
                continue
        kept.append((name, value))
    return tuple(kept)


def _to_login(params: tuple[tuple[str, str], ...], reason: str | None = None) -> Response:
    """To the login page, which continues with the authorization request `params`."""
    location = "/login?next=" + quote("/authorize?" + urlencode(params), safe="")
    if reason is not None:
        location += "&reason=" + reason
    return RedirectResponse(location, status_code=303)

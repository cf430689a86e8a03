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

import hashlib
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote, urlencode

from itsdangerous import Signer, TimestampSigner
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from baton import wire
from baton.core import pkce
from baton.core.audience import TargetError
from baton.core.audience import requested as choose_resources
from baton.core.challenges import CONSENT as CONSENT_KIND
from baton.core.challenges import LOGIN as LOGIN_KIND
from baton.core.claims import (
    OFFLINE_ACCESS,
    OPENID,
    STANDARD_CLAIMS,
    ClaimsRequest,
    ClaimsRequestError,
    for_scope,
    user_claims,
)
from baton.core.client_policy import grant_types_in_force, pkce_in_force
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
from baton.core.registration import AUTHORIZATION_CODE
from baton.core.scope import ScopeError
from baton.core.scope import parse as parse_scope
from baton.core.scope import render as render_scope
from baton.core.signals import Source, grant_type_signal, pkce_signal
from baton.core.subject import SectorError, subject_for
from baton.core.tokens import TokenKind, digest, mint
from baton.core.vocabulary import ErrorCode
from baton.server.endpoints.clientauth import enabled_client
from baton.server.endpoints.consent import (
    ALLOW_ONLINE,
    account_page,
    consent_page,
    provenance,
    return_host,
)
from baton.server.endpoints.errors import OAuthError, error_description
from baton.server.endpoints.forms import REPEATABLE, Form, browser_form, parse_pairs, unreadable
from baton.server.endpoints.hints import IdTokenHint, read_id_token_hint
from baton.server.endpoints.stores import ChallengeKeeper
from baton.server.runtime.context import Baton, baton, source_address
from baton.server.runtime.documents import DocumentError
from baton.server.runtime.pages import N_, error_page, page
from baton.server.runtime.sessions import (
    MAX_AGE,
    AccountDisabled,
    begin_session,
    live_session,
)
from baton.store.base import Challenge, Client, Consent, NewCode, RegisteredVia, User

# The parameters that make up an authorization request, carried through login and consent
# (`resource` may repeat, RFC 8707 §2), in their declared order.
REQUEST_PARAMS = tuple(wire.AuthorizationRequest.__annotations__)


class PageError(Exception):
    """An error shown to the user, because the redirect URI cannot be trusted: `message`
    marked with `N_` (the page translates it), `values` for its `%(name)s` placeholders."""

    def __init__(
        self, message: str, status: int = 400, values: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message % values if values else message)
        self.message = message
        self.status = status
        self.values = dict(values) if values else None


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
        raise PageError(N_("The request names no client (client_id is missing)."))
    try:
        # A registered client, or the client of a metadata document at `client_id` (fetched
        # when its stored copy is stale; `baton.server.runtime.documents`).
        client = await app.documents.client(client_id)
    except DocumentError as exc:
        # draft-ietf-oauth-client-id-metadata-document §5.1: "If ... fetching the metadata
        # document fails, the authorization server SHOULD abort the authorization request".
        # The redirect URIs come from the document: none is trusted, so a page says why.
        message = N_("The client's metadata document at %(url)s could not be used: %(reason)s.")
        raise PageError(message, values={"url": exc.url, "reason": exc.reason}) from None
    if client is None or client.disabled_at is not None:
        raise PageError(N_("The request names an unknown client."))
    localhost = client.loopback_by_name  # a native app no operator registered
    given = form.get("redirect_uri")
    if given is not None:
        # RFC 9700 §4.1.3: exact string matching, but a loopback port (RFC 8252 §7.3).
        if matching_redirect_uri(client.redirect_uris, given, localhost=localhost) is None:
            raise PageError(N_("The redirect URI is not registered for this client."))
        redirect_uri = given
    elif len(client.redirect_uris) == 1:
        redirect_uri = client.redirect_uris[0]
    else:
        raise PageError(N_("The request must name one of the client's registered redirect URIs."))
    # The rule registration applies, applied again: a URI stored before it (a `javascript:`,
    # a `data:`, plain http off loopback) is never redirected to. The problem is the rule's
    # technical wording (the console's and the CLI's too), left as it is inside the sentence.
    if (problem := redirect_uri_problem(redirect_uri, localhost=localhost)) is not None:
        message = N_("The client's redirect URI is not allowed: %(problem)s.")
        raise PageError(message, values={"problem": problem})
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
    # What the client may do is its policy's in force when it sets it (issue 28), else its
    # registration's.
    settings = request.client.policy.settings_at(app.clock.now())
    grant_types = grant_types_in_force(request.client.grant_types, settings)
    if grant_types is not None and AUTHORIZATION_CODE not in grant_types:
        # RFC 6749 §4.1.2.1 `unauthorized_client`: "The client is not authorized to request an
        # authorization code using this method." Its registration (RFC 7591 §2 `grant_types`)
        # or its policy left the code flow out; no page is shown for a code /token would refuse.
        raise RedirectError(
            ErrorCode.UNAUTHORIZED_CLIENT, "the client is not registered for authorization_code"
        )
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
        if pkce_in_force(request.client.require_pkce, settings):
            # OAuth 2.1 §4.1.1: confidential clients too, unless the operator opted this one
            # out (its registration, or its policy in force).
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
    request: Request, app: Baton, auth: AuthorizationRequest, params: dict[str, str], status: int
) -> Response:
    """The answer to the client (a code or an error, RFC 6749 §4.1.2), with `state` and `iss`
    (RFC 9207). Every answer to the client goes out here: a login app's sign-in without
    `remember` is spent by it (`_spend_once`)."""
    _spend_once(request)
    return RedirectResponse(
        _answer_url(app, auth, params), status_code=status, headers={"Cache-Control": "no-store"}
    )


def _answer_url(app: Baton, auth: AuthorizationRequest, params: dict[str, str]) -> str:
    """The redirect URI with the answer's parameters, `state` and `iss` (RFC 9207)."""
    if auth.state is not None:
        params["state"] = auth.state
    params["iss"] = app.settings.issuer_identifier
    sep = "&" if "?" in auth.redirect_uri else "?"
    return auth.redirect_uri + sep + urlencode(params)


def _unvouched(app: Baton, client: Client) -> bool:
    """A client no operator registered (RFC 7591, or a metadata document on a host the operator
    does not trust): anyone can make one whose redirect URI is theirs."""
    return client.registered_via is not None and not app.documents.trusted(client)


async def _approved(app: Baton, client: Client, user: User | None) -> bool:
    """Whether the signed-in `user` has a remembered consent for `client` (whatever its scope,
    not expired): then a silent request's error (OpenID Connect Core §3.1.2.6) is redirected
    even for a client no operator vouched for, to a client this user already chose to send
    their browser back to. Without one (no one signed in, or this user never allowed the
    client), nobody has approved its redirect URI, and the error is a page with a link."""
    if user is None:
        return False
    consent = await app.store.consent(user.id, client.id)
    # Nothing asked of its scope: only whether it has expired (`Consent.covers`).
    return consent is not None and consent.covers(frozenset(), (), app.clock.now())


def _error_with_link(
    request: Request, app: Baton, auth: AuthorizationRequest, params: dict[str, str]
) -> Response:
    """An error found before any page was shown, for a client no operator vouched for: the
    error page, with a plain link to the error's redirect rather than the redirect itself.
    RFC 9700 §4.11.2: an authorization server that redirects on an invalid request "could be
    used as an open redirector" by whoever registered the client, "especially" a client
    registered dynamically; a link the person chooses to follow is no redirection of theirs,
    and no dead end either. An operator's client keeps RFC 6749 §4.1.2.1's redirect."""
    values = {"code": params["error"], "description": params["error_description"]}
    link = _answer_url(app, auth, params)
    _spend_once(request)
    context = {
        "message": N_("The application's request was refused (%(code)s: %(description)s)."),
        "values": values,
        "return_link": link,
        "return_host": return_host(auth.redirect_uri),
    }
    return page(request, "error.html", context, 400, {"Cache-Control": "no-store"})


async def _rate_limited(request: Request) -> Response | None:
    """The per-address bucket, charged for every GET and POST of /authorize: each one reads the
    client, the user and the consent, and a POST writes (429 with Retry-After, as a page)."""
    try:
        await baton(request).limits.check_address(source_address(request))
    except OAuthError as exc:
        message = N_("Too many requests from your address. Wait a moment and try again.")
        return error_page(request, message, exc.status, exc.headers)
    return None


async def authorize_get(request: Request) -> Response:
    if (limited := await _rate_limited(request)) is not None:
        return limited
    try:
        form = Form(parse_pairs(request.url.query))
    except OAuthError as exc:
        return unreadable(request, exc)
    return await _authorize(request, form, decision=None, status=302, fresh=True)


async def authorize_post(request: Request) -> Response:
    """The consent form posts here: Allow or Deny, with the request's parameters."""
    if (limited := await _rate_limited(request)) is not None:
        return limited
    form = await browser_form(request)
    if isinstance(form, Response):
        return form
    decision = form.get("decision")
    if decision not in ("allow", "deny", ALLOW_ONLINE):
        return error_page(request, N_("Choose Allow or Deny."), 400)
    return await _authorize(request, form, decision=decision, status=303)


def _remembers_consent(auth: AuthorizationRequest) -> bool:
    """Whether a remembered consent may stand in for asking. A public client cannot prove who
    it is (RFC 6749 §10.2, RFC 8252 §8.6): any program can send its id with its own PKCE pair,
    so the user is asked every time, unless the operator opted this client in and the code goes
    to a claimed https redirect URI, which only the app that claimed it receives."""
    if not auth.client.is_public:
        return True
    return auth.client.remember_consent and is_https(auth.redirect_uri)


async def _authorize(
    request: Request, form: Form, decision: str | None, status: int, fresh: bool = False
) -> Response:
    app = baton(request)
    try:
        auth = await validate(app, form)
    except PageError as exc:
        return error_page(request, exc.message, exc.status, values=exc.values)
    except _WithRequest as exc:
        params = {"error": exc.error.error, "error_description": exc.error.description}
        if _unvouched(app, exc.request.client):
            return _error_with_link(request, app, exc.request, params)
        return _redirect(request, app, exc.request, params, status)
    live = live_session(request)
    if request.session.get(ONCE) and (fresh or request.session.get(ONCE) == SPENT):
        # A login app's sign-in without `remember` serves the authorization it was made for
        # (its consent page's answer too), and no other: a new authorization request asks the
        # login app again (see `continue_get`).
        live = None
    return await _proceed(request, app, auth, live, decision, status)


def _note_report_only(app: Baton, auth: AuthorizationRequest) -> None:
    """What the client's report-only policy would refuse of this authorization request (a
    grant type no longer allowed, a request without PKCE), noted when its code is issued and
    never enforced (issue 28)."""
    now = app.clock.now()
    shadow = auth.client.policy.shadow(now)
    if shadow is None:
        return
    client_id = auth.client.id
    found = (
        grant_type_signal(client_id, AUTHORIZATION_CODE, shadow, now, Source.AUTHORIZE),
        pkce_signal(client_id, auth.code_challenge is not None, shadow, now),
    )
    app.signals.note(signal for signal in found if signal is not None)


async def _proceed(
    request: Request,
    app: Baton,
    auth: AuthorizationRequest,
    live: LiveSession | None,
    decision: str | None,
    status: int,
    granted: Granted | None = None,
) -> Response:
    """The authorization request `auth`, valid, as this browser's session `live` answers it;
    `granted`: what a consent app allowed (its verifier came back)."""
    return await _answer(request, app, auth, live, decision, status, granted)


async def _answer(
    request: Request,
    app: Baton,
    auth: AuthorizationRequest,
    live: LiveSession | None,
    decision: str | None,
    status: int,
    granted: Granted | None,
) -> Response:
    user = await app.store.get_user_by_id(live.user_id) if live is not None else None
    oidc = auth.oidc
    # The consent page's "only while I am signed in" answer (offered to an OpenID request with
    # offline_access): allow the rest, decline offline access (§11). No other request offers it
    # (a plain OAuth grant always gets its refresh token).
    declined_offline = decision == ALLOW_ONLINE
    if declined_offline:
        if oidc is None or OFFLINE_ACCESS not in auth.scope:
            return error_page(request, N_("Choose Allow or Deny."), 400)
        decision = "allow"
    if oidc is not None:
        try:
            return await _authenticate(
                request, app, auth, oidc, live, user, decision, status, declined_offline, granted
            )
        except RedirectError as exc:
            params = {"error": exc.error, "error_description": exc.description}
            if _unvouched(app, auth.client) and not await _approved(app, auth.client, user):
                # prompt=none's login_required / consent_required come before any page too:
                # the same open redirector (RFC 9700 §4.11.2) as an invalid request's.
                return _error_with_link(request, app, auth, params)
            return _redirect(request, app, auth, params, status)

    if user is None or live is None:
        return await _ask_login(request, app, auth, auth.params, None, None, None)

    if granted is not None:  # a consent app's decision
        return await _issue_code(request, app, granted.applied(auth), user, granted.scope, status)
    if decision == "deny":
        return _denied(request, app, auth, status)
    now = app.clock.now()
    if decision == "allow":
        await app.store.remember_consent(user.id, auth.client.id, auth.scope, auth.resources, now)
    else:
        # Consent is a decision this user recorded for this client, covering this request's
        # scope and resources; never inferred (an empty scope is a subset of any scope).
        consent = await app.store.consent(user.id, auth.client.id)
        remembered = consent is not None and consent.covers(auth.scope, auth.resources, now)
        if not (remembered and _remembers_consent(auth)):
            return await _ask_consent(request, app, auth, user, consent)
    return await _issue_code(request, app, auth, user, auth.scope, status)


def _denied(request: Request, app: Baton, auth: AuthorizationRequest, status: int) -> Response:
    params = {"error": ErrorCode.ACCESS_DENIED, "error_description": "the user denied the request"}
    return _redirect(request, app, auth, params, status)


async def _issue_code(
    request: Request,
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
            note_use=auth.client.registered_via == RegisteredVia.DYNAMIC,
        )
    )
    # Counted once per code issued, however many pages (login, consent) the request went by.
    _note_report_only(app, auth)
    return _redirect(request, app, auth, {"code": code.plaintext}, status)


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
    granted: Granted | None = None,
) -> Response:
    """An OpenID Connect authentication request (Core §3.1.2), once it is valid: sign in (again)
    if it asks, let the user choose the account, ask consent, and issue the code with the
    sign-in's facts. With `prompt=none`, each page that would be shown is an error instead
    (§3.1.2.6), redirected to the client (by `_answer`: for a client no operator vouched for,
    only once this user has allowed it, else shown with a link to the redirect)."""
    now = app.clock.now()
    if live is None or user is None:
        if oidc.silent:
            # §3.1.2.1, prompt=none: "An error is returned if an End-User is not already
            # authenticated".
            raise RedirectError(ErrorCode.LOGIN_REQUIRED, "no one is signed in")
        return await _ask_login(request, app, auth, _continuation(auth), None, None, None)
    if (reason := _sign_in_again(app, auth, oidc, live, user, now)) is not None:
        if oidc.silent:
            raise RedirectError(ErrorCode.LOGIN_REQUIRED, _SIGN_IN_AGAIN[reason])
        return await _ask_login(request, app, auth, _continuation(auth), reason, live, user)

    if granted is not None:  # a consent app's decision: what it allowed, with its claims
        return await _issue_code(
            request,
            app,
            granted.applied(auth),
            user,
            granted.scope,
            status,
            *_granted(oidc, live, user, granted),
        )
    if SELECT_ACCOUNT in oidc.prompt and decision is None:
        if _login_app(app, auth.client) is not None:
            # The login app knows the accounts: choosing one is its page's to show.
            return await _ask_login(request, app, auth, _continuation(auth), None, live, user)
        # §3.1.2.1, select_account: "The Authorization Server SHOULD prompt the End-User to
        # select a user account." This browser holds one session: the choice is to go on with
        # it, or to sign in with another account.
        return account_page(request, auth.client, user.username, _continuation(auth))

    if decision == "deny":
        return _denied(request, app, auth, status)
    scope = auth.scope
    asked_now = decision == "allow"
    if asked_now and declined_offline:
        # §11: offline access is the user's to allow; the rest of what they allowed stands.
        scope = scope - {OFFLINE_ACCESS}
    # A consent app's claims, given again when its remembered decision answers (as Hydra does).
    given: dict[str, Any] = {}
    if asked_now:
        await app.store.remember_consent(user.id, auth.client.id, scope, auth.resources, now)
    else:
        consent = await app.store.consent(user.id, auth.client.id)
        given = consent.claims if consent is not None else {}
        remembered = (
            consent is not None
            and consent.covers(scope - {OFFLINE_ACCESS}, auth.resources, now)
            and _remembers_consent(auth)
        )
        # §11: offline access needs the user's consent: "the prompt parameter MUST contain
        # consent unless other conditions for processing the request permitting offline access
        # are in place". A remembered consent that covered offline_access is such a condition;
        # one that did not is not, so the page asks now, rather than silently dropping what the
        # relying party asked for. Under prompt=none, which cannot ask, offline_access is
        # ignored (the §11 answer when no such condition holds) and the rest is answered.
        offline_pending = OFFLINE_ACCESS in scope and not (
            consent is not None and consent.covers(scope, auth.resources, now)
        )
        # Claims asked for by name beyond what the scope releases are released only when the
        # consent page listed them (a remembered consent records scopes, not claims).
        claims_pending = bool(oidc.named_claims - for_scope(scope))
        if not remembered or CONSENT in oidc.prompt:
            if oidc.silent:
                raise RedirectError(
                    ErrorCode.CONSENT_REQUIRED, "the user has not allowed this client this access"
                )
            return await _ask_consent(request, app, auth, user, consent)
        if (offline_pending or claims_pending) and not oidc.silent:
            return await _ask_consent(request, app, auth, user, consent)
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
        claims={
            **{k: v for k, v in values.items() if k in oidc.claims.id_token & consented},
            **given.get("id_token", {}),
        },
        userinfo=tuple(sorted(oidc.claims.userinfo & consented)),
        userinfo_claims=dict(given.get("userinfo", {})),
    )
    return await _issue_code(request, app, auth, user, scope, status, sign_in, live.sid)


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


# -- login and consent apps ----------------------------------------------------------------------
#
# When a login app applies (the client's `login_url`, else the server's), /authorize hands the
# sign-in to it: a challenge (`baton.store.sql.challenges`) carries the request, the browser gets
# a binding cookie, and the app, having decided over the admin API (`baton.server.admin.api`),
# sends the browser back to /authorize/continue with a one-time verifier. The same for consent.

# The browser binding: a random value signed with the session key (so only a value this server
# issued counts: one a sibling subdomain tossed into the browser is refused), its SHA-256 stored
# with each challenge this browser starts; a verifier comes back only in the browser that holds
# it. Under https the cookie has the `__Host-` prefix (RFC 6265bis §4.1.3.2: host-only, Secure,
# path `/`), which no other host can set.
FLOW_COOKIE = "baton_flow"
SECURE_FLOW_COOKIE = "__Host-baton_flow"
_FLOW_PATH = "/authorize"
# The session cookie's mark of a login app's sign-in without `remember`: it answers the
# authorization it was made for (and its consent step), then is spent (`_spend_once`): True
# until the answer went to the client, SPENT after.
ONCE = "once"
SPENT = "spent"
CONTINUE_PATH = "/authorize/continue"


def _spend_once(request: Request) -> None:
    """The answer goes to the client: a login app's sign-in without `remember` has served.

    It is spent, not ended: the cookie says so, and no authorization request is answered by it
    again (`_authorize`); but its row stays live until its short expiry (the challenge TTL,
    `_signed_in_by_app`), so that a sign-out (/session/end, "sign out everywhere", another
    user's sign-in on this browser) still ends it with the grants it made and tells their
    relying parties by back-channel logout, as for any session."""
    if request.session.get(ONCE):
        request.session[ONCE] = SPENT


def _keeper(app: Baton) -> ChallengeKeeper:
    return app.store


@dataclass(frozen=True)
class Granted:
    """A consent app's accept: the scope and resources it allowed, and the claims it gave."""

    scope: frozenset[str]
    resources: tuple[str, ...]
    id_token: dict[str, Any]
    userinfo: dict[str, Any]
    remember: bool = False

    def applied(self, auth: AuthorizationRequest) -> AuthorizationRequest:
        return replace(auth, resources=self.resources)


def _granted(
    oidc: OidcRequest, live: LiveSession, user: User, granted: Granted
) -> tuple[SignIn, str | None]:
    """The sign-in a consent app's accept gives the code: the standard claims its scopes and
    the `claims` request name (the app was shown them), then the app's own ID token claims."""
    consented = for_scope(granted.scope) | oidc.named_claims
    values = user_claims(
        user.username, user.email, user.email_verified, user.profile, user.updated_at
    )
    claims = {k: v for k, v in values.items() if k in oidc.claims.id_token & consented}
    sign_in = SignIn(
        auth_time=live.auth_time,
        acr=live.acr,
        amr=live.amr,
        claims={**claims, **granted.id_token},
        userinfo=tuple(sorted(oidc.claims.userinfo & consented)),
        userinfo_claims=dict(granted.userinfo),
    )
    return sign_in, live.sid


def _login_app(app: Baton, client: Client) -> str | None:
    """The login app's URL for `client`: its own, else the server's; None: the built-in page."""
    return client.login_url or app.settings.login_url


def _consent_app(app: Baton, client: Client) -> str | None:
    return client.consent_url or app.settings.consent_url


async def _ask_login(
    request: Request,
    app: Baton,
    auth: AuthorizationRequest,
    params: tuple[tuple[str, str], ...],
    reason: str | None,
    live: LiveSession | None,
    user: User | None,
) -> Response:
    """To the login page, or to the login app with a challenge; `params` is the request as it
    goes on once signed in (`_continuation`)."""
    url = _login_app(app, auth.client)
    if url is None:
        return _to_login(params, reason)
    session = None
    if live is not None and user is not None:
        session = {
            "subject": user.username,
            "auth_time": live.auth_time,
            "acr": live.acr,
            "amr": list(live.amr),
        }
    return await _challenge(request, app, auth, LOGIN_KIND, url, params, None, {"session": session})


async def _ask_consent(
    request: Request, app: Baton, auth: AuthorizationRequest, user: User, consent: Consent | None
) -> Response:
    """The consent page, or the consent app with a challenge."""
    if auth.client.registered_via == RegisteredVia.DYNAMIC:
        # A person signed in and is asked: the registration is in use, and the expiry of unused
        # ones (`--registration-expiry`) must not delete it while the page is read.
        await app.store.note_consent_asked(auth.client.id, app.clock.now())
    url = _consent_app(app, auth.client)
    if url is None:
        return await consent_page(request, app, auth, user.username)
    now = app.clock.now()
    remembered = None
    if consent is not None and consent.covers(frozenset(), (), now):  # not expired
        remembered = {
            "scope": sorted(consent.scope),
            "resource": sorted(consent.resources),
            "expires_at": consent.expires_at,
        }
    oidc = auth.oidc
    extra = {
        "subject": user.username,
        "requested_claims": {
            "id_token": sorted(oidc.claims.id_token) if oidc is not None else [],
            "userinfo": sorted(oidc.claims.userinfo) if oidc is not None else [],
        },
        "remembered": remembered,
    }
    return await _challenge(request, app, auth, CONSENT_KIND, url, auth.params, user.id, extra)


def _oidc_summary(auth: AuthorizationRequest) -> dict[str, Any] | None:
    """The OpenID Connect parameters a login or consent app may honour (Core §3.1.2.1)."""
    oidc = auth.oidc
    if oidc is None:
        return None
    given = dict(auth.params)
    return {
        "prompt": sorted(oidc.prompt),
        "max_age": oidc.max_age,
        "login_hint": oidc.login_hint,
        "ui_locales": given.get("ui_locales", "").split(),
        "acr_values": given.get("acr_values", "").split(),
        "id_token_hint_subject": oidc.hint.sub if oidc.hint is not None else None,
    }


def _flow_cookie(app: Baton) -> tuple[str, str]:
    """The binding cookie's name and path: `__Host-` and `/` under https."""
    if app.settings.secure_cookies:
        return SECURE_FLOW_COOKIE, "/"
    return FLOW_COOKIE, _FLOW_PATH


def _flow_signer(request: Request) -> Signer:
    session_signer: TimestampSigner = request.app.state.session_signer
    return Signer(session_signer.secret_keys[-1], salt="baton.flow", digest_method=hashlib.sha256)


def _held_flow(request: Request, app: Baton) -> str | None:
    """The binding value this browser holds, if this server issued it (its signature holds)."""
    held = request.cookies.get(_flow_cookie(app)[0])
    if held is None or not (len(held) <= 200 and held.isascii()):
        return None
    return held if _flow_signer(request).validate(held) else None


def _flow_value(request: Request, app: Baton) -> str:
    """This browser's binding value: the one it holds, if this server issued it (so flows in
    two tabs both come back), else a new one."""
    held = _held_flow(request, app)
    if held is not None:
        return held
    return _flow_signer(request).sign(secrets.token_urlsafe(32)).decode()


async def _challenge(
    request: Request,
    app: Baton,
    auth: AuthorizationRequest,
    kind: str,
    url: str,
    params: tuple[tuple[str, str], ...],
    user_id: int | None,
    extra: dict[str, Any],
) -> Response:
    """Stores a challenge of `kind` for this request and browser, and sends the browser to the
    app at `url` with it (`login_challenge` / `consent_challenge`)."""
    value = secrets.token_urlsafe(32)  # 256 bits, 43 characters
    browser = _flow_value(request, app)
    now = app.clock.now()
    ttl = app.settings.challenge_ttl
    carried = {
        "params": [list(pair) for pair in params],
        "client": {
            "client_id": auth.client.id,
            "client_name": auth.client.name,
            "client_uri": auth.client.client_uri,
            "redirect_uri": auth.redirect_uri,
            **_client_provenance(app, auth.client),
        },
        "requested_scope": sorted(auth.scope),
        "requested_resource": list(auth.resources),
        "oidc": _oidc_summary(auth),
        **extra,
    }
    await _keeper(app).create_challenge(
        digest(value), kind, auth.client.id, digest(browser), carried, user_id, now, now + ttl
    )
    sep = "&" if "?" in url else "?"
    response = RedirectResponse(
        url + sep + urlencode({f"{kind}_challenge": value}),
        status_code=303,
        headers={"Cache-Control": "no-store"},
    )
    name, path = _flow_cookie(app)
    response.set_cookie(
        name,
        browser,
        max_age=ttl,
        path=path,
        secure=app.settings.secure_cookies,
        httponly=True,
        samesite="lax",
    )
    return response


def _client_provenance(app: Baton, client: Client) -> dict[str, Any]:
    """What the built-in consent page says of who registered the client (`consent.provenance`),
    for a login or consent app to say it too: `registered_via` (null: an operator's client;
    "dynamic": RFC 7591; "document": a client ID metadata document), `verified` (false: its
    name and details are its own claim, RFC 7591 §5 / the metadata document draft §8.5; true:
    an operator's client, or a document on a host the operator trusts) and `host` (the
    document's host, or the host of the homepage a dynamic client claims; else null)."""
    shown = provenance(app, client)
    if shown is None:
        return {"registered_via": None, "verified": True, "host": None}
    return {"registered_via": shown["kind"], "verified": shown["verified"], "host": shown["host"]}


# Why a verifier is refused, said on the error page (never followed: the request it carries
# may be another browser's).
_NOT_HONOURED = {
    "unknown": (N_("This sign-in link is not valid."), 400),
    "used": (N_("This sign-in link was already used. Start again from the application."), 400),
    "expired": (N_("This sign-in link has expired. Start again from the application."), 400),
    "browser": (N_("This sign-in was started in another browser. Start again here."), 403),
    "kind": (N_("This sign-in link is not valid here."), 403),
    "client": (N_("This sign-in link is for another application."), 403),
}


async def continue_get(request: Request) -> Response:
    """Where a login or consent app sends the browser back: `client_id` and a one-time
    `login_verifier` or `consent_verifier`. Honoured once, in the browser that started the
    challenge, before it expires; then the authorization request goes on as the built-in pages
    would have it."""
    if (limited := await _rate_limited(request)) is not None:
        return limited
    app = baton(request)
    query = request.query_params
    client_id = query.get("client_id")
    login_verifier, consent_verifier = query.get("login_verifier"), query.get("consent_verifier")
    if not client_id or (login_verifier is None) == (consent_verifier is None):
        return error_page(request, N_("This link names no sign-in to continue."), 400)
    kind = LOGIN_KIND if login_verifier is not None else CONSENT_KIND
    verifier = login_verifier or consent_verifier or ""
    held = _held_flow(request, app)
    now = app.clock.now()
    found = await _keeper(app).redeem_verifier(
        digest(verifier), kind, client_id, digest(held) if held else None, now
    )
    if isinstance(found, str):
        message, status = _NOT_HONOURED[found]
        return error_page(request, message, status)
    try:
        auth = await validate(app, Form([(str(k), str(v)) for k, v in found.request["params"]]))
    except PageError as exc:
        return error_page(request, exc.message, exc.status, values=exc.values)
    except _WithRequest as exc:  # the client changed since the request was made
        params = {"error": exc.error.error, "error_description": exc.error.description}
        return _redirect(request, app, exc.request, params, 303)
    outcome = found.outcome or {}
    if outcome.get("decision") != "accept":
        params = {"error": str(outcome.get("error", ErrorCode.ACCESS_DENIED))}
        if outcome.get("error_description"):
            params["error_description"] = str(outcome["error_description"])
        return _redirect(request, app, auth, params, 303)
    if kind == LOGIN_KIND:
        return await _signed_in_by_app(request, app, auth, found, outcome)
    live = live_session(request)
    if request.session.get(ONCE) == SPENT:
        live = None  # its sign-in served another authorization already
    if live is None or live.user_id != found.user_id:
        # The sign-in the consent was asked for has ended (or another user signed in since).
        message = N_("You were signed out. Start again from the application.")
        return error_page(request, message, 403)
    granted = Granted(
        scope=frozenset(outcome.get("grant_scope", ())),
        resources=tuple(outcome.get("grant_resource", ())),
        id_token=dict(outcome.get("id_token", {})),
        userinfo=dict(outcome.get("userinfo", {})),
    )
    return await _proceed(request, app, auth, live, None, 303, granted)


async def _signed_in_by_app(
    request: Request,
    app: Baton,
    auth: AuthorizationRequest,
    found: Challenge,
    outcome: dict[str, Any],
) -> Response:
    """A login app's accept: a session begins for its subject, as the login form's does, with
    its `acr` and `amr`; then the request goes on (to consent, then the code)."""
    user = await app.store.get_user_by_id(found.user_id) if found.user_id is not None else None
    if user is None or user.disabled_at is not None:
        return error_page(request, N_("This account is disabled."), 403)
    remember = bool(outcome.get("remember"))
    # Without `remember`, the sign-in lives for this one flow: as long as a challenge does, so
    # an abandoned flow leaves no long session behind.
    lifetime = (
        int(outcome.get("remember_for") or MAX_AGE) if remember else app.settings.challenge_ttl
    )
    acr = outcome.get("acr")
    try:
        await begin_session(
            request,
            user.id,
            app.clock.now(),
            source_address(request),
            acr=acr if isinstance(acr, str) else None,
            amr=tuple(str(a) for a in outcome.get("amr", ())),
            lifetime=lifetime,
        )
    except AccountDisabled:
        # Disabled (or deleted) between the app's accept and this browser's return.
        return error_page(request, N_("This account is disabled."), 403)
    if not remember:
        request.session[ONCE] = True
    return await _proceed(request, app, auth, live_session(request), None, 303)

"""The authorization endpoint (RFC 6749 §4.1) with its login, consent and logout pages.

Errors before the redirect URI is trusted (unknown client, unregistered redirect URI) are shown
as a page: redirecting there would make Baton an open redirector (RFC 6749 §4.1.2.1). Every later
error is redirected to the client with `state` and `iss`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from baton import wire
from baton.core import pkce
from baton.core.audience import TargetError
from baton.core.audience import requested as choose_resources
from baton.core.redirects import is_https, matching_redirect_uri, redirect_uri_problem
from baton.core.scope import ScopeError
from baton.core.scope import parse as parse_scope
from baton.core.scope import render as render_scope
from baton.core.tokens import TokenKind, mint
from baton.core.vocabulary import ErrorCode
from baton.passwords import verify_password
from baton.server.admin.console import record_lockout
from baton.server.endpoints.clientauth import enabled_client
from baton.server.endpoints.errors import OAuthError, error_description
from baton.server.endpoints.forms import REPEATABLE, Form, parse_pairs, read_form
from baton.server.runtime.context import Baton, baton, source_address
from baton.server.runtime.sessions import (
    begin_session,
    csrf_ok,
    csrf_token,
    device_knows,
    end_session,
    remember_device,
)
from baton.store.base import Client, NewCode

templates = Jinja2Templates(directory=str(Path(__file__).parents[1] / "templates"))

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
class AuthorizationRequest:
    client: Client
    redirect_uri: str
    redirect_uri_given: bool
    scope: frozenset[str]
    resources: tuple[str, ...]  # RFC 8707, sorted: those named, or all the client may have
    state: str | None
    code_challenge: str | None
    params: tuple[tuple[str, str], ...]  # as received, to carry through login and consent


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
        return _checked(request, form)
    except RedirectError as exc:
        raise _WithRequest(exc, request) from None


class _WithRequest(Exception):
    def __init__(self, error: RedirectError, request: AuthorizationRequest) -> None:
        super().__init__(error.description)
        self.error = error
        self.request = request


def _checked(request: AuthorizationRequest, form: Form) -> AuthorizationRequest:
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
    return replace(request, scope=scope, resources=resources, code_challenge=challenge)


def _redirect(
    app: Baton, request: AuthorizationRequest, params: dict[str, str], status: int
) -> Response:
    if request.state is not None:
        params["state"] = request.state
    params["iss"] = app.settings.issuer.rstrip("/")
    sep = "&" if "?" in request.redirect_uri else "?"
    return RedirectResponse(
        request.redirect_uri + sep + urlencode(params),
        status_code=status,
        headers={"Cache-Control": "no-store"},
    )


def _error_page(
    request: Request, message: str, status: int, headers: dict[str, str] | None = None
) -> Response:
    return templates.TemplateResponse(
        request,
        "error.html",
        {"message": message},
        status_code=status,
        headers={**_NO_STORE, **(headers or {})},
    )


_NO_STORE = {"Cache-Control": "no-store"}


async def _rate_limited(request: Request) -> Response | None:
    """The per-address bucket, charged for every GET and POST of /authorize: each one reads the
    client, the user and the consent, and a POST writes (429 with Retry-After, as a page)."""
    try:
        await baton(request).limits.check_address(source_address(request))
    except OAuthError as exc:
        message = "Too many requests from your address. Wait a moment and try again."
        return _error_page(request, message, exc.status, exc.headers)
    return None


async def authorize_get(request: Request) -> Response:
    if (limited := await _rate_limited(request)) is not None:
        return limited
    try:
        form = Form(parse_pairs(request.url.query))
    except OAuthError as exc:
        return _error_page(request, exc.description, exc.status)
    return await _authorize(request, form, decision=None, status=302)


async def _browser_form(request: Request) -> Form | Response:
    """A form posted by one of our pages, with its CSRF token checked; or the error page."""
    try:
        form = await read_form(request, baton(request).settings.max_body_bytes)
    except OAuthError as exc:
        return _error_page(request, exc.description, exc.status)
    if not csrf_ok(request.session, form.get("csrf")):
        return _error_page(request, "The form expired. Go back and try again.", 403)
    return form


async def authorize_post(request: Request) -> Response:
    """The consent form posts here: Allow or Deny, with the request's parameters."""
    if (limited := await _rate_limited(request)) is not None:
        return limited
    form = await _browser_form(request)
    if isinstance(form, Response):
        return form
    decision = form.get("decision")
    if decision not in ("allow", "deny"):
        return _error_page(request, "Choose Allow or Deny.", 400)
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
        return _error_page(request, exc.message, exc.status)
    except _WithRequest as exc:
        params = {"error": exc.error.error, "error_description": exc.error.description}
        return _redirect(app, exc.request, params, status)

    user_id = request.session.get("uid")
    user = await app.store.get_user_by_id(user_id) if isinstance(user_id, int) else None
    if user is None:
        target = "/authorize?" + urlencode(auth.params)
        return RedirectResponse("/login?next=" + quote(target, safe=""), status_code=303)

    if decision == "deny":
        params = {
            "error": ErrorCode.ACCESS_DENIED,
            "error_description": "the user denied the request",
        }
        return _redirect(app, auth, params, status)
    now = app.clock.now()
    if decision == "allow":
        await app.store.remember_consent(user.id, auth.client.id, auth.scope, auth.resources, now)
    else:
        # Consent is a decision this user recorded for this client, covering this request's
        # scope and resources; never inferred (an empty scope is a subset of any scope).
        consent = await app.store.consent(user.id, auth.client.id)
        remembered = consent is not None and consent.covers(auth.scope, auth.resources)
        if not (remembered and _remembers_consent(auth)):
            return await _consent_page(request, app, auth, user.username)

    code = mint(TokenKind.CODE)
    await app.store.save_code(
        NewCode(
            digest=code.digest,
            client_id=auth.client.id,
            user_id=user.id,
            redirect_uri=auth.redirect_uri if auth.redirect_uri_given else None,
            scope=render_scope(auth.scope),
            code_challenge=auth.code_challenge,
            created_at=now,
            expires_at=now + app.settings.policy.lifetimes.code_ttl,
            resources=auth.resources,
        )
    )
    return _redirect(app, auth, {"code": code.plaintext}, status)


async def _consent_page(
    request: Request, app: Baton, auth: AuthorizationRequest, username: str
) -> Response:
    """What the client gets, said plainly: its scopes (or none in particular), the resource
    servers the tokens are for, and that it keeps access while the user is away."""
    names = await app.store.resource_names(auth.resources)
    lifetimes = app.settings.policy.lifetimes
    context = {
        "client": auth.client,
        "scopes": sorted(auth.scope),
        "resources": [(uri, names.get(uri)) for uri in auth.resources],
        "idle": _duration(lifetimes.refresh_idle_ttl),
        "absolute": _duration(lifetimes.refresh_absolute_ttl),
        "params": auth.params,
        "csrf": csrf_token(request.session),
        "username": username,
    }
    return templates.TemplateResponse(request, "consent.html", context, headers=_NO_STORE)


def _duration(seconds: int) -> str:
    """`seconds` in the largest whole unit a person reads at a glance: 90 days, 12 hours."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


def _safe_next(target: str | None) -> str:
    """Only ever continue to our own authorization endpoint or admin console: no open redirect
    via `next`."""
    if not target or "\\" in target:
        return "/"
    if target.startswith("/authorize?") or target == "/admin" or target.startswith("/admin/"):
        return target
    return "/"


async def login_get(request: Request) -> Response:
    return _login_page(request, _safe_next(request.query_params.get("next")), None, 200)


def _login_page(
    request: Request,
    next_url: str,
    error: str | None,
    status: int,
    headers: dict[str, str] | None = None,
) -> Response:
    context: dict[str, Any] = {
        "next": next_url,
        "csrf": csrf_token(request.session),
        "error": error,
    }
    return templates.TemplateResponse(
        request, "login.html", context, status_code=status, headers={**_NO_STORE, **(headers or {})}
    )


async def login_post(request: Request) -> Response:
    app = baton(request)
    try:
        form = await read_form(request, app.settings.max_body_bytes)
    except OAuthError as exc:
        return _error_page(request, exc.description, exc.status)
    next_url = _safe_next(form.get("next"))
    if not csrf_ok(request.session, form.get("csrf")):
        return _login_page(request, next_url, "The form expired. Please sign in again.", 403)
    username, password = form.get("username") or "", form.get("password") or ""
    address = source_address(request)
    try:
        await app.limits.check_address(address, login=True)
    except OAuthError as exc:
        return _login_page(
            request, next_url, "Too many sign-in attempts. Wait a moment.", 429, exc.headers
        )
    # Counted before the password is verified, in one step with the lockout's check: guesses
    # sent together cannot all be verified (baton.server.runtime.limits).
    known_device = device_knows(request, username)
    locked_for = await app.limits.login_attempt(username, address, known_device)
    if locked_for > 0:
        wait = int(locked_for) + 1
        message = f"Too many failed sign-ins for this account. Try again in {wait} s."
        return _login_page(request, next_url, message, 429, {"Retry-After": str(wait)})
    user = await app.store.get_user(username)
    ok = await anyio.to_thread.run_sync(
        verify_password, user.password_hash if user else None, password
    )
    if user is None or not ok:
        if (locked_for := await app.limits.login_locked_for(username, address, known_device)) > 0:
            await record_lockout(request, username, locked_for)
        return _login_page(request, next_url, "Unknown username or wrong password.", 401)
    await app.limits.login_succeeded(username, address, known_device)
    # A fresh session at sign-in (no session fixation), held server-side.
    await begin_session(request, user.id, app.clock.now(), address)
    response = RedirectResponse(next_url, status_code=303)
    remember_device(request, response, username, app.settings.secure_cookies)
    return response


async def logout_get(request: Request) -> Response:
    return templates.TemplateResponse(
        request,
        "logout.html",
        {"csrf": csrf_token(request.session), "signed_in": "uid" in request.session},
        headers=_NO_STORE,
    )


async def logout_post(request: Request) -> Response:
    form = await _browser_form(request)
    if isinstance(form, Response):
        return form
    # Ends the session row, so every copy of the cookie is signed out too; grants stay
    # (revoke them with /revoke).
    app = baton(request)
    await end_session(request, app.clock.now())
    return templates.TemplateResponse(request, "logged_out.html", {}, headers=_NO_STORE)


async def home(request: Request) -> Response:
    return templates.TemplateResponse(
        request, "home.html", {"signed_in": "uid" in request.session}, headers=_NO_STORE
    )

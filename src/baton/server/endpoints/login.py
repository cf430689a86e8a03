"""The pages a person signs in and out with: the login form (with the lockout and per-address
limits of `baton.server.runtime.limits`), the provider's sign-out page, and the home page.

A disabled user is refused like anyone else until the password is right (the attempt counts
towards the lockouts either way): only someone who knows the password learns that the account is
disabled. A user with a second factor, or of whom one is required, goes on to the second step
(`baton.server.endpoints.mfa`) with a pending state that signs nobody in.

Signing in begins a server-side session (`baton.server.runtime.sessions`) and continues to the
authorization request that asked for it (`next`, which only ever points back at /authorize or
the console: never an open redirect).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from baton.passwords import verify_password
from baton.server.admin.console_entry import record_lockout
from baton.server.endpoints import upstream
from baton.server.endpoints.account import PAGE as ACCOUNT_PAGE
from baton.server.endpoints.errors import OAuthError
from baton.server.endpoints.forms import browser_form, read_form, unreadable
from baton.server.endpoints.logout import end_op_session
from baton.server.endpoints.mfa import PENDING, second_step
from baton.server.observability import metrics
from baton.server.runtime.context import baton, source_address
from baton.server.runtime.pages import N_, page
from baton.server.runtime.sessions import (
    AccountDisabled,
    begin_session,
    csrf_ok,
    csrf_token,
    device_knows,
    remember_device,
)


def _safe_next(target: str | None) -> str:
    """Only ever continue to our own authorization endpoint, the account page or the admin
    console: no open redirect via `next`."""
    if not target or "\\" in target:
        return "/"
    if target.startswith("/authorize?") or target == "/admin" or target.startswith("/admin/"):
        return target
    if target == ACCOUNT_PAGE:
        return target
    return "/"


# Why the login page is shown to someone signed in, said on it (`reason`).
_LOGIN_NOTICES = {
    "login": N_("The application asks you to sign in again."),
    "account": N_(
        "The application asks for another account than the one signed in: sign in with it."
    ),
}


async def login_get(request: Request) -> Response:
    await upstream.load_login_choices(request)
    notice = _LOGIN_NOTICES.get(request.query_params.get("reason") or "")
    next_url = _safe_next(request.query_params.get("next"))
    return _login_page(request, next_url, None, 200, notice=notice)


def _login_hint(next_url: str) -> str:
    """The `login_hint` of the authorization request the sign-in continues (OIDC Core
    §3.1.2.1: "Hint to the Authorization Server about the login identifier"), to fill in."""
    if not next_url.startswith("/authorize?"):
        return ""
    for name, value in parse_qsl(urlsplit(next_url).query):
        if name == "login_hint":
            return value
    return ""


def _login_page(
    request: Request,
    next_url: str,
    error: str | None,
    status: int,
    headers: dict[str, str] | None = None,
    notice: str | None = None,
    error_values: Mapping[str, Any] | None = None,
) -> Response:
    """The login form; `error` and `notice` are messages marked with `N_` (translated by the
    page), `error_values` the values of `error`'s `%(name)s` placeholders."""
    context: dict[str, Any] = {
        "next": next_url,
        "csrf": csrf_token(request.session),
        "error": error,
        "error_values": dict(error_values) if error_values else None,
        "notice": notice,
        "username": _login_hint(next_url),
        "upstreams": upstream.login_choices(request, next_url),
    }
    return page(request, "login.html", context, status, headers)


async def login_post(request: Request) -> Response:
    app = baton(request)
    await upstream.load_login_choices(request)
    try:
        form = await read_form(request, app.settings.max_body_bytes)
    except OAuthError as exc:
        return unreadable(request, exc)
    next_url = _safe_next(form.get("next"))
    if not csrf_ok(request.session, form.get("csrf")):
        return _login_page(request, next_url, N_("The form expired. Please sign in again."), 403)
    username, password = form.get("username") or "", form.get("password") or ""
    address = source_address(request)
    try:
        await app.limits.check_address(address, login=True)
    except OAuthError as exc:
        return _login_page(
            request, next_url, N_("Too many sign-in attempts. Wait a moment."), 429, exc.headers
        )
    # Counted before the password is verified, in one step with the lockout's check: guesses
    # sent together cannot all be verified (baton.server.runtime.limits).
    known_device = device_knows(request, username)
    locked_for = await app.limits.login_attempt(username, address, known_device)
    if locked_for > 0:
        wait = int(locked_for) + 1
        message = N_("Too many failed sign-ins for this account. Try again in %(wait)d s.")
        headers = {"Retry-After": str(wait)}
        return _login_page(request, next_url, message, 429, headers, error_values={"wait": wait})
    user = await app.store.get_user(username)
    ok = await anyio.to_thread.run_sync(
        verify_password, user.password_hash if user else None, password
    )
    request.session.pop(PENDING, None)  # a new sign-in drops the previous one's second step
    if user is None or not ok:
        if (locked_for := await app.limits.login_locked_for(username, address, known_device)) > 0:
            await record_lockout(request, username, locked_for)
        return _login_page(request, next_url, N_("Unknown username or wrong password."), 401)
    if user.disabled_at is not None:
        # Told only to whom knows the password; still counted as a failed attempt.
        return _login_page(request, next_url, N_("This account is disabled."), 403)
    # A second factor next: the throttles keep counting until it is done (a right password must
    # not reset them for whoever then guesses codes).
    if (step := second_step(request, user, next_url)) is not None:
        return step
    await app.limits.login_succeeded(username, address, known_device)
    # A fresh session at sign-in (no session fixation), held server-side.
    try:
        await begin_session(request, user.id, app.clock.now(), address)
    except AccountDisabled:  # disabled since the check above: no session began
        return _login_page(request, next_url, N_("This account is disabled."), 403)
    response = RedirectResponse(next_url, status_code=303)
    remember_device(request, response, username, app.settings.secure_cookies)
    return response


async def logout_get(request: Request) -> Response:
    context = {"csrf": csrf_token(request.session), "signed_in": "uid" in request.session}
    return page(request, "logout.html", context)


async def logout_post(request: Request) -> Response:
    form = await browser_form(request)
    if isinstance(form, Response):
        return form
    # Signs out at the provider: the session row ends (every copy of the cookie), the grants it
    # gave without `offline_access` die, and their applications are told by back-channel logout.
    app = baton(request)
    await end_op_session(
        app, request.session, app.clock.now(), source_address(request), metrics.of(request)
    )
    return page(request, "logged_out.html")


async def home(request: Request) -> Response:
    return page(request, "home.html", {"signed_in": "uid" in request.session})

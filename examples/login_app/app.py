"""A login and consent app for Baton, of the product's own: Baton sends the browser here with a
one-time challenge, this app signs the person in with its own user list (or asks their consent),
tells Baton its decision over the admin API, and sends the browser back where Baton says.

Configuration, from the environment:
    BATON_ISSUER             Baton's issuer, e.g. https://id.example.com
    LOGIN_APP_CLIENT_ID      this app's confidential client (grant client_credentials,
    LOGIN_APP_CLIENT_SECRET  scope admin:challenges)
    LOGIN_APP_USERS          the user list, a JSON file (default users.json; see users.py)

Run: `uvicorn --factory examples.login_app.app:create_app --port 8001`, or
`python -m examples.login_app serve`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import re
import secrets
import time
from collections.abc import AsyncIterator
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from .users import load_users, verify_password

CSRF_COOKIE = "login_app_csrf"
_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{16,512}")  # never a path of its own in an admin URL


class BatonError(Exception):
    """An admin API call that failed: its status and RFC 9457 problem detail."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status


class Baton:
    """Baton's admin API with this app's own token (client_credentials), kept until shortly
    before it expires and fetched again when Baton answers 401; never a cookie."""

    def __init__(self, issuer: str, client_id: str, client_secret: str, http: httpx.AsyncClient):
        self.issuer, self.http = issuer, http
        self._auth = (client_id, client_secret)
        self._token: str | None = None
        self._renew_at = 0.0
        self._lock = asyncio.Lock()

    async def _access_token(self) -> str:
        async with self._lock:
            if self._token is None or time.monotonic() >= self._renew_at:
                response = await self.http.post(
                    f"{self.issuer}/token",
                    data={"grant_type": "client_credentials", "scope": "admin:challenges"},
                    auth=self._auth,
                )
                if response.status_code != 200:
                    raise BatonError(response.status_code, "this app's client was refused")
                body = response.json()
                self._token = str(body["access_token"])
                self._renew_at = time.monotonic() + max(0, int(body["expires_in"]) - 30)
            return self._token

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        for retry in (True, False):
            token = await self._access_token()
            response = await self.http.request(
                method,
                f"{self.issuer}/admin/api/v1{path}",
                json=body,
                headers={"Authorization": f"Bearer {token}"},
            )
            if response.status_code == 401 and retry:  # revoked, or expired early
                self._token = None
                continue
            if response.status_code >= 400:
                problem = (
                    response.json() if "json" in response.headers.get("content-type", "") else {}
                )
                raise BatonError(response.status_code, str(problem.get("detail", response.text)))
            return response.json() if response.content else None
        raise AssertionError("unreachable")

    def go(self, decision: dict[str, Any]) -> Response:
        """The browser back to Baton: only ever to the `redirect_to` Baton gave, on the issuer."""
        target = str(decision["redirect_to"])
        if not target.startswith(self.issuer + "/"):
            raise BatonError(502, "Baton answered a redirect to another site")
        return RedirectResponse(target, status_code=303)


def page(
    title: str, body: str, status: int = 200, form_action: str = "form-action 'none'"
) -> HTMLResponse:
    """A whole page: not cached, never framed (clickjacking), its forms posted only to us."""
    html = (
        f'<!doctype html><html lang="en"><meta charset="utf-8"><title>{escape(title)}</title>'
        '<meta name="viewport" content="width=device-width">'
        f"<body><main><h1>{escape(title)}</h1>{body}</main></body></html>"
    )
    headers = {
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",  # the challenge is in this page's URL
        "Content-Security-Policy": f"default-src 'none'; frame-ancestors 'none'; {form_action}",
    }
    return HTMLResponse(html, status, headers)


def csrf_token(request: Request, challenge: str) -> tuple[str, str]:
    """(this browser's CSRF cookie, the form token bound to it and to this challenge)."""
    cookie = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
    token = hmac.new(cookie.encode(), challenge.encode(), hashlib.sha256).hexdigest()
    return cookie, token


def form_page(
    request: Request, title: str, challenge: str, body: str, status: int = 200
) -> Response:
    """A page whose form carries the challenge and a CSRF token (double submit, bound)."""
    cookie, token = csrf_token(request, challenge)
    hidden = (
        f'<input type="hidden" name="challenge" value="{escape(challenge)}">'
        f'<input type="hidden" name="csrf" value="{token}">'
    )
    # form-action: after the post, the browser follows our redirect to Baton.
    allowed = f"form-action 'self' {request.app.state.baton.issuer}"
    response = page(title, f'<form method="post">{hidden}{body}</form>', status, allowed)
    secure = request.url.scheme == "https"
    response.set_cookie(CSRF_COOKIE, cookie, httponly=True, samesite="lax", secure=secure)
    return response


async def posted(request: Request) -> tuple[str, list[tuple[str, str]]]:
    """The challenge and fields of a form of ours, or BatonError 403 for a forged post."""
    fields = parse_qsl((await request.body()).decode(errors="replace"))
    found = dict(fields)
    challenge, sent = found.get("challenge", ""), found.get("csrf", "")
    if not _CHALLENGE.fullmatch(challenge) or CSRF_COOKIE not in request.cookies:
        raise BatonError(403, "this form was not sent from this app's page")
    if not hmac.compare_digest(sent, csrf_token(request, challenge)[1]):
        raise BatonError(403, "this form was not sent from this app's page")
    return challenge, fields


def challenge_of(request: Request, name: str) -> str:
    challenge = request.query_params.get(name, "")
    if not _CHALLENGE.fullmatch(challenge):
        raise BatonError(400, f"missing or malformed {name}")
    return quote(challenge, safe="")


def login_form(request: Request, found: dict[str, Any], error: str = "") -> Response:
    client = escape(found["client"]["client_name"] or found["client"]["client_id"])
    message = f'<p role="alert">{escape(error)}</p>' if error else ""
    return form_page(
        request,
        "Sign in",
        found["challenge"],
        f"<p>to continue to <strong>{client}</strong></p>{message}"
        '<label>Username <input name="username" autocomplete="username" required></label>'
        '<label>Password <input name="password" type="password" required'
        ' autocomplete="current-password"></label>'
        '<label><input type="checkbox" name="remember" value="1"> Keep me signed in</label>'
        '<button name="action" value="accept">Sign in</button>'
        '<button name="action" value="cancel" formnovalidate>Cancel</button>',
    )


async def login(request: Request) -> Response:
    baton: Baton = request.app.state.baton
    if request.method == "GET":
        challenge = challenge_of(request, "login_challenge")
        return login_form(request, await baton.call("GET", f"/login-challenges/{challenge}"))
    challenge, fields = await posted(request)
    form = dict(fields)
    path = f"/login-challenges/{challenge}"
    if form.get("action") != "accept":
        return baton.go(await baton.call("PUT", f"{path}/reject", {"error": "access_denied"}))
    user = load_users(request.app.state.users).get(form.get("username", ""))
    if not verify_password(user.password_hash if user else None, form.get("password", "")):
        found = await baton.call("GET", path)  # still live? (expired: the error page says so)
        return login_form(request, found, "Wrong username or password.")
    assert user is not None
    accept = {"subject": user.id, "remember": form.get("remember") == "1", "amr": ["pwd"]}
    return baton.go(await baton.call("PUT", f"{path}/accept", accept))


async def consent(request: Request) -> Response:
    baton: Baton = request.app.state.baton
    if request.method == "GET":
        challenge = challenge_of(request, "consent_challenge")
        found = await baton.call("GET", f"/consent-challenges/{challenge}")
        client = found["client"]
        name = escape(client["client_name"] or client["client_id"])
        home = client.get("client_uri")
        link = f' (<a href="{escape(home)}">{escape(home)}</a>)' if home else ""
        back = urlsplit(client["redirect_uri"]).netloc
        boxes = "".join(
            f'<li><label><input type="checkbox" name="scope" value="{escape(s)}" checked>'
            f"<code>{escape(s)}</code></label></li>"
            for s in found["requested_scope"]
        )
        return form_page(
            request,
            "Allow access?",
            found["challenge"],
            f"<p><strong>{name}</strong>{link} asks for:</p><ul>{boxes}</ul>"
            f"<p>You will be sent back to <strong>{escape(back)}</strong>.</p>"
            '<label><input type="checkbox" name="remember" value="1"> Remember my choice</label>'
            '<button name="action" value="allow">Allow</button>'
            '<button name="action" value="deny">Deny</button>',
        )
    challenge, fields = await posted(request)
    form = dict(fields)
    path = f"/consent-challenges/{challenge}"
    if form.get("action") != "allow":
        return baton.go(await baton.call("PUT", f"{path}/reject", {"error": "access_denied"}))
    found = await baton.call("GET", path)
    checked = {value for name, value in fields if name == "scope"}
    granted = [s for s in found["requested_scope"] if s in checked]
    user = next(
        (u for u in load_users(request.app.state.users).values() if u.id == found["subject"]), None
    )
    claims: dict[str, str] = {}
    if user is not None and user.email and "email" in granted:
        claims["email"] = user.email
    if user is not None and user.name and "profile" in granted:
        claims["name"] = user.name
    accept = {
        "grant_scope": granted,
        "remember": form.get("remember") == "1",
        "session": {"id_token": claims, "userinfo": claims},
    }
    return baton.go(await baton.call("PUT", f"{path}/accept", accept))


async def failed(request: Request, exc: Exception) -> Response:
    """Baton's refusals as a page: an old, used or foreign challenge means start again."""
    status = exc.status if isinstance(exc, BatonError) else 500
    if status in (404, 409, 410):
        text = "This sign-in request has expired or was already used: go back and try again."
    elif status in (400, 403):
        text = str(exc).split(": ", 1)[-1]
    else:
        text, status = "Sign-in is unavailable right now. Try again in a moment.", 502
    return page("Something went wrong", f"<p>{escape(text)}</p>", status)


def create_app() -> Starlette:
    issuer = os.environ["BATON_ISSUER"].rstrip("/")
    http = httpx.AsyncClient(timeout=10)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with http:
            yield

    app = Starlette(
        routes=[
            Route("/login", login, methods=["GET", "POST"]),
            Route("/consent", consent, methods=["GET", "POST"]),
        ],
        exception_handlers={BatonError: failed, httpx.HTTPError: failed},
        lifespan=lifespan,
    )
    app.state.baton = Baton(
        issuer, os.environ["LOGIN_APP_CLIENT_ID"], os.environ["LOGIN_APP_CLIENT_SECRET"], http
    )
    app.state.users = Path(os.environ.get("LOGIN_APP_USERS", "users.json"))
    return app

"""Signed session cookies for the browser pages, and CSRF tokens for their forms.

The signing key lives in the database (`server_secrets`), so every worker process and every
restart shares it; the middleware reads it from the app state the lifespan filled.
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
from typing import Any

from itsdangerous import BadSignature, TimestampSigner
from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COOKIE = "baton_session"
MAX_AGE = 8 * 3600


# Endpoints for machines, authenticated on every request: a browser session means nothing there,
# so they skip the cookie parsing and the response hook (they are the hot paths).
SESSIONLESS = frozenset({"/token", "/introspect", "/revoke", "/revocations", "/revocations/stream"})


class SessionMiddleware:
    def __init__(self, app: ASGIApp, *, secure: bool) -> None:
        self.app = app
        self.secure = secure

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in SESSIONLESS:
            await self.app(scope, receive, send)
            return
        signer: TimestampSigner = scope["app"].state.session_signer
        connection = HTTPConnection(scope)
        initial: dict[str, Any] = {}
        raw = connection.cookies.get(COOKIE)
        if raw:
            try:
                data = signer.unsign(raw.encode(), max_age=MAX_AGE)
                initial = json.loads(base64.b64decode(data))
            except (BadSignature, ValueError):
                initial = {}
        scope["session"] = dict(initial)

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start" and scope["session"] != initial:
                headers = MutableHeaders(scope=message)
                attrs = "path=/; httponly; samesite=lax" + ("; secure" if self.secure else "")
                if scope["session"]:
                    data = base64.b64encode(json.dumps(scope["session"]).encode())
                    value = signer.sign(data).decode()
                    headers.append("Set-Cookie", f"{COOKIE}={value}; max-age={MAX_AGE}; {attrs}")
                else:
                    headers.append(
                        "Set-Cookie", f"{COOKIE}=; expires=Thu, 01 Jan 1970 00:00:00 GMT; {attrs}"
                    )
            await send(message)

        await self.app(scope, receive, send_wrapper)


def csrf_token(session: dict[str, Any]) -> str:
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def csrf_ok(session: dict[str, Any], presented: str | None) -> bool:
    expected = session.get("csrf")
    if not isinstance(expected, str) or presented is None:
        return False
    return hmac.compare_digest(expected.encode(), presented.encode())

"""Protections every response gets: security headers, and a 503 while the database is away.

Headers: no page of Baton's may be framed (clickjacking of the consent page), nothing is
sniffed, no referrer leaks a code or state, and the Content-Security-Policy allows no script at
all (the pages need none) and styles only from Baton itself. HSTS when the issuer is https.
"""

from __future__ import annotations

import logging
import sys

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from baton.core.vocabulary import ErrorCode

log = logging.getLogger("baton")

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)
RETRY_AFTER_SECONDS = 2


class SecurityHeaders:
    def __init__(self, app: ASGIApp, *, https: bool) -> None:
        self.app = app
        headers = [
            ("Content-Security-Policy", CSP),
            ("X-Content-Type-Options", "nosniff"),
            ("X-Frame-Options", "DENY"),
            ("Referrer-Policy", "no-referrer"),
            ("Cross-Origin-Opener-Policy", "same-origin"),
        ]
        if https:
            headers.append(("Strict-Transport-Security", "max-age=31536000"))
        # Encoded once: every response of the server gets them.
        self.headers = [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in headers]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                # A header the endpoint set itself wins (a page with a stricter policy).
                present = {name.lower() for name, _ in message.get("headers", ())}
                message["headers"] = [
                    *message.get("headers", ()),
                    *(h for h in self.headers if h[0] not in present),
                ]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def is_database_unavailable(exc: BaseException) -> bool:
    """A lost or refused database connection (not a query error: that is a bug, and a 500)."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    # asyncpg raises these before SQLAlchemy can wrap them (connecting, or a dropped socket);
    # and a connection that breaks while it is being made (PostgreSQL or a proxy going away in
    # the handshake) reaches us as a bare DBAPIError whose cause is asyncpg's connection error.
    cause: BaseException | None = exc
    for _ in range(4):
        if cause is None:
            return False
        if isinstance(cause, ConnectionError | TimeoutError | OSError):
            return True
        if _is_driver_connection_error(cause):
            return True
        cause = cause.__cause__ or getattr(cause, "orig", None)
    return False


def _is_driver_connection_error(exc: BaseException) -> bool:
    """asyncpg's connection errors. asyncpg is imported only on PostgreSQL (a server on SQLite
    never loads it), and none of its errors can exist before it is: looked up, not imported."""
    errors = sys.modules.get("asyncpg.exceptions")
    return errors is not None and isinstance(exc, errors.PostgresConnectionError)


async def database_unavailable(_request: Request, exc: Exception) -> Response:
    """503 with Retry-After: the request was not carried out, or its outcome is unknown to the
    server, so the client retries (a refresh retried under `replay` gets the same pair)."""
    log.warning("database unavailable: %s", type(exc).__name__)
    return JSONResponse(
        {
            "error": ErrorCode.TEMPORARILY_UNAVAILABLE,
            "error_description": "the database is unavailable; retry shortly",
        },
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS), "Cache-Control": "no-store"},
    )

"""One pure ASGI middleware per request: its id, its metrics and its access-log line.

The request id is the client's `X-Request-ID` when it is sane (1 to 64 characters of
`[A-Za-z0-9._:-]`), else a new one (a random prefix per process and a counter: unique and
cheap). It is echoed in the response's `X-Request-ID`, and every log line written while the
request is answered carries it (`baton.logs.REQUEST_ID`).

The access log has one line per request: address, method, path (never the query, which a careless
client might fill with a token), route template, status, duration. Tokens travel in bodies and
headers, which are never logged. A route with parameters logs its template as its path (the admin
API's paths hold login challenges, which are bearer secrets, and usernames); a path no route
matched is logged with any segment shaped like a Baton token, or long enough to be a JWT or a
challenge, cut to its first characters.
"""

from __future__ import annotations

import itertools
import logging
import re
import secrets
from time import perf_counter

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from baton.core.tokens import TokenKind
from baton.logs import REQUEST_ID, get_logger
from baton.server.observability.metrics import Metrics

access_log = get_logger("baton.access")
_access_std = logging.getLogger("baton.access")

REQUEST_ID_HEADER = b"x-request-id"
_SANE_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,64}")
UNMATCHED = "<unmatched>"


class Observe:
    def __init__(
        self, app: ASGIApp, metrics: Metrics, unlogged: frozenset[str] = frozenset()
    ) -> None:
        self.app = app
        self.metrics = metrics
        # Paths counted in the metrics but given no access-log line (the health probes).
        self.unlogged = unlogged

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        request_id = incoming_request_id(scope["headers"]) or new_request_id()
        reset = REQUEST_ID.set(request_id)
        echo = (REQUEST_ID_HEADER, request_id.encode())
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), echo]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = perf_counter() - started
            route = route_template(scope)
            method = scope["method"]
            self.metrics.request_done(route, method, status, elapsed)
            if _access_std.isEnabledFor(logging.INFO) and scope["path"] not in self.unlogged:
                client = scope.get("client")
                access_log.info(
                    "request",
                    client=client[0] if client else None,
                    method=method,
                    path=logged_path(scope["path"], route),
                    route=route,
                    status=status,
                    duration_ms=round(elapsed * 1000, 2),
                )
            REQUEST_ID.reset(reset)


_PREFIX = secrets.token_hex(4)
_COUNTER = itertools.count()


def new_request_id() -> str:
    """16 hex digits: 8 random per process, 8 counting (wider after 4 billion requests)."""
    return f"{_PREFIX}{next(_COUNTER):08x}"


def incoming_request_id(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == REQUEST_ID_HEADER:
            return value.decode("ascii") if _SANE_ID.fullmatch(value) else None
    return None


def logged_path(path: str, route: str) -> str:
    """What the access log says of the request's path: never a parameter's value, nor a token
    a client put in a path."""
    if route != UNMATCHED:
        return route if "{" in route else path
    return "/".join(_cut(segment) for segment in path[:_MAX_LOGGED_PATH].split("/"))


_MAX_LOGGED_PATH = 256
_MAX_SEGMENT = 32  # a token, a JWT or a challenge is longer; a name in a path is not
_TOKEN_PREFIXES = tuple(kind.prefix for kind in TokenKind)


def _cut(segment: str) -> str:
    if len(segment) > _MAX_SEGMENT or segment.startswith(_TOKEN_PREFIXES):
        return segment[:7] + "..."
    return segment


def route_template(scope: Scope) -> str:
    """The template of the route that answered (`/token`, `/clients/{id}`), never the raw path:
    a bounded set of labels. Under a `Mount`, its (static) prefix comes first."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if not isinstance(path, str):
        return UNMATCHED
    prefix = scope.get("root_path", "")[len(scope.get("app_root_path", "")) :]
    return prefix + path if prefix else path

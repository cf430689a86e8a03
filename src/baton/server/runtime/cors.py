"""CORS (the Fetch standard's protocol) for the endpoints browser apps call across origins.

The endpoints marked `cors=True` in the route table (`baton.server.routes`: /token, /revoke, the
metadata documents, the JWKS, /userinfo) answer a browser's cross-origin calls; every other path
is left alone, and so is every request without an `Origin` header (no work at all on the
non-browser /token traffic beyond looking for the header).

Which origins (`baton.core.origins`): a client's `allowed_origins`, or the origins of its https
redirect URIs and any port of its http loopback ones. The answers:

- A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) names no client, so
  it is allowed when the origin is allowed for ANY enabled client: 204 with
  `Access-Control-Allow-Origin: <the origin>`, the endpoint's methods, the request headers
  `authorization, content-type`, `Access-Control-Max-Age` and `Vary: Origin`. Otherwise 403
  without any CORS header, which the browser takes as a refusal.
- An actual request gets `Access-Control-Allow-Origin: <the origin>` (and `Vary: Origin`,
  `Access-Control-Expose-Headers: WWW-Authenticate, Retry-After`) only when the origin is
  allowed for the client the request is about: the client it authenticated as, which client
  authentication records in the request's scope (`about_client`). A request that names no client
  the server could authenticate (a public document, or an error raised before authentication,
  such as a malformed body or an unknown client) is answered for the union of all enabled
  clients' origins, so that an app can read its own error; such an answer says nothing about a
  client. So an origin allowed only for client A can read no answer of client B's, success or
  error, once B is authenticated.
- The endpoints marked `CorsFor.ANYONE` (the metadata documents, the JWKS, dynamic registration)
  are answered for any origin, preflight and actual request: they are public, or (/register)
  called by a browser client before any client holds its origin (MCP Inspector registering
  itself); none reads a cookie or answers about another client.
- Never `Access-Control-Allow-Credentials` and never `*`: no endpoint here reads a cookie, and
  a credentialed request must be refused (Fetch §3.2.5 "CORS check": without
  `Access-Control-Allow-Credentials: true` a response to a request with credentials fails).

/userinfo is answered for the union too unless its endpoint records the token's client with
`about_client`: it is a bearer-token resource, no ambient credential is involved, and a page that
holds an access token can already use it from any server of its own; CORS can only refuse it the
browser, not the data. The documents (metadata, JWKS) are public and carry no credentials.

The allowed origins need the clients' rows: `OriginCache` keeps the union and each client's
origins for `OriginCache.TTL` seconds per process, and reads again, at most once a second, when
an origin is refused (a client registered, or an origin added, a moment ago). A removed origin
stops being answered within `TTL` seconds by the other processes, and at once by the process
that wrote the change (the admin API, the console: `ClientCache.forget` invalidates it).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Protocol

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from baton.core.clock import Clock
from baton.core.origins import OriginIndex, OriginSource
from baton.server.fastpath.machine import route_path

log = logging.getLogger("baton")

# The scope key client authentication sets to the id of the client a request authenticated as.
CLIENT_KEY = "baton.client_id"

ALLOW_HEADERS = b"authorization, content-type"
EXPOSE_HEADERS = b"WWW-Authenticate, Retry-After"
MAX_AGE = b"600"  # seconds a browser may reuse a preflight's answer (Chromium caps it at 7200)


def about_client(scope: Scope, client_id: str) -> None:
    """Records that the request is about `client_id`: its CORS answer follows that client's
    origins (client authentication calls this once the client is authenticated)."""
    scope[CLIENT_KEY] = client_id


def origin_header(scope: Scope) -> str | None:
    """The request's `Origin` header, if any."""
    for name, value in scope["headers"]:
        if name == b"origin":
            return value.decode("latin-1")  # type: ignore[no-any-return]
    return None


def _has_header(scope: Scope, wanted: bytes) -> bool:
    return any(name == wanted for name, _ in scope["headers"])


class BrowserOrigins(Protocol):
    """What CORS asks of the store (`baton.store.sql.origins`)."""

    async def origin_sources(self) -> list[OriginSource]:
        """Each enabled client's id, redirect URIs and explicit allowed origins."""
        ...


class OriginCache:
    """The enabled clients' origins, read at most every `TTL` seconds (and once a second when an
    origin is refused), per process. A failed read keeps the last index (none: nothing allowed):
    CORS never turns an answer into an error."""

    TTL = 30
    REFUSED_RETRY = 1

    def __init__(self, store: BrowserOrigins, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self._index: OriginIndex | None = None
        self._loaded_at = 0
        self._stale = False
        self._lock = anyio.Lock()

    def invalidate(self) -> None:
        """The next request reads the origins again (a client was written in this process:
        `ClientCache.on_forget`). A failed read still keeps the last index."""
        self._stale = True

    async def allows(self, origin: str, client_id: str | None) -> bool:
        index = await self._current(self.TTL)
        if index.allows(origin, client_id):
            return True
        # Refused: perhaps the client or the origin is a few seconds old. Read again, rarely.
        return (await self._current(self.REFUSED_RETRY)).allows(origin, client_id)

    def _fresh(self, max_age: int) -> OriginIndex | None:
        """The index, if read less than `max_age` seconds ago and no write made it stale."""
        if self._stale or self.clock.now() - self._loaded_at >= max_age:
            return None
        return self._index

    async def _current(self, max_age: int) -> OriginIndex:
        if (index := self._fresh(max_age)) is not None:
            return index
        async with self._lock:
            # Another request may have read it while this one waited for the lock.
            if (index := self._fresh(max_age)) is not None:
                return index
            now = self.clock.now()
            self._stale = False  # a write after this point makes it stale again
            try:
                self._index = OriginIndex.of(await self.store.origin_sources())
            except Exception:  # the database away: the request's own answer says so
                log.warning("reading the clients' allowed origins failed", exc_info=True)
                if self._index is None:
                    self._index = OriginIndex.of(())
            self._loaded_at = now  # a failed read is tried again no sooner than a good one
            return self._index


def _vary_origin(headers: list[tuple[bytes, bytes]]) -> None:
    """Adds `Origin` to the response's `Vary` (the answer depends on it: a cache must not give
    one origin's answer to another)."""
    for i, (name, value) in enumerate(headers):
        if name.lower() == b"vary":
            if b"origin" not in value.lower():
                headers[i] = (name, value + b", Origin")
            return
    headers.append((b"vary", b"Origin"))


class Cors:
    """The CORS answers of the `paths` (route path -> its methods), from `origins`."""

    def __init__(
        self,
        paths: Mapping[str, frozenset[str]],
        origins: OriginCache,
        anyone: frozenset[str] = frozenset(),
    ) -> None:
        self.paths = dict(paths)
        self.origins = origins
        self.anyone = anyone  # paths any origin may call (`CorsFor.ANYONE`)
        self._allow_methods = {
            path: ", ".join(sorted(methods)).encode() for path, methods in paths.items()
        }

    origin = staticmethod(origin_header)

    def sending(self, scope: Scope, send: Send, origin: str) -> Send:
        """`send` that adds the CORS headers of an actual request from `origin`."""

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                _vary_origin(headers)
                if route_path(scope) in self.anyone or await self.origins.allows(
                    origin, scope.get(CLIENT_KEY)
                ):
                    headers.append((b"access-control-allow-origin", origin.encode("latin-1")))
                    headers.append((b"access-control-expose-headers", EXPOSE_HEADERS))
                message = {**message, "headers": headers}
            await send(message)

        return send_with_cors

    async def preflight(self, path: str, origin: str, send: Send) -> None:
        """The answer to a preflight of `path` from `origin`: it names no client, so any enabled
        client's origin is allowed (the actual request is then held to its client's)."""
        headers = [(b"vary", b"Origin"), (b"content-length", b"0")]
        if path in self.anyone or await self.origins.allows(origin, None):
            status = 204
            headers += [
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"access-control-allow-methods", self._allow_methods[path]),
                (b"access-control-allow-headers", ALLOW_HEADERS),
                (b"access-control-max-age", MAX_AGE),
            ]
        else:
            status = 403  # no CORS header: the browser refuses the actual request
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


class CorsMiddleware:
    """Answers preflights of the CORS paths and adds the headers to their actual requests;
    passes everything else on untouched. The fast path (`baton.server.fastpath.machine`) does
    the same for the machine POSTs it answers itself, with the same `Cors`."""

    def __init__(self, app: ASGIApp, *, cors: Cors) -> None:
        self.app = app
        self.cors = cors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        if path not in self.cors.paths:
            await self.app(scope, receive, send)
            return
        origin = origin_header(scope)
        if origin is None:
            if scope["method"] in ("GET", "HEAD"):
                # A cacheable document: a cache must not give this answer, without the CORS
                # headers, to a browser's cross-origin request later.
                send = _varying(send)
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS" and _has_header(scope, b"access-control-request-method"):
            await self.cors.preflight(path, origin, send)
            return
        await self.app(scope, receive, self.cors.sending(scope, send, origin))


def _varying(send: Send) -> Send:
    async def send_varying(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", ()))
            _vary_origin(headers)
            message = {**message, "headers": headers}
        await send(message)

    return send_varying

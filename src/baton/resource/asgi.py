"""ASGI middleware for Starlette and FastAPI.

    app.add_middleware(BatonMiddleware, verifier=verifier)          # every route needs a token
    @app.get("/notes")
    def notes(who: Principal = Depends(require("read"))): ...        # FastAPI: scope per route

The verified `Principal` is in `request.state.principal` (and `scope["baton.principal"]`).
The middleware starts the verifier's feed at application startup (or at the first request
without a lifespan) and stops it at shutdown.

With `resource_metadata=ResourceMetadata(...)` it also serves the RFC 9728 document (no token
needed) and names its URL in every challenge (`resource_metadata="..."`, RFC 9728 §5.1).

A request whose token is superseded (issue 28) gets `Baton-Token-Superseded: dies-at=<seconds>`
on its answer, whatever the app answers (`Verifier(superseded_header=False)` leaves it out).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any

import anyio.to_thread

if TYPE_CHECKING:  # plain ASGI at run time: the base install has no Starlette
    from starlette.requests import HTTPConnection
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

from baton.resource.errors import AuthError, MissingToken
from baton.resource.headers import bearer_token, superseded_header
from baton.resource.metadata import ResourceMetadata, send_response
from baton.resource.principal import Principal
from baton.resource.verifier import Verifier

SCOPE_KEY = "baton.principal"


class BatonMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        verifier: Verifier,
        *,
        realm: str = "api",
        scopes: Sequence[str] = (),
        public_paths: Collection[str] = (),
        manage_feed: bool = True,
        resource_metadata: ResourceMetadata | None = None,
    ) -> None:
        self.app = app
        self.metadata = resource_metadata
        self.verifier = verifier
        self.realm = realm
        self.scopes = tuple(scopes)
        self.public_paths = frozenset(public_paths)
        self.manage_feed = manage_feed
        self._started = False

    def _start(self) -> None:
        if self.manage_feed and not self._started:
            self._started = True
            self.verifier.start()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.app(scope, self._lifespan_receive(receive), send)
            return
        if kind not in ("http", "websocket") or scope["path"] in self.public_paths:
            await self.app(scope, receive, send)
            return
        if kind == "http" and self.metadata is not None and scope["path"] in self.metadata.paths:
            await self.metadata.serve(scope, receive, send)
            return
        self._start()
        authorization = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
                break
        try:
            principal = await self.verifier.averify(bearer_token(authorization), *self.scopes)
        except AuthError as error:
            await self._refuse(scope, send, error)
            return
        scope[SCOPE_KEY] = principal
        scope.setdefault("state", {})["principal"] = principal
        started = False
        superseded = superseded_header(self.verifier, principal)
        extra = None if superseded is None else (superseded[0].encode(), superseded[1].encode())

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = True
            if extra is not None and message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), extra]}
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except AuthError as error:  # require(...) failed inside the app, e.g. a 403
            if started:
                raise
            await self._refuse(scope, send, error)

    def _lifespan_receive(self, receive: Receive) -> Receive:
        async def wrapped() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._start()
            elif message["type"] == "lifespan.shutdown" and self._started and self.manage_feed:
                # Joins the feed and the token-use reporter, whose final flush is a POST
                # (seconds): off the event loop, under asyncio or trio, as the MCP adapter does.
                # `_started` stays set meanwhile, so a request still in flight does not start
                # the feed again while it stops.
                await anyio.to_thread.run_sync(self.verifier.stop)
                self._started = False
            return message

        return wrapped

    async def _refuse(self, scope: Scope, send: Send, error: AuthError) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": error.error or ""})
            return
        status, headers, body = error.response_parts(
            self.realm, None if self.metadata is None else self.metadata.url
        )
        await send_response(send, status, headers, body)


def principal_of(connection: HTTPConnection) -> Principal:
    """The principal the middleware verified for this request (raises `MissingToken` if none)."""
    principal = connection.scope.get(SCOPE_KEY)
    if not isinstance(principal, Principal):
        raise MissingToken()
    return principal


def require(*scopes: str) -> Callable[[HTTPConnection], Principal]:
    """A FastAPI dependency (or a plain helper for Starlette endpoints): the request's principal,
    which must carry every scope given, else 403 `insufficient_scope`."""
    from starlette.requests import HTTPConnection  # FastAPI and Starlette bring it

    def dependency(request: Any) -> Principal:
        return principal_of(request).require(*scopes)

    # FastAPI injects the request by this annotation, read at run time (a class, not a string).
    dependency.__annotations__["request"] = HTTPConnection
    return dependency

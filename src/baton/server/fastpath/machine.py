"""The short way through the app for the machine endpoints: POST /token, /introspect, /revoke.

They take nearly all the traffic and need neither a session nor a router, and the layers between
the security headers and the endpoint (the session middleware, Starlette's exception middleware,
the router, the route and its request/response wrappers, each awaiting the next and wrapping
`send`) cost a refresh a measurable share of its time (docs/performance.md). This middleware sits
right inside `SecurityHeaders`, answers these three itself with the app's own exception handlers,
and passes every other request on. It adds the CORS headers of a browser's call to /token and
/revoke itself (`baton.server.runtime.cors`, which `CorsMiddleware` applies on the general way):
a request without `Origin`, all the non-browser traffic, only pays for looking for the header.
Request ids, metrics, the access log, the security headers and the 500 for an unhandled error
stay where they are, outside it.

It does what the router does for these three exact paths and nothing else, with public names
only; tests/server/test_machine.py holds its answers to the router's, request for request
(404, 405, redirects, handled and unhandled errors, under a root path), naming Starlette's
version when they part.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

if TYPE_CHECKING:
    from baton.server.runtime.cors import Cors

ExceptionHandler = Callable[[Request, Exception], Awaitable[Response]]


def route_path(scope: Scope) -> str:
    """The path the router matches: the request's path less the root path the app is mounted
    under (ASGI's `root_path`), when the path lies under it."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        if path == root:
            return ""
        if path[len(root)] == "/":
            return path[len(root) :]
    return path


class MachineEndpoints:
    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: Sequence[Route],
        handlers: Mapping[type[Exception], ExceptionHandler],
        cors: Cors | None = None,
    ) -> None:
        self.app = app
        self.handlers = dict(handlers)
        self.cors = cors
        # The routes whose browser callers get CORS headers here, as `CorsMiddleware` (which the
        # short way skips) gives them on the general way.
        self.cors_routes = frozenset(
            route.path for route in routes if cors is not None and route.path in cors.paths
        )
        self.routes: dict[str, Route] = {}
        for route in routes:
            if route.methods != {"POST"}:
                raise ValueError(f"{route.path}: only POST routes take the short way")
            if route.param_convertors:
                raise ValueError(f"{route.path}: only exact paths take the short way")
            self.routes[route.path] = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = None
        if scope["type"] == "http" and scope["method"] == "POST":
            route = self.routes.get(route_path(scope))
        if route is None:
            await self.app(scope, receive, send)
            return
        # As the router would have set them: Observe labels its metrics with the route.
        scope["route"] = route
        scope["endpoint"] = route.endpoint
        scope["path_params"] = {}
        if self.cors is not None and route.path in self.cors_routes:
            # A browser's request carries `Origin`; the rest of the traffic only looks for it.
            origin = self.cors.origin(scope)
            if origin is not None:
                send = self.cors.sending(scope, send, origin)
        request = Request(scope, receive, send)
        try:
            response: Response = await route.endpoint(request)
        except Exception as exc:
            handler = self._handler_for(exc)
            if handler is None:
                raise  # ServerErrorMiddleware answers 500 and logs it, as for any route
            response = await handler(request, exc)
        await response(scope, receive, send)

    def _handler_for(self, exc: Exception) -> ExceptionHandler | None:
        """The handler of the nearest class in the exception's MRO, as Starlette looks it up."""
        for cls in type(exc).__mro__:
            handler = self.handlers.get(cls)
            if handler is not None:
                return handler
        return None

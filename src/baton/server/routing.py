"""What a route declaration says, and what derives from a table of them.

Each route is declared once (`baton.server.routes`): its path, methods, handler, whether it is a
machine endpoint or goes through the session middleware, the RFC 8414 metadata member that
names its URL, a one-line summary, its OpenAPI operation and whether browsers call it across
origins (CORS). The Starlette routes, the fast path's routes, the session-free paths, the CORS
paths, the metadata's URLs, the OpenAPI document's paths and the table of endpoints
(docs/endpoints.md) are all computed from that table here, so a route cannot be served and
missing from the documents, or the reverse. This module imports no endpoint, so the endpoints
may import it.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from baton.config import Settings

Handler = Callable[[Request], Awaitable[Response]]
Operation = dict[str, Any]
# An operation that depends on the settings (a lifetime, a size limit) is written as a function.
OperationSource = Operation | Callable[[Settings], Operation]


class Kind(enum.Enum):
    # Authenticated on every request: a browser session means nothing there, so they skip the
    # session middleware (they are the hot paths); their POSTs take the fast path too.
    MACHINE = "machine"
    # Through the session middleware: the pages, and the public documents beside them.
    SESSION = "session"
    # Health probes (`/healthz`, `/readyz`): no session and no access-log line, since an
    # orchestrator asks every few seconds.
    PROBE = "probe"


class CorsFor(enum.Enum):
    """Which origins a browser may call an endpoint from (`baton.server.runtime.cors`)."""

    # The enabled clients' origins (their redirect URIs', or `allowed_origins`): the token
    # endpoints, whose answers are about a client.
    CLIENTS = "clients"
    # Any origin: public documents, and dynamic registration, which a browser client not yet
    # registered calls (MCP Inspector); none reads a cookie, and credentials are never allowed.
    ANYONE = "anyone"


@dataclass(frozen=True, slots=True)
class Endpoint:
    path: str
    methods: frozenset[str]
    handler: Handler
    kind: Kind = Kind.SESSION
    # The RFC 8414 member that advertises this endpoint's URL, if any.
    metadata: str | None = None
    # The OpenAPI operation; None only for routes left out of the document on purpose (the admin
    # console), which must then say `documented=False`.
    openapi: OperationSource | None = None
    documented: bool = True
    # One line: the OpenAPI operation's `summary`, and the endpoints table's row.
    summary: str | None = None
    # What the endpoints table's row adds to the summary (the operation's description says more).
    details: str | None = None
    # Called by browser apps from other origins (CORS, `baton.server.runtime.cors`): preflights
    # answered, and the allowed origin named in the answers: the enabled clients' origins, or
    # any origin (`CorsFor.ANYONE`).
    cors: CorsFor | None = None
    # The admin API scope a bearer token must hold (`baton.server.admin.api.admin_endpoint`
    # checks it; the OpenAPI operation's `security` and the per-scope authorization test read it).
    scope: str | None = None

    def __post_init__(self) -> None:
        if self.documented and (self.openapi is None or self.summary is None):
            raise ValueError(
                f"{self.path}: a documented route needs its OpenAPI operation and summary"
            )

    def route(self) -> Route:
        return Route(self.path, self.handler, methods=sorted(self.methods))

    def operations(self, settings: Settings) -> Iterator[tuple[str, Operation]]:
        """(method, operation) for each method of this route in the OpenAPI document."""
        if self.openapi is None:
            return
        operation = self.openapi(settings) if callable(self.openapi) else self.openapi
        if self.summary is not None:
            operation = {**operation, "summary": self.summary}
        if self.scope is not None:
            operation = {**operation, "security": [{"bearer": [self.scope]}]}
        for method in sorted(self.methods):
            yield method.lower(), operation

    def readme_row(self) -> str:
        """This route's row in the table of endpoints (docs/endpoints.md)."""
        methods = "/".join(sorted(self.methods))
        about = self.summary if self.details is None else f"{self.summary}: {self.details}"
        if self.scope is not None:
            about = f"{about} (`{self.scope}`)"
        return f"| `{methods} {self.path}` | {about} |"


def endpoint(
    path: str,
    methods: str,
    handler: Handler,
    kind: Kind = Kind.SESSION,
    *,
    metadata: str | None = None,
    openapi: OperationSource | None = None,
    documented: bool = True,
    summary: str | None = None,
    details: str | None = None,
    cors: bool | CorsFor = False,
    scope: str | None = None,
) -> Endpoint:
    """An `Endpoint` with its methods written as one string (`"GET"`, `"GET POST"`); `cors=True`
    for the enabled clients' origins."""
    return Endpoint(
        path,
        frozenset(methods.split()),
        handler,
        kind,
        metadata,
        openapi,
        documented,
        summary,
        details,
        CorsFor.CLIENTS if cors is True else (cors or None),
        scope,
    )


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"})


class NotAllowed(Route):
    """A route that only answers 405 for the methods a path of the table does not take (see
    `Table.starlette_routes`): no endpoint of its own."""


def _not_allowed(allow: str) -> Handler:
    async def not_allowed(request: Request) -> Response:
        raise HTTPException(405, headers={"Allow": allow})

    return not_allowed


@dataclass(frozen=True, slots=True)
class Table:
    """The app's routes in order, and the console's, served under `admin_prefix`."""

    endpoints: tuple[Endpoint, ...]
    admin: tuple[Endpoint, ...]
    admin_prefix: str = "/admin"

    def __post_init__(self) -> None:
        seen: set[tuple[str, str]] = set()
        for e in self.endpoints:
            for method in e.methods:
                if (e.path, method) in seen:
                    raise ValueError(f"{method} {e.path} is declared twice")
                seen.add((e.path, method))

    def starlette_routes(self) -> list[BaseRoute]:
        return [
            *(e.route() for e in self.endpoints),
            *self._not_allowed_routes(),
            Mount(self.admin_prefix, routes=[e.route() for e in self.admin]),
        ]

    def _not_allowed_routes(self) -> list[NotAllowed]:
        """For each path under `admin_prefix` (the admin API's), a route of the methods it does
        not have, answering 405 with `Allow`: otherwise the console's `Mount`, which takes any
        method, would answer them with its 404."""
        methods: dict[str, set[str]] = {}
        for e in self.endpoints:
            if e.path.startswith(self.admin_prefix + "/"):
                methods.setdefault(e.path, set()).update(e.methods)
        routes = []
        for path, allowed in methods.items():
            if "GET" in allowed:
                allowed = allowed | {"HEAD"}
            others = sorted(_METHODS - allowed)
            handler = _not_allowed(", ".join(sorted(allowed)))
            routes.append(NotAllowed(path, handler, methods=others))
        return routes

    def fast_routes(self, routes: Iterable[BaseRoute]) -> list[Route]:
        """The machine POST routes among `routes` (the very objects the router holds): the fast
        path answers these itself (`baton.server.fastpath.machine`), and only POSTs."""
        # Exact paths only: a path with parameters (the admin API's `/users/{username}/disable`)
        # goes through the router, which matches them. Nor the admin API's (`POST /clients`):
        # few calls, and none hot.
        fast = {
            e.path
            for e in self.endpoints
            if e.kind is Kind.MACHINE
            and e.methods == {"POST"}
            and "{" not in e.path
            and e.scope is None
        }
        # By path and method: a machine path may have a GET endpoint too (/userinfo).
        return [
            r for r in routes if isinstance(r, Route) and r.path in fast and r.methods == {"POST"}
        ]

    def sessionless(self) -> frozenset[str]:
        """The paths the session middleware leaves alone: every machine endpoint's and probe's."""
        return frozenset(
            e.path
            for e in self.endpoints
            if e.kind in (Kind.MACHINE, Kind.PROBE) and "{" not in e.path
        )

    def sessionless_prefixes(self) -> tuple[str, ...]:
        """The machine endpoints' paths with parameters, up to the first one: the session
        middleware leaves everything under them alone (the admin API: no cookie counts)."""
        return tuple(
            sorted(
                {
                    e.path.split("{", 1)[0]
                    for e in self.endpoints
                    if e.kind is Kind.MACHINE and "{" in e.path
                }
            )
        )

    def scoped(self) -> tuple[Endpoint, ...]:
        """The admin API's routes: each needs a bearer token holding its `scope`."""
        return tuple(e for e in self.endpoints if e.scope is not None)

    def cors_paths(self) -> dict[str, frozenset[str]]:
        """The paths browser apps may call across origins, with the methods of each."""
        paths: dict[str, frozenset[str]] = {}
        for e in self.endpoints:
            if e.cors is not None:
                paths[e.path] = paths.get(e.path, frozenset()) | e.methods
        return paths

    def cors_for_anyone(self) -> frozenset[str]:
        """The CORS paths any origin may call (`CorsFor.ANYONE`)."""
        return frozenset(e.path for e in self.endpoints if e.cors is CorsFor.ANYONE)

    def unlogged(self) -> frozenset[str]:
        """The paths that get no access-log line: the probes'."""
        return frozenset(e.path for e in self.endpoints if e.kind is Kind.PROBE)

    def metadata_paths(self) -> Mapping[str, str]:
        """RFC 8414 member name -> the path of the endpoint it advertises."""
        return {e.metadata: e.path for e in self.endpoints if e.metadata is not None}

    def operations(self, settings: Settings) -> dict[str, dict[str, Operation]]:
        """The OpenAPI document's `paths`: every documented route's operations."""
        paths: dict[str, dict[str, Operation]] = {}
        for e in self.endpoints:
            if e.documented:
                paths.setdefault(e.path, {}).update(e.operations(settings))
        return paths

    def readme_table(self) -> str:
        """The table of endpoints (docs/endpoints.md): every documented route, in order."""
        rows = ["| endpoint | what it does |", "|---|---|"]
        rows += [e.readme_row() for e in self.endpoints if e.documented]
        return "\n".join(rows) + "\n"

"""Every route of the server, declared once: path, methods, handler, kind, the RFC 8414 member
that advertises it, and its OpenAPI operation (`baton.server.routing` says what derives from
this table: the app's routes, the fast path's, the session-free paths, the metadata's URLs and
the OpenAPI document's paths).

The two documents that describe the table (the metadata and the OpenAPI document) are served
from here, next to it. /metrics is declared by the observability room, which serves it only when
it is configured (`baton.server.observability.install`).
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from baton.server.admin import console
from baton.server.endpoints import authorize, openapi
from baton.server.endpoints.feed import revocations_page, revocations_stream
from baton.server.endpoints.metadata import jwks_endpoint, metadata_document
from baton.server.endpoints.revocation import introspection_endpoint, revocation_endpoint
from baton.server.endpoints.token import token_endpoint
from baton.server.routing import Kind, Table, endpoint
from baton.server.runtime.context import baton

MACHINE = Kind.MACHINE

_STYLESHEET = (Path(__file__).parent / "static" / "baton.css").read_text()


async def stylesheet(_request: Request) -> Response:
    return Response(
        _STYLESHEET, media_type="text/css", headers={"Cache-Control": "public, max-age=3600"}
    )


async def metadata_endpoint(request: Request) -> JSONResponse:
    return JSONResponse(metadata_document(baton(request).settings, TABLE.metadata_paths()))


async def openapi_endpoint(request: Request) -> JSONResponse:
    return JSONResponse(openapi.openapi_document(baton(request).settings, TABLE))


TABLE = Table(
    endpoints=(
        # The machine endpoints take nearly all the traffic: their POSTs take the short way past
        # the session middleware and the router (baton.server.fastpath.machine); the router still
        # has them, for the 405 of another method and for the routes' list.
        endpoint(
            "/token",
            "POST",
            token_endpoint,
            MACHINE,
            metadata="token_endpoint",
            openapi=openapi.token,
        ),
        endpoint(
            "/introspect",
            "POST",
            introspection_endpoint,
            MACHINE,
            metadata="introspection_endpoint",
            openapi=openapi.INTROSPECT,
        ),
        endpoint(
            "/revoke",
            "POST",
            revocation_endpoint,
            MACHINE,
            metadata="revocation_endpoint",
            openapi=openapi.REVOKE,
        ),
        endpoint("/", "GET", authorize.home, openapi=openapi.HOME),
        endpoint(
            "/.well-known/oauth-authorization-server",
            "GET",
            metadata_endpoint,
            openapi=openapi.METADATA,
        ),
        endpoint("/jwks.json", "GET", jwks_endpoint, metadata="jwks_uri", openapi=openapi.JWKS),
        endpoint("/openapi.json", "GET", openapi_endpoint, openapi=openapi.OPENAPI),
        endpoint(
            "/authorize",
            "GET",
            authorize.authorize_get,
            metadata="authorization_endpoint",
            openapi=openapi.AUTHORIZE,
        ),
        endpoint("/authorize", "POST", authorize.authorize_post, openapi=openapi.CONSENT),
        endpoint("/login", "GET", authorize.login_get, openapi=openapi.LOGIN_PAGE),
        endpoint("/login", "POST", authorize.login_post, openapi=openapi.LOGIN),
        endpoint("/logout", "GET", authorize.logout_get, openapi=openapi.LOGOUT_PAGE),
        endpoint("/logout", "POST", authorize.logout_post, openapi=openapi.LOGOUT),
        endpoint("/revocations", "GET", revocations_page, MACHINE, openapi=openapi.REVOCATIONS),
        endpoint(
            "/revocations/stream",
            "GET",
            revocations_stream,
            MACHINE,
            openapi=openapi.REVOCATION_STREAM,
        ),
        endpoint("/static/baton.css", "GET", stylesheet, openapi=openapi.STYLESHEET),
    ),
    admin=console.ROUTES,
)

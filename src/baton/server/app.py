"""The ASGI application: routes, middleware and lifespan."""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import AsyncIterator

import anyio
from sqlalchemy.exc import DBAPIError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from baton.config import Settings
from baton.core.clock import Clock, SystemClock
from baton.core.keys import JwtAccessTokens, key_encryption_key
from baton.core.pairs import OPAQUE, AccessTokenFormat
from baton.logs import configure_structlog
from baton.server import fastpath
from baton.server.admin import console
from baton.server.endpoints import authorize
from baton.server.endpoints.errors import NoStoreJSON, OAuthError, oauth_error_handler
from baton.server.endpoints.feed import revocations_page, revocations_stream
from baton.server.endpoints.metadata import jwks_endpoint, metadata_endpoint
from baton.server.endpoints.openapi import openapi_endpoint
from baton.server.endpoints.revocation import introspection_endpoint, revocation_endpoint
from baton.server.endpoints.token import token_endpoint
from baton.server.fastpath.machine import ExceptionHandler
from baton.server.observability import install as observability
from baton.server.observability.middleware import Observe
from baton.server.runtime.context import Baton
from baton.server.runtime.keyring import KeyRing
from baton.server.runtime.limits import Buckets, Limits, MemoryBuckets, Rate, RedisBuckets
from baton.server.runtime.protection import (
    SecurityHeaders,
    database_unavailable,
    is_database_unavailable,
)
from baton.server.runtime.proxies import TrustedProxies, parse_networks
from baton.server.runtime.sessions import SessionMiddleware, session_key, signers
from baton.server.runtime.stores import Store

log = logging.getLogger("baton")

_CSS = """
body{font:16px/1.5 system-ui,sans-serif;background:#f5f6f8;color:#1d2330;margin:0}
main{max-width:26rem;margin:4rem auto;background:#fff;padding:2rem;border-radius:10px;
box-shadow:0 1px 4px rgba(0,0,0,.1)}
.brand{font-weight:700;letter-spacing:.05em;color:#3a5bd9;margin:0 0 1rem}
h1{font-size:1.4rem;margin:.2rem 0 1rem}
label{display:block;margin:.8rem 0 .2rem;font-weight:600}
input{width:100%;box-sizing:border-box;padding:.55rem;border:1px solid #c4c9d4;border-radius:6px}
button{margin-top:1.2rem;padding:.6rem 1.2rem;border:0;border-radius:6px;background:#3a5bd9;
color:#fff;font-weight:600;cursor:pointer}
button.secondary{background:#e4e7ee;color:#1d2330;margin-left:.5rem}
.error{color:#a4161a;background:#fde8e8;padding:.6rem;border-radius:6px}
.small{font-size:.85rem}
"""


async def stylesheet(_request: Request) -> Response:
    return Response(_CSS, media_type="text/css", headers={"Cache-Control": "public, max-age=3600"})


DATABASE_ERRORS = (DBAPIError, ConnectionError, TimeoutError, OSError)


async def database_error(request: Request, exc: Exception) -> Response:
    if is_database_unavailable(exc):
        return await database_unavailable(request, exc)
    log.error("unexpected database error", exc_info=exc)
    return await unexpected_error(request, exc)


async def unexpected_error(_request: Request, _exc: Exception) -> Response:
    """RFC 6749 §5.2's `server_error` for what nothing else handled (a bug). Starlette's
    ServerErrorMiddleware answers with it, then raises the error again for uvicorn to log."""
    return NoStoreJSON(
        {"error": "server_error", "error_description": "unexpected server error"}, 500
    )


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        description = f"no such endpoint: {request.url.path}"
    elif exc.status_code == 405:
        description = f"method {request.method} is not allowed here"
    else:
        description = str(exc.detail)
    return NoStoreJSON(
        {"error": "invalid_request", "error_description": description},
        exc.status_code,
        exc.headers,
    )


def create_app(settings: Settings, store: Store, clock: Clock | None = None) -> Starlette:
    clock = clock or SystemClock()
    fastpath.install(settings.fast_paths)  # the process's short cuts follow the app's switch
    configure_structlog()
    observed = observability.Observability(settings, store, clock)

    kek = key_encryption_key(settings.key_encryption_key) if settings.key_encryption_key else None
    keys = KeyRing(store, kek)
    access_format: AccessTokenFormat = OPAQUE
    if settings.access_token_format == "jwt":
        access_format = JwtAccessTokens(settings.issuer, settings.default_audience, keys.key_at)

    buckets: Buckets = RedisBuckets(settings.redis_url) if settings.redis_url else MemoryBuckets()
    limits = Limits(
        buckets,
        per_address=Rate(settings.rate_limit_address, 2 * settings.rate_limit_address),
        per_client=Rate(settings.rate_limit_client, 2 * settings.rate_limit_client),
        login_per_address=Rate(settings.rate_limit_login, 20),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        jwt_alg = settings.signing_alg if settings.access_token_format == "jwt" else None
        await keys.reload(clock.now(), first_key_alg=jwt_alg)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_purge, store, clock, settings)
            tasks.start_soon(_reload_keys, keys, clock, settings.key_reload_interval)
            observed.start(tasks)
            yield
            tasks.cancel_scope.cancel()
        await observed.close()
        await buckets.close()
        await store.close()

    # The machine endpoints take nearly all the traffic: their POSTs take the short way past the
    # session middleware and the router (baton.server.fastpath.machine); the router still has
    # them, for the 405 of another method and for the routes' list.
    machine = [
        Route("/token", token_endpoint, methods=["POST"]),
        Route("/introspect", introspection_endpoint, methods=["POST"]),
        Route("/revoke", revocation_endpoint, methods=["POST"]),
    ]
    exception_handlers: dict[type[Exception], ExceptionHandler] = {
        OAuthError: oauth_error_handler,
        HTTPException: http_error,
        **{kind: database_error for kind in DATABASE_ERRORS},
    }
    routes = [
        *machine,
        Route("/", authorize.home),
        Route("/.well-known/oauth-authorization-server", metadata_endpoint),
        Route("/jwks.json", jwks_endpoint),
        Route("/openapi.json", openapi_endpoint),
        Route("/authorize", authorize.authorize_get, methods=["GET"]),
        Route("/authorize", authorize.authorize_post, methods=["POST"]),
        Route("/login", authorize.login_get, methods=["GET"]),
        Route("/login", authorize.login_post, methods=["POST"]),
        Route("/logout", authorize.logout_get, methods=["GET"]),
        Route("/logout", authorize.logout_post, methods=["POST"]),
        Route("/revocations", revocations_page, methods=["GET"]),
        Route("/revocations/stream", revocations_stream, methods=["GET"]),
        Route("/static/baton.css", stylesheet),
        Mount("/admin", routes=console.routes),
        *observed.routes(),
    ]
    proxies = parse_networks(",".join(settings.trusted_proxies))
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(Observe, metrics=observed.metrics),
            # Only behind trusted proxies: otherwise a request's address is its TCP peer, and
            # no request pays for a layer that would do nothing.
            *([Middleware(TrustedProxies, networks=proxies)] if proxies else []),
            Middleware(SecurityHeaders, https=settings.secure_cookies),
            *fastpath.machine_middleware(
                settings.fast_paths, routes=machine, handlers=exception_handlers
            ),
            Middleware(SessionMiddleware, secure=settings.secure_cookies),
        ],
        # Exception last, for Starlette alone: the machine endpoints let an unexpected error
        # through to ServerErrorMiddleware, which answers with it and has uvicorn log it.
        exception_handlers={**exception_handlers, Exception: unexpected_error},
        lifespan=lifespan,
    )
    app.state.baton = Baton(settings, store, clock, keys, access_format, limits)
    # The session key never comes from the database (a read of it must not forge a session):
    # `baton serve` gives it from BATON_SESSION_KEY or its key file. Without one (an app built
    # in-process, as the tests do), a key of this process alone: its sessions die with it.
    if settings.session_key is None:
        log.info("no session key configured: browser sessions last as long as this process")
    key = session_key(settings.session_key) if settings.session_key else secrets.token_bytes(32)
    app.state.session_signer, app.state.device_signer = signers(key)
    console.install(app)
    app.state.metrics = observed.metrics
    return app


async def _purge(store: Store, clock: Clock, settings: Settings) -> None:
    """Deletes expired data in bounded batches (correctness never waits on this: every state is
    derived from stored facts at the moment of the question)."""
    while True:
        await anyio.sleep(settings.purge_interval)
        try:
            purged = 0
            while (batch := await store.purge(clock.now(), settings.retention)) > 0:
                purged += batch
                await anyio.sleep(0)  # let token traffic in between batches
            if purged:
                log.info("purged %d expired rows", purged)
        except Exception:  # a purge must never take the server down
            log.exception("purging expired data failed; will retry")


async def _reload_keys(keys: KeyRing, clock: Clock, interval: int) -> None:
    """Picks up keys that `baton keys rotate` published, long before they sign."""
    while True:
        await anyio.sleep(interval)
        try:
            await keys.reload(clock.now())
        except Exception:
            log.exception("reloading the signing keys failed; will retry")

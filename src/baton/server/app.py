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

from baton.config import Settings
from baton.core.clock import Clock, SystemClock
from baton.core.keys import JwtAccessTokens, key_encryption_key
from baton.core.pairs import OPAQUE, AccessTokenFormat
from baton.core.subject import pairwise_salt
from baton.core.vocabulary import ErrorCode
from baton.logs import configure_structlog
from baton.server import fastpath
from baton.server.admin import api, console_entry
from baton.server.endpoints import client_policy, logout
from baton.server.endpoints.errors import NoStoreJSON, OAuthError, oauth_error_handler
from baton.server.endpoints.registration import expire_unused
from baton.server.fastpath.machine import ExceptionHandler
from baton.server.observability import install as observability
from baton.server.observability import tracing_unavailable
from baton.server.observability.middleware import Observe
from baton.server.routes import TABLE
from baton.server.runtime import signals
from baton.server.runtime.context import Baton
from baton.server.runtime.cors import Cors, CorsMiddleware, OriginCache
from baton.server.runtime.keyring import KeyRing
from baton.server.runtime.limits import Buckets, Limits, MemoryBuckets, Rate, RedisBuckets
from baton.server.runtime.pages import Pages
from baton.server.runtime.protection import (
    SecurityHeaders,
    database_unavailable,
    is_database_unavailable,
)
from baton.server.runtime.proxies import TrustedProxies, parse_networks
from baton.server.runtime.sessions import SessionMiddleware, session_key, signers
from baton.server.runtime.stores import Store
from baton.wire import ErrorResponse

log = logging.getLogger("baton")

DATABASE_ERRORS = (DBAPIError, ConnectionError, TimeoutError, OSError)


async def database_error(request: Request, exc: Exception) -> Response:
    if is_database_unavailable(exc):
        return await database_unavailable(request, exc)
    log.error("unexpected database error", exc_info=exc)
    return await unexpected_error(request, exc)


async def unexpected_error(_request: Request, _exc: Exception) -> Response:
    """RFC 6749 §5.2's `server_error` for what nothing else handled (a bug). Starlette's
    ServerErrorMiddleware answers with it, then raises the error again for uvicorn to log."""
    body: ErrorResponse = {
        "error": ErrorCode.SERVER_ERROR,
        "error_description": "unexpected server error",
    }
    return NoStoreJSON(body, 500)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    path = request.url.path
    if path == api.PREFIX or path.startswith(api.PREFIX + "/"):
        return _api_http_error(request, exc)
    if exc.status_code == 404:
        description = f"no such endpoint: {request.url.path}"
    elif exc.status_code == 405:
        description = f"method {request.method} is not allowed here"
    else:
        description = str(exc.detail)
    body: ErrorResponse = {"error": ErrorCode.INVALID_REQUEST, "error_description": description}
    return NoStoreJSON(body, exc.status_code, exc.headers)


def _api_http_error(request: Request, exc: HTTPException) -> Response:
    """The admin API's own answer to a path it does not have or a method a path does not take:
    an RFC 9457 problem, as its handlers' errors are (405 with `Allow`, RFC 9110 §15.5.6)."""
    if exc.status_code == 405:
        detail = f"method {request.method} is not allowed here"
        kind = "method-not-allowed"
    elif exc.status_code == 404:
        detail = f"no such admin API path: {request.url.path[:200]}"
        kind = "not-found"
    else:
        detail, kind = str(exc.detail), "bad-request"
    return api.Problem(exc.status_code, kind, detail, dict(exc.headers or {})).response()


def create_app(settings: Settings, store: Store, clock: Clock | None = None) -> Starlette:
    clock = clock or SystemClock()
    fastpath.install(settings.fast_paths)  # the process's short cuts follow the app's switch
    configure_structlog()
    observed = observability.Observability(settings, store, clock)

    kek = key_encryption_key(settings.key_encryption_key) if settings.key_encryption_key else None
    keys = KeyRing(store, kek, settings.id_token_lifetime, settings.policy.lifetimes.access_ttl)
    access_format: AccessTokenFormat = OPAQUE
    if settings.access_token_format == "jwt":
        access_format = JwtAccessTokens(
            settings.issuer_identifier, settings.default_audience, keys.key_at
        )

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
            book, lost = app.state.baton.signals, observed.metrics.signals_lost
            interval = settings.signal_flush_interval
            tasks.start_soon(signals.flush_every, book, store, interval, lost)
            observed.start(
                tasks,
                logout.logout_tokens(app.state.baton),
                client_policy.policy_notices(app.state.baton),
            )
            yield
            tasks.cancel_scope.cancel()
        # What this process counted since its last flush, before the store closes (issue 28).
        await signals.final_flush(app.state.baton.signals, store, observed.metrics.signals_lost)
        await observed.close()
        await buckets.close()
        await store.close()

    exception_handlers: dict[type[Exception], ExceptionHandler] = {
        OAuthError: oauth_error_handler,
        HTTPException: http_error,
        **{kind: database_error for kind in DATABASE_ERRORS},
    }
    # Every route from the one table (baton.server.routes): the router's, the fast path's (the
    # machine POSTs, the very route objects the router holds) and the session-free paths.
    routes = [*TABLE.starlette_routes(), *observed.routes()]
    proxies = parse_networks(",".join(settings.trusted_proxies))
    # CORS for the endpoints browser apps call (the table's `cors=True`): answered by the short
    # way for its machine POSTs, by `CorsMiddleware` for the rest (preflights included).
    origins = OriginCache(store, clock)
    cors = Cors(TABLE.cors_paths(), origins, TABLE.cors_for_anyone())
    app = Starlette(
        routes=routes,
        middleware=[
            # Outermost, so the machine fast path's requests get their server span too.
            *_tracing(settings),
            Middleware(Observe, metrics=observed.metrics, unlogged=TABLE.unlogged()),
            # Only behind trusted proxies: otherwise a request's address is its TCP peer, and
            # no request pays for a layer that would do nothing.
            *([Middleware(TrustedProxies, networks=proxies)] if proxies else []),
            Middleware(SecurityHeaders, https=settings.secure_cookies),
            *fastpath.machine_middleware(
                settings.fast_paths,
                routes=TABLE.fast_routes(routes),
                handlers=exception_handlers,
                cors=cors,
            ),
            Middleware(CorsMiddleware, cors=cors),
            Middleware(
                SessionMiddleware,
                secure=settings.secure_cookies,
                sessionless=TABLE.sessionless(),
                sessionless_prefixes=TABLE.sessionless_prefixes(),
            ),
        ],
        # Exception last, for Starlette alone: the machine endpoints let an unexpected error
        # through to ServerErrorMiddleware, which answers with it and has uvicorn log it.
        exception_handlers={**exception_handlers, Exception: unexpected_error},
        lifespan=lifespan,
    )
    salt = pairwise_salt(settings.key_encryption_key) if settings.key_encryption_key else None
    # This app's templates, static files and catalogs (`--theme-dir`), read once, here.
    app.state.pages = Pages(settings.theme_dir)
    app.state.baton = Baton(settings, store, clock, keys, access_format, limits, pairwise_salt=salt)
    # A client written in this process (admin API, console) is seen at once by its CORS too.
    app.state.baton.clients.on_forget(origins.invalidate)
    # The session key never comes from the database (a read of it must not forge a session):
    # `baton serve` gives it from BATON_SESSION_KEY or its key file. Without one (an app built
    # in-process, as the tests do), a key of this process alone: its sessions die with it.
    if settings.session_key is None:
        log.info("no session key configured: browser sessions last as long as this process")
    key = session_key(settings.session_key) if settings.session_key else secrets.token_bytes(32)
    app.state.session_signer, app.state.device_signer = signers(key)
    console_entry.install(app)
    app.state.metrics = observed.metrics
    return app


def _tracing(settings: Settings) -> list[Middleware]:
    """The server spans' middleware when tracing is on (set up for this process on first use),
    else nothing: tracing off imports no OpenTelemetry module."""
    if not settings.tracing:
        return []
    if problem := tracing_unavailable():
        raise RuntimeError(problem)
    from baton.server.observability import tracing

    tracing.install()
    return [Middleware(tracing.TracedRequests)]


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
            # Integration signals past --signal-retention (issue 28), in batches as well.
            purged = 0
            while (batch := await store.purge_signals(clock.now(), settings.signal_retention)) > 0:
                purged += batch
                await anyio.sleep(0)
            if purged:
                log.info("purged %d integration signal rows", purged)
            # Dynamic registrations no grant used within --registration-expiry (RFC 7591 leaves
            # their life to the server), deleted as `baton client delete` does.
            expired = await expire_unused(store, clock.now(), settings.registration_expiry)
            if expired:
                log.info("deleted %d unused dynamic client registrations", expired)
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

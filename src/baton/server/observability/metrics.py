"""Prometheus metrics: what the server did, counted where it happens, served at /metrics.

Cheap on the hot path: a request costs one dict lookup for its pre-resolved (counter, histogram)
children, one `inc` and one `observe`. Labels are bounded: requests are labelled by route
template (never the raw path), method (known verbs only) and status.

Several worker processes (`baton serve --workers N`) share one view through prometheus_client's
multiprocess mode: `baton serve` points `PROMETHEUS_MULTIPROC_DIR` at a fresh directory before the
workers start, each worker's values live in memory-mapped files there, and a scrape answered by
any worker sums them all. Figures that are facts of the database (active grants) are read from
the database at scrape time by whichever worker answers, cached a few seconds, so they never
double-count. Pool use is per process: each samples its own pool every second, summed over the
live processes. The per-client integration signals (issue 28) are such facts too: read at scrape
time from `client_signals`, cached `CLIENT_SIGNALS_CACHE_SECONDS` (`ClientSignalFigures`).
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

import anyio
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from baton.core.rules import REUSE_REASONS, CodeProblem
from baton.core.signals import Health, SignalKind
from baton.core.vocabulary import ErrorCode, FeedEntryKind, RevocationCause
from baton.server.observability import MULTIPROC_VARIABLE
from baton.store.base import (
    CodeRefused,
    ExchangeResult,
    Issued,
    RedeemResult,
    Refused,
    Replayed,
    RevokeResult,
)

if TYPE_CHECKING:
    from prometheus_client.metrics import Counter as CounterChild
    from prometheus_client.metrics import Histogram as HistogramChild

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
POOL_SAMPLE_INTERVAL = 1.0
# The per-client signal series: the window they count (the last 24 hours), how long one read of
# it serves the scrapes, and the label of the clients summed together.
CLIENT_SIGNALS_WINDOW = 86_400
CLIENT_SIGNALS_CACHE_SECONDS = 30.0

log = logging.getLogger("baton.metrics")

# No `_created` series beside each counter: half the exposition, and nothing Baton's users need.
disable_created_metrics()  # type: ignore[no-untyped-call]


def multiprocess_mode() -> bool:
    return bool(os.environ.get(MULTIPROC_VARIABLE))


class Stats(Protocol):
    """What the metrics ask of the store: figures read at scrape time, and the pool's use."""

    async def active_grants(self, now: int) -> int:
        """Grants neither revoked nor past their absolute lifetime."""
        ...

    def pool_figures(self) -> tuple[int, int] | None:
        """(connections checked out, pool capacity) of this process's pool, if it counts them."""
        ...

    async def client_health(
        self, client_ids: Sequence[str] | None, since: int, now: int
    ) -> list[Health]:
        """Each client's integration signals since `since` (None: every client with one)."""
        ...

    async def client_series(self, since: int, now: int, top: int) -> list[Health]:
        """The `top` clients with the most signals since `since`, then the others as one."""
        ...


class Metrics:
    """The server's metrics, in a registry of their own (one per app: tests start from zero)."""

    def __init__(self, grants_cache_seconds: float = 5.0) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "baton_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "baton_http_request_duration_seconds",
            "Time from the request's arrival to the end of its response, by route template.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.rotations = Counter(
            "baton_refresh_rotations",
            "Refresh tokens exchanged for a new pair (rotations).",
            registry=r,
        )
        retries = Counter(
            "baton_leeway_retries",
            "Exchanged refresh tokens presented again inside their leeway, by the answer given: "
            "replay (the same pair again) or fork (a sibling pair).",
            ["policy"],
            registry=r,
        )
        self.replays, self.forks = retries.labels("replay"), retries.labels("fork")
        reuse = Counter(
            "baton_reuse_detections",
            "Replays detected: an exchanged refresh token after its leeway, or a used "
            "authorization code.",
            ["kind"],
            registry=r,
        )
        self.refresh_reuse, self.code_reuse = reuse.labels("refresh_token"), reuse.labels("code")
        self.revocations = Counter(
            "baton_revocations",
            "Revocations that took effect: a whole grant or one access token, by cause.",
            ["what", "cause"],
            registry=r,
        )
        self.webhook_deliveries = Counter(
            "baton_webhook_deliveries",
            "Webhook delivery attempts, by outcome: delivered, failed (retried), gave_up.",
            ["outcome"],
            registry=r,
        )
        lost = Counter(
            "baton_signals_lost",
            "Integration signals a process counted but never wrote, by reason: full (its "
            "in-memory book was full) or write_failed (a flush's write failed, its batch "
            "dropped).",
            ["reason"],
            registry=r,
        )
        self._signals_lost = {reason: lost.labels(reason) for reason in ("full", "write_failed")}
        self.pool_in_use = Gauge(
            "baton_db_pool_connections_in_use",
            "Database connections checked out of the pools (sampled each second per process).",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.pool_capacity = Gauge(
            "baton_db_pool_connections_capacity",
            "Connections the pools may hold (pool size plus overflow, summed over processes).",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.grants_cache_seconds = grants_cache_seconds
        self._database = _DatabaseFigures()
        r.register(self._database)
        self.client_signals = ClientSignalFigures()
        r.register(self.client_signals)
        self._grants_read_at = -float("inf")
        self._children: dict[tuple[str, str, int], tuple[CounterChild, HistogramChild]] = {}

    # -- per request (the hot path) ------------------------------------------------------------

    def request_done(self, route: str, method: str, status: int, seconds: float) -> None:
        children = self._children.get((route, method, status))
        if children is None:
            children = self._resolve(route, method, status)
        children[0].inc()
        children[1].observe(seconds)

    def _resolve(self, route: str, method: str, status: int) -> tuple[CounterChild, HistogramChild]:
        label = method if method in METHODS else "OTHER"
        children = (
            self.requests.labels(route, label, str(status)),
            self.latency.labels(route),
        )
        self._children[(route, method, status)] = children
        return children

    # -- outcomes, one call where each endpoint sees them ------------------------------------

    def exchanged(self, result: ExchangeResult) -> None:
        """A refresh at /token: a rotation, a retry in the leeway, or a reuse detected."""
        if isinstance(result, Issued):
            (self.forks if result.retry else self.rotations).inc()
        elif isinstance(result, Replayed):
            self.replays.inc()
        elif isinstance(result, Refused) and result.reason in REUSE_REASONS:
            self.refresh_reuse.inc()
            if result.revoked_grant:
                self.revoked(FeedEntryKind.GRANT, RevocationCause.REUSE)

    def redeemed(self, result: RedeemResult) -> None:
        """A code redemption at /token: a used code presented again is a replay (§4.1.2)."""
        if isinstance(result, CodeRefused) and result.problem is CodeProblem.REUSED:
            self.code_reuse.inc()
            if result.revoked_grant:
                self.revoked(FeedEntryKind.GRANT, RevocationCause.CODE_REUSE)

    def client_revoked(self, outcome: RevokeResult) -> None:
        """A revocation at /revoke (RFC 7009) that changed something."""
        if outcome == "grant":
            self.revoked(FeedEntryKind.GRANT, RevocationCause.REVOKED)
        elif outcome == "access_token":
            self.revoked(FeedEntryKind.ACCESS_TOKEN, RevocationCause.REVOKED)

    def revoked(self, what: FeedEntryKind, cause: RevocationCause, count: int = 1) -> None:
        """Also for revocations decided elsewhere in the server (the console, the admin API:
        `count` grants at once)."""
        if count:
            self.revocations.labels(what, cause.metric_label).inc(count)

    def signals_lost(self, reason: str, count: int) -> None:
        """Signals lost by this process (`baton.server.runtime.signals.flush`'s `on_lost`)."""
        self._signals_lost[reason].inc(count)

    # -- at scrape time ----------------------------------------------------------------------

    def sample_pool(self, store: Stats) -> None:
        figures = store.pool_figures()
        if figures is not None:
            self.pool_in_use.set(figures[0])
            self.pool_capacity.set(figures[1])

    async def render(self, store: Stats, now: int, client_series: int = 20) -> bytes:
        """The exposition: this registry, or every worker's files in multiprocess mode;
        `client_series` is `--metrics-client-series` (`ClientSignalFigures`)."""
        if time.monotonic() - self._grants_read_at >= self.grants_cache_seconds:
            self._database.active_grants = await store.active_grants(now)
            self._grants_read_at = time.monotonic()
        await self.client_signals.refresh(store, now, client_series)
        self.sample_pool(store)
        if not multiprocess_mode():
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        registry.register(self._database)
        registry.register(self.client_signals)
        return generate_latest(registry)


class _DatabaseFigures(Collector):
    """Facts of the database, read at scrape time (never summed over processes)."""

    def __init__(self) -> None:
        self.active_grants: int | None = None

    def collect(self) -> Iterable[Metric]:
        if self.active_grants is not None:
            yield GaugeMetricFamily(
                "baton_active_grants",
                "Grants neither revoked nor expired (read from the database, cached 5 s).",
                value=self.active_grants,
            )


class ClientSignalFigures(Collector):
    """Each client's integration signals over the last 24 hours (issue 28), as gauges.

    Gauges, not counters: the figures are read from the database (`client_signals`, written by
    every process's flush), so whichever worker answers a scrape reports the whole server, never
    a sum over workers that would count each row once per process; and they are a rolling
    window's, which falls as old signals leave it, the way a counter must not. A rate is then
    not `rate()` of the series but the series itself ("in the last 24 hours"), and an alert is a
    plain threshold on it.

    Labels stay bounded whatever the number of clients: the `--metrics-client-series` clients with
    the most signals in the window get their own `client` label, the others are summed under
    `client="other"` (a client whose id is `other` shares that series; its delay quantiles are not
    given). Each refresh is one read (`client_series`: the ranking and the sums in SQL, the delays
    merged for the top clients only), made at most once per `CLIENT_SIGNALS_CACHE_SECONDS` by one
    scrape while the others wait for it: a scrape storm costs one query.
    """

    def __init__(self, cache_seconds: float = CLIENT_SIGNALS_CACHE_SECONDS) -> None:
        self.cache_seconds = cache_seconds
        self.series: list[Health] = []
        self._read_at = -float("inf")
        self._lock: anyio.Lock | None = None

    async def refresh(self, store: Stats, now: int, top: int) -> None:
        if time.monotonic() - self._read_at < self.cache_seconds:
            return
        if self._lock is None:  # made on the event loop that serves the scrapes
            self._lock = anyio.Lock()
        async with self._lock:
            if time.monotonic() - self._read_at < self.cache_seconds:
                return  # another scrape read it while this one waited
            try:
                series = await store.client_series(now - CLIENT_SIGNALS_WINDOW, now, top)
            except Exception as exc:
                # The scrape still answers (the other metrics, and the last figures read).
                log.warning(
                    "reading the client signals for /metrics failed (%s)", type(exc).__name__
                )
            else:
                self.series = series
            self._read_at = time.monotonic()

    def collect(self) -> Iterable[Metric]:
        signals = GaugeMetricFamily(
            "baton_client_signals",
            "Integration signals of each client in the last 24 hours, by kind: stale_access, "
            "leeway_retry, reuse, late_refresh, would_refuse (top clients, the rest as other).",
            labels=["client", "kind"],
        )
        last_seen = GaugeMetricFamily(
            "baton_client_signal_last_seen_timestamp_seconds",
            "When each client last gave a signal of each kind (Unix seconds), in the last 24 h.",
            labels=["client", "kind"],
        )
        delay = GaugeMetricFamily(
            "baton_client_stale_access_delay_seconds",
            "Delay between a refresh and a later use of the access token it superseded, p50 "
            "and p95 per client over the last 24 hours.",
            labels=["client", "quantile"],
        )
        breaking = GaugeMetricFamily(
            "baton_client_grants_breaking_ratio",
            "Share of each client's grants its report-only policy would have broken in the "
            "last 24 hours.",
            labels=["client"],
        )
        for health in self.series:
            client = health.client_id
            for kind in SignalKind:
                tally = health.tally(kind)
                signals.add_metric([client, kind.value], tally.count)
                if tally.last_at is not None:
                    last_seen.add_metric([client, kind.value], tally.last_at)
            stale = health.tally(SignalKind.STALE_ACCESS)
            for quantile, seconds in (("0.5", stale.p50), ("0.95", stale.p95)):
                if seconds is not None:
                    delay.add_metric([client, quantile], seconds)
            if health.breaking_share is not None:
                breaking.add_metric([client], health.breaking_share)
        yield from (signals, last_seen, delay, breaking)


def of(request: Request) -> Metrics:
    found: Metrics = request.app.state.metrics
    return found


async def sample_pool_forever(metrics: Metrics, store: Stats) -> None:
    """Each process's pool use, for the scrape that another process may answer."""
    while True:
        metrics.sample_pool(store)
        await anyio.sleep(POOL_SAMPLE_INTERVAL)


def metrics_endpoint(token: str | None) -> Callable[[Request], Awaitable[Response]]:
    """/metrics, behind `Authorization: Bearer <token>` unless the token is None (public)."""
    expected = f"Bearer {token}".encode() if token is not None else None

    async def endpoint(request: Request) -> Response:
        if expected is not None:
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return JSONResponse(
                    {
                        "error": ErrorCode.INVALID_TOKEN,
                        "error_description": "a metrics token is required",
                    },
                    status_code=401,
                    headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
                )
        app = request.app.state.baton
        body = await of(request).render(
            app.store, app.clock.now(), app.settings.metrics_client_series
        )
        return Response(body, media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})

    return endpoint

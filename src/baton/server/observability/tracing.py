"""OpenTelemetry traces (`--tracing`, the `otel` extra): what a request did, as spans.

Imported only when tracing is on; off, no OpenTelemetry module is loaded and no request pays for
a wrapper. `install()` sets tracing up once per process (a worker process of `baton serve
--workers N` sets up its own, as it builds its app): a tracer provider configured by the
standard `OTEL_*` variables (the OTLP endpoint and headers, the service name and resource, the
sampler, the batch sizes), whose spans leave through `Scrubbed` and a batch processor to the
OTLP/HTTP exporter. It then records:

- every request, as the server span of `OpenTelemetryMiddleware` around the whole ASGI app (the
  machine fast path included), named by its route template once routing has chosen one;
- every SQL statement, as a client span made by listeners on SQLAlchemy's `Engine` class, or
  by `baton.store.prepared` for the hot paths' statements it runs on the driver's cursor, with
  the statement's text (its placeholders, never its bound values);
- every outgoing HTTP request of httpx (webhooks, back-channel logouts, upstream providers);
- Baton's own spans, through the `baton.spans` seam: the token exchange at /token and the
  rules' decision inside the store's transaction.

A process flushes its last spans as its app shuts down (the lifespan, through `TracedRequests`),
before a worker exits.

Nothing a request carries in its body, headers, path or query string becomes an attribute, nor
who sent it, nor an exception's message (a driver's message may quote a bound value):
`Scrubbed` drops every captured header, the User-Agent, the client's address, every query
string and every exception message from each span before it is exported, replaces a server
span's URL and target with its route's template (none when no route matched) and reduces an
outgoing request's URL to its origin, whatever the instrumentations or the `OTEL_*` variables
recorded.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import anyio.to_thread
from opentelemetry import trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import SpanKind, Status, StatusCode
from sqlalchemy import event
from sqlalchemy.engine import Engine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from baton import __version__, spans
from baton.server.observability.middleware import UNMATCHED, route_template
from baton.urls import masked_url

SERVICE = "baton"  # service.name unless OTEL_SERVICE_NAME (or OTEL_RESOURCE_ATTRIBUTES) names one

# -- what never leaves the process --------------------------------------------------------------

# Attributes whose value may be a request's header (Authorization, Cookie, Set-Cookie): the
# instrumentations record them only if OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_* ask, and Baton
# drops them even then.
_HEADER_PREFIXES = ("http.request.header.", "http.response.header.")
# Attributes that are a whole URL, or a request's target or path. The path itself may be a
# secret or personal data (`/admin/api/v1/login-challenges/<challenge>`, `/users/<username>`, a
# token pasted into a path that matches no route) and the query string a code (the redirect back
# from /authorize): a server span keeps them as its route template (`http.route`), on the
# request's origin for a whole URL, and drops them when no route answered; a client span keeps
# its URL's origin alone (a webhook's path may be its credential, as Slack's); any other span, a
# URL without its query string and fragment.
_FULL_URLS = frozenset({"http.url", "url.full", "url.original"})
_PATHS = frozenset({"http.target", "url.path"})
_URLS = _FULL_URLS | _PATHS
# Who sent a request (personal data): its address and its User-Agent header.
_PERSONAL = frozenset(
    {
        "http.user_agent",
        "user_agent.original",
        "http.client_ip",
        "net.peer.ip",
        "net.peer.port",
        "net.sock.peer.addr",
        "net.sock.peer.port",
        "client.address",
        "client.port",
        "network.peer.address",
        "network.peer.port",
    }
)
_DROPPED = frozenset({"url.query", "exception.message", "exception.stacktrace"}) | _PERSONAL


def _clean_url(value: str) -> str:
    return value.split("?", 1)[0].split("#", 1)[0]


def _origin(value: str) -> str:
    """`scheme://host[:port]` of a URL (without a user or password), or "" if it has none."""
    try:
        parts = urlsplit(value)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return ""
    if not parts.scheme or not host:
        return ""
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def _suspect(key: str) -> bool:
    return key in _DROPPED or key in _URLS or key.startswith(_HEADER_PREFIXES)


def _url(key: str, value: Any, kind: SpanKind, route: str | None) -> Any | None:
    """What is kept of the URL or path attribute `key` (None: nothing)."""
    if not isinstance(value, str):
        return None
    if kind is SpanKind.SERVER:
        if route is None:
            return None
        if key in _PATHS:
            return route
        origin = _origin(value)
        return origin + route if origin else None
    if kind is SpanKind.CLIENT:
        if key in _PATHS:
            return None
        return masked_url(value, origin_only=True)
    return _clean_url(value)


def scrubbed_attributes(
    attributes: Mapping[str, Any] | None, kind: SpanKind = SpanKind.INTERNAL
) -> dict[str, Any]:
    """`attributes` without a header, a query string, an exception's message or who sent the
    request; their URLs and paths as `kind` allows (see `_URLS`)."""
    attributes = attributes or {}
    route = attributes.get("http.route")
    route = route if isinstance(route, str) else None
    kept: dict[str, Any] = {}
    for key, value in attributes.items():
        if key in _DROPPED or key.startswith(_HEADER_PREFIXES):
            continue
        if key in _URLS:
            value = _url(key, value, kind, route)
            if value is None:
                continue
        kept[key] = value
    return kept


def scrubbed(span: ReadableSpan) -> ReadableSpan:
    """`span` without a header, a query string, a request's path (but its route), its sender
    or an exception's message: an exception is known by its type alone, in its event and in
    the span's status."""
    if (
        not span.events
        and not span.status.description
        and not any(map(_suspect, span.attributes or ()))
    ):
        return span  # nothing to take out (most spans: SQL statements, Baton's own)
    status = span.status
    if status.description:
        status = Status(status.status_code, status.description.split(":", 1)[0])
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=scrubbed_attributes(span.attributes, span.kind),
        events=[
            Event(item.name, scrubbed_attributes(item.attributes), item.timestamp)
            for item in span.events
        ],
        links=span.links,
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class Scrubbed(SpanExporter):
    """An exporter that hands `inner` each span scrubbed (`scrubbed`)."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.inner.export([scrubbed(span) for span in spans])

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


# -- set up once per process --------------------------------------------------------------------


@dataclass
class _Installed:
    provider: TracerProvider
    tracer: trace.Tracer


_installed: _Installed | None = None
_installing = threading.Lock()


def install(exporter: SpanExporter | None = None, *, batch: bool = True) -> TracerProvider:
    """Tracing for this process, once (a second call returns the first one's provider): the
    provider, the SQL listeners, httpx's instrumentation and Baton's own spans. `exporter`:
    where spans go (default: OTLP over HTTP as the OTEL_EXPORTER_OTLP_* variables say); `batch`
    False exports each span as it ends (tests)."""
    global _installed
    with _installing:
        if _installed is not None:
            return _installed.provider
        resource = Resource.create()
        if str(resource.attributes.get(SERVICE_NAME, "unknown_service")).startswith(
            "unknown_service"
        ):
            resource = resource.merge(Resource({SERVICE_NAME: SERVICE}))
        # The sampler comes from OTEL_TRACES_SAMPLER (default: parent-based, always on).
        provider = TracerProvider(resource=resource)
        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        processor = BatchSpanProcessor if batch else SimpleSpanProcessor
        provider.add_span_processor(processor(Scrubbed(exporter)))
        tracer = provider.get_tracer("baton", __version__)
        _installed = _Installed(provider, tracer)
        _listen_to_sql()
        # Traces only: the instrumentations' metrics (Baton has its own, /metrics) would label
        # requests by their target, and cost each request for nothing.
        HTTPXClientInstrumentor().instrument(
            tracer_provider=provider, meter_provider=NoOpMeterProvider()
        )
        spans.switch(_starter(tracer), _statement_starter(tracer))
        return provider


def uninstall() -> None:
    """Tracing off again in this process, its spans flushed (tests)."""
    global _installed
    with _installing:
        if _installed is None:
            return
        spans.switch(None)
        HTTPXClientInstrumentor().uninstrument()
        for name, listener in _SQL_LISTENERS:
            event.remove(Engine, name, listener)
        _installed.provider.shutdown()
        _installed = None


FLUSH_TIMEOUT_MS = 5000  # what a stopping process waits at most for its last spans to leave


def flush() -> None:
    """Exports what this process's spans still wait in the batch (when it stops)."""
    installed = _installed
    if installed is not None:
        installed.provider.force_flush(FLUSH_TIMEOUT_MS)


def _require() -> _Installed:
    installed = _installed
    if installed is None:
        raise RuntimeError("tracing is not installed in this process (tracing.install())")
    return installed


# -- Baton's own spans (baton.spans) ------------------------------------------------------------


class _Recorded:
    __slots__ = ("span",)

    def __init__(self, span: trace.Span) -> None:
        self.span = span

    def set(self, key: str, value: spans.AttributeValue) -> None:
        self.span.set_attribute(key, value)


def _starter(tracer: trace.Tracer) -> spans.Starter:
    @contextmanager
    def start(name: str) -> Iterator[spans.Span]:
        with tracer.start_as_current_span(
            name, record_exception=False, set_status_on_exception=False
        ) as span:
            try:
                yield _Recorded(span)
            except BaseException as exc:
                _failed(span, exc)
                raise

    return start


# -- SQL statements ------------------------------------------------------------------------------

_SPAN = "_baton_span"


def _operation(statement: str) -> str:
    words = statement.split(None, 1)
    return words[0].upper() if words else "SQL"


def _tracer() -> trace.Tracer:
    return _require().tracer


def _statement_attributes(system: str, operation: str, text: str) -> dict[str, str]:
    return {
        "db.system.name": system,
        "db.operation.name": operation,
        # The text with its placeholders: the bound values are never read here.
        "db.query.text": text,
    }


def _failed(span: trace.Span, error: BaseException) -> None:
    # The type alone: a driver's message may quote the values it was given.
    kind = type(error)
    span.set_attribute("error.type", kind.__qualname__)
    span.set_status(Status(StatusCode.ERROR, kind.__name__))


def _statement_starter(tracer: trace.Tracer) -> spans.StatementStarter:
    """The spans of the prepared statements (`baton.store.prepared`), as the listeners below
    make those of the others."""

    @contextmanager
    def start(text: str, system: str) -> Iterator[object]:
        operation = _operation(text)
        span = tracer.start_span(
            operation,
            kind=SpanKind.CLIENT,
            attributes=_statement_attributes(system, operation, text),
        )
        try:
            yield span
        except BaseException as exc:
            _failed(span, exc)
            raise
        finally:
            span.end()

    return start


def _before_cursor_execute(
    conn: Any, _cursor: Any, statement: str, _parameters: Any, context: Any, _many: bool
) -> None:
    if context is None:
        return
    operation = _operation(statement)
    span = _tracer().start_span(
        operation,
        kind=SpanKind.CLIENT,
        attributes=_statement_attributes(conn.dialect.name, operation, statement),
    )
    setattr(context, _SPAN, span)


def _after_cursor_execute(
    _conn: Any, _cursor: Any, _statement: str, _parameters: Any, context: Any, _many: bool
) -> None:
    span = getattr(context, _SPAN, None)
    if span is not None:
        span.end()
        setattr(context, _SPAN, None)


def _handle_error(exception_context: Any) -> None:
    span = getattr(exception_context.execution_context, _SPAN, None)
    if span is None:
        return
    _failed(span, exception_context.original_exception)
    span.end()
    setattr(exception_context.execution_context, _SPAN, None)


_SQL_LISTENERS = (
    ("before_cursor_execute", _before_cursor_execute),
    ("after_cursor_execute", _after_cursor_execute),
    ("handle_error", _handle_error),
)


def _listen_to_sql() -> None:
    # On the class: every engine of the process, those the store opened before this included,
    # without reaching into the store for its engine.
    for name, listener in _SQL_LISTENERS:
        event.listen(Engine, name, listener)


# -- requests --------------------------------------------------------------------------------------


def _method_only(scope: Scope) -> tuple[str, dict[str, Any]]:
    """The server span's first name: the method (its route is not known before routing; the
    raw path is never a span name)."""
    return str(scope.get("method") or scope["type"]), {}


class _Named:
    """Inside the server span: names it `METHOD /route/{template}` as the response starts (the
    app has routed by then; the span ends with the response's last message)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        span = trace.get_current_span()

        async def named(message: Message) -> None:
            if message["type"] == "http.response.start":
                route = route_template(scope)
                if route != UNMATCHED:
                    span.set_attribute("http.route", route)
                    span.update_name(f"{scope['method']} {route}")
            await send(message)

        await self.app(scope, receive, named)


class TracedRequests:
    """The outermost middleware when tracing is on: a server span per request."""

    def __init__(self, app: ASGIApp) -> None:
        installed = _require()
        self.app = OpenTelemetryMiddleware(
            _Named(app),
            default_span_details=_method_only,
            tracer_provider=installed.provider,
            meter_provider=NoOpMeterProvider(),
            # The receive and send spans of each message would double a trace's size.
            exclude_spans=["receive", "send"],
            # Should OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_* ask for headers anyway, their
            # values are redacted here and dropped by `Scrubbed`.
            http_capture_headers_sanitize_fields=[".*"],
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._flushing(send))
            return
        await self.app(scope, receive, send)

    @staticmethod
    def _flushing(send: Send) -> Send:
        """The app's lifespan `send`, flushing this process's spans once the app has shut down
        and before the server is told so: a worker process exits right after, without the
        interpreter's exit handlers (where the SDK would flush) always having run."""

        async def flushing(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                await anyio.to_thread.run_sync(flush)
            await send(message)

        return flushing

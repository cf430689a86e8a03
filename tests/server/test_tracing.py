"""OpenTelemetry traces (`--tracing`): the span tree of a code flow, refreshes, a reuse, an
introspection and a revocation through the real app; no token, code, verifier, secret, password
or cookie in any span, nor a request's path (a challenge, a username), a webhook's path or who
sent a request; nothing of OpenTelemetry loaded while tracing is off; spans exported over
OTLP/HTTP to a real socket."""

from __future__ import annotations

import base64
import hashlib
import http.server
import importlib.abc
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import sqlalchemy
from click.testing import CliRunner
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from baton import spans as baton_spans
from baton.cli import main
from baton.server.observability import tracing
from tests.support import (
    ISSUER,
    PASSWORD,
    REDIRECT_URI,
    authorize,
    introspect,
    migrated_store,
    refresh,
    register_client,
    register_user,
    running_app,
)
from tests.webhook_receiver import SECRET as WEBHOOK_SECRET

# Header capture asked for by the operator's environment: Baton must still record no header.
CAPTURE_EVERY_HEADER = {
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST": ".*",
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE": ".*",
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST": ".*",
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_RESPONSE": ".*",
}


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    for name, value in CAPTURE_EVERY_HEADER.items():
        monkeypatch.setenv(name, value)
    exporter = InMemorySpanExporter()
    tracing.install(exporter, batch=False)
    try:
        yield exporter
    finally:
        tracing.uninstall()


def every_value(span: ReadableSpan) -> Iterator[str]:
    """Everything a span would export as text: its name, status, attributes, events, links."""
    yield span.name
    yield str(span.status.description)
    attributes = [span.attributes, *(event.attributes for event in span.events)]
    attributes += [link.attributes for link in span.links]
    yield from (event.name for event in span.events)
    for each in attributes:
        for key, value in (each or {}).items():
            yield f"{key}={value!s}"


def children(spans: list[ReadableSpan], parent: ReadableSpan, name: str) -> list[ReadableSpan]:
    return [
        span
        for span in spans
        if span.name == name
        and span.parent is not None
        and parent.context is not None
        and span.parent.span_id == parent.context.span_id
    ]


def server_spans(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return sorted(
        (span for span in spans if span.kind is SpanKind.SERVER and span.name == name),
        key=lambda span: span.start_time or 0,
    )


def sql_children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    assert parent.context is not None
    return [
        span
        for span in spans
        if span.kind is SpanKind.CLIENT
        and "db.query.text" in (span.attributes or {})
        and span.parent is not None
        and span.parent.span_id == parent.context.span_id
    ]


def basic(client_id: str, secret: str) -> str:
    return base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def challenge_of(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


# What a request's path may hold, and what must not leave in a span: a login challenge (stored
# as a digest only), a username (personal data), a token pasted into a path no route matches, a
# webhook's path (its credential, as Slack's /services/T/B/<secret>); and who sent the request.
CHALLENGE = "CHALLENGE-SECRET-VALUE"
USERNAME = "alice.personal@example.com"
PATH_TOKEN = "bat_at_pasted-into-a-path"
HOOK_PATH = "/services/T0001/B0001/WEBHOOK-PATH-SECRET"
USER_AGENT = "Personal-Browser/1.0 (alice's laptop)"
ADMIN_SCOPES = "admin:challenges admin:users:read"


def test_a_code_flow_and_its_refreshes_as_spans_with_no_secret_in_any(
    spans: InMemorySpanExporter, database: Path | str
) -> None:
    secrets: set[str] = {PASSWORD, CHALLENGE, USERNAME, PATH_TOKEN, HOOK_PATH, USER_AGENT}
    secrets |= {"WEBHOOK-PATH-SECRET", "alice.personal", "testclient"}  # the test client's address
    with (
        receiver() as (hook_origin, deliveries),
        running_app(
            database,
            tracing=True,
            webhook_url=hook_origin + HOOK_PATH,
            webhook_secret=WEBHOOK_SECRET,
            webhook_poll_interval=0.02,
        ) as (http, store, clock),
    ):
        http.headers["user-agent"] = USER_AGENT
        register_user(store)
        register_user(store, USERNAME)
        client = register_client(store)
        resource_server = register_client(store, resource_server=True)
        assert client.secret is not None and resource_server.secret is not None
        secrets |= {client.secret, resource_server.secret}
        # As they travel in `Authorization: Basic` (client_secret_basic).
        secrets |= {
            basic(client.id, client.secret),
            basic(resource_server.id, resource_server.secret),
        }

        query, verifier = authorize(http, client)
        assert verifier is not None
        code = query["code"][0]
        secrets |= {code, verifier, challenge_of(verifier)}
        secrets |= {value for value in http.cookies.values() if value}
        redeemed = http.post(
            "/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT_URI,
                "code_verifier": verifier,
                **client.auth_params(),
            },
        )
        assert redeemed.status_code == 200, redeemed.text
        pair = redeemed.json()
        rotated = refresh(http, client, pair["refresh_token"])
        assert rotated.status_code == 200
        retried = refresh(http, client, pair["refresh_token"])  # a lost response: a replay
        assert retried.json() == rotated.json()
        clock.advance(601)  # past the leeway: the first token again is reuse
        reused = refresh(http, client, pair["refresh_token"])
        assert reused.status_code == 400
        # The grant died with the reuse; introspection says so, and a revocation is a no-op.
        assert introspect(http, resource_server, rotated.json()["access_token"]) == {
            "active": False
        }
        revoked = http.post(
            "/revoke", data={"token": rotated.json()["refresh_token"]}, auth=client.basic
        )
        assert revoked.status_code == 200
        for body in (pair, rotated.json()):
            secrets |= {value for key, value in body.items() if key.endswith("_token")}
        secrets |= {value for value in http.cookies.values() if value}
        # The admin API, its paths holding a challenge and a username; a path matching no route.
        admin = register_client(store, scope=ADMIN_SCOPES, name="login app")
        assert admin.secret is not None
        secrets |= {admin.secret, basic(admin.id, admin.secret)}
        issued = http.post(
            "/token",
            data={"grant_type": "client_credentials", "scope": ADMIN_SCOPES},
            auth=admin.basic,
        )
        admin_token = issued.json()["access_token"]
        secrets.add(admin_token)
        bearer = {"authorization": f"Bearer {admin_token}"}
        read = http.get(f"/admin/api/v1/users/{USERNAME}", headers=bearer)
        assert read.status_code == 200, read.text
        challenge = http.get(f"/admin/api/v1/login-challenges/{CHALLENGE}", headers=bearer)
        assert challenge.status_code == 404, challenge.text
        assert http.get(f"/no/such/route/{PATH_TOKEN}").status_code == 404
        # The reuse's webhooks, delivered by the server's httpx client to its secret path.
        deadline = time.monotonic() + 10
        while len(deliveries) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert {path for path, _type, _body in deliveries} == {HOOK_PATH}, deliveries
        # httpx's own spans: an outgoing request with a query string.
        assert httpx.get(f"{hook_origin}/hook?token=outgoing-secret-value").status_code == 200
        secrets.add("outgoing-secret-value")

    finished = list(spans.get_finished_spans())
    assert len(secrets) >= 12
    leaks = [
        (span.name, text)
        for span in finished
        for text in every_value(span)
        for secret in secrets
        if secret in text
    ]
    assert leaks == [], "\n".join(f"{n}: {t[:150]}" for n, t in leaks)
    assert not any(
        key.startswith(("http.request.header.", "http.response.header."))
        for span in finished
        for key in span.attributes or {}
    )

    # /authorize: a server span named by its route, with no query string in its URL.
    authorize_span = server_spans(finished, "GET /authorize")[0]
    attributes = authorize_span.attributes or {}
    assert attributes["http.route"] == "/authorize"
    assert "?" not in str(attributes.get("http.url", attributes.get("url.full", "")))
    assert "?" not in str(attributes.get("http.target", ""))
    # A server span's target and URL are its route's template; none when no route matched.
    for route in (
        "/admin/api/v1/users/{username}",
        "/admin/api/v1/login-challenges/{challenge}",
    ):
        (admin_span,) = server_spans(finished, f"GET {route}")
        assert admin_span.attributes is not None
        assert admin_span.attributes["http.target"] == route
        assert admin_span.attributes["http.url"] == ISSUER + route
    (unmatched,) = [
        span
        for span in finished
        if span.kind is SpanKind.SERVER
        and (span.attributes or {}).get("http.status_code") == 404
        and "http.route" not in (span.attributes or {})
    ]
    assert unmatched.name == "GET"
    assert not {"http.target", "http.url", "url.path", "url.full"} & set(unmatched.attributes or {})
    # Nobody's address or User-Agent.
    personal = {"http.user_agent", "user_agent.original", "net.peer.ip", "client.address"}
    assert not any(personal & set(span.attributes or {}) for span in finished)

    # /token: one server span per request (the machine fast path included), each with its
    # exchange, each exchange with its decision and the SQL of its transaction.
    tokens = server_spans(finished, "POST /token")
    assert len(tokens) == 5
    tokens = tokens[:4]  # the fifth: the admin client's client_credentials
    outcomes = []
    for token_span in tokens:
        (exchange,) = children(finished, token_span, "baton.token.exchange")
        exchange_attributes = exchange.attributes or {}
        assert exchange_attributes["baton.client_id"] == client.id
        assert sql_children(finished, exchange), exchange_attributes
        decisions = children(finished, exchange, "baton.rules.check_code") + children(
            finished, exchange, "baton.rules.decide_refresh"
        )
        (decision,) = decisions
        outcomes.append(
            (
                exchange_attributes["baton.grant_type"],
                exchange_attributes["baton.outcome"],
                decision.name,
                (decision.attributes or {})["baton.decision"],
                (decision.attributes or {}).get("baton.reason"),
            )
        )
    assert outcomes == [
        ("authorization_code", "issued", "baton.rules.check_code", "redeem", None),
        ("refresh_token", "issued", "baton.rules.decide_refresh", "rotate", None),
        ("refresh_token", "replayed", "baton.rules.decide_refresh", "replay", None),
        ("refresh_token", "refused", "baton.rules.decide_refresh", "reuse", "reused"),
    ]
    grant_id = (children(finished, tokens[0], "baton.token.exchange")[0].attributes or {})[
        "baton.grant_id"
    ]
    (rotation,) = children(finished, tokens[1], "baton.token.exchange")
    (rotate,) = children(finished, rotation, "baton.rules.decide_refresh")
    assert (rotate.attributes or {})["baton.grant_id"] == grant_id
    # The claim: an UPDATE, or on PostgreSQL's native path the one statement of CTEs that
    # starts with it (`baton.store.sql.native.ROTATE`).
    assert any(
        (span.attributes or {})["db.operation.name"] == "UPDATE"
        or "WITH claim AS (\n    UPDATE refresh_tokens"
        in str((span.attributes or {}).get("db.query.text"))
        for span in sql_children(finished, rotation)
    )

    for route in ("POST /introspect", "POST /revoke", "POST /login"):
        (span,) = server_spans(finished, route)
        assert span.status.status_code.name != "ERROR"

    # Outgoing requests: their URL's origin alone (a webhook's path is its credential).
    (outgoing,) = [span for span in finished if span.name == "GET" and span.kind is SpanKind.CLIENT]
    hooks = [span for span in finished if span.name == "POST" and span.kind is SpanKind.CLIENT]
    assert len(hooks) >= 2
    for span in (outgoing, *hooks):
        called = (span.attributes or {}).get("url.full", (span.attributes or {}).get("http.url"))
        assert called == f"{hook_origin}/********"


def test_a_statement_that_fails_is_an_error_span_without_its_message_or_values(
    spans: InMemorySpanExporter,
) -> None:
    """SQLAlchemy's and the driver's messages quote the statement's bound values: a failed
    statement's span keeps the error's type alone, and its text only with placeholders."""
    engine = sqlalchemy.create_engine("sqlite://")
    with engine.connect() as conn, pytest.raises(sqlalchemy.exc.OperationalError) as raised:
        conn.execute(sqlalchemy.text("SELECT * FROM nowhere WHERE v = :v"), {"v": "bound-secret"})
    assert "bound-secret" in str(raised.value)
    (failed,) = [span for span in spans.get_finished_spans() if span.name == "SELECT"]
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "OperationalError"
    assert (failed.attributes or {})["db.query.text"] == "SELECT * FROM nowhere WHERE v = ?"
    assert not any(
        "bound-secret" in text or "nowhere" in text.split("=", 1)[0] for text in every_value(failed)
    )


def test_an_unexpected_error_is_known_by_its_type_alone(spans: InMemorySpanExporter) -> None:
    """An exception's message may hold anything (a value, a query string): the server span keeps
    its type, in its status and its exception event, and neither message nor stack trace."""

    async def failing(scope: Any, receive: Any, send: Any) -> None:
        raise ValueError("a message quoting bat_rt_secret-looking-value")

    traced = tracing.TracedRequests(failing)
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/boom",
        "raw_path": b"/boom",
        "query_string": b"token=query-secret",
        "headers": [(b"host", b"baton.test")],
        "scheme": "http",
        "server": ("baton.test", 80),
        "client": ("127.0.0.1", 5000),
        "root_path": "",
        "http_version": "1.1",
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        return None

    async def call() -> None:
        await traced(scope, receive, send)

    with pytest.raises(ValueError):
        anyio.run(call)
    (span,) = spans.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "ValueError"
    (event,) = span.events
    assert event.name == "exception"
    assert set(event.attributes or {}) == {"exception.type", "exception.escaped"}
    assert (event.attributes or {})["exception.type"] == "ValueError"
    assert not any("secret" in text for text in every_value(span)), list(every_value(span))


def test_writes_batched_into_one_sqlite_transaction_are_each_a_span_of_their_own_request(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    """SQLite commits the writes of one turn of the loop together (group commit), run by the
    loop in the context of the first; traced, each runs in its own caller's context."""
    store = migrated_store(tmp_path / "baton.db")

    async def create(name: str) -> None:
        with baton_spans.span(name):
            await store.create_user(name, "not-a-real-hash", 0)

    async def both() -> None:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(create, "first")
            tasks.start_soon(create, "second")
        await store.close()

    anyio.run(both)
    finished = list(spans.get_finished_spans())
    for name in ("first", "second"):
        (request,) = [span for span in finished if span.name == name]
        statements = [span.name for span in sql_children(finished, request)]
        assert statements[-2:] == ["SELECT", "INSERT"], (name, statements)


# -- tracing off ---------------------------------------------------------------------------------

BUILD_APPS = """
import sys
from baton.config import Settings
from baton.server.app import create_app
from baton.store.sql import SQLStore

def loaded():
    return len([name for name in sys.modules if name.split(".")[0] == "opentelemetry"])

store = SQLStore.open("sqlite:///{path}")
for tracing in (False, True):
    app = create_app(Settings(issuer="http://baton.test", tracing=tracing), store)
    print(loaded(), type(app.build_middleware_stack().app).__name__)
"""


def test_tracing_off_loads_no_opentelemetry_module_and_adds_no_middleware(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", BUILD_APPS.format(path=tmp_path / "baton.db")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    off, on = (line.split() for line in done.stdout.splitlines())
    assert off == ["0", "Observe"]
    # The same process, once an app is built with tracing on: the check sees them.
    assert int(on[0]) > 10 and on[1] == "TracedRequests"


class NoOpenTelemetry(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name.split(".")[0] == "opentelemetry":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


def test_serve_with_tracing_and_without_the_extra_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # As if the extra were not installed: no OpenTelemetry module loaded, none to be found.
    for name in [name for name in sys.modules if name.split(".")[0] == "opentelemetry"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [NoOpenTelemetry(), *sys.meta_path])
    result = CliRunner().invoke(
        main, ["serve", "--db", str(tmp_path / "baton.db"), "--tracing"], env={}
    )
    assert result.exit_code == 1, result.output
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: --tracing needs OpenTelemetry")
    assert "pip install 'baton-oauth[otel]'" in result.stderr


# -- OTLP ----------------------------------------------------------------------------------------


class _Receiver(http.server.BaseHTTPRequestHandler):
    bodies: list[tuple[str, str, bytes]]

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", 0))
        self.bodies.append(
            (self.path, self.headers.get("content-type", ""), self.rfile.read(length))
        )
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return None


class receiver:
    """A tiny HTTP server on a real socket, keeping the bodies POSTed to it."""

    def __enter__(self) -> tuple[str, list[tuple[str, str, bytes]]]:
        bodies: list[tuple[str, str, bytes]] = []
        handler = type("Handler", (_Receiver,), {"bodies": bodies})
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}", bodies

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_spans_are_exported_over_otlp_http_where_the_endpoint_says(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with receiver() as (url, bodies):
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
        monkeypatch.setenv("OTEL_SERVICE_NAME", "baton-under-test")
        provider = tracing.install()
        try:
            with running_app(tmp_path, tracing=True) as (http, _store, _clock):
                assert http.get("/healthz").status_code == 200
            assert provider.force_flush(5000)
        finally:
            tracing.uninstall()
    assert bodies, "nothing arrived"
    names: set[str] = set()
    services: set[str] = set()
    for path, content_type, body in bodies:
        assert (path, content_type) == ("/v1/traces", "application/x-protobuf")
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            for attribute in resource_spans.resource.attributes:
                if attribute.key == "service.name":
                    services.add(attribute.value.string_value)
            for scope_spans in resource_spans.scope_spans:
                names |= {span.name for span in scope_spans.spans}
    assert "GET /healthz" in names
    assert services == {"baton-under-test"}


def test_the_default_service_name_is_baton(tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    tracing.install(exporter, batch=False)
    try:
        with running_app(tmp_path, tracing=True) as (http, _store, _clock):
            assert http.get("/healthz").status_code == 200
    finally:
        tracing.uninstall()
    (span,) = [span for span in exporter.get_finished_spans() if span.kind is SpanKind.SERVER]
    assert span.resource.attributes["service.name"] == "baton"


def test_the_newer_conventions_attributes_are_scrubbed_alike() -> None:
    """OTEL_SEMCONV_STABILITY_OPT_IN=http makes the instrumentations record `url.path`,
    `url.full`, `client.address` and `user_agent.original`: the same rules apply to them."""
    server = {
        "http.route": "/admin/api/v1/users/{username}",
        "url.path": f"/admin/api/v1/users/{USERNAME}",
        "url.full": f"https://user:pw@baton.test:8443/admin/api/v1/users/{USERNAME}?q=1",
        "url.scheme": "https",
        "client.address": "203.0.113.7",
        "client.port": 50123,
        "user_agent.original": USER_AGENT,
        "http.response.status_code": 200,
    }
    assert tracing.scrubbed_attributes(server, SpanKind.SERVER) == {
        "http.route": "/admin/api/v1/users/{username}",
        "url.path": "/admin/api/v1/users/{username}",
        "url.full": "https://baton.test:8443/admin/api/v1/users/{username}",
        "url.scheme": "https",
        "http.response.status_code": 200,
    }
    unmatched = {"url.path": f"/x/{PATH_TOKEN}", "url.full": f"http://baton.test/x/{PATH_TOKEN}"}
    assert tracing.scrubbed_attributes(unmatched, SpanKind.SERVER) == {}
    client = {"url.full": f"https://hooks.example{HOOK_PATH}?token=t", "server.port": 443}
    assert tracing.scrubbed_attributes(client, SpanKind.CLIENT) == {
        "url.full": "https://hooks.example/********",
        "server.port": 443,
    }

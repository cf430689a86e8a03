"""Superseded access tokens at the resource server (issue 28): the `Baton-Token-Superseded`
header on every adapter, and the batched, token-free reports to Baton's `POST /token-use`.

Baton's real `/token-use` is another part of the work: here a recording endpoint stands in for
it, in front of the fake authorization server of tests/resource (feed, introspection)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from baton.resource import (
    SUPERSEDED_HEADER,
    BatonMiddleware,
    TokenUseReporter,
    Verifier,
    principal_of,
)
from tests.resource.conftest import eventually
from tests.resource.fakes import ISSUER, RS_ID, RS_SECRET, FakeAuthServer
from tests.support import ISSUER as APP_ISSUER
from tests.support import (
    first_pair,
    introspect,
    refresh,
    register_client,
    register_user,
    running_app,
)

HOUR = 3600
NEVER = 3600.0  # a report interval no test waits for: flushes are asked for


@dataclass
class TokenUseEndpoint:
    """Stands in for Baton's `POST /token-use`: records each body, answers `status` (or raises
    `error`, a network failure)."""

    status: int = 202
    error: Exception | None = None
    bodies: list[dict[str, Any]] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)

    def uses(self) -> list[dict[str, Any]]:
        return [use for body in self.bodies for use in body["uses"]]

    def handle(self, request: httpx.Request) -> httpx.Response:
        if self.error is not None:
            raise self.error
        self.raw.append(request.content)
        self.bodies.append(json.loads(request.content))
        self.authorizations.append(request.headers.get("authorization"))
        return httpx.Response(self.status, json={"accepted": len(self.bodies[-1]["uses"])})


@pytest.fixture
def endpoint() -> TokenUseEndpoint:
    return TokenUseEndpoint()


VerifierFactory = Callable[..., Verifier]


@pytest.fixture
def make_verifier(fake: FakeAuthServer, endpoint: TokenUseEndpoint) -> Iterator[VerifierFactory]:
    """A verifier on the fake authorization server, whose `/token-use` is `endpoint`."""
    made: list[Verifier] = []

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token-use":
            return endpoint.handle(request)
        return fake.handle(request)

    def factory(start: bool = True, **options: Any) -> Verifier:
        transport = httpx.MockTransport(handle)
        options.setdefault("token_use_interval", NEVER)
        # The fake issues tokens for no resource (`aud` the issuer, or none when opaque).
        options.setdefault("audience", ISSUER)
        verifier = Verifier(
            ISSUER,
            RS_ID,
            RS_SECRET,
            transport=transport,
            async_transport=transport,
            feed_transport=transport,
            clock=lambda: fake.now,
            **options,
        )
        made.append(verifier)
        if start:
            verifier.start(wait=5)
        return verifier

    yield factory
    for verifier in made:
        verifier.stop()


def supersede(fake: FakeAuthServer, verifier: Verifier, token: str, leeway: int = 30) -> int:
    """The token's companion refresh token was exchanged: the feed announces its death at the
    end of the leeway. Returns that instant."""
    body = fake.opaque[token]
    dies = int(fake.now) + leeway
    event = fake.revoke_token(token, body["jti"], body["grant_id"], effective_at=dies)
    eventually(lambda: verifier.index.applied == event["id"])
    return dies


def api(verifier: Verifier) -> Starlette:
    async def hello(request: Request) -> JSONResponse:
        return JSONResponse({"hello": principal_of(request).subject})

    app = Starlette(routes=[Route("/hello", hello)])
    app.add_middleware(BatonMiddleware, verifier=verifier)
    return app


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


# -- the header ----------------------------------------------------------------------------------


def test_a_superseded_token_is_answered_with_its_death_and_reported_by_jti_only(
    fake: FakeAuthServer, make_verifier: VerifierFactory, endpoint: TokenUseEndpoint
) -> None:
    verifier = make_verifier()
    old, other = fake.opaque_token(), fake.opaque_token()
    with TestClient(api(verifier)) as http:
        assert SUPERSEDED_HEADER not in http.get("/hello", headers=bearer(old)).headers
        dies = supersede(fake, verifier, old)
        answer = http.get("/hello", headers=bearer(old))
        assert answer.status_code == 200 and answer.json() == {"hello": "alice"}
        # RFC 8941 dictionary, one Integer member.
        assert answer.headers[SUPERSEDED_HEADER] == f"dies-at={dies}"
        assert SUPERSEDED_HEADER not in http.get("/hello", headers=bearer(other)).headers
        assert endpoint.bodies == []  # nothing sent on the request path
        assert verifier.reports is not None and verifier.reports.flush() == 1
    assert endpoint.bodies == [
        {"uses": [{"jti": fake.opaque[old]["jti"], "at": int(fake.now), "count": 1}]}
    ]
    # The resource server's own credentials, as for the feed and introspection.
    expected = "Basic " + base64.b64encode(f"{RS_ID}:{RS_SECRET}".encode()).decode()
    assert endpoint.authorizations == [expected]
    assert all(old.encode() not in raw and other.encode() not in raw for raw in endpoint.raw)
    # Once its death has come, the token is refused and nothing more is reported.
    fake.now = dies
    with TestClient(api(verifier)) as http:
        assert http.get("/hello", headers=bearer(old)).status_code == 401
    assert len(endpoint.uses()) == 1


def test_introspection_mode_reads_revocation_at(
    fake: FakeAuthServer, make_verifier: VerifierFactory, endpoint: TokenUseEndpoint
) -> None:
    """Without a feed, the introspection answer's `revocation_at` says the same."""
    verifier = make_verifier(feed=False)
    dies = int(fake.now) + 20
    token = fake.opaque_token(revocation_at=dies)
    with TestClient(api(verifier)) as http:
        first = http.get("/hello", headers=bearer(token))
        again = http.get("/hello", headers=bearer(token))  # from the cache
    for answer in (first, again):
        assert answer.headers[SUPERSEDED_HEADER] == f"dies-at={dies}"
    # The shutdown (the app's lifespan) flushed the buffer.
    assert endpoint.uses() == [{"jti": fake.opaque[token]["jti"], "at": int(fake.now), "count": 2}]


def test_a_jwt_checked_against_introspection_while_the_feed_is_down(
    fake: FakeAuthServer, make_verifier: VerifierFactory
) -> None:
    verifier = make_verifier(feed=False)
    dies = int(fake.now) + 20
    token = fake.jwt()
    fake.opaque[token] = {"active": True, "revocation_at": dies, **fake.claims()}
    principal = verifier.verify(token)
    assert principal.dies_at == dies and principal.token_format == "jwt"


def test_the_header_and_the_reports_can_each_be_turned_off(
    fake: FakeAuthServer, make_verifier: VerifierFactory, endpoint: TokenUseEndpoint
) -> None:
    quiet = make_verifier(superseded_header=False)
    token = fake.opaque_token()
    with TestClient(api(quiet)) as http:
        supersede(fake, quiet, token)
        assert SUPERSEDED_HEADER not in http.get("/hello", headers=bearer(token)).headers
    assert len(endpoint.uses()) == 1  # still reported

    silent = make_verifier(report_token_use=False)
    assert silent.reports is None and silent.health()["token_use_reports"] is None
    with TestClient(api(silent)) as http:
        supersede(fake, silent, token)
        answer = http.get("/hello", headers=bearer(token))
        assert SUPERSEDED_HEADER in answer.headers
    assert len(endpoint.uses()) == 1  # nothing more


def test_flask_and_django_answer_the_header(
    fake: FakeAuthServer, make_verifier: VerifierFactory
) -> None:
    flask = pytest.importorskip("flask")
    pytest.importorskip("django")
    from django.conf import settings  # type: ignore[import-untyped,import-not-found,unused-ignore]

    if not settings.configured:
        settings.configure(DEBUG=False, ALLOWED_HOSTS=["*"], DEFAULT_CHARSET="utf-8")
    from django.http import JsonResponse  # type: ignore[import-untyped,import-not-found,unused-ignore]
    from django.test import RequestFactory  # type: ignore[import-untyped,import-not-found,unused-ignore]

    from baton.resource import django_protect, flask_protect

    verifier = make_verifier()
    token, fresh = fake.opaque_token(), fake.opaque_token()
    dies = supersede(fake, verifier, token)

    app = flask.Flask(__name__)

    @app.get("/notes")  # type: ignore[untyped-decorator,unused-ignore]
    @flask_protect(verifier, "read")
    def notes() -> dict[str, Any]:
        return {"owner": flask.g.principal.subject}  # a plain dict: the helper makes a response

    client = app.test_client()
    answer = client.get("/notes", headers=bearer(token))
    assert answer.status_code == 200 and answer.headers[SUPERSEDED_HEADER] == f"dies-at={dies}"
    assert SUPERSEDED_HEADER not in client.get("/notes", headers=bearer(fresh)).headers

    @django_protect(verifier, "read")
    def view(request: Any) -> Any:
        return JsonResponse({"owner": request.principal.subject})

    factory = RequestFactory()
    response = view(factory.get("/notes", HTTP_AUTHORIZATION=f"Bearer {token}"))
    assert response.status_code == 200 and response[SUPERSEDED_HEADER] == f"dies-at={dies}"
    assert not view(factory.get("/notes", HTTP_AUTHORIZATION=f"Bearer {fresh}")).has_header(
        SUPERSEDED_HEADER
    )


def test_the_mcp_adapter_answers_the_header(
    fake: FakeAuthServer, make_verifier: VerifierFactory
) -> None:
    pytest.importorskip("mcp")
    from baton.resource.mcp import BatonTokenVerifier

    mcp_url = "https://mcp.example/mcp"
    verifier = make_verifier(audience=mcp_url)
    tokens = BatonTokenVerifier(verifier)
    token = fake.opaque_token(aud=mcp_url)
    dies = supersede(fake, verifier, token)

    async def sdk_app(scope: Any, receive: Any, send: Any) -> None:
        # What the SDK's authentication middleware does: the bearer token to verify_token.
        presented = dict(scope["headers"])[b"authorization"].decode().split()[1]
        assert await tokens.verify_token(presented) is not None
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=tokens.protect(sdk_app, manage_feed=False))
        async with httpx.AsyncClient(transport=transport, base_url="https://mcp.example") as http:
            return await http.post("/mcp", headers=bearer(token))

    answer = anyio.run(call)
    assert answer.status_code == 200 and answer.headers[SUPERSEDED_HEADER] == f"dies-at={dies}"


# -- the reports ---------------------------------------------------------------------------------


def test_uses_are_aggregated_per_jti_and_second(
    fake: FakeAuthServer, make_verifier: VerifierFactory, endpoint: TokenUseEndpoint
) -> None:
    verifier = make_verifier()
    first, second = fake.opaque_token(), fake.opaque_token()
    for token in (first, second):
        supersede(fake, verifier, token)
    start = int(fake.now)
    for _ in range(3):
        verifier.verify(first)
    verifier.verify(second)
    fake.now = start + 0.5  # the same second
    verifier.verify(first)
    fake.now = start + 1
    verifier.verify(first)
    assert verifier.reports is not None and verifier.reports.flush() == 6
    assert sorted(endpoint.uses(), key=lambda use: (use["at"], use["count"])) == [
        {"jti": fake.opaque[second]["jti"], "at": start, "count": 1},
        {"jti": fake.opaque[first]["jti"], "at": start, "count": 4},
        {"jti": fake.opaque[first]["jti"], "at": start + 1, "count": 1},
    ]
    assert len(endpoint.bodies) == 1
    assert verifier.reports.flush() == 0 and len(endpoint.bodies) == 1  # nothing left to send


def test_batches_hold_at_most_1000_uses_and_the_buffer_is_bounded(
    endpoint: TokenUseEndpoint,
) -> None:
    reporter = TokenUseReporter(
        ISSUER + "/token-use",
        (RS_ID, RS_SECRET),
        interval=NEVER,
        max_pending=2500,
        transport=httpx.MockTransport(endpoint.handle),
    )
    for number in range(2600):
        reporter.record(f"jti_{number}", 1_000_000)
    reporter.record("jti_0", 1_000_000)  # a known entry still counts when the buffer is full
    assert reporter.health()["dropped"] == 100 and reporter.pending() == 2501
    assert reporter.flush() == 2501
    assert [len(body["uses"]) for body in endpoint.bodies] == [1000, 1000, 500]
    assert reporter.health() == {
        "endpoint": ISSUER + "/token-use",
        "pending": 0,
        "sent": 2501,
        "dropped": 100,
        "failures": 0,
        "last_error": None,
    }
    # Long jtis (64 characters, the most Baton takes): batches stay under Baton's default
    # `--max-body-bytes` (64 KiB); a longer jti, which Baton would refuse with its whole batch,
    # is never sent.
    endpoint.raw.clear()
    for number in range(1000):
        reporter.record(f"{number:064d}", 1_000_000)
    reporter.record("x" * 65, 1_000_000)
    assert reporter.flush() == 1000 and reporter.health()["dropped"] == 101
    assert len(endpoint.raw) == 2 and all(len(raw) <= 60_000 for raw in endpoint.raw)
    reporter.stop()


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(503),
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("stalled"),
    ],
    ids=["503", "unreachable", "timeout"],
)
def test_a_failing_baton_never_fails_a_request_and_the_uses_wait_for_the_next_round(
    fake: FakeAuthServer,
    make_verifier: VerifierFactory,
    endpoint: TokenUseEndpoint,
    caplog: pytest.LogCaptureFixture,
    failure: httpx.Response | Exception,
) -> None:
    verifier = make_verifier()
    token = fake.opaque_token()
    if isinstance(failure, Exception):
        endpoint.error = failure
    else:
        endpoint.status = failure.status_code
    with TestClient(api(verifier)) as http:
        supersede(fake, verifier, token)
        for _ in range(3):
            assert http.get("/hello", headers=bearer(token)).status_code == 200
        assert verifier.reports is not None
        assert verifier.reports.flush() == 0
        health = verifier.health()["token_use_reports"]
        assert health["failures"] == 1 and health["pending"] == 3 and health["dropped"] == 0
        assert "/token-use" in health["last_error"]
        # Baton is back: the kept uses go out with the next round.
        endpoint.error, endpoint.status = None, 202
        assert verifier.reports.flush() == 3
    assert token not in caplog.text and "token use report not delivered" in caplog.text


def test_a_refused_batch_is_dropped_not_retried_forever(
    fake: FakeAuthServer, make_verifier: VerifierFactory, endpoint: TokenUseEndpoint
) -> None:
    """403: this client is not a resource server (or 404: a Baton without `/token-use`)."""
    verifier = make_verifier()
    token = fake.opaque_token()
    supersede(fake, verifier, token)
    endpoint.status = 403
    verifier.verify(token)
    verifier.verify(token)
    assert verifier.reports is not None and verifier.reports.flush() == 0
    health = verifier.reports.health()
    assert (health["dropped"], health["pending"], health["failures"]) == (2, 0, 1)


def test_the_thread_flushes_every_interval_and_stop_flushes_the_rest(
    fake: FakeAuthServer, make_verifier: VerifierFactory, endpoint: TokenUseEndpoint
) -> None:
    verifier = make_verifier(token_use_interval=0.02)
    token = fake.opaque_token()
    supersede(fake, verifier, token)
    verifier.verify(token)
    eventually(lambda: len(endpoint.uses()) == 1)

    slow = make_verifier(token_use_interval=NEVER)
    supersede(fake, slow, token)
    slow.verify(token)
    slow.verify(token)
    assert len(endpoint.uses()) == 1
    slow.stop()  # the shutdown flush
    assert endpoint.uses()[-1]["count"] == 2


def test_a_verifier_nobody_started_still_reports(
    fake: FakeAuthServer, make_verifier: VerifierFactory, endpoint: TokenUseEndpoint
) -> None:
    """Introspection only, `start()` never called: the first superseded use starts the thread."""
    verifier = make_verifier(start=False, feed=False, token_use_interval=0.02)
    token = fake.opaque_token(revocation_at=int(fake.now) + 20)
    assert verifier.verify(token).dies_at == int(fake.now) + 20
    eventually(lambda: len(endpoint.uses()) == 1)


# -- against Baton itself ------------------------------------------------------------------------


def test_against_baton_the_header_is_the_end_of_the_leeway_and_baton_takes_the_report(
    tmp_path: Path,
) -> None:
    """Baton's app in this process (introspection mode, as `tests.audience` runs it): a client
    refreshes, and its old access token, still accepted, comes back with the instant its leeway
    ends; the report goes to Baton's own `/token-use`, which counts it."""
    with running_app(tmp_path) as (http, store, clock):
        client = register_client(store)
        register_user(store)
        resource_server = register_client(store, resource_server=True)
        assert resource_server.secret is not None
        answers: list[tuple[int, Any]] = []

        def forward(request: httpx.Request) -> httpx.Response:
            answer = http.request(
                request.method,
                request.url.path,
                content=request.content,
                headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
            )
            if request.url.path == "/token-use":
                answers.append((answer.status_code, answer.json()))
            return httpx.Response(
                answer.status_code,
                headers={"content-type": answer.headers.get("content-type", "")},
                content=answer.content,
            )

        verifier = Verifier(
            APP_ISSUER,
            resource_server.id,
            resource_server.secret,
            audience=APP_ISSUER,
            feed=False,
            token_use_interval=NEVER,
            transport=httpx.MockTransport(forward),
            clock=lambda: float(clock.now()),
        )
        pair = first_pair(http, client)
        old = pair["access_token"]
        assert verifier.verify(old).dies_at is None
        assert refresh(http, client, pair["refresh_token"]).status_code == 200
        promised = introspect(http, resource_server, old)["revocation_at"]
        principal = verifier.verify(old)
        assert principal.dies_at == promised and promised > clock.now()
        try:
            http.post("/token-use", json={"uses": []}, auth=resource_server.basic)
        except NotImplementedError:
            verifier.stop()
            pytest.skip("Baton's /token-use is not written on this branch yet")
        assert verifier.reports is not None and verifier.reports.flush() == 1
        assert answers == [(202, {"accepted": 1})]
        verifier.stop()

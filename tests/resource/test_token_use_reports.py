"""Superseded access tokens at the resource server (issue 28): the `Baton-Token-Superseded`
header on every adapter, and the batched, token-free reports to Baton's `POST /token-use`: the
token's SHA-256 digest (base64url), and only for uses accepted without asking Baton (a use the
verifier introspected, Baton's `/introspect` counted already).

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

from baton.core.signals import SignalKind
from baton.core.tokens import digest, digest_text
from baton.resource import (
    SUPERSEDED_HEADER,
    BatonMiddleware,
    TokenUseReporter,
    Verifier,
    principal_of,
    reports,
)
from baton.server.runtime.signals import flush
from tests.resource.conftest import eventually
from tests.resource.fakes import ISSUER, RS_ID, RS_SECRET, FakeAuthServer
from tests.support import ISSUER as APP_ISSUER
from tests.support import (
    first_pair,
    refresh,
    register_client,
    register_user,
    running_app,
)

HOUR = 3600
NEVER = 3600.0  # a report interval no test waits for: flushes are asked for


def named(token: str) -> str:
    """How a report names a token: its SHA-256, base64url without padding."""
    return digest_text(digest(token))


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
    """The token, used once (its introspection cached: the uses that follow cost Baton
    nothing, so they are the ones reported), then its companion refresh token was exchanged:
    the feed announces its death at the end of the leeway. Returns that instant."""
    verifier.verify(token)
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


def test_a_superseded_token_is_answered_with_its_death_and_reported_by_digest_only(
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
        {"uses": [{"token_digest": named(old), "at": int(fake.now), "count": 1}]}
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


def test_introspection_mode_reads_revocation_at_and_reports_nothing(
    fake: FakeAuthServer, make_verifier: VerifierFactory, endpoint: TokenUseEndpoint
) -> None:
    """Without a feed, the introspection answer's `revocation_at` says the same; every use is
    introspected, so Baton counted each at `/introspect` and none is reported."""
    verifier = make_verifier(feed=False)
    dies = int(fake.now) + 20
    token = fake.opaque_token(revocation_at=dies)
    with TestClient(api(verifier)) as http:
        first = http.get("/hello", headers=bearer(token))
        again = http.get("/hello", headers=bearer(token))  # introspected again: no feed, no cache
    for answer in (first, again):
        assert answer.headers[SUPERSEDED_HEADER] == f"dies-at={dies}"
    assert verifier.introspections == 2
    # The shutdown (the app's lifespan) flushed the buffer: it held nothing.
    assert endpoint.bodies == []
    assert verifier.health()["token_use_reports"]["dropped"] == 0


def test_an_introspected_use_is_not_reported_and_a_cached_one_is(
    fake: FakeAuthServer, make_verifier: VerifierFactory, endpoint: TokenUseEndpoint
) -> None:
    """A superseded opaque token (Baton answers its `revocation_at`): its first use costs an
    introspection, which Baton counts itself, so the resource server does not report it (it
    would be counted twice); its second use comes from the cache, which Baton never saw, and
    is reported."""
    verifier = make_verifier()
    dies = int(fake.now) + 20
    token = fake.opaque_token(revocation_at=dies)
    assert verifier.reports is not None
    first = verifier.verify(token)
    assert first.dies_at == dies and verifier.introspections == 1
    assert verifier.reports.pending() == 0
    fake.now += 1
    second = verifier.verify(token)
    assert second.dies_at == dies and verifier.introspections == 1  # from the cache
    assert verifier.reports.pending() == 1
    assert verifier.reports.flush() == 1
    assert endpoint.uses() == [{"token_digest": named(token), "at": int(fake.now), "count": 1}]


def test_a_jwt_checked_against_introspection_while_the_feed_is_down(
    fake: FakeAuthServer, make_verifier: VerifierFactory
) -> None:
    verifier = make_verifier(feed=False)
    dies = int(fake.now) + 20
    token = fake.jwt()
    fake.opaque[token] = {"active": True, "revocation_at": dies, **fake.claims()}
    principal = verifier.verify(token)
    assert principal.dies_at == dies and principal.token_format == "jwt"
    # Introspected: Baton counted the use there, the resource server reports nothing.
    assert verifier.reports is not None and verifier.reports.pending() == 0


def test_a_jwt_checked_locally_is_reported_by_its_digest(
    fake: FakeAuthServer, make_verifier: VerifierFactory, endpoint: TokenUseEndpoint
) -> None:
    """The feed is up: a JWT is checked without a word to Baton, so a superseded one's use is
    reported, by the SHA-256 of the JWT as presented (what Baton stores it under)."""
    verifier = make_verifier()
    claims = fake.claims()
    token = fake.jwt(**claims)
    dies = int(fake.now) + 30
    event = fake.revoke_token(token, claims["jti"], claims["grant_id"], effective_at=dies)
    eventually(lambda: verifier.index.applied == event["id"])
    assert verifier.verify(token).dies_at == dies and verifier.introspections == 0
    assert verifier.reports is not None and verifier.reports.flush() == 1
    assert endpoint.uses() == [{"token_digest": named(token), "at": int(fake.now), "count": 1}]
    assert token.encode() not in endpoint.raw[0]


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


def test_uses_are_aggregated_per_token_and_second(
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
        {"token_digest": named(second), "at": start, "count": 1},
        {"token_digest": named(first), "at": start, "count": 4},
        {"token_digest": named(first), "at": start + 1, "count": 1},
    ]
    assert len(endpoint.bodies) == 1
    assert verifier.reports.flush() == 0 and len(endpoint.bodies) == 1  # nothing left to send


def test_batches_hold_at_most_1000_uses_and_the_buffer_is_bounded(
    endpoint: TokenUseEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    reporter = TokenUseReporter(
        ISSUER + "/token-use",
        (RS_ID, RS_SECRET),
        interval=NEVER,
        max_pending=2500,
        transport=httpx.MockTransport(endpoint.handle),
    )
    at = 1_767_225_570
    digests = [named(f"bat_at_{number}") for number in range(2600)]
    for token_digest in digests:
        reporter.record(token_digest, at)
    reporter.record(digests[0], at)  # a known entry still counts when the buffer is full
    assert reporter.health()["dropped"] == 100 and reporter.pending() == 2501
    # A digest is ~90 bytes of JSON: the 60,000 bytes Baton's default `--max-body-bytes`
    # (64 KiB) takes cut the batches before their 1000 entries; each is as full as that allows.
    entry = len(json.dumps({"token_digest": digests[1], "at": at, "count": 1})) + 1
    assert reporter.flush() == 2501
    assert sum(len(body["uses"]) for body in endpoint.bodies) == 2500
    assert all(len(body["uses"]) < 1000 for body in endpoint.bodies)
    assert all(len(raw) <= 60_000 for raw in endpoint.raw)
    assert all(len(raw) + entry > 60_000 for raw in endpoint.raw[:-1])
    assert reporter.health() == {
        "endpoint": ISSUER + "/token-use",
        "pending": 0,
        "sent": 2501,
        "dropped": 100,
        "failures": 0,
        "last_error": None,
    }
    # Under a larger byte limit, 1000 entries make a batch: `POST /token-use`'s `maxItems`.
    monkeypatch.setattr(reports, "MAX_BATCH_BYTES", 10**6)
    endpoint.bodies.clear()
    for token_digest in digests[:2500]:
        reporter.record(token_digest, at)
    assert reporter.flush() == 2500
    assert [len(body["uses"]) for body in endpoint.bodies] == [1000, 1000, 500]
    # What Baton would refuse with the whole batch is never sent: anything but a 43-character
    # digest (a hex digest, a `jti`).
    endpoint.bodies.clear()
    reporter.record(digest("bat_at_x").hex(), at)
    reporter.record("jti_0", at)
    reporter.record("", at)
    assert reporter.flush() == 0 and endpoint.bodies == []
    assert reporter.health()["dropped"] == 103
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
    """The app runs the feed itself (`FeedConsumer.run` on its own loop, or its thread) and never
    calls `Verifier.start()`: the first superseded use reported starts the sending thread."""
    verifier = make_verifier(start=False, token_use_interval=0.02)
    assert verifier.feed is not None
    verifier.feed.start()
    verifier.feed.wait_synced(5)
    token = fake.opaque_token()
    dies = supersede(fake, verifier, token)
    assert verifier.verify(token).dies_at == dies  # from the cache: reported
    eventually(lambda: len(endpoint.uses()) == 1)


# -- against Baton itself ------------------------------------------------------------------------


def test_against_baton_each_stale_use_is_counted_once(tmp_path: Path) -> None:
    """Baton's app in this process: a client refreshes, and its old access token, still
    accepted, comes back with the instant its leeway ends. Its first use at the resource server
    is introspected (Baton counts it there), its second is answered from the verifier's cache
    and reported to Baton's own `/token-use` by digest (Baton counts it then): two uses, two
    counts, none twice.

    The verifier's feed is a stand-in that announces nothing (Baton's is a Server-Sent Events
    stream, which this in-process app cannot serve through a mock transport): healthy, so the
    cache is trusted, and the death comes from the introspection answer's `revocation_at`."""
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

        quiet = FakeAuthServer()
        fake_credentials = "Basic " + base64.b64encode(f"{RS_ID}:{RS_SECRET}".encode()).decode()

        def feed(request: httpx.Request) -> httpx.Response:
            request.headers["authorization"] = fake_credentials
            return quiet.handle(request)

        verifier = Verifier(
            APP_ISSUER,
            resource_server.id,
            resource_server.secret,
            audience=APP_ISSUER,
            token_use_interval=NEVER,
            transport=httpx.MockTransport(forward),
            feed_transport=httpx.MockTransport(feed),
            clock=lambda: float(clock.now()),
        )
        verifier.start(wait=5)
        try:
            assert verifier.feed_healthy(), verifier.health()
            pair = first_pair(http, client)
            old = pair["access_token"]
            clock.advance(10)
            exchanged_at = clock.now()
            assert refresh(http, client, pair["refresh_token"]).status_code == 200
            clock.advance(20)
            first = verifier.verify(old)  # introspected: Baton counts it
            assert first.dies_at is not None and first.dies_at > clock.now()
            assert verifier.introspections == 1
            assert verifier.reports is not None and verifier.reports.pending() == 0
            clock.advance(30)
            second = verifier.verify(old)  # from the cache: Baton never saw it
            assert second.dies_at == first.dies_at and verifier.introspections == 1
            assert verifier.reports.flush() == 1
            assert answers == [(202, {"accepted": 1})]
        finally:
            verifier.stop()
        anyio.run(flush, http.app.state.baton.signals, store)  # type: ignore[attr-defined]
        now = clock.now()
        (health,) = anyio.run(store.client_health, [client.id], now - 86_400, now)
    stale = health.tally(SignalKind.STALE_ACCESS)
    # 20 s after the exchange at `/introspect`, 50 s after it reported: each once.
    assert stale.count == 2 and stale.delays == {20: 1, 50: 1}, stale
    assert exchanged_at + 50 == stale.last_at

"""A lost token response against a model of a rotating server, on a fake clock (issue 22).

The model follows Baton's rules: the first exchange of a refresh token rotates it; a retry inside
the leeway gets the very pair again (`replay`); a retry after the leeway is reuse and revokes the
grant. The network may swallow the first N answers *after* the server processed the request:
the client then waits for its whole read timeout, which the fake clock advances.
"""

from __future__ import annotations

import itertools
from urllib.parse import parse_qs

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from baton.client import (
    FailureEvent,
    Hooks,
    MemoryStore,
    OAuthClient,
    ReauthorizationRequired,
    Refresher,
    TokenPair,
    TokenStore,
)
from tests.client.test_unit import Clock

TOKEN_URL = "https://as.example/token"


class RotatingServer:
    def __init__(self, clock: Clock, leeway: float, stalls: int = 0) -> None:
        self.clock = clock
        self.leeway = leeway
        self.stalls = stalls
        self.exchanged_at: dict[str, float] = {}
        self.children: dict[str, dict[str, object]] = {}
        self.generation = itertools.count(1)
        self.arrivals: list[float] = []
        self.timeouts: list[float] = []
        self.reuse_detected = 0
        self.revoked = False

    def handler(self, request: httpx.Request) -> httpx.Response:
        now = self.clock()
        token = parse_qs(request.content.decode())["refresh_token"][0]
        self.arrivals.append(now)
        read_timeout = request.extensions["timeout"]["read"]
        self.timeouts.append(read_timeout)
        response = self.answer(token, now)
        if self.stalls > 0:  # processed, and the answer never comes back
            self.stalls -= 1
            self.clock.now += read_timeout
            raise httpx.ReadTimeout("timed out", request=request)
        return response

    def answer(self, token: str, now: float) -> httpx.Response:
        if self.revoked:
            return self.invalid_grant("the grant has been revoked")
        if token not in self.exchanged_at:
            generation = next(self.generation)
            self.exchanged_at[token] = now
            self.children[token] = {
                "access_token": f"at{generation}",
                "refresh_token": f"rt{generation}",
                "token_type": "Bearer",
                "expires_in": 60,
            }
            return httpx.Response(200, json=self.children[token])
        if now < self.exchanged_at[token] + self.leeway:
            return httpx.Response(200, json=self.children[token])  # the sealed replay
        self.revoked = True
        self.reuse_detected += 1
        return self.invalid_grant("refresh token was reused after its leeway (reuse detected)")

    @staticmethod
    def invalid_grant(description: str) -> httpx.Response:
        return httpx.Response(
            400, json={"error": "invalid_grant", "error_description": description}
        )

    def refresher(
        self, store: TokenStore, failures: list[FailureEvent] | None = None, **options: object
    ) -> Refresher:
        return Refresher(
            OAuthClient(TOKEN_URL, "client", "secret"),
            store,
            http=httpx.Client(transport=httpx.MockTransport(self.handler)),
            clock=self.clock,
            sleep=self.clock.sleep,
            hooks=Hooks(on_failure=None if failures is None else failures.append),
            **options,  # type: ignore[arg-type]
        )


@pytest.fixture
def clock() -> Clock:
    return Clock()


def seeded(clock: Clock) -> MemoryStore:
    body = {"access_token": "at0", "refresh_token": "rt0", "token_type": "Bearer"}
    return MemoryStore(TokenPair.from_response(body, clock()))


def test_the_default_refresher_recovers_a_stalled_answer_from_a_server_with_no_leeway_advertised(
    clock: Clock,
) -> None:
    # Issue 22: default timeout (10 s), a server that advertises no leeway (the SDK assumes 5 s)
    # and whose real leeway is 5 s. The answer to the first attempt never comes back. Before,
    # that one attempt took the whole window and the SDK gave up with the mark left behind.
    server = RotatingServer(clock, leeway=5, stalls=1)
    store = seeded(clock)
    failures: list[FailureEvent] = []
    pair = server.refresher(store, failures).refresh()
    assert pair.access_token == "at1"  # the very pair the lost answer carried
    assert store.load() == pair
    assert [f.will_retry for f in failures] == [True]
    assert len(server.arrivals) == 2 and server.reuse_detected == 0
    assert server.arrivals[1] - server.arrivals[0] < 5 / 2


@given(
    leeway=st.sampled_from([3.0, 5.0, 10.0, 600.0]) | st.floats(1.0, 3600.0),
    timeout=st.sampled_from([2.0, 10.0, 30.0]) | st.floats(0.1, 120.0),
    stalls=st.integers(0, 30),
)
@settings(max_examples=300, deadline=None)
def test_retries_fit_the_leeway_and_never_cause_a_reuse_detection(
    leeway: float, timeout: float, stalls: int
) -> None:
    clock = Clock()
    start = clock()
    server = RotatingServer(clock, leeway, stalls)
    store = seeded(clock)
    refresher = server.refresher(store, leeway=leeway, timeout=timeout)
    try:
        pair = refresher.refresh()
    except ReauthorizationRequired as exc:
        assert stalls > 0
        assert "was lost" in exc.reason and "reuse" not in exc.reason
        # Several attempts, however long the configured timeout (two in a 1 s window).
        assert len(server.arrivals) >= min(stalls, 3 if leeway >= 3 else 2)
        arrived = len(server.arrivals)
        for later in (refresher, server.refresher(store, leeway=leeway, timeout=timeout)):
            with pytest.raises(ReauthorizationRequired, match="was lost"):
                later.refresh()
        assert len(server.arrivals) == arrived  # the dead token never left again
    else:
        assert pair.access_token == "at1" and store.load() == pair
        assert len(server.arrivals) == stalls + 1
    assert server.reuse_detected == 0
    # Every attempt reached the server inside the leeway, with room to spare; none waited more
    # than the configured timeout.
    assert all(t < start + leeway - min(1.0, leeway / 5) for t in server.arrivals)
    assert all(t <= timeout for t in server.timeouts)
    if stalls == 1:
        assert len(server.arrivals) == 2  # one lost answer is always recovered


def test_a_later_process_does_not_present_a_token_past_the_leeway_its_mark_records(
    clock: Clock,
) -> None:
    server = RotatingServer(clock, leeway=3, stalls=100)
    store = seeded(clock)
    marked_at = clock()
    failing = server.refresher(store, leeway=3)

    def crash(_event: FailureEvent) -> None:
        raise SystemExit  # dies after the first attempt, the mark left in the store

    failing.hooks = Hooks(on_failure=crash)
    with pytest.raises(SystemExit):
        failing.refresh()
    left = store.load()
    assert left is not None and left.exchanging_since == marked_at
    assert left.retry_until == marked_at + 3  # the end of the leeway travels with the mark
    clock.now = marked_at + 3.5
    # Another process configured with a longer leeway: the mark's end wins, nothing is sent.
    later = server.refresher(store, leeway=600)
    with pytest.raises(ReauthorizationRequired, match="was lost") as caught:
        later.refresh()
    assert caught.value.error is None
    assert len(server.arrivals) == 1 and server.reuse_detected == 0
    with pytest.raises(ReauthorizationRequired, match="was lost"):
        later.pair()  # kept as a tombstone for every later caller


def test_a_server_without_a_leeway_is_not_sent_the_token_twice(clock: Clock) -> None:
    # Baton's `strict` policy advertises no leeway: a retry would be reuse, so none is made.
    server = RotatingServer(clock, leeway=0, stalls=1)
    store = seeded(clock)
    failures: list[FailureEvent] = []
    with pytest.raises(ReauthorizationRequired, match="without a leeway") as caught:
        server.refresher(store, failures, leeway=0).refresh()
    assert "cannot be recovered" in caught.value.reason
    assert len(server.arrivals) == 1 and server.reuse_detected == 0
    assert [f.will_retry for f in failures] == [False]


def test_a_server_without_a_leeway_is_still_retried_when_it_was_never_reached(
    clock: Clock,
) -> None:
    server = RotatingServer(clock, leeway=0)
    refused = iter([True, True])

    def flaky(request: httpx.Request) -> httpx.Response:
        if next(refused, False):
            raise httpx.ConnectError("refused", request=request)
        return server.handler(request)

    refresher = server.refresher(seeded(clock), leeway=0)
    refresher.http = httpx.Client(transport=httpx.MockTransport(flaky))
    assert refresher.refresh().access_token == "at1"


def test_an_unadvertised_server_that_refuses_the_retry_says_why(clock: Clock) -> None:
    # A server with no leeway that does not say so: the SDK's retry is taken for reuse, and the
    # error says that such a server cannot recover a lost response.
    server = RotatingServer(clock, leeway=0, stalls=1)
    with pytest.raises(ReauthorizationRequired) as caught:
        server.refresher(seeded(clock)).refresh()
    assert "reuse detected" in caught.value.reason
    assert "without a leeway" in caught.value.reason and "lost" in caught.value.reason
    assert caught.value.error == "invalid_grant"


def test_a_dead_process_mark_is_not_retried_on_a_server_without_a_leeway(clock: Clock) -> None:
    server = RotatingServer(clock, leeway=0)
    body = {"access_token": "at0", "refresh_token": "rt0", "token_type": "Bearer"}
    marked = TokenPair.from_response(body, clock()).marked_exchanging(clock(), clock() + 5)
    store = MemoryStore(marked)
    clock.now += 0.1
    with pytest.raises(ReauthorizationRequired, match="without a leeway"):
        server.refresher(store, leeway=0).refresh()
    assert server.arrivals == []


def test_unreachable_metadata_is_asked_once_per_refresh(clock: Clock) -> None:
    # The leeway is read before the token leaves, once: a metadata endpoint that does not answer
    # must not eat the retry window again between the mark and the first attempt.
    server = RotatingServer(clock, leeway=5, stalls=1)
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("oauth-authorization-server"):
            asked.append(request.url.path)
            clock.now += 1  # a slow failure
            raise httpx.ConnectError("refused", request=request)
        return server.handler(request)

    refresher = server.refresher(
        seeded(clock), metadata_url="https://as.example/.well-known/oauth-authorization-server"
    )
    refresher.http = httpx.Client(transport=httpx.MockTransport(handler))
    assert refresher.refresh().access_token == "at1"
    assert len(asked) == 1 and server.reuse_detected == 0


def test_a_refusal_inside_a_known_leeway_keeps_the_servers_reason(clock: Clock) -> None:
    # The leeway is known and not over: an invalid_grant to the retry means something else (the
    # grant was revoked meanwhile), and the server's description is passed on as it is.
    server = RotatingServer(clock, leeway=10, stalls=1)

    def handler(request: httpx.Request) -> httpx.Response:
        try:
            return server.handler(request)
        finally:
            server.revoked = True

    refresher = server.refresher(seeded(clock), leeway=10)
    refresher.http = httpx.Client(transport=httpx.MockTransport(handler))
    with pytest.raises(ReauthorizationRequired) as caught:
        refresher.refresh()
    assert caught.value.reason == "the grant has been revoked"

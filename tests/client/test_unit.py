"""Unit tests of the SDK: a fake token endpoint (httpx.MockTransport) and a fake clock."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from baton.client import (
    AuthorizationFlowError,
    BearerAuth,
    FailureEvent,
    FileStore,
    Hooks,
    LockLost,
    MemoryStore,
    OAuthClient,
    ReauthorizationRequired,
    Refresher,
    RotationEvent,
    SQLiteStore,
    TokenEndpointError,
    TokenPair,
    TokenStore,
    authorization_url,
    code_from_callback,
    exchange_code,
    is_invalid_token,
    store_pair,
)
from baton.core.pkce import s256
from tests.client.locking import most_holders_at_once

TOKEN_URL = "https://as.example/token"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class FakeServer:
    """A rotating token endpoint; `script` may override the answer to each exchange."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.generation = 0
        self.presented: list[str] = []
        self.script: list[Callable[[], httpx.Response] | None] = []
        self.lock = threading.Lock()
        self.metadata: dict[str, object] | None = None

    def pair(self) -> dict[str, object]:
        return {
            "access_token": f"at{self.generation}",
            "refresh_token": f"rt{self.generation}",
            "token_type": "Bearer",
            "expires_in": 60,
        }

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("oauth-authorization-server"):
            if self.metadata is None:
                return httpx.Response(404)
            return httpx.Response(200, json=self.metadata)
        form = parse_qs(request.content.decode())
        with self.lock:
            self.presented.append(form["refresh_token"][0])
            step = self.script.pop(0) if self.script else None
            if step is not None:
                return step()
            if form["refresh_token"][0] != f"rt{self.generation}":
                return httpx.Response(
                    400, json={"error": "invalid_grant", "error_description": "reused"}
                )
            self.generation += 1
            time.sleep(0.01)
            return httpx.Response(200, json=self.pair())

    def refresher(self, store: TokenStore, **options: object) -> Refresher:
        http = httpx.Client(transport=httpx.MockTransport(self.handler))
        return Refresher(
            OAuthClient(TOKEN_URL, "client", "secret"),
            store,
            http=http,
            clock=self.clock,
            sleep=self.clock.sleep,
            **options,  # type: ignore[arg-type]
        )


def first(clock: Clock, expires_in: int = 60) -> TokenPair:
    body = {
        "access_token": "at0",
        "refresh_token": "rt0",
        "token_type": "bearer",
        "expires_in": expires_in,
    }
    return TokenPair.from_response(body, clock())


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def server(clock: Clock) -> FakeServer:
    return FakeServer(clock)


def test_pair_from_response_and_expiry(clock: Clock) -> None:
    pair = first(clock)
    assert pair.expires_at == clock() + 60
    assert not pair.expires_within(59.9, clock())
    assert pair.expires_within(60, clock())
    kept = TokenPair.from_response({"access_token": "a", "token_type": "Bearer"}, 5.0, pair)
    assert kept.refresh_token == "rt0" and kept.rotations == 1  # RFC 6749 §6: keep the old RT
    assert TokenPair.from_json(pair.to_json()) == pair
    assert "rt0" not in repr(pair) and "at0" not in json.dumps(pair.describe())
    with pytest.raises(ValueError):
        TokenPair.from_response({"access_token": "a", "token_type": "mac"}, 0.0)


def test_refresh_persists_before_returning_and_reports(server: FakeServer, clock: Clock) -> None:
    store = MemoryStore(first(clock))
    seen_in_store: list[TokenPair | None] = []
    refresher = server.refresher(
        store, hooks=Hooks(on_rotation=lambda e: seen_in_store.append(store.load()))
    )
    new = refresher.refresh(refresher.pair())
    assert new.access_token == "at1" and store.load() == new and seen_in_store == [new]
    assert server.presented == ["rt0"]


def test_intent_is_stored_before_the_token_leaves(server: FakeServer, clock: Clock) -> None:
    store = MemoryStore(first(clock))
    observed: list[TokenPair | None] = []

    def spy() -> httpx.Response:
        observed.append(store.load())
        server.generation += 1
        return httpx.Response(200, json=server.pair())

    server.script = [spy]
    server.refresher(store).refresh()
    assert observed[0] is not None and observed[0].exchanging_since == clock()
    assert observed[0].refresh_token == "rt0"


def test_single_flight_across_threads(server: FakeServer, clock: Clock) -> None:
    store = MemoryStore(first(clock))
    refreshers = [server.refresher(store) for _ in range(4)]  # four "processes", one store
    seen = store.load()
    barrier = threading.Barrier(16)
    results: list[TokenPair] = []

    def run(i: int) -> None:
        barrier.wait()
        results.append(refreshers[i % 4].refresh(seen))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert server.presented == ["rt0"]
    assert {r.access_token for r in results} == {"at1"}


def test_lost_response_retries_the_same_token_inside_the_leeway(
    server: FakeServer, clock: Clock
) -> None:
    store = MemoryStore(first(clock))
    failures: list[FailureEvent] = []

    def lost() -> httpx.Response:
        server.generation += 1  # the server rotated...
        raise httpx.ReadTimeout("no answer")  # ...and the answer was lost

    def replay() -> httpx.Response:
        return httpx.Response(200, json=server.pair())

    server.script = [lost, lost, replay]
    refresher = server.refresher(store, leeway=10.0, hooks=Hooks(on_failure=failures.append))
    new = refresher.refresh()
    assert server.presented == ["rt0", "rt0", "rt0"]
    assert new.access_token == "at2"
    assert [f.will_retry for f in failures] == [True, True]
    assert clock() - new.obtained_at < 1  # backoff stayed small


def test_a_server_never_reached_leaves_the_token_usable(server: FakeServer, clock: Clock) -> None:
    initial = first(clock)
    store = MemoryStore(initial)
    start = clock()

    def down() -> httpx.Response:
        raise httpx.ConnectError("refused")

    server.script = [down] * 100
    refresher = server.refresher(store, leeway=3.0)
    with pytest.raises(TokenEndpointError, match="never reached"):
        refresher.refresh()
    assert clock() - start < 3.0
    assert len(server.presented) > 3  # several attempts inside the window
    # The token never left: the mark is gone, and the next call starts a new exchange with it.
    assert store.load() == initial
    server.script = []
    assert refresher.refresh().access_token == "at1"


def test_leeway_is_read_from_metadata(server: FakeServer) -> None:
    server.metadata = {"refresh_token_rotation": {"retry_policy": "replay", "leeway_seconds": 42}}
    refresher = server.refresher(
        MemoryStore(), metadata_url="https://as.example/.well-known/oauth-authorization-server"
    )
    assert refresher.retry_window() == 42
    server.metadata = {"refresh_token_rotation": {"retry_policy": "strict", "leeway_seconds": 600}}
    strict = server.refresher(
        MemoryStore(), metadata_url="https://as.example/.well-known/oauth-authorization-server"
    )
    assert strict.rotation().leeway_seconds == 0
    assert strict.retry_window() == strict.unknown_leeway_window
    plain = server.refresher(MemoryStore())
    assert plain.retry_window() == plain.unknown_leeway_window


def test_invalid_grant_ends_the_session_with_the_reason(server: FakeServer, clock: Clock) -> None:
    store = MemoryStore(first(clock))
    server.script = [
        lambda: httpx.Response(
            400, json={"error": "invalid_grant", "error_description": "revoked: reuse"}
        )
    ]
    failures: list[FailureEvent] = []
    refresher = server.refresher(store, hooks=Hooks(on_failure=failures.append))
    with pytest.raises(ReauthorizationRequired) as caught:
        refresher.refresh()
    assert caught.value.reason == "revoked: reuse" and caught.value.error == "invalid_grant"
    assert [f.kind for f in failures] == ["invalid_grant"]
    with pytest.raises(ReauthorizationRequired, match="revoked: reuse"):
        refresher.pair()
    assert server.presented == ["rt0"]


def test_other_errors_are_not_reauthorization(server: FakeServer, clock: Clock) -> None:
    server.script = [lambda: httpx.Response(401, json={"error": "invalid_client"})]
    with pytest.raises(TokenEndpointError) as caught:
        server.refresher(MemoryStore(first(clock))).refresh()
    assert caught.value.error == "invalid_client"


def test_an_interrupted_exchange_is_resumed_with_the_same_token(
    server: FakeServer, clock: Clock
) -> None:
    marked = first(clock).marked_exchanging(clock() - 1, clock() + 4)
    store = MemoryStore(marked)
    rotations: list[RotationEvent] = []
    refresher = server.refresher(store, hooks=Hooks(on_rotation=rotations.append))
    new = refresher.refresh(replace(marked, access_token="something else"))
    assert server.presented == ["rt0"] and new.access_token == "at1"
    assert [r.recovered for r in rotations] == [True]


def test_another_callers_rotation_is_reused(server: FakeServer, clock: Clock) -> None:
    old = first(clock)
    store = MemoryStore(old)
    refresher = server.refresher(store)
    new = refresher.refresh(old)
    assert refresher.refresh(old) == new  # a stale caller gets the stored pair
    assert server.presented == ["rt0"]
    clock.now += 59
    assert refresher.refresh(old, margin=5).access_token == "at2"  # ...unless it is expiring


def test_bearer_auth_refreshes_ahead_and_on_invalid_token(server: FakeServer, clock: Clock) -> None:
    store = MemoryStore(first(clock))
    refresher = server.refresher(store)
    seen: list[str] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        if request.headers["authorization"] == "Bearer at1" and len(seen) == 2:
            return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return httpx.Response(200)

    with httpx.Client(
        transport=httpx.MockTransport(api), auth=BearerAuth(refresher, margin=10)
    ) as http:
        assert http.get("https://api.example/").status_code == 200
        clock.now += 51  # inside the margin: refresh first
        response = http.get("https://api.example/")
    assert seen == ["Bearer at0", "Bearer at1", "Bearer at2"]
    assert response.status_code == 200 and len(response.history) == 1


def test_bearer_auth_retries_only_once_and_only_for_invalid_token(
    server: FakeServer, clock: Clock
) -> None:
    refresher = server.refresher(MemoryStore(first(clock)))
    calls: list[str] = []

    def api(request: httpx.Request) -> httpx.Response:
        calls.append(request.headers["authorization"])
        if request.url.path == "/scope":
            return httpx.Response(
                403, headers={"WWW-Authenticate": 'Bearer error="insufficient_scope"'}
            )
        return httpx.Response(
            401, headers={"WWW-Authenticate": 'Bearer realm="x", error="invalid_token"'}
        )

    with httpx.Client(transport=httpx.MockTransport(api), auth=BearerAuth(refresher)) as http:
        assert http.get("https://api.example/scope").status_code == 403
        assert http.get("https://api.example/").status_code == 401
    assert calls == ["Bearer at0", "Bearer at0", "Bearer at1"]
    assert is_invalid_token(401, ['Basic realm="a"', 'Bearer error="invalid_token"'])
    assert not is_invalid_token(401, ['Bearer realm="a"'])


@pytest.mark.anyio
async def test_async_auth_single_flight_across_tasks(server: FakeServer, clock: Clock) -> None:
    import asyncio

    refresher = server.refresher(MemoryStore(first(clock, expires_in=1)))

    async def api(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text=request.headers["authorization"])

    auth = BearerAuth(refresher, margin=5)
    async with httpx.AsyncClient(transport=httpx.MockTransport(api), auth=auth) as http:
        responses = await asyncio.gather(*(http.get("https://api.example/") for _ in range(20)))
    assert {r.text for r in responses} == {"Bearer at1"}
    assert server.presented == ["rt0"]


def test_authorization_url_and_callback() -> None:
    request = authorization_url(
        "https://as.example/authorize?tenant=a",
        "cid",
        "https://app/cb",
        "read",
        issuer="https://as.example",
    )
    query = parse_qs(urlsplit(request.url).query)
    assert query["tenant"] == ["a"] and query["code_challenge_method"] == ["S256"]
    assert query["code_challenge"] == [s256(request.pkce.verifier)]
    assert query["state"] == [request.state] and query["scope"] == ["read"]
    ok = f"https://app/cb?code=c1&state={request.state}&iss=https%3A%2F%2Fas.example"
    assert code_from_callback(request, ok) == "c1"
    with pytest.raises(AuthorizationFlowError, match="state"):
        code_from_callback(request, "https://app/cb?code=c1&state=other")
    with pytest.raises(AuthorizationFlowError, match="issuer"):
        code_from_callback(
            request, f"https://app/cb?code=c1&state={request.state}&iss=https://evil"
        )
    with pytest.raises(AuthorizationFlowError, match="access_denied"):
        code_from_callback(
            request,
            f"https://app/cb?error=access_denied&state={request.state}&iss=https://as.example",
        )


def test_a_callback_without_iss_is_refused_when_the_issuer_is_known() -> None:
    # RFC 9207 §2.4: a client that knows its server's issuer (the server supports `iss`) MUST
    # reject an authorization response without it: it may come from another server (mix-up).
    request = authorization_url(
        "https://as.example/authorize", "cid", "https://app/cb", issuer="https://as.example"
    )
    for callback in (
        f"https://app/cb?code=c1&state={request.state}",
        f"https://app/cb?code=c1&state={request.state}&iss=",
        f"https://app/cb?code=c1&state={request.state}&iss=https://as.example/",
        f"https://app/cb?error=access_denied&state={request.state}",
    ):
        with pytest.raises(AuthorizationFlowError, match="iss"):
            code_from_callback(request, callback)
    # Without a known issuer the SDK cannot check it, and the callback is taken as it is.
    unknown = authorization_url("https://as.example/authorize", "cid", "https://app/cb")
    assert code_from_callback(unknown, f"https://app/cb?code=c2&state={unknown.state}") == "c2"


def test_exchange_code_sends_the_verifier(clock: Clock) -> None:
    request = authorization_url("https://as.example/authorize", "cid", "https://app/cb")
    sent: list[dict[str, list[str]]] = []

    def token(r: httpx.Request) -> httpx.Response:
        sent.append(parse_qs(r.content.decode()))
        assert r.headers["authorization"].startswith("Basic ")
        return httpx.Response(
            200,
            json={
                "access_token": "a",
                "refresh_token": "r",
                "token_type": "Bearer",
                "expires_in": 5,
            },
        )

    with httpx.Client(transport=httpx.MockTransport(token)) as http:
        pair = exchange_code(
            OAuthClient(TOKEN_URL, "cid", "s"), request, "code1", http=http, clock=clock
        )
    assert pair.refresh_token == "r" and pair.expires_at == clock() + 5
    assert sent[0]["code_verifier"] == [request.pkce.verifier] and sent[0]["code"] == ["code1"]


# -- stores -------------------------------------------------------------------------------------


def test_file_store_is_private_atomic_and_fenced(tmp_path: Path, clock: Clock) -> None:
    store = FileStore(tmp_path / "dir" / "tokens.json")
    assert store.load() is None
    store_pair(store, first(clock))
    assert (store.path.stat().st_mode & 0o777) == 0o600
    assert store.load() == first(clock)
    assert [p.name for p in store.path.parent.iterdir() if p.name.endswith(".tmp")] == []
    with store.lock() as stale:
        pass
    with store.lock() as fresh, pytest.raises(LockLost, match="without holding"):
        assert fresh.fence > stale.fence
        store.save(None, stale)  # a lease older than the newest one is refused


def test_file_store_lock_excludes_threads(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "t.json")
    assert most_holders_at_once(store, threads=6, rounds=20, hold=0.001) == 1


def test_sqlite_store_lease_expiry_and_fencing(tmp_path: Path) -> None:
    now = [100.0]
    store = SQLiteStore(tmp_path / "t.db", "user-1", lease_seconds=5, clock=lambda: now[0])
    other_key = SQLiteStore(tmp_path / "t.db", "user-2", clock=lambda: now[0])
    pair = TokenPair("a", "r", 1.0)
    store_pair(store, pair)
    assert store.load() == pair and other_key.load() is None
    with store.lock() as stale:
        now[0] += 6  # the holder stalls past its lease; another process takes over
        with store.lock() as fresh:
            assert fresh.fence > stale.fence
            with pytest.raises(LockLost, match="taken over"):
                store.save(None, stale)
            with pytest.raises(LockLost, match="taken over"):
                stale.renew()
            store.save(replace(pair, access_token="b"), fresh)
    assert store.load() == replace(pair, access_token="b")

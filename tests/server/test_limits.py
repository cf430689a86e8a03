"""Rate limits (429 + Retry-After) and the login lockout that cannot lock a user out for good."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import httpx2
import pytest
import redis
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from baton.config import Settings
from baton.core.clock import FakeClock
from baton.core.tokens import TokenKind, mint
from baton.passwords import verify_password
from baton.server.app import create_app
from baton.server.endpoints import login as login_module
from baton.server.endpoints.errors import OAuthError
from baton.server.runtime import limits as limits_module
from baton.server.runtime.limits import (
    ACCOUNT_FREE_FAILURES,
    LOCKOUT_CAP_SECONDS,
    LOCKOUT_FREE_FAILURES,
    Buckets,
    Limits,
    MemoryBuckets,
    Rate,
    RedisBuckets,
    lockout_seconds,
)
from baton.server.runtime.sessions import DEVICE_COOKIE
from baton.store.sql import SQLStore
from tests.one_hop import OneHopTestClient
from tests.support import (
    ISSUER,
    PASSWORD,
    first_pair,
    hidden_inputs,
    migrated_store,
    refresh,
    register_client,
    register_user,
    running_app,
    sign_in,
)


def _own_database(url: str) -> str:
    """`url` with a Redis database of this pytest-xdist worker's own (gw0: 1, gw1: 2, ...):
    each test here empties its database first, and on a shared one that wiped an account
    lockout another worker's test was in the middle of (seen in CI: a 303 for a 429)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw"):
        return url
    return urlunsplit(urlsplit(url)._replace(path=f"/{1 + int(worker[2:]) % 15}"))


REDIS_URL = _own_database(os.environ.get("BATON_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))


@pytest.fixture(params=["memory", "redis"])
def redis_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    if request.param == "memory":
        yield None
        return
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except redis.RedisError as exc:
        message = f"Redis at {REDIS_URL} is not reachable ({exc})"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message + "; set BATON_TEST_REDIS_URL to run these tests")
    redis.Redis.from_url(REDIS_URL).flushdb()
    yield REDIS_URL


def test_per_address_and_per_client_limits(tmp_path: Path, redis_url: str | None) -> None:
    with running_app(tmp_path, rate_limit_address=2, rate_limit_client=1, redis_url=redis_url) as (
        http,
        store,
        _clock,
    ):
        client = register_client(store)
        statuses = []
        for _ in range(3):
            response = http.post(
                "/token", data={"grant_type": "client_credentials"}, auth=client.basic
            )
            statuses.append(response.status_code)
        assert statuses == [200, 200, 429]  # the client's burst of 2 is spent
        assert response.json()["error"] == "too_many_requests"
        assert "client" in response.json()["error_description"]
        assert int(response.headers["retry-after"]) >= 1
        # Unauthenticated requests count against the address (burst 4: one left).
        assert http.post("/introspect", data={"token": "x"}).status_code == 401
        limited = http.post("/revoke", data={"token": "x"})
        assert limited.status_code == 429
        assert "address" in limited.json()["error_description"]


def test_repeated_failed_sign_ins_lock_that_address_out(tmp_path: Path) -> None:
    with running_app(tmp_path, rate_limit_login=0) as (http, store, _clock):
        register_user(store)
        login = "/login?next=/authorize%3Fclient_id%3Dx"
        for _ in range(5):
            assert sign_in(http, login, password="wrong").status_code == 401
        locked = sign_in(http, login)  # even the right password waits now
        assert locked.status_code == 429
        assert "Try again in" in locked.text
        assert locked.headers["retry-after"] == "1"  # 1 s after the fifth failure, then 2, 4...


def test_the_lockout_is_per_address_capped_and_reset_by_success(
    redis_url: str | None,
) -> None:
    buckets: Buckets = RedisBuckets(redis_url) if redis_url else MemoryBuckets()
    limits = Limits(buckets, Rate(0, 0), Rate(0, 0), Rate(0, 0))

    async def scenario() -> None:
        for _ in range(8):
            await limits.login_attempt("alice", "10.0.0.66", known_device=True)
        assert await limits.login_locked_for("alice", "10.0.0.66") > 0
        # The attacker's address is locked; alice's own is not.
        assert await limits.login_locked_for("alice", "10.0.0.7") == 0
        await limits.login_succeeded("alice", "10.0.0.66", known_device=True)
        assert await limits.login_locked_for("alice", "10.0.0.66") == 0
        await buckets.close()

    anyio.run(scenario)
    assert lockout_seconds(4) == 0
    assert lockout_seconds(5) == 1
    assert lockout_seconds(7) == 4
    assert lockout_seconds(10_000) == LOCKOUT_CAP_SECONDS == 900


def test_limits_can_be_turned_off(tmp_path: Path) -> None:
    with running_app(tmp_path, rate_limit_address=0, rate_limit_client=0) as (http, store, _c):
        client = register_client(store)
        for _ in range(20):
            response = http.post(
                "/token", data={"grant_type": "client_credentials"}, auth=client.basic
            )
            assert response.status_code == 200


def test_429_is_an_oauth_error() -> None:
    from baton.server.runtime.limits import too_many

    error = too_many(0.2, "client")
    assert isinstance(error, OAuthError)
    assert error.status == 429
    assert error.headers == {"Retry-After": "1"}


# -- issue 21: L1 (the lockout raced), the per-account throttle, L3 (a public client's bucket) --


def _from_address_header(app: ASGIApp) -> ASGIApp:
    """The app, seeing each request come from the address in its `x-test-address` header."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"x-test-address":
                    scope = {**scope, "client": (value.decode(), 50000)}
        await app(scope, receive, send)

    return wrapped


@contextmanager
def addressed_app(
    directory: Path, **settings: Any
) -> Iterator[tuple[OneHopTestClient, SQLStore, FakeClock]]:
    clock = FakeClock()
    store = migrated_store(directory / "baton.db")
    app = create_app(Settings(issuer=ISSUER, **settings), store, clock)
    wrapped = _from_address_header(app)
    with OneHopTestClient(wrapped, base_url=ISSUER, follow_redirects=False) as http:
        yield http, store, clock


def attempt(http: TestClient, address: str, password: str) -> httpx2.Response:
    headers = {"x-test-address": address}
    fields = hidden_inputs(http.get("/login", headers=headers).text)
    data = {**fields, "username": "alice", "password": password}
    return http.post("/login", data=data, headers=headers)


def test_concurrent_guesses_are_counted_before_any_is_verified(
    tmp_path: Path, redis_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    verified: list[str] = []

    def counting_verify(password_hash: str | None, password: str) -> bool:
        verified.append(password)
        return verify_password(password_hash, password)

    monkeypatch.setattr(login_module, "verify_password", counting_verify)
    with running_app(tmp_path, rate_limit_login=0, redis_url=redis_url) as (http, store, _clock):
        register_user(store)
        fields = hidden_inputs(http.get("/login").text)

        def guess(n: int) -> int:
            data = {**fields, "username": "alice", "password": f"guess {n}"}
            return http.post("/login", data=data).status_code

        with ThreadPoolExecutor(max_workers=20) as pool:
            statuses = list(pool.map(guess, range(20)))
    # Five guesses are free; the others were refused before Argon2 saw them.
    assert len(verified) == LOCKOUT_FREE_FAILURES
    assert sorted(statuses) == [401] * LOCKOUT_FREE_FAILURES + [429] * 15


def test_an_attack_from_many_addresses_is_throttled_per_account_but_not_its_owners_browser(
    tmp_path: Path, redis_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The lockout reads the wall clock and its first period is 1 s: frozen here, so a slow run
    # (a loaded machine) does not see it end between the guesses and the checks below.
    frozen = time.time()
    monkeypatch.setattr(
        limits_module, "time", SimpleNamespace(time=lambda: frozen, monotonic=time.monotonic)
    )
    with addressed_app(tmp_path, rate_limit_login=0, redis_url=redis_url) as (http, store, _c):
        register_user(store)
        # alice signed in from her browser before: it keeps a device cookie.
        assert attempt(http, "192.0.2.1", PASSWORD).status_code == 303
        device = http.cookies.get(DEVICE_COOKIE, "")
        http.cookies.clear()
        # One guess from each of many addresses: no (username, address) lockout ever starts.
        for n in range(ACCOUNT_FREE_FAILURES):
            assert attempt(http, f"198.51.100.{n}", f"guess {n}").status_code == 401
        # The account now backs off, for every address and even the right password...
        refused = attempt(http, "203.0.113.9", PASSWORD)
        assert refused.status_code == 429
        assert "Try again in" in refused.text and int(refused.headers["retry-after"]) >= 1
        assert attempt(http, "203.0.113.10", "guess again").status_code == 429
        # ...but alice's own browser signs in, from anywhere.
        assert device
        http.cookies.set(DEVICE_COOKIE, device, path="/login")
        assert attempt(http, "203.0.113.11", PASSWORD).status_code == 303
        # A forged or foreign device cookie exempts nothing.
        http.cookies.clear()
        http.cookies.set(DEVICE_COOKIE, device[:-2] + "xx", path="/login")
        assert attempt(http, "203.0.113.12", PASSWORD).status_code == 429


def test_junk_naming_a_public_client_does_not_drain_its_rate_limit(
    tmp_path: Path, redis_url: str | None
) -> None:
    limits = {"rate_limit_address": 5, "rate_limit_client": 1, "redis_url": redis_url}
    with addressed_app(tmp_path, **limits) as (http, store, _clock):
        register_user(store)
        client = register_client(store, public=True)
        pair = first_pair(http, client)
        attacker = {"x-test-address": "198.51.100.66"}
        flood = []
        for n in range(12):
            junk = mint(TokenKind.REFRESH).plaintext if n % 2 else "not-a-token"
            data = {"grant_type": "refresh_token", "refresh_token": junk, "client_id": client.id}
            flood.append(http.post("/token", data=data, headers=attacker))
        statuses = [r.status_code for r in flood]
        assert statuses[:10] == [400] * 10  # invalid_grant, the flooder's address paying
        assert statuses[10:] == [429, 429]
        assert "address" in flood[-1].json()["error_description"]
        # The real client's next refresh is served: its bucket was never charged by the junk.
        response = refresh(http, client, pair["refresh_token"])
        assert response.status_code == 200, response.text
        # Its own requests still count: it meets its limit (burst 2) soon enough.
        token = response.json()["refresh_token"]
        for _ in range(10):
            response = refresh(http, client, token)
            if response.status_code == 429:
                break
            token = response.json()["refresh_token"]
        assert response.status_code == 429
        assert "client" in response.json()["error_description"]

"""Rate limits (429 + Retry-After) and the login lockout that cannot lock a user out for good."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
import redis

from baton.server.errors import OAuthError
from baton.server.limits import (
    LOCKOUT_CAP_SECONDS,
    Buckets,
    Limits,
    MemoryBuckets,
    Rate,
    RedisBuckets,
    lockout_seconds,
)
from tests.support import (
    register_client,
    register_user,
    running_app,
    sign_in,
)

REDIS_URL = os.environ.get("BATON_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


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
    from baton.server.limits import too_many

    error = too_many(0.2, "client")
    assert isinstance(error, OAuthError)
    assert error.status == 429
    assert error.headers == {"Retry-After": "1"}

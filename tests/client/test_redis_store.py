"""RedisStore against a real Redis at BATON_TEST_REDIS_URL (default redis://127.0.0.1:6379/0).

Skipped with the reason when Redis cannot be reached, except in CI (CI=true), where it fails.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator

import pytest
import redis

from baton.client import LockLost, RedisStore, TokenPair, store_pair
from tests.client.locking import most_holders_at_once
from tests.node import in_ci

URL = os.environ.get("BATON_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(URL, socket_connect_timeout=2)
    try:
        connection.ping()
    except redis.RedisError as exc:
        if in_ci():
            pytest.fail(f"Redis is required in CI at {URL}: {exc}")
        pytest.skip(f"Redis unreachable at {URL}: {exc}")
    key = "baton-test:" + secrets.token_hex(8)
    yield connection
    for suffix in ("", ":lock", ":fence"):
        connection.delete(key + suffix)
    connection.delete(*connection.keys("baton-test:*") or ["baton-test:none"])
    connection.close()


def test_redis_store_round_trip_and_exclusive_lock(client: redis.Redis) -> None:
    store = RedisStore(client, "baton-test:" + secrets.token_hex(8))
    assert store.load() is None
    pair = TokenPair("a", "r", 5.0)
    store_pair(store, pair)
    assert store.load() == pair
    assert most_holders_at_once(store, threads=5, rounds=10, hold=0.002) == 1


def test_redis_lock_expires_and_fences_a_stale_holder(client: redis.Redis) -> None:
    store = RedisStore(client, "baton-test:" + secrets.token_hex(8), lease_seconds=0.2)
    pair = TokenPair("a", "r", 5.0)
    with store.lock() as stale:
        time.sleep(0.3)  # the holder stalls past its lease
        with store.lock() as fresh:  # another process takes over
            assert fresh.fence > stale.fence
            with pytest.raises(LockLost):
                store.save(pair, stale)
            with pytest.raises(LockLost):
                stale.renew()
            store.save(pair, fresh)
            fresh.renew()
    assert store.load() == pair

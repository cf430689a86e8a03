"""Rate limits and login lockout, shared across processes through Redis when configured.

Token buckets per source address (before client authentication, so unauthenticated floods are
limited too) and per client (after it), on /token, /revoke and /introspect; per source address
on the login form. Answered with 429 and Retry-After.

Login lockout backs off exponentially per (username, source address) after repeated failures,
capped at 15 minutes and reset by a success. Keyed by the pair, an attacker who knows a username
locks out only their own address: the user, elsewhere, still signs in.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

from baton.server.errors import OAuthError

LOCKOUT_FREE_FAILURES = 5
LOCKOUT_CAP_SECONDS = 900
_FAILURE_MEMORY_SECONDS = 86_400


@dataclass(frozen=True)
class Rate:
    per_second: float
    burst: float

    @property
    def enabled(self) -> bool:
        return self.per_second > 0


class Buckets(Protocol):
    async def take(self, key: str, rate: Rate) -> float:
        """0 if a request may pass now, else the seconds until it may."""
        ...

    async def failures(self, key: str) -> tuple[int, float]:
        """(failed logins, time of the last one) for a lockout key."""
        ...

    async def fail(self, key: str) -> None: ...
    async def forget(self, key: str) -> None: ...
    async def close(self) -> None: ...


class MemoryBuckets:
    """One process's buckets (the default when no Redis is configured)."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}
        self._failures: dict[str, tuple[int, float]] = {}

    async def take(self, key: str, rate: Rate) -> float:
        now = time.monotonic()
        tokens, at = self._buckets.get(key, (rate.burst, now))
        tokens = min(rate.burst, tokens + (now - at) * rate.per_second)
        if tokens >= 1:
            self._buckets[key] = (tokens - 1, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > 100_000:  # forget idle buckets (they would be full again)
            self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < 60}
        return (1 - tokens) / rate.per_second

    async def failures(self, key: str) -> tuple[int, float]:
        return self._failures.get(key, (0, 0.0))

    async def fail(self, key: str) -> None:
        count, _ = self._failures.get(key, (0, 0.0))
        self._failures[key] = (count + 1, time.time())

    async def forget(self, key: str) -> None:
        self._failures.pop(key, None)

    async def close(self) -> None:
        pass


# KEYS[1] bucket; ARGV: rate per second, burst, now (seconds). Returns the wait in ms (0: pass).
_TAKE = """
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local rate, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = math.ceil((1 - tokens) / rate * 1000) end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return wait
"""


class RedisBuckets:
    """Buckets every server process shares (Redis server time, so clocks need not agree)."""

    def __init__(self, url: str) -> None:
        import redis.asyncio

        self._redis: Any = redis.asyncio.Redis.from_url(url)
        self._take = self._redis.register_script(_TAKE)

    async def take(self, key: str, rate: Rate) -> float:
        seconds, micros = await self._redis.time()
        wait_ms = await self._take(
            keys=[f"baton:rate:{key}"], args=[rate.per_second, rate.burst, seconds + micros / 1e6]
        )
        return float(wait_ms) / 1000

    async def failures(self, key: str) -> tuple[int, float]:
        count, last = await self._redis.hmget(f"baton:fail:{key}", "count", "last")
        return (int(count or 0), float(last or 0.0))

    async def fail(self, key: str) -> None:
        name = f"baton:fail:{key}"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hincrby(name, "count", 1)
            pipe.hset(name, "last", str(time.time()))
            pipe.expire(name, _FAILURE_MEMORY_SECONDS)
            await pipe.execute()

    async def forget(self, key: str) -> None:
        await self._redis.delete(f"baton:fail:{key}")

    async def close(self) -> None:
        await self._redis.aclose()


def too_many(wait: float, what: str) -> OAuthError:
    retry_after = max(1, int(wait + 0.999))
    return OAuthError(
        "too_many_requests",
        f"rate limit exceeded for this {what}; retry after {retry_after} s",
        429,
        {"Retry-After": str(retry_after)},
    )


def lockout_seconds(failures: int) -> float:
    """How long sign-in stays closed after `failures` consecutive failures."""
    if failures < LOCKOUT_FREE_FAILURES:
        return 0.0
    return float(min(2 ** (failures - LOCKOUT_FREE_FAILURES), LOCKOUT_CAP_SECONDS))


class Limits:
    def __init__(
        self, buckets: Buckets, per_address: Rate, per_client: Rate, login_per_address: Rate
    ) -> None:
        self.buckets = buckets
        self.per_address = per_address
        self.per_client = per_client
        self.login_per_address = login_per_address

    async def check_address(self, address: str | None, login: bool = False) -> None:
        rate = self.login_per_address if login else self.per_address
        if rate.enabled and address is not None:
            wait = await self.buckets.take(("login:" if login else "addr:") + address, rate)
            if wait > 0:
                raise too_many(wait, "address")

    async def check_client(self, client_id: str) -> None:
        if self.per_client.enabled:
            wait = await self.buckets.take("client:" + client_id, self.per_client)
            if wait > 0:
                raise too_many(wait, "client")

    async def login_locked_for(self, username: str, address: str | None) -> float:
        count, last = await self.buckets.failures(_lockout_key(username, address))
        return max(0.0, last + lockout_seconds(count) - time.time())

    async def login_failed(self, username: str, address: str | None) -> None:
        await self.buckets.fail(_lockout_key(username, address))

    async def login_succeeded(self, username: str, address: str | None) -> None:
        await self.buckets.forget(_lockout_key(username, address))


def _lockout_key(username: str, address: str | None) -> str:
    return f"{address or '-'}:{username}"

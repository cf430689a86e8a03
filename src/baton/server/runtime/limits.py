"""Rate limits and login lockouts, shared across processes through Redis when configured.

Token buckets per source address (before client authentication, so unauthenticated floods are
limited too) and per client, on /token, /revoke and /introspect; per source address on the login
form. Answered with 429 and Retry-After. A client's bucket is charged only once the request is
known to be that client's: a confidential client once authenticated, a public client (which
anyone can name) once the code or token it presented turned out to be its own; before that, a
public client's bucket is only looked at, so a flood of junk naming its id drains the flooder's
address bucket, never the client's.

Sign-in attempts are counted before the password is verified, in one atomic step with the check
of the lockout (a Redis script; a step without an `await` in one process), so concurrent guesses
cannot all pass a check that each reads before any of them failed.

Two lockouts back off exponentially (1 s, 2 s, 4 s ... capped at 15 minutes):
- per (username, source address), after 5 failures, reset by a success. An attacker who knows
  a username locks out only their own address: the user, elsewhere, still signs in.
- per account, across every address, after 20 failures remembered for an hour: a guessing
  attack spread over many addresses gets one guess per lockout period. A browser that has
  signed in as that user before (its device cookie, `baton.server.runtime.sessions`) is exempt,
  so such
  an attack does not lock the account's owner out of the browsers they use; a new browser
  waits out the lockout.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from baton.core.vocabulary import ErrorCode
from baton.server.endpoints.errors import OAuthError

LOCKOUT_FREE_FAILURES = 5
LOCKOUT_CAP_SECONDS = 900
_FAILURE_MEMORY_SECONDS = 86_400
ACCOUNT_FREE_FAILURES = 20
ACCOUNT_MEMORY_SECONDS = 3600


@dataclass(frozen=True)
class Lockout:
    """A failure counter: `free` attempts, then exponential back-off; forgotten `memory`
    seconds after the last attempt."""

    key: str
    free: int
    memory: int


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

    async def peek(self, key: str, rate: Rate) -> float:
        """0 if the bucket has a token now (none is taken), else the seconds until it has."""
        ...

    async def attempt(self, lockouts: Sequence[Lockout], now: float) -> float:
        """In one atomic step: the seconds until every lockout is open, if one is closed;
        else 0, having counted one attempt in each."""
        ...

    async def failures(self, key: str) -> tuple[int, float]:
        """(attempts counted and not forgotten, time of the last one) for a lockout key."""
        ...

    async def forget(self, key: str) -> None: ...
    async def uncount(self, key: str) -> None:
        """Takes back one attempt (it succeeded)."""
        ...

    async def close(self) -> None: ...


class MemoryBuckets:
    """One process's buckets (the default when no Redis is configured)."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}
        self._failures: dict[str, tuple[int, float]] = {}

    def _refilled(self, key: str, rate: Rate, now: float) -> float:
        """The tokens in `key`'s bucket at `now`, refilled for the time since its last use."""
        tokens, at = self._buckets.get(key, (rate.burst, now))
        return min(rate.burst, tokens + (now - at) * rate.per_second)

    async def peek(self, key: str, rate: Rate) -> float:
        tokens = self._refilled(key, rate, time.monotonic())
        return 0.0 if tokens >= 1 else (1 - tokens) / rate.per_second

    async def take(self, key: str, rate: Rate) -> float:
        now = time.monotonic()
        tokens = self._refilled(key, rate, now)
        if tokens >= 1:
            self._buckets[key] = (tokens - 1, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > 100_000:  # forget idle buckets (they would be full again)
            self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < 60}
        return (1 - tokens) / rate.per_second

    async def attempt(self, lockouts: Sequence[Lockout], now: float) -> float:
        # No `await` in here: the check and the count are one step for this process's loop.
        counts = [self._counted(lockout, now) for lockout in lockouts]
        wait = max(
            (
                last + lockout_seconds(count, lockout.free) - now
                for lockout, (count, last) in zip(lockouts, counts, strict=True)
            ),
            default=0.0,
        )
        if wait > 0:
            return wait
        for lockout, (count, _) in zip(lockouts, counts, strict=True):
            self._failures[lockout.key] = (count + 1, now)
        if len(self._failures) > 100_000:  # forget the old counters
            self._failures = {k: v for k, v in self._failures.items() if now - v[1] < 3600}
        return 0.0

    def _counted(self, lockout: Lockout, now: float) -> tuple[int, float]:
        count, last = self._failures.get(lockout.key, (0, 0.0))
        return (0, 0.0) if now - last > lockout.memory else (count, last)

    async def failures(self, key: str) -> tuple[int, float]:
        return self._failures.get(key, (0, 0.0))

    async def forget(self, key: str) -> None:
        self._failures.pop(key, None)

    async def uncount(self, key: str) -> None:
        count, last = self._failures.get(key, (0, 0.0))
        if count > 0:
            self._failures[key] = (count - 1, last)

    async def close(self) -> None:
        pass


# KEYS[1] bucket; ARGV: rate per second, burst, now (seconds). Both scripts refill the bucket
# for the time since its last use, then return the wait in ms (0: pass); only _TAKE takes.
_REFILL = """
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local rate, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
"""
_TAKE = (
    _REFILL
    + """
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = math.ceil((1 - tokens) / rate * 1000) end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return wait
"""
)
_PEEK = (
    _REFILL
    + """
if tokens >= 1 then return 0 end
return math.ceil((1 - tokens) / rate * 1000)
"""
)

# KEYS: lockout counters; ARGV: now, cap, then (free, memory) per key. Returns the wait in
# seconds as text (Lua numbers would be truncated to integers); "0" once the attempt is counted
# in every counter. The same rule as `lockout_seconds`.
_ATTEMPT = """
local now, cap = tonumber(ARGV[1]), tonumber(ARGV[2])
local wait = 0
local counts = {}
for i, key in ipairs(KEYS) do
  local free, memory = tonumber(ARGV[1 + 2 * i]), tonumber(ARGV[2 + 2 * i])
  local state = redis.call('HMGET', key, 'count', 'last')
  local count, last = tonumber(state[1]) or 0, tonumber(state[2]) or 0
  if now - last > memory then count = 0 end
  counts[i] = count
  if count >= free then
    wait = math.max(wait, last + math.min(2 ^ (count - free), cap) - now)
  end
end
if wait > 0 then return tostring(wait) end
for i, key in ipairs(KEYS) do
  redis.call('HSET', key, 'count', counts[i] + 1, 'last', tostring(now))
  redis.call('EXPIRE', key, tonumber(ARGV[2 + 2 * i]))
end
return "0"
"""

_UNCOUNT = """
local count = tonumber(redis.call('HGET', KEYS[1], 'count') or '0')
if count > 0 then redis.call('HSET', KEYS[1], 'count', count - 1) end
return 0
"""


class RedisBuckets:
    """Buckets every server process shares (Redis server time, so clocks need not agree)."""

    def __init__(self, url: str) -> None:
        import redis.asyncio

        self._redis: Any = redis.asyncio.Redis.from_url(url)
        self._take = self._redis.register_script(_TAKE)
        self._peek = self._redis.register_script(_PEEK)
        self._attempt = self._redis.register_script(_ATTEMPT)
        self._uncount = self._redis.register_script(_UNCOUNT)

    async def take(self, key: str, rate: Rate) -> float:
        seconds, micros = await self._redis.time()
        wait_ms = await self._take(
            keys=[f"baton:rate:{key}"], args=[rate.per_second, rate.burst, seconds + micros / 1e6]
        )
        return float(wait_ms) / 1000

    async def peek(self, key: str, rate: Rate) -> float:
        seconds, micros = await self._redis.time()
        wait_ms = await self._peek(
            keys=[f"baton:rate:{key}"], args=[rate.per_second, rate.burst, seconds + micros / 1e6]
        )
        return float(wait_ms) / 1000

    async def attempt(self, lockouts: Sequence[Lockout], now: float) -> float:
        args: list[float] = [now, LOCKOUT_CAP_SECONDS]
        for lockout in lockouts:
            args += [lockout.free, lockout.memory]
        wait = await self._attempt(keys=[f"baton:fail:{lock.key}" for lock in lockouts], args=args)
        return float(wait)

    async def failures(self, key: str) -> tuple[int, float]:
        count, last = await self._redis.hmget(f"baton:fail:{key}", "count", "last")
        return (int(count or 0), float(last or 0.0))

    async def forget(self, key: str) -> None:
        await self._redis.delete(f"baton:fail:{key}")

    async def uncount(self, key: str) -> None:
        await self._uncount(keys=[f"baton:fail:{key}"])

    async def close(self) -> None:
        await self._redis.aclose()


def too_many(wait: float, what: str) -> OAuthError:
    retry_after = max(1, int(wait + 0.999))
    return OAuthError(
        ErrorCode.TOO_MANY_REQUESTS,
        f"rate limit exceeded for this {what}; retry after {retry_after} s",
        429,
        {"Retry-After": str(retry_after)},
    )


def lockout_seconds(failures: int, free: int = LOCKOUT_FREE_FAILURES) -> float:
    """How long sign-in stays closed after `failures` attempts not taken back."""
    if failures < free:
        return 0.0
    return float(min(2 ** (failures - free), LOCKOUT_CAP_SECONDS))


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
        """Charges the bucket of a client the request is known to come from (authenticated)."""
        if self.per_client.enabled:
            wait = await self.buckets.take("client:" + client_id, self.per_client)
            if wait > 0:
                raise too_many(wait, "client")

    async def client_has_room(self, client_id: str) -> None:
        """Refuses a request naming a public client whose bucket is empty, taking nothing: the
        request is charged (`charge_client`) only once it proved to be the client's."""
        if self.per_client.enabled:
            wait = await self.buckets.peek("client:" + client_id, self.per_client)
            if wait > 0:
                raise too_many(wait, "client")

    async def charge_client(self, client_id: str) -> None:
        """Charges a public client's bucket for work done for it (never refuses: it is done)."""
        if self.per_client.enabled:
            await self.buckets.take("client:" + client_id, self.per_client)

    async def login_attempt(self, username: str, address: str | None, known_device: bool) -> float:
        """Counts a sign-in attempt before its password is verified; or, counting nothing, the
        seconds until this account may be tried again from here."""
        return await self.buckets.attempt(_lockouts(username, address, known_device), time.time())

    async def login_locked_for(
        self, username: str, address: str | None, known_device: bool = False
    ) -> float:
        wait = 0.0
        now = time.time()
        for lockout in _lockouts(username, address, known_device):
            count, last = await self.buckets.failures(lockout.key)
            if now - last <= lockout.memory:
                wait = max(wait, last + lockout_seconds(count, lockout.free) - now)
        return wait

    async def login_succeeded(self, username: str, address: str | None, known_device: bool) -> None:
        """The pair's lockout is reset; the account's only takes this attempt back (a success
        must not give a distributed attack a fresh budget)."""
        await self.buckets.forget(_lockout_key(username, address))
        if not known_device:
            await self.buckets.uncount(_account_key(username))


def _lockouts(username: str, address: str | None, known_device: bool) -> list[Lockout]:
    pair = Lockout(_lockout_key(username, address), LOCKOUT_FREE_FAILURES, _FAILURE_MEMORY_SECONDS)
    if known_device:
        return [pair]
    return [pair, Lockout(_account_key(username), ACCOUNT_FREE_FAILURES, ACCOUNT_MEMORY_SECONDS)]


def _lockout_key(username: str, address: str | None) -> str:
    return f"{address or '-'}:{username}"


def _account_key(username: str) -> str:
    return f"account:{username}"

"""The authorization server's signing keys (RFC 7517 JWK Set at `jwks_uri`), cached.

A token signed with a `kid` the cache does not know triggers one refetch: the server publishes
its next key before signing with it, so after a rotation the first new token finds it. Refetches
are coalesced and rate-limited (`min_refresh_interval`): a flood of tokens with invented `kid`s
costs the server at most one JWKS request per interval. Only asymmetric signing keys are kept.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import httpx
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OKPKey, RSAKey, import_key

from baton.resource.errors import VerifierUnavailable, json_object

PublicKey = ECKey | RSAKey | OKPKey

_KEY_TYPES = {"EC", "RSA", "OKP"}


class JwksCache:
    def __init__(
        self,
        url: str,
        *,
        min_refresh_interval: float = 1.0,
        max_age: float = 300.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.min_refresh_interval = min_refresh_interval
        self.max_age = max_age
        self._monotonic = monotonic
        self._keys: dict[str, PublicKey] = {}
        self._fetched_at: float | None = None
        self.fetches = 0
        self._generation = 0
        self._lock = threading.Lock()
        self._async_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    def get(self, kid: str) -> PublicKey | None:
        return self._keys.get(kid)

    @property
    def kids(self) -> list[str]:
        return list(self._keys)

    def stale(self) -> bool:
        return self._fetched_at is None or self._monotonic() - self._fetched_at > self.max_age

    @property
    def generation(self) -> int:
        return self._generation

    def load(self, document: Mapping[str, Any]) -> None:
        """Replaces the cached keys with the asymmetric signing keys of a JWK Set."""
        keys = document.get("keys")
        if not isinstance(keys, list):
            raise ValueError("a JWK Set has a `keys` array")
        found: dict[str, PublicKey] = {}
        for item in keys:
            if not isinstance(item, dict) or item.get("kty") not in _KEY_TYPES:
                continue  # never a symmetric (`oct`) key: that is how HS256 confusion starts
            kid = item.get("kid")
            if not isinstance(kid, str) or item.get("use", "sig") != "sig":
                continue
            public = {name: value for name, value in item.items() if name not in _PRIVATE}
            try:
                key = import_key(public)
            except (JoseError, ValueError, TypeError):
                continue
            if isinstance(key, ECKey | RSAKey | OKPKey):
                found[kid] = key
        self._keys = found
        self._fetched_at = self._monotonic()
        self._generation += 1
        self.fetches += 1

    def _wait_before_fetch(self) -> float:
        if self._fetched_at is None:
            return 0.0
        return max(0.0, self._fetched_at + self.min_refresh_interval - self._monotonic())

    def _needs_fetch(self, kid: str | None, seen_generation: int) -> bool:
        if self._generation != seen_generation and not self.stale():
            return False  # someone fetched after this caller looked: its answer stands
        return kid is None or kid not in self._keys or self.stale()

    @staticmethod
    def _parse(response: httpx.Response) -> Mapping[str, Any]:
        return json_object(response, "JWKS")

    def refresh_sync(self, client: httpx.Client, kid: str | None, seen_generation: int) -> None:
        with self._lock:
            if not self._needs_fetch(kid, seen_generation):
                return
            time.sleep(self._wait_before_fetch())
            try:
                response = client.get(self.url)
            except httpx.HTTPError as exc:
                raise VerifierUnavailable(f"JWKS unreachable: {exc}") from exc
            self.load(self._parse(response))

    async def refresh_async(
        self, client: httpx.AsyncClient, kid: str | None, seen_generation: int
    ) -> None:
        loop = asyncio.get_running_loop()
        lock = self._async_locks.get(loop)
        if lock is None:
            lock = self._async_locks[loop] = asyncio.Lock()
        async with lock:
            if not self._needs_fetch(kid, seen_generation):
                return
            await asyncio.sleep(self._wait_before_fetch())
            try:
                response = await client.get(self.url)
            except httpx.HTTPError as exc:
                raise VerifierUnavailable(f"JWKS unreachable: {exc}") from exc
            self.load(self._parse(response))


# Private members of EC, RSA and OKP JWKs: a JWKS should never carry them; drop them if it does.
_PRIVATE = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

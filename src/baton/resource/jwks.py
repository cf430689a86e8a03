"""The authorization server's signing keys (RFC 7517 JWK Set at `jwks_uri`), cached.

A token signed with a `kid` the cache does not know triggers one refetch: the server publishes
its next key before signing with it, so after a rotation the first new token finds it. Refetches
are coalesced and rate-limited (`min_refresh_interval`): a flood of tokens with invented `kid`s
costs the server at most one JWKS request per interval. Only asymmetric signing keys are kept.

The keys are joserfc's, imported (`load_jose`) when the first key set is loaded: a verifier of
opaque tokens needs neither the keys nor the `jose` extra.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import httpx

from baton import DISTRIBUTION
from baton.resource.errors import VerifierUnavailable, json_object

if TYPE_CHECKING:
    from baton.resource.jose import PublicKey

_KEY_TYPES = {"EC", "RSA", "OKP"}


def load_jose() -> None:
    """Imports the JOSE half of `baton.resource` (joserfc), or raises an ImportError that says
    how to install it: the `jose` extra of Baton's distribution."""
    try:
        import baton.resource.jose  # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.partition(".")[0] != "joserfc":
            raise
        raise ImportError(
            "JWT access tokens need joserfc, the `jose` extra: "
            f'pip install "{DISTRIBUTION}[jose]"; to accept opaque tokens only, build the '
            "Verifier with algorithms=()",
            name="joserfc",
        ) from exc


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
        load_jose()
        from baton.resource.jose import public_key

        found: dict[str, PublicKey] = {}
        for item in keys:
            if not isinstance(item, dict) or item.get("kty") not in _KEY_TYPES:
                continue  # never a symmetric (`oct`) key: that is how HS256 confusion starts
            kid = item.get("kid")
            if not isinstance(kid, str) or item.get("use", "sig") != "sig":
                continue
            key = public_key(item)
            if key is not None:
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

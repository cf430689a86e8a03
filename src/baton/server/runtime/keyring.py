"""The signing keys a server process uses and publishes, reloaded from the database.

`baton keys rotate` writes a new key that activates later (after `--publish-ahead`); every
process reloads the keys every `--key-reload-interval` seconds, well within that, so the new key
is in every JWKS before any process signs with it.
"""

from __future__ import annotations

from typing import Any

from baton.core.keys import (
    KeyEncryptionError,
    PrivateKey,
    SigningKey,
    StoredKey,
    generate,
    jwks,
    signing_key_at,
    unseal,
)
from baton.server.runtime.stores import SigningKeys


class KeyRing:
    def __init__(self, store: SigningKeys, kek: bytes | None) -> None:
        self._store = store
        self._kek = kek
        self._stored: list[StoredKey] = []
        self._signing: list[SigningKey] = []
        self._opened: dict[str, PrivateKey] = {}

    async def reload(self, now: int, first_key_alg: str | None = None) -> None:
        """Reads the keys; with `first_key_alg`, creates a first key if there is none."""
        stored = await self._store.signing_keys()
        if not stored and first_key_alg is not None:
            if self._kek is None:
                raise KeyEncryptionError("JWT access tokens need a key-encryption key")
            await self._store.add_signing_key(generate(first_key_alg, now, now, self._kek), None)
            stored = await self._store.signing_keys()
        if self._kek is not None:
            for key in stored:
                if key.kid not in self._opened:
                    self._opened[key.kid] = unseal(key, self._kek)
            self._signing = [SigningKey(k, self._opened[k.kid]) for k in stored]
        self._stored = stored

    def key_at(self, now: int) -> SigningKey | None:
        """The key that signs access tokens at `now` (never one made only for ID tokens)."""
        return signing_key_at([k for k in self._signing if k.stored.purpose is None], now)

    def key_for(self, alg: str, now: int) -> SigningKey | None:
        """The key that signs ID tokens and logout tokens of `alg` at `now` (OIDC Core §10.1)."""
        return signing_key_at([k for k in self._signing if k.alg == alg], now)

    def jwks(self, now: int) -> dict[str, Any]:
        return jwks(self._stored, now)

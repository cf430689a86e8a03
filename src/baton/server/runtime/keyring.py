"""The signing keys a server process uses and publishes, reloaded from the database.

`baton keys rotate` writes a new key that activates later (after `--publish-ahead`); every
process reloads the keys every `--key-reload-interval` seconds, well within that, so the new key
is in every JWKS before any process signs with it.

With a key-encryption key, OpenID Connect is on, and its clients may ask for ID tokens signed
with any of `ID_TOKEN_ALGORITHMS` (`id_token_signed_response_alg`). Each reload makes sure that
each of them has a key that stays (one with no retirement set): a missing one is created with the
purpose "id_token", so it never signs access tokens (`key_at`). When a key of that algorithm
still signs, retiring, the new one is published ahead and takes over by the time it retires.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from baton.core.keys import (
    ALGORITHMS,
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

ID_TOKEN = "id_token"  # `signing_keys.purpose` of a key made for ID tokens alone
ID_TOKEN_ALGORITHMS = ALGORITHMS  # RS256 (OIDC Core §15.1's default), ES256, Ed25519
# How long a key made to take over from a retiring one is published before it signs (like
# `baton keys rotate --publish-ahead`), unless the retiring one leaves earlier.
PUBLISH_AHEAD = 600


def missing_id_token_keys(
    stored: Sequence[StoredKey], algorithms: Sequence[str], now: int, lifetime: int
) -> list[tuple[str, int]]:
    """The ID token algorithms that no lasting key serves (no key of theirs is published or
    will be with no retirement set), each with when its new key should start signing: now when
    no key of it signs, else ahead, and no later than an ID token `lifetime` before the signing
    one retires (a token it signs must verify until it expires: `KeyRing.key_for`).

    "Now" is dated one second before the access token key that signs now, when there is one.
    Baton 0.1.0 knows no `purpose`: it signs access tokens with the newest active key of all (by
    `activates_at`). Beside this release on one database (a rolling upgrade, docs/upgrades.md)
    it would otherwise take up the ID token key made at this server's start, and with an
    `Ed25519` one, which it cannot sign with, fail every token request."""
    access = [
        k.activates_at
        for k in stored
        if k.purpose is None
        and k.activates_at <= now
        and (k.retires_at is None or now < k.retires_at)
    ]
    at_once = min(now, max(access) - 1) if access else now
    missing = []
    for alg in algorithms:
        own = [k for k in stored if k.alg == alg and (k.retires_at is None or now < k.retires_at)]
        if any(k.retires_at is None for k in own):
            continue
        signing = [k.retires_at for k in own if k.activates_at <= now and k.retires_at]
        if signing:
            missing.append((alg, max(now, min(now + PUBLISH_AHEAD, max(signing) - lifetime))))
        else:
            missing.append((alg, at_once))
    return missing


def rotation_window(
    existing: Sequence[StoredKey],
    alg: str,
    purpose: str | None,
    now: int,
    publish_ahead: int,
    keep_published: int,
) -> tuple[int, int | None]:
    """When a new key of `alg` and `purpose` (`baton keys rotate`, `POST /keys/rotate`) starts
    signing, and when the keys it replaces (as `add_signing_key` retires them: the ID-token-only
    keys of its algorithm and, for a key that signs access tokens, the others that do) leave the
    JWKS (None: it replaces none).

    Published `publish_ahead` seconds before it signs while a key of its role signs; at once
    otherwise (the first key to sign access tokens: JWT access tokens cannot wait for it). A
    replaced key stays published `keep_published` seconds (the longest lifetime of a token it
    signed) after the new one starts signing."""
    lasting = [k for k in existing if k.retires_at is None]
    replaced = [k for k in lasting if k.purpose is not None and k.alg == alg]
    if purpose is None:
        replaced += [k for k in lasting if k.purpose is None]
    ahead = any(k.purpose == purpose for k in replaced)
    activates_at = now + publish_ahead if ahead else now
    return activates_at, activates_at + keep_published if replaced else None


def key_states(keys: Sequence[StoredKey], now: int) -> dict[str, str]:
    """Each key's state at `now`, by kid: "pending" (published, not signing yet), "signing"
    (the newest active key of its role: access tokens, or an algorithm's ID-token-only keys),
    "verifying" (published so that what it signed still verifies, replaced by a newer one) or
    "retired" (no longer published)."""
    states: dict[str, str] = {}
    newest: dict[tuple[str | None, str | None], StoredKey] = {}
    for key in keys:
        if not key.published(now):
            states[key.kid] = "retired"
        elif key.activates_at > now:
            states[key.kid] = "pending"
        else:
            states[key.kid] = "verifying"
            role = (key.purpose, key.alg if key.purpose is not None else None)
            held = newest.get(role)
            if held is None or (key.activates_at, key.created_at) > (
                held.activates_at,
                held.created_at,
            ):
                newest[role] = key
    for key in newest.values():
        states[key.kid] = "signing"
    return states


def _lasting_key(keys: Sequence[SigningKey], now: int, until: int) -> SigningKey | None:
    """The newest of `keys` active at `now` that stays published until `until`; only when none
    does, the newest active one."""
    lasting = [k for k in keys if k.stored.retires_at is None or k.stored.retires_at >= until]
    return signing_key_at(lasting, now) or signing_key_at(keys, now)


class KeyRing:
    def __init__(
        self,
        store: SigningKeys,
        kek: bytes | None,
        id_token_lifetime: int = 3600,
        access_lifetime: int = 3600,
    ) -> None:
        self._store = store
        self._kek = kek
        self._id_token_lifetime = id_token_lifetime
        self._access_lifetime = access_lifetime
        self._stored: list[StoredKey] = []
        self._signing: list[SigningKey] = []
        self._opened: dict[str, PrivateKey] = {}

    async def reload(self, now: int, first_key_alg: str | None = None) -> None:
        """Reads the keys; with `first_key_alg`, creates a first key if none signs access tokens;
        with a key-encryption key, creates the missing ID token keys (`missing_id_token_keys`).

        Two processes starting at once may each create one: both are published, the newer
        signs, and neither is missing afterwards."""
        stored = await self._store.signing_keys()
        if first_key_alg is not None and not any(k.purpose is None for k in stored):
            if self._kek is None:
                raise KeyEncryptionError("JWT access tokens need a key-encryption key")
            await self._store.add_signing_key(generate(first_key_alg, now, now, self._kek), None)
            stored = await self._store.signing_keys()
        if self._kek is not None:
            self._open(stored)  # the right key-encryption key, or refuse before writing
            missing = missing_id_token_keys(
                stored, ID_TOKEN_ALGORITHMS, now, self._id_token_lifetime
            )
            for alg, activates_at in missing:
                new = generate(alg, now, activates_at, self._kek)
                await self._store.add_signing_key(dataclasses.replace(new, purpose=ID_TOKEN), None)
            if missing:
                stored = await self._store.signing_keys()
                self._open(stored)
            self._signing = [SigningKey(k, self._opened[k.kid]) for k in stored]
        self._stored = stored

    def _open(self, stored: Sequence[StoredKey]) -> None:
        assert self._kek is not None
        for key in stored:
            if key.kid not in self._opened:
                self._opened[key.kid] = unseal(key, self._kek)

    def key_at(self, now: int) -> SigningKey | None:
        """The key that signs access tokens at `now` (never one made only for ID tokens): as
        `key_for`, the newest active one that stays in the JWKS until an access token signed
        now expires; only when none does, the newest active one."""
        own = [k for k in self._signing if k.stored.purpose is None]
        return _lasting_key(own, now, now + self._access_lifetime)

    def key_for(self, alg: str, now: int) -> SigningKey | None:
        """The key that signs ID tokens and logout tokens of `alg` at `now` (OIDC Core §10.1):
        the newest active one of that algorithm, whatever its purpose, that stays in the JWKS
        until an ID token signed now expires (OIDC Core §10.1.1: a relying party must be able to
        verify it); only when none does, the newest active one."""
        own = [k for k in self._signing if k.alg == alg]
        return _lasting_key(own, now, now + self._id_token_lifetime)

    def jwks(self, now: int) -> dict[str, Any]:
        return jwks(self._stored, now)

"""The store the server holds (`Store`): every consumer's protocol at once, and the runtime's own.

Each consumer declares what it asks of the store next to itself: the endpoints
(`baton.server.endpoints.stores`: the token, authorization, login-challenge, second-factor,
upstream and sign-out ones), sessions (`SessionStore`), the admin console and admin API
(`AdminSource`, `ApiKeeper`),
observability (`ObservedStore`: webhook delivery's `Outbox`, the metrics' `Stats`), CORS
(`BrowserOrigins`), and here the key ring's `SigningKeys`. `Store` is their sum, plus what the
app itself calls (the purge, the close); `create_app` takes one, and `baton.store.sql.SQLStore`
is one.
"""

from __future__ import annotations

from typing import Protocol

from baton.core.keys import StoredKey
from baton.server.admin.queries import AdminSource, ApiKeeper
from baton.server.endpoints.clientauth import AssertionLedger
from baton.server.endpoints.consent import ScopeDescriptions
from baton.server.endpoints.stores import (
    AccountSecurityStore,
    AuthorizationStore,
    ChallengeKeeper,
    ClientLookup,
    EverywhereStore,
    MfaStore,
    Readiness,
    Registrations,
    RevocationFeed,
    SignOut,
    TokenLifecycle,
    TokenRevocation,
    UpstreamStore,
    UserInfoStore,
)
from baton.server.observability.install import ObservedStore
from baton.server.runtime.cors import BrowserOrigins
from baton.server.runtime.documents import DocumentStore
from baton.server.runtime.sessions import SessionStore
from baton.server.runtime.signals import SignalStore


class SigningKeys(Protocol):
    """The key ring (`baton.server.runtime.keyring`): the stored signing keys."""

    async def signing_keys(self) -> list[StoredKey]: ...

    async def add_signing_key(self, key: StoredKey, retire_others_at: int | None) -> None:
        """Stores a new key; older keys without a retirement get `retire_others_at`."""
        ...


class Store(
    ClientLookup,
    AssertionLedger,
    TokenLifecycle,
    TokenRevocation,
    RevocationFeed,
    AuthorizationStore,
    UserInfoStore,
    Readiness,
    SignOut,
    SessionStore,
    SigningKeys,
    BrowserOrigins,
    ObservedStore,
    AdminSource,
    ScopeDescriptions,
    ChallengeKeeper,
    ApiKeeper,
    AccountSecurityStore,
    MfaStore,
    UpstreamStore,
    EverywhereStore,
    Registrations,
    DocumentStore,
    SignalStore,
    Protocol,
):
    async def purge(self, now: int, retention: int, batch: int = 500) -> int:
        """Deletes one bounded batch of expired data (sealed responses past their leeway;
        tokens, codes and dead grants past their life plus `retention` seconds); returns the
        rows changed."""
        ...

    async def close(self) -> None: ...

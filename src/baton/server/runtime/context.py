"""What every endpoint shares: settings, store and clock, reached through the app state."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import Request

from baton.config import Settings
from baton.core.clock import Clock
from baton.core.pairs import AccessTokenFormat
from baton.server.endpoints.clientauth import ClientCache
from baton.server.runtime.documents import ClientDocuments
from baton.server.runtime.keyring import KeyRing
from baton.server.runtime.limits import Limits
from baton.server.runtime.signals import SignalBook
from baton.server.runtime.stores import Store


@dataclass(frozen=True)
class Baton:
    settings: Settings
    store: Store
    clock: Clock
    keys: KeyRing
    access_format: AccessTokenFormat
    limits: Limits
    clients: ClientCache = field(default_factory=ClientCache)
    # OpenID Connect needs signing keys, so a key-encryption key; its pairwise subjects' salt
    # is derived from that key (`baton.core.subject`). None: OpenID Connect is off.
    pairwise_salt: bytes | None = None
    # Clients of client ID metadata documents (`documents`): fetched, validated and stored as
    # `/authorize` meets their URLs.
    documents: ClientDocuments = field(init=False, repr=False, compare=False)
    # Integration signals this process counted and has not written yet (issue 28).
    signals: SignalBook = field(default_factory=SignalBook, repr=False, compare=False)

    def __post_init__(self) -> None:
        documents = ClientDocuments(
            self.settings, self.store, self.clock, self.clients.forget, oidc=self.oidc
        )
        object.__setattr__(self, "documents", documents)

    @property
    def oidc(self) -> bool:
        """OpenID Connect is offered: the server can keep signing keys."""
        return self.pairwise_salt is not None


def baton(request: Request) -> Baton:
    found: Baton = request.app.state.baton
    return found


def source_address(request: Request) -> str | None:
    return request.client.host if request.client else None

"""The storage interface: what the server asks of a database, and nothing more.

Each method is one transaction. The rotation (`exchange`), reuse revocation and code redemption
read their facts, let `baton.core.rules` decide, and apply the decision in that same
transaction, so no decision is ever taken on a state another request has already changed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from baton.core.facts import AccessFacts, GrantFacts, RefreshFacts
from baton.core.keys import StoredKey
from baton.core.pairs import IssuedPair, MintedPair
from baton.core.policy import Policy
from baton.core.rules import CodeProblem, CodeRedemption, Reason
from baton.core.watermark import Gap


@dataclass(frozen=True, slots=True)
class Client:
    id: str
    name: str
    secret_digest: bytes | None = field(repr=False)
    is_public: bool
    is_resource_server: bool
    redirect_uris: tuple[str, ...]
    scope: str
    created_at: int
    disabled_at: int | None = None
    # RFC 8707: a resource server's identifier URI; the resources this client may ask for.
    resource_uri: str | None = None
    allowed_resources: tuple[str, ...] = ()
    # Honour remembered consent for this public client (RFC 8252 §8.6: an operator's choice).
    remember_consent: bool = False
    # OAuth 2.1: PKCE required (new clients); an operator may opt a confidential client out.
    require_pkce: bool = True


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    password_hash: str = field(repr=False)
    is_admin: bool


@dataclass(frozen=True, slots=True)
class Consent:
    """A user's recorded decision to let a client have `scope` at `resources` (RFC 8707): the
    last request the user allowed for that client. Nothing else counts as consent."""

    scope: frozenset[str]
    resources: frozenset[str]

    def covers(self, scope: frozenset[str], resources: tuple[str, ...]) -> bool:
        """The user already allowed all of this: its scope and its resources alike."""
        return scope <= self.scope and self.resources.issuperset(resources)


@dataclass(frozen=True, slots=True)
class NewCode:
    digest: bytes = field(repr=False)
    client_id: str
    user_id: int
    redirect_uri: str | None
    scope: str
    code_challenge: str | None
    created_at: int
    expires_at: int
    resources: tuple[str, ...] = ()  # RFC 8707 resources the user consented to for this code


@dataclass(frozen=True, slots=True)
class SecurityEvent:
    id: int
    kind: str
    grant_id: str | None
    client_id: str | None
    subject: str | None
    generation: int | None
    occurred_at: int
    source_address: str | None
    detail: str | None


@dataclass(frozen=True, slots=True)
class GrantSummary:
    grant: GrantFacts
    generations: int  # refresh tokens issued so far
    last_issued_at: int | None


@dataclass(frozen=True, slots=True)
class RevocationEvent:
    """An entry of the revocation feed: which tokens die, when, and until when it matters."""

    id: int
    kind: str  # "access_token" (one token) or "grant" (every token of the grant)
    grant_id: str
    jti: str | None
    token_digest: bytes | None
    effective_at: int
    expires_at: int
    created_at: int


class ClientDisabled(Exception):
    """The client was disabled after the request authenticated and before the store call that
    would have given it a new grant: nothing was done (the caller answers `invalid_client`)."""


class ResourceUriTaken(Exception):
    """Another client is already registered with this resource URI."""


@dataclass(frozen=True, slots=True)
class FeedRead:
    """One look at the revocation feed (see `baton.core.watermark`): the events read after a cursor
    (at most the limit), with those that filled a gap given in, oldest first; the largest id
    read; the gaps at or below it that may still fill; whether the limit was reached."""

    events: list[RevocationEvent]
    read_to: int
    gaps: list[Gap]
    full: bool


Sealer = Callable[[IssuedPair], bytes]
"""Seals a child pair under a key only the presented refresh token can derive."""


@dataclass(frozen=True, slots=True)
class ExchangeAsk:
    """A refresh request, as far as the store needs it."""

    digest: bytes = field(repr=False)
    client_id: str
    scope: frozenset[str] | None  # a narrower scope for the new access token (RFC 6749 §6)
    now: int
    source_address: str | None
    # The pair to issue; its `resources` (RFC 8707) narrow the grant's, checked in the exchange.
    child: MintedPair
    seal: Sealer | None  # present under the `replay` policy
    # The client as it authenticated the request, when that was from the process's cache: the
    # exchange first confirms the client's row is unchanged (see `ClientChanged`).
    client: Client | None = None


@dataclass(frozen=True, slots=True)
class Issued:
    pair: IssuedPair
    retry: bool = False  # a sibling pair for a retry in the leeway (`fork`), not a rotation


@dataclass(frozen=True, slots=True)
class Replayed:
    sealed_response: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Refused:
    reason: Reason
    revoked_grant: bool = False  # this refusal (a reuse) revoked the grant


@dataclass(frozen=True, slots=True)
class ScopeRefused:
    """The requested scope exceeds what the grant holds."""


@dataclass(frozen=True, slots=True)
class TargetRefused:
    """A `resource` the request named is not one the grant holds (RFC 8707 §2: `invalid_target`):
    a token is for the grant's resources or fewer, never more (RFC 9700 §2.3). Nothing was done."""


TARGET_REFUSED = TargetRefused()


@dataclass(frozen=True, slots=True)
class ClientChanged:
    """The client's row is no longer the one that authenticated the request: its secret was
    rotated, it was disabled, or it changed kind. Nothing was done; the caller authenticates the
    request again on a fresh read and asks again.

    A store call given the client a request authenticated as (`ExchangeAsk.client`,
    `Store.find_token`, `Store.revoke_token`) reads that client's row before it does anything,
    in the transaction of a write (in the statement that reads the token it asks about), and
    compares its secret digest, kind and `disabled_at` with the client's. That is what lets a
    server process authenticate against the clients it has cached and still refuse a client
    disabled, or a secret rotated, in any process, for every request that reaches the store
    after that change committed. (A request whose store call read the row just before the change
    committed is done, as it was when each request read the client first and worked after.)"""


CLIENT_CHANGED = ClientChanged()

ExchangeResult = Issued | Replayed | Refused | ScopeRefused | TargetRefused | ClientChanged


@dataclass(frozen=True, slots=True)
class CodeRefused:
    problem: CodeProblem
    revoked_grant: bool = False  # this refusal (a used code) revoked the grant it produced


RedeemResult = Issued | CodeRefused | TargetRefused


RevokeResult = Literal["grant", "access_token", "other_client", "nothing"]
"""What a revocation did; RFC 7009 answers 200 in every case but `other_client` (nothing was
done: the token is another client's, and §2.1 has the request refused)."""

TokenFacts = AccessFacts | RefreshFacts


class Store(Protocol):
    policy: Policy

    async def close(self) -> None: ...

    # -- set-up ----------------------------------------------------------------------------
    async def schema_is_current(self) -> bool: ...
    async def counts(self) -> tuple[int, int]:
        """(clients, users): an empty database makes `baton serve` print the first steps."""
        ...

    # -- clients, users, consent -------------------------------------------------------------
    async def create_client(self, client: Client) -> None:
        """Raises `ResourceUriTaken` if another client is registered with its `resource_uri`."""
        ...

    async def get_client(self, client_id: str) -> Client | None: ...
    async def registered_resources(self) -> frozenset[str]:
        """Every registered resource server's `resource_uri` (RFC 8707)."""
        ...

    async def create_user(
        self, username: str, password_hash: str, now: int, *, admin: bool = False
    ) -> User: ...
    async def get_user(self, username: str) -> User | None: ...
    async def get_user_by_id(self, user_id: int) -> User | None: ...
    async def consent(self, user_id: int, client_id: str) -> Consent | None:
        """The user's recorded decision for the client, None if there is none (never asked, or
        forgotten when one of their grants was revoked: see `revoke_grant`)."""
        ...

    async def remember_consent(
        self,
        user_id: int,
        client_id: str,
        scope: frozenset[str],
        resources: tuple[str, ...],
        now: int,
    ) -> None:
        """Records that the user allowed exactly this request, in place of any earlier record:
        a remembered consent covers what the user saw on one page, never a combination of
        pages they never saw together."""
        ...

    async def resource_names(self, uris: tuple[str, ...]) -> dict[str, str]:
        """The name of each registered resource server whose `resource_uri` is in `uris`."""
        ...

    # -- token lifecycle (the rules) ---------------------------------------------------------
    async def save_code(self, code: NewCode) -> None: ...
    async def redeem_code(
        self,
        digest: bytes,
        ask: CodeRedemption,
        pair: MintedPair,
        now: int,
        source_address: str | None,
    ) -> RedeemResult: ...
    async def issue_client_credentials(
        self,
        client_id: str,
        scope: str,
        access: MintedPair,
        now: int,
        resources: tuple[str, ...] = (),
    ) -> IssuedPair:
        """A grant of `resources` (RFC 8707; checked against the client's allowed resources by
        the caller) and its access token."""
        ...

    async def exchange(self, ask: ExchangeAsk) -> ExchangeResult: ...
    async def find_token(
        self, client: Client, digest: bytes | None, is_refresh: bool
    ) -> TokenFacts | ClientChanged | None:
        """The facts of a token `client` presented (None: unknown, or no digest to look up),
        once `client`'s row is confirmed unchanged."""
        ...

    async def revoke_token(
        self, client: Client, digest: bytes | None, is_refresh: bool, now: int
    ) -> RevokeResult | ClientChanged:
        """RFC 7009: a refresh token revokes its grant, an access token only itself; first
        `client`'s row is confirmed unchanged (a None digest only confirms it)."""
        ...

    async def get_grant(self, grant_id: str) -> GrantFacts | None: ...
    async def revoke_grant(self, grant_id: str, now: int, reason: str) -> bool:
        """Revokes the grant; unless `reason` is "revoked", the RFC 7009 revocation of a token by
        the client itself, the user's remembered consent for that client goes with it, so
        the next authorization asks the user again."""
        ...

    async def list_grants(
        self, client_id: str | None = None, username: str | None = None
    ) -> list[GrantSummary]: ...
    async def security_events(self) -> list[SecurityEvent]: ...
    async def add_signing_key(self, key: StoredKey, retire_others_at: int | None) -> None:
        """Stores a new key; older keys without a retirement get `retire_others_at`."""
        ...

    async def signing_keys(self) -> list[StoredKey]: ...

    async def wait_for_revocations(self, timeout: float) -> float:
        """Waits until new feed events may exist (at most `timeout`); returns seconds waited."""
        ...

    async def revocations_after(self, since: int, limit: int) -> list[RevocationEvent]:
        """Feed events with an id above `since`, oldest first (as they are: no gap is checked)."""
        ...

    async def read_feed(self, after: int, limit: int, gaps: Sequence[Gap] = ()) -> FeedRead:
        """Feed events with an id above `after` (at most `limit`), and the gaps among them
        and in `gaps` (open ones from an earlier read) checked: those that filled are read,
        those that may still fill returned. `baton.core.watermark.watermark` gives the cursor a
        reader may resume from."""
        ...

    async def purge(self, now: int, retention: int, batch: int = 500) -> int:
        """Deletes one bounded batch of expired data (sealed responses past their leeway;
        tokens, codes and dead grants past their life plus `retention` seconds); returns the
        rows changed."""
        ...

"""What each endpoint asks of the store: one small protocol per consumer.

The endpoints reach the store as `Baton.store` (`baton.server.runtime.stores.Store`, which is all
of these at once); each protocol here says which methods one of them calls, so that a change of
the store's surface shows which endpoint it concerns. `baton.store.sql.SQLStore` implements them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from baton.core.facts import AccessFacts
from baton.core.pairs import IssuedPair, MintedPair
from baton.core.policy import Policy
from baton.core.rules import CodeRedemption
from baton.core.upstream import SignInOutcome, UpstreamIdentity, UpstreamProvider
from baton.core.watermark import Gap
from baton.store.admin import Actor
from baton.store.base import (
    Challenge,
    Client,
    ClientChanged,
    Consent,
    ExchangeAsk,
    ExchangeResult,
    FeedRead,
    MfaState,
    NewCode,
    NotHonoured,
    RedeemResult,
    RevokeResult,
    SignedOut,
    TokenFacts,
    User,
)
from baton.store.sql.registrations import DynamicClient
from baton.store.sql.tombstones import Deleted


class ClientLookup(Protocol):
    """Client authentication (`clientauth`): the client a request names."""

    async def get_client(self, client_id: str) -> Client | None: ...


class TokenLifecycle(Protocol):
    """/token (`token`): each grant type, one transaction that applies the rules."""

    async def redeem_code(
        self,
        digest: bytes,
        ask: CodeRedemption,
        pair: MintedPair,
        now: int,
        source_address: str | None,
        policy: Policy | None = None,
    ) -> RedeemResult: ...

    async def exchange(self, ask: ExchangeAsk) -> ExchangeResult: ...

    async def issue_client_credentials(
        self,
        client_id: str,
        scope: str,
        access: MintedPair,
        now: int,
        resources: tuple[str, ...] = (),
        note_use: bool = True,
        policy: Policy | None = None,
    ) -> IssuedPair:
        """A grant of `resources` (RFC 8707; checked against the client's allowed resources by
        the caller) and its access token; `note_use`: record the client's first use (a dynamic
        registration's, which its expiry reads); `policy`: the client's in force (None: the
        store's)."""
        ...


class TokenLookup(Protocol):
    """/introspect (`revocation`) and the feed stream's check of its client (`feed`)."""

    async def find_token(
        self, client: Client, digest: bytes | None, is_refresh: bool, now: int
    ) -> TokenFacts | ClientChanged | None:
        """The facts of a token `client` presented (None: unknown, or no digest to look up),
        once `client`'s row is confirmed unchanged; a refresh token with its lineage when
        `fork` may have applied to its owner's tokens by `now`."""
        ...


class TokenRevocation(TokenLookup, Protocol):
    """/revoke (RFC 7009, `revocation`)."""

    async def revoke_token(
        self, client: Client, digest: bytes | None, is_refresh: bool, now: int
    ) -> RevokeResult | ClientChanged:
        """A refresh token revokes its grant, an access token only itself; first `client`'s
        row is confirmed unchanged (a None digest only confirms it)."""
        ...


class RevocationFeed(TokenLookup, Protocol):
    """/revocations and /revocations/stream (`feed`)."""

    async def read_feed(self, after: int, limit: int, gaps: Sequence[Gap] = ()) -> FeedRead:
        """Feed events with an id above `after` (at most `limit`), and the gaps among them
        and in `gaps` (open ones from an earlier read) checked: those that filled are read,
        those that may still fill returned. `baton.core.watermark.watermark` gives the cursor a
        reader may resume from."""
        ...

    async def wait_for_revocations(self, timeout: float) -> float:
        """Waits until new feed events may exist (at most `timeout`); returns seconds waited."""
        ...


class UserInfoStore(Protocol):
    """/userinfo (`userinfo`): the access token a bearer presents, its client and its user."""

    async def get_client(self, client_id: str) -> Client | None: ...

    async def find_access_token(self, digest: bytes) -> AccessFacts | None:
        """The facts of the access token stored under `digest` (None: unknown), whoever holds
        it: a bearer token authenticates no client (RFC 6750 §1)."""
        ...

    async def get_user_by_id(self, user_id: int) -> User | None: ...


class AuthorizationStore(Protocol):
    """/authorize and sign-in (`authorize`): users, their consent, codes."""

    async def get_user(self, username: str) -> User | None: ...

    async def get_user_by_id(self, user_id: int) -> User | None: ...

    async def consent(self, user_id: int, client_id: str) -> Consent | None:
        """The user's recorded decision for the client, None if there is none (never asked, or
        forgotten when one of their grants was revoked)."""
        ...

    async def remember_consent(
        self,
        user_id: int,
        client_id: str,
        scope: frozenset[str],
        resources: tuple[str, ...],
        now: int,
    ) -> None:
        """Records that the user allowed exactly this request, in place of any earlier record."""
        ...

    async def resource_names(self, uris: tuple[str, ...]) -> dict[str, str]:
        """The name of each registered resource server whose `resource_uri` is in `uris`."""
        ...

    async def save_code(self, code: NewCode) -> None: ...


class Readiness(Protocol):
    """What `/readyz` (`baton.server.endpoints.health`) asks of the store."""

    async def schema_problem(self) -> str | None:
        """None when the database answers with the schema of this code's newest migration (or
        a later release's that holds it), else one line saying what is wrong."""
        ...


class SignOut(Protocol):
    """/session/end and `/logout` (`logout`): sessions ended at the provider, with their grants."""

    async def session_sid(self, digest: bytes, now: int) -> str | None:
        """The public `sid` of the live session whose cookie digest is `digest`."""
        ...

    async def end_op_session(self, digest: bytes, now: int) -> SignedOut:
        """Ends the session, revokes its grants without `offline_access` and writes a
        back-channel logout for each client with a grant from it, in one transaction."""
        ...

    async def end_user_op_sessions(self, user_id: int, now: int) -> SignedOut:
        """The same for every live session of the user ("sign out everywhere")."""
        ...


class ChallengeKeeper(Protocol):
    """What /authorize asks of the store about challenges (`baton.store.sql.ChallengeStore`)."""

    async def create_challenge(
        self,
        digest: bytes,
        kind: str,
        client_id: str,
        browser: bytes,
        request: dict[str, Any],
        user_id: int | None,
        now: int,
        expires_at: int,
    ) -> None: ...

    async def redeem_verifier(
        self, verifier: bytes, kind: str, client_id: str, browser: bytes | None, now: int
    ) -> Challenge | NotHonoured: ...


class MfaStore(Protocol):
    """What the second step asks of the store (`baton.store.sql.mfa.MfaStore`)."""

    async def get_user_by_id(self, user_id: int) -> User | None: ...
    async def mfa_state(self, user_id: int) -> MfaState | None: ...
    async def use_totp_step(self, user_id: int, step: int) -> bool: ...
    async def use_recovery_code(
        self, user_id: int, code_digest: bytes, now: int, address: str | None
    ) -> bool: ...
    async def enrol_totp(
        self,
        user_id: int,
        sealed_secret: str,
        step: int,
        code_digests: list[bytes],
        now: int,
        address: str | None,
    ) -> bool: ...


class AccountSecurityStore(MfaStore, Protocol):
    """What the account's security page asks of the store (`baton.store.sql.mfa.MfaStore`):
    the second step's calls, and the user's own renewal and turning off."""

    async def renew_recovery_codes(
        self, user_id: int, code_digests: list[bytes], now: int, address: str | None
    ) -> bool: ...
    async def turn_off_totp(self, user_id: int, now: int, address: str | None) -> bool: ...


class UpstreamStore(Protocol):
    """What the upstream sign-in asks of the store (`baton.store.sql.upstream.UpstreamStore`)."""

    async def upstreams(self, *, enabled_only: bool = False) -> list[UpstreamProvider]: ...

    async def upstream(self, provider_id: str) -> UpstreamProvider | None: ...

    async def upstream_sign_in(
        self, provider: UpstreamProvider, identity: UpstreamIdentity, actor: Actor
    ) -> SignInOutcome: ...

    async def get_user_by_id(self, user_id: int) -> User | None: ...


class EverywhereStore(Protocol):
    """What signing out everywhere asks of the store (`baton.store.sql.SQLStore`)."""

    async def end_user_op_sessions(self, user_id: int, now: int) -> SignedOut: ...


class Registrations(Protocol):
    """What dynamic registration (`registration`: RFC 7591, RFC 7592) and the purge loop's
    expiry of unused registrations ask of the store (`baton.store.sql.registrations`)."""

    async def register_dynamic_client(
        self, client: Client, token_digest: bytes, actor: Actor
    ) -> None: ...

    async def dynamic_client(self, client_id: str) -> DynamicClient | None: ...

    async def update_dynamic_client(self, before: Client, after: Client, actor: Actor) -> bool: ...

    async def delete_dynamic_client(self, client_id: str, actor: Actor) -> Deleted | None: ...

    async def note_consent_asked(self, client_id: str, now: int) -> None: ...

    async def expire_dynamic_clients(
        self, now: int, expiry: int, actor_name: str, batch: int = 100
    ) -> int: ...

    async def forget_unused_document_clients(
        self, now: int, expiry: int, batch: int = 500
    ) -> int: ...

    async def registered_resources(self) -> frozenset[str]: ...

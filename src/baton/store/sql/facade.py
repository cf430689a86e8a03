"""`SQLStore`: the async face of the store, over SQLAlchemy 2 Core for SQLite and PostgreSQL.

Each method is one unit of work: it hands a function of a connection (from `lifecycle`,
`registry`, `sessions`, `feed`, `purge`, `outbox`) to the dialect's `Runner`, which runs it as one
short transaction (a worker thread for SQLite, asyncpg on the event loop for PostgreSQL; see
`baton.store.engines`). The few methods that run a transaction again do it here, where both runs
are visible: a code whose claim lost a race, a consent inserted twice at once.

The server asks it through the small protocols its consumers declare (the endpoints, sessions,
the keyring, webhook delivery, the metrics, the admin console); nothing outside `baton.store`
reaches its runner.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from baton.core.facts import AccessFacts, GrantFacts, LiveSession
from baton.core.keys import StoredKey
from baton.core.origins import OriginSource
from baton.core.pairs import IssuedPair, MintedPair
from baton.core.policy import Policy
from baton.core.rules import CodeRedemption
from baton.core.signals import Health
from baton.core.user_claims import ClaimChanges
from baton.core.vocabulary import RevocationCause
from baton.core.watermark import Gap
from baton.store import stats
from baton.store.base import (
    Client,
    ClientChanged,
    Consent,
    Delivery,
    ExchangeAsk,
    ExchangeResult,
    FeedRead,
    GrantSummary,
    NewCode,
    RedeemResult,
    ResourceUriTaken,
    RevocationEvent,
    RevokeResult,
    SecurityEvent,
    SignalCount,
    SignedOut,
    TokenFacts,
    User,
)
from baton.store.engines import PoolSettings, Runner, SQLiteSettings, open_runner
from baton.store.sql import (
    feed,
    lifecycle,
    logout,
    native,
    origins,
    outbox,
    purge,
    registry,
    sessions,
    signals,
)
from baton.store.sql.admin import AdminStore
from baton.store.sql.assertions import ClientAssertionStore
from baton.store.sql.challenges import ChallengeStore
from baton.store.sql.confirm import confirmed
from baton.store.sql.documents import DocumentClientStore
from baton.store.sql.mfa import MfaStore
from baton.store.sql.registrations import DynamicClientStore
from baton.store.sql.scopes import ScopeStore
from baton.store.sql.upstream import UpstreamStore

T = TypeVar("T")

# Attempts at a refresh that keeps losing races: each lost one saw another transaction commit a
# change to the token or its grant (exchanged, revoked, continued, forked), of which a token
# has only a few, so a sound database never reaches this.
LOST_RACES = 8


class LostRaces(TimeoutError):
    """A refresh gave up after `LOST_RACES` lost races: answered 503, as a database that cannot
    answer in time is, and the client retries."""


class SQLStore(
    ChallengeStore,
    ClientAssertionStore,
    DocumentClientStore,
    DynamicClientStore,
    MfaStore,
    ScopeStore,
    UpstreamStore,
):
    """The store over SQLAlchemy Core, for SQLite and PostgreSQL alike."""

    def __init__(self, runner: Runner, policy: Policy) -> None:
        self.runner = runner
        self.policy = policy
        # PostgreSQL with fast paths on: the common refresh, revocation and introspection in
        # the fewest round trips, the general transactions answering the rest.
        self._native = native.for_runner(runner)

    @classmethod
    def open(
        cls,
        db: str,
        policy: Policy | None = None,
        pool: PoolSettings | None = None,
        sqlite: SQLiteSettings | None = None,
        *,
        fast_paths: bool = True,
    ) -> SQLStore:
        """The store of `db`; `fast_paths` is `Settings.fast_paths` (`baton.store.prepared`)."""
        return cls(open_runner(db, pool, sqlite, fast_paths=fast_paths), policy or Policy())

    @property
    def dialect(self) -> str:
        return self.runner.dialect

    async def close(self) -> None:
        await self.runner.close()

    async def inspect(self, work: Callable[[Connection], T]) -> T:
        """Runs a read-only function of a connection (reports, tests)."""
        return await self.runner.read(work)

    async def _write(self, work: Callable[[Connection], T]) -> T:
        return await outbox.write(self.runner, work)

    async def _read(self, work: Callable[[Connection], T]) -> T:
        return await self.runner.read(work)

    # -- set-up --------------------------------------------------------------------------------
    # `baton.store.migrate` (Alembic, Mako) is imported by these calls only: `baton serve` checks
    # the schema before its workers start, and a worker needs neither
    # (tests/server/test_lean_imports.py).

    async def upgrade_schema(self) -> None:
        """Applies the pending migrations (`baton.store.migrate.upgrade`)."""
        from baton.store import migrate

        await migrate.upgrade(self.runner)

    async def schema_is_current(self) -> bool:
        from baton.store import migrate

        return await migrate.is_current(self.runner)

    async def schema_problem(self) -> str | None:
        """None when the schema is current, else what is wrong (`migrate.schema_problem_of`)."""
        from baton.store import migrate

        return await migrate.schema_problem(self.runner)

    async def counts(self) -> tuple[int, int]:
        """(clients, users): an empty database makes `baton serve` print the first steps."""
        return await self._read(registry.counts)

    def admin(self) -> AdminStore:
        """The admin console's queries and actions, on this store's database."""
        return AdminStore(self.runner)

    # -- clients, users, consent -----------------------------------------------------------------

    async def create_client(self, client: Client) -> None:
        """Raises `ResourceUriTaken` if another client is registered with its `resource_uri`."""
        try:
            await self._write(lambda conn: registry.insert_client(conn, client))
        except IntegrityError as exc:
            if client.resource_uri is not None:  # the unique `ix_clients_resource_uri`
                raise ResourceUriTaken(client.resource_uri) from exc
            raise

    async def origin_sources(self) -> list[OriginSource]:
        """What decides each enabled client's browser origins (CORS, `store.sql.origins`)."""
        return await self._read(origins.origin_sources)

    async def registered_resources(self) -> frozenset[str]:
        """Every registered resource server's `resource_uri` (RFC 8707)."""
        return await self._read(registry.registered_resources)

    async def get_client(self, client_id: str) -> Client | None:
        return await self._read(lambda conn: registry.get_client(conn, client_id))

    async def update_client_oidc(self, client: Client) -> bool:
        """Stores `client`'s OpenID Connect settings (`baton.core.client_metadata`), nothing
        else of it; False when it has no row."""
        return await self._write(lambda conn: registry.update_client_oidc(conn, client))

    async def list_clients(self) -> list[Client]:
        """Every registered client, oldest first (`baton client list`)."""
        return await self._read(registry.list_clients)

    async def set_user_claims(
        self, username: str, changes: ClaimChanges, now: int
    ) -> tuple[User, User] | None:
        """Applies checked claim changes (`baton.core.user_claims`) to the user: (before,
        after), or None when there is no such user."""
        return await self._write(
            lambda conn: registry.set_user_claims(conn, username, changes, now)
        )

    async def create_user(
        self, username: str, password_hash: str, now: int, *, admin: bool = False
    ) -> User:
        """Raises `UserExists` if the name is taken."""
        return await self._write(
            lambda conn: registry.create_user(conn, username, password_hash, now, admin)
        )

    async def get_user(self, username: str) -> User | None:
        return await self._read(lambda conn: registry.user_named(conn, username))

    async def get_user_by_id(self, user_id: int) -> User | None:
        return await self._read(lambda conn: registry.user_by_id(conn, user_id))

    async def consent(self, user_id: int, client_id: str) -> Consent | None:
        """The user's recorded decision for the client, None if there is none (never asked, or
        forgotten when one of their grants was revoked: see `revoke_grant`)."""
        return await self._read(lambda conn: registry.consent(conn, user_id, client_id))

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
        values = registry.consent_values(scope, resources, now)

        def work(conn: Connection) -> None:
            registry.remember_consent(conn, user_id, client_id, values)

        try:
            await self._write(work)
        except IntegrityError:
            # Two first decisions at once (a double click on Allow): the other one inserted the
            # row between our update and our insert; this time the update finds it.
            await self._write(work)

    async def resource_names(self, uris: tuple[str, ...]) -> dict[str, str]:
        """The name of each registered resource server whose `resource_uri` is in `uris`."""
        if not uris:
            return {}
        return await self._read(lambda conn: registry.resource_names(conn, uris))

    # -- browser sessions (baton.server.runtime.sessions.SessionStore) ---------------------------

    async def start_session(
        self,
        digest: bytes,
        user_id: int,
        now: int,
        expires_at: int,
        source_address: str | None,
        sid: str | None = None,
        acr: str | None = None,
        amr: tuple[str, ...] = (),
    ) -> bool:
        return await self._write(
            lambda conn: sessions.start_session(
                conn, digest, user_id, now, expires_at, source_address, sid, acr, amr
            )
        )

    async def live_session(self, digest: bytes, now: int) -> LiveSession | None:
        return await self._read(lambda conn: sessions.live_session(conn, digest, now))

    async def end_session(self, digest: bytes, now: int) -> None:
        await self._write(lambda conn: sessions.end_session(conn, digest, now))

    async def end_user_sessions(self, user_id: int, now: int) -> int:
        return await self._write(lambda conn: sessions.end_user_sessions(conn, user_id, now))

    # -- signing out at the provider (baton.server.endpoints.logout) ----------------------------

    async def session_sid(self, digest: bytes, now: int) -> str | None:
        """The public `sid` of the live session whose cookie digest is `digest`, if it has one."""
        return await self._read(lambda conn: logout.session_sid(conn, digest, now))

    async def end_op_session(self, digest: bytes, now: int) -> SignedOut:
        """Ends the session, revokes its grants without `offline_access`, and writes a
        back-channel logout for each client with a grant from it (one transaction)."""
        return await self._write(lambda conn: logout.end_session(conn, digest, now))

    async def end_user_op_sessions(self, user_id: int, now: int) -> SignedOut:
        """`end_op_session` for every live session of the user ("sign out everywhere")."""
        return await self._write(lambda conn: logout.end_user_sessions(conn, user_id, now))

    # -- token lifecycle ------------------------------------------------------------------------

    async def save_code(self, code: NewCode) -> None:
        await self._write(lambda conn: lifecycle.save_code(conn, code))

    async def redeem_code(
        self,
        digest: bytes,
        ask: CodeRedemption,
        pair: MintedPair,
        now: int,
        source_address: str | None,
        policy: Policy | None = None,
    ) -> RedeemResult:
        """`policy`: the client's in force at `now` (the new grant's and first pair's
        lifetimes); None: the store's."""
        policy = policy or self.policy

        def work(conn: Connection) -> RedeemResult:
            return lifecycle.redeem_code(conn, digest, ask, pair, now, source_address, policy)

        try:
            return await self._write(work)
        except lifecycle.LostRace:
            # Another transaction redeemed the code between our read and our claim (PostgreSQL;
            # ours, grant included, rolled back). Run again: the code now reads as used, and a
            # used code presented again is a replay that revokes the grant it produced.
            return await self._write(work)

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
        the caller) and its access token, with the lifetimes of `policy` (the client's in force;
        None: the store's)."""
        policy = policy or self.policy
        return await self._write(
            lambda conn: lifecycle.issue_client_credentials(
                conn, client_id, scope, access, now, resources, policy, note_use
            )
        )

    async def exchange(self, ask: ExchangeAsk) -> ExchangeResult:
        """A refresh, decided under `ask.policy` (the client's in force; None: the store's)."""
        policy = ask.policy or self.policy
        # The lineage (rule 3b) whenever `fork` may have applied to the client's tokens: now,
        # or under the server's policy or any version of the client's (issue 28).
        lineage = lifecycle.may_have_forked(
            self.policy, None if ask.client is None else ask.client.policy, ask.now
        )
        # A kept token (`rotate` off) is no rotation: the general transaction keeps it.
        if self._native is not None and not lineage and policy.rotate:
            done = await self._native.exchange(ask, policy)
            if done is not native.GENERAL:
                return done
        for _ in range(LOST_RACES):
            try:
                return await self._write(
                    lambda conn: lifecycle.exchange(conn, ask, policy, lineage)
                )
            except lifecycle.LostRace:
                # Another transaction changed the token since our read (PostgreSQL): ours
                # rolled back; run again, on what it wrote.
                continue
        raise LostRaces(f"a refresh lost {LOST_RACES} races in a row")

    async def find_token(
        self, client: Client, digest: bytes | None, is_refresh: bool, now: int
    ) -> TokenFacts | ClientChanged | None:
        """The facts of a token `client` presented (None: unknown, or no digest to look up),
        once `client`'s row is confirmed unchanged. A refresh token's lineage (rule 3b) is read
        when `fork` may have applied to its owner's tokens by `now` (`lifecycle.find_token`)."""
        if self._native is not None:
            found = await self._native.find_token(client, digest, is_refresh, self.policy, now)
            if found is not native.GENERAL:
                return found
        return await self._read(
            lambda conn: lifecycle.find_token(conn, client, digest, is_refresh, self.policy, now)
        )

    async def find_access_token(self, digest: bytes) -> AccessFacts | None:
        """The facts of the access token stored under `digest`, whoever presents it (a bearer
        token at /userinfo authenticates no client)."""
        found = await self._read(lambda conn: lifecycle.access_facts(conn, digest))
        assert not isinstance(found, ClientChanged)  # no client given: none to confirm
        return found

    async def revoke_token(
        self, client: Client, digest: bytes | None, is_refresh: bool, now: int
    ) -> RevokeResult | ClientChanged:
        """RFC 7009: a refresh token revokes its grant, an access token only itself; first
        `client`'s row is confirmed unchanged (a None digest only confirms it, in a read)."""
        if digest is None:  # nothing to revoke: a read confirms the client
            answer: RevokeResult = "nothing"
            return await self._read(lambda conn: confirmed(conn, client, answer))
        if self._native is not None:
            done = await self._native.revoke_token(client, digest, is_refresh, self.policy, now)
            if done is not native.GENERAL:
                return done
        return await self._write(
            lambda conn: lifecycle.revoke_token(conn, client, digest, is_refresh, now)
        )

    async def get_grant(self, grant_id: str) -> GrantFacts | None:
        return await self._read(lambda conn: lifecycle.read_grant(conn, grant_id))

    async def revoke_grant(self, grant_id: str, now: int, reason: RevocationCause) -> bool:
        """Revokes the grant; unless `reason` is `RevocationCause.REVOKED`, the RFC 7009
        revocation of a token by the client itself, the user's remembered consent for that client
        goes with it, so the next authorization asks the user again."""
        return await self._write(lambda conn: lifecycle.revoke_grant(conn, grant_id, now, reason))

    async def list_grants(
        self, client_id: str | None = None, username: str | None = None
    ) -> list[GrantSummary]:
        return await self._read(lambda conn: lifecycle.list_grants(conn, client_id, username))

    async def security_events(self) -> list[SecurityEvent]:
        return await self._read(lifecycle.list_security_events)

    async def add_signing_key(self, key: StoredKey, retire_others_at: int | None) -> None:
        """Stores a new key; older keys without a retirement get `retire_others_at`."""
        await self._write(lambda conn: registry.add_signing_key(conn, key, retire_others_at))

    async def signing_keys(self) -> list[StoredKey]:
        return await self._read(registry.list_signing_keys)

    # -- the revocation feed --------------------------------------------------------------------

    async def wait_for_revocations(self, timeout: float) -> float:
        """Waits until new feed events may exist (at most `timeout`); returns seconds waited."""
        started = time.monotonic()
        await self.runner.wait_for_feed(timeout)
        return time.monotonic() - started

    async def revocations_after(self, since: int, limit: int) -> list[RevocationEvent]:
        """Feed events with an id above `since`, oldest first (as they are: no gap is checked)."""
        return await self._read(lambda conn: feed.feed_after(conn, since, limit)[0])

    async def read_feed(self, after: int, limit: int, gaps: Sequence[Gap] = ()) -> FeedRead:
        """Feed events with an id above `after` (at most `limit`), and the gaps among them
        and in `gaps` (open ones from an earlier read) checked: those that filled are read,
        those that may still fill returned. `baton.core.watermark.watermark` gives the cursor a
        reader may resume from."""
        return await self._read(lambda conn: feed.read_feed(conn, after, limit, gaps))

    # -- upkeep: the purge, the webhook outbox, the metrics -------------------------------------

    async def purge(self, now: int, retention: int, batch: int = 500) -> int:
        """One bounded batch of each kind of expired data; returns the rows changed.

        Call it again while it returns more than 0: each call is a short transaction of its
        own, so a large purge never holds token traffic up.
        """
        horizon = now - retention
        changed = await self._write(lambda conn: purge.purge_batch(conn, now, horizon, batch))
        if changed == 0:
            # Last, apart: a scan of refresh_tokens, run as a read (`orphaned_id_token_seals`).
            ids = await self._read(lambda conn: purge.orphaned_id_token_seals(conn, now, batch))
            if ids:
                changed = await self._write(lambda conn: purge.clear_id_token_seals(conn, ids, now))
        return changed

    async def deliveries_due(self, now: int, oldest: int, webhooks: bool = True) -> bool:
        """Whether any outbox row is due (a read: an idle outbox costs no write transaction);
        without `webhooks`, only back-channel logouts count."""
        return await self._read(lambda conn: outbox.any_due(conn, now, oldest, webhooks))

    async def claim_deliveries(
        self, now: int, lease_until: int, oldest: int, limit: int, webhooks: bool = True
    ) -> list[Delivery]:
        """Leases the due outbox rows to the caller until `lease_until` (`outbox.claim_due`)."""
        return await self._write(
            lambda conn: outbox.claim_due(conn, now, lease_until, oldest, limit, webhooks)
        )

    async def mark_delivered(self, delivery_id: int, now: int) -> None:
        await self._write(lambda conn: outbox.mark_delivered(conn, delivery_id, now))

    async def mark_failed(self, delivery_id: int, next_attempt_at: int, error: str) -> None:
        """Records the error and when to try again (`NEVER`: given up)."""
        await self._write(
            lambda conn: outbox.mark_failed(conn, delivery_id, next_attempt_at, error)
        )

    async def active_grants(self, now: int) -> int:
        """Grants neither revoked nor past their absolute lifetime (for the metrics)."""
        return await self._read(lambda conn: stats.active_grants(conn, now))

    def pool_figures(self) -> tuple[int, int] | None:
        """(connections checked out, pool capacity) of this process's pool, if it counts them."""
        return self.runner.pool_use()

    # -- integration signals (issue 28; `baton.store.sql.signals`) -----------------------------

    async def record_signals(self, counts: Sequence[SignalCount]) -> None:
        """Writes one flush of counted signals in one transaction (none: no transaction)."""
        if counts:
            await self._write(lambda conn: signals.record_signals(conn, counts))

    async def client_health(
        self, client_ids: Sequence[str] | None, since: int, now: int
    ) -> list[Health]:
        """The integration health of `client_ids` (None: every client with a signal since
        `since`) from the signals recorded since `since`, with their grants live at `now`."""
        return await self._read(lambda conn: signals.client_health(conn, client_ids, since, now))

    async def client_series(self, since: int, now: int, top: int) -> list[Health]:
        """The `/metrics` per-client series: the `top` clients with the most signals since
        `since` (ranked in SQL), then the others summed as one `Health` named `other`."""
        return await self._read(lambda conn: signals.client_series(conn, since, now, top))

    async def purge_signals(self, now: int, retention: int, batch: int = 500) -> int:
        """Deletes one bounded batch of signal rows last seen more than `retention` seconds
        before `now` (`--signal-retention`); call again while it returns more than 0."""
        horizon = now - retention
        return await self._write(lambda conn: purge.purge_signals(conn, horizon, batch))

    async def access_by_digest(self, digests: Sequence[bytes]) -> dict[bytes, AccessFacts]:
        """The access tokens stored under these SHA-256 digests, keyed by digest, in one
        indexed read (`/token-use`)."""
        if not digests:
            return {}
        return await self._read(lambda conn: signals.access_by_digest(conn, digests))

    async def clients_by_id(self, client_ids: Sequence[str]) -> dict[str, Client]:
        """The clients of these ids that exist, in one read (`/token-use`: the owners of the
        reported tokens, whose report-only policies judge the uses)."""
        if not client_ids:
            return {}
        return await self._read(lambda conn: signals.clients_by_id(conn, client_ids))

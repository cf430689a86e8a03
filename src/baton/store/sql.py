"""The `Store` over SQLAlchemy 2 Core.

Every method runs one short transaction (see `baton.store.engines` for how each dialect drives
it). On SQLite, write transactions start with `BEGIN IMMEDIATE`, which takes the
database's write lock up front: two rotations of one token are serialized before either reads,
so the loser reads the winner's committed exchange and is answered by the leeway rules. On
PostgreSQL (READ COMMITTED) the conditional `UPDATE ... WHERE exchanged_at IS NULL` does the same:
it waits for the winner's row lock, then matches no row.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    Connection,
    RowMapping,
    bindparam,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from baton.core import rules
from baton.core.audience import (
    audience_from_stored,
    narrowed,
    resources_from_stored,
    stored_resources,
)
from baton.core.facts import AccessFacts, CodeFacts, CompanionFacts, GrantFacts, RefreshFacts
from baton.core.keys import StoredKey
from baton.core.pairs import IssuedPair, MintedPair, PlannedPair, plan_pair
from baton.core.policy import Policy, RetryPolicy
from baton.core.rules import CodeProblem, CodeRedemption, Reason
from baton.core.scope import parse as parse_scope
from baton.core.scope import render as render_scope
from baton.core.tokens import random_id
from baton.core.watermark import Gap, fill, gaps_below, settle
from baton.store import migrate, outbox
from baton.store.base import (
    CLIENT_CHANGED,
    TARGET_REFUSED,
    Client,
    ClientChanged,
    ClientDisabled,
    CodeRefused,
    Consent,
    ExchangeAsk,
    ExchangeResult,
    FeedRead,
    GrantSummary,
    Issued,
    NewCode,
    RedeemResult,
    Refused,
    Replayed,
    ResourceUriTaken,
    RevocationEvent,
    RevokeResult,
    ScopeRefused,
    SecurityEvent,
    TokenFacts,
    User,
)
from baton.store.engines import (
    WAKE_FEED,
    PoolSettings,
    Runner,
    SQLiteSettings,
    open_runner,
)
from baton.store.prepared import Prepared
from baton.store.schema import (
    access_tokens,
    authorization_codes,
    clients,
    consents,
    grants,
    refresh_tokens,
    revocation_events,
    security_events,
    sessions,
    signing_keys,
    users,
)

T = TypeVar("T")
F = TypeVar("F")  # facts a row is read into


class SQLStore:
    """The store over SQLAlchemy Core, for SQLite and PostgreSQL alike.

    Every method is one transaction: a function of a connection, handed to the dialect's
    `Runner` (a worker thread for SQLite, asyncpg on the event loop for PostgreSQL).
    """

    def __init__(self, runner: Runner, policy: Policy) -> None:
        self.runner = runner
        self.policy = policy

    @classmethod
    def open(
        cls,
        db: str,
        policy: Policy | None = None,
        pool: PoolSettings | None = None,
        sqlite: SQLiteSettings | None = None,
    ) -> SQLStore:
        return cls(open_runner(db, pool, sqlite), policy or Policy())

    @property
    def dialect(self) -> str:
        return self.runner.dialect

    async def close(self) -> None:
        await self.runner.close()

    async def inspect(self, work: Callable[[Connection], T]) -> T:
        """Runs a read-only function of a connection (reports, tests)."""
        return await self.runner.read(work)

    async def _write(self, work: Callable[[Connection], T]) -> T:
        return await self.runner.write(work)

    async def _read(self, work: Callable[[Connection], T]) -> T:
        return await self.runner.read(work)

    # -- set-up --------------------------------------------------------------------------------

    async def schema_is_current(self) -> bool:
        return await migrate.is_current(self.runner)

    async def counts(self) -> tuple[int, int]:
        def work(conn: Connection) -> tuple[int, int]:
            n_clients = conn.execute(select(func.count()).select_from(clients)).scalar_one()
            n_users = conn.execute(select(func.count()).select_from(users)).scalar_one()
            return n_clients, n_users

        return await self._read(work)

    # -- clients, users, consent -----------------------------------------------------------------

    async def create_client(self, client: Client) -> None:
        values = client_values(client)
        try:
            await self._write(lambda conn: conn.execute(insert(clients).values(**values)))
        except IntegrityError as exc:
            if client.resource_uri is not None:  # the unique `ix_clients_resource_uri`
                raise ResourceUriTaken(client.resource_uri) from exc
            raise

    async def registered_resources(self) -> frozenset[str]:
        def work(conn: Connection) -> frozenset[str]:
            found = conn.execute(
                select(clients.c.resource_uri).where(clients.c.resource_uri.is_not(None))
            ).scalars()
            return frozenset(found)

        return await self._read(work)

    async def get_client(self, client_id: str) -> Client | None:
        def work(conn: Connection) -> Client | None:
            row = _CLIENT.one(conn, client_id=client_id)
            return None if row is None else client_from_row(row)

        return await self._read(work)

    async def create_user(
        self, username: str, password_hash: str, now: int, *, admin: bool = False
    ) -> User:
        def work(conn: Connection) -> User:
            try:
                user_id = conn.execute(
                    insert(users)
                    .values(
                        username=username,
                        password_hash=password_hash,
                        is_admin=admin,
                        created_at=now,
                    )
                    .returning(users.c.id)
                ).scalar_one()
            except IntegrityError as exc:
                raise UserExists(username) from exc
            return User(user_id, username, password_hash, admin)

        return await self._write(work)

    async def get_user(self, username: str) -> User | None:
        return await self._read(lambda conn: _user(conn, users.c.username == username))

    async def get_user_by_id(self, user_id: int) -> User | None:
        return await self._read(lambda conn: _user(conn, users.c.id == user_id))

    async def consent(self, user_id: int, client_id: str) -> Consent | None:
        def work(conn: Connection) -> Consent | None:
            row = conn.execute(
                select(consents.c.scope, consents.c.resources).where(
                    consents.c.user_id == user_id, consents.c.client_id == client_id
                )
            ).one_or_none()
            if row is None:
                return None
            return Consent(parse_scope(row.scope), frozenset(resources_from_stored(row.resources)))

        return await self._read(work)

    async def remember_consent(
        self,
        user_id: int,
        client_id: str,
        scope: frozenset[str],
        resources: tuple[str, ...],
        now: int,
    ) -> None:
        values = {
            "scope": render_scope(scope),
            "resources": stored_resources(sorted(set(resources))),
            "updated_at": now,
        }

        def work(conn: Connection) -> None:
            key = (consents.c.user_id == user_id) & (consents.c.client_id == client_id)
            if conn.execute(update(consents).where(key).values(**values)).rowcount == 0:
                conn.execute(
                    insert(consents).values(user_id=user_id, client_id=client_id, **values)
                )

        try:
            await self._write(work)
        except IntegrityError:
            # Two first decisions at once (a double click on Allow): the other one inserted the
            # row between our update and our insert; this time the update finds it.
            await self._write(work)

    async def resource_names(self, uris: tuple[str, ...]) -> dict[str, str]:
        if not uris:
            return {}

        def work(conn: Connection) -> dict[str, str]:
            found = conn.execute(
                select(clients.c.resource_uri, clients.c.name).where(
                    clients.c.resource_uri.in_(uris)
                )
            )
            return {uri: name for uri, name in found}

        return await self._read(work)

    # -- browser sessions (baton.server.runtime.sessions.SessionStore) ---------------------------

    async def start_session(
        self, digest: bytes, user_id: int, now: int, expires_at: int, source_address: str | None
    ) -> None:
        values = {
            "digest": digest,
            "user_id": user_id,
            "created_at": now,
            "expires_at": expires_at,
            "source_address": source_address[:64] if source_address else None,
        }
        await self._write(lambda conn: conn.execute(insert(sessions).values(**values)))

    async def session_user(self, digest: bytes, now: int) -> int | None:
        query = select(sessions.c.user_id).where(
            sessions.c.digest == digest, sessions.c.ended_at.is_(None), sessions.c.expires_at > now
        )
        found = await self._read(lambda conn: conn.execute(query).scalar())
        return None if found is None else int(found)

    async def end_session(self, digest: bytes, now: int) -> None:
        ended = (
            update(sessions)
            .where(sessions.c.digest == digest, sessions.c.ended_at.is_(None))
            .values(ended_at=now)
        )
        await self._write(lambda conn: conn.execute(ended))

    async def end_user_sessions(self, user_id: int, now: int) -> int:
        return await self._write(lambda conn: end_user_sessions(conn, user_id, now))

    # -- token lifecycle ------------------------------------------------------------------------

    async def save_code(self, code: NewCode) -> None:
        values = {
            "digest": code.digest,
            "client_id": code.client_id,
            "user_id": code.user_id,
            "redirect_uri": code.redirect_uri,
            "scope": code.scope,
            "code_challenge": code.code_challenge,
            "created_at": code.created_at,
            "expires_at": code.expires_at,
            "resources": stored_resources(code.resources),
        }
        await self._write(lambda conn: conn.execute(insert(authorization_codes).values(**values)))

    async def redeem_code(
        self,
        digest: bytes,
        ask: CodeRedemption,
        pair: MintedPair,
        now: int,
        source_address: str | None,
    ) -> RedeemResult:
        policy = self.policy

        def work(conn: Connection) -> RedeemResult:
            row = (
                conn.execute(
                    select(authorization_codes).where(authorization_codes.c.digest == digest)
                )
                .mappings()
                .first()
            )
            code = _code_facts(row) if row is not None else None
            problem = rules.check_code(code, ask, now)
            if problem is CodeProblem.REUSED:
                assert code is not None
                # RFC 6749 §4.1.2: the server SHOULD revoke all tokens previously issued
                # based on that authorization code.
                revoked = False
                if code.grant_id is not None:
                    revoked = _revoke_grant(conn, code.grant_id, now, "code_reuse")
                    if revoked:
                        _record(
                            conn,
                            "code_reuse",
                            _grant(conn, code.grant_id),
                            None,
                            now,
                            source_address,
                            "authorization code presented twice",
                        )
                return CodeRefused(problem, revoked_grant=revoked)
            if problem is not None:
                return CodeRefused(problem)
            assert code is not None
            # RFC 8707 §2.2: the token request may name fewer of the resources the user
            # consented to, never another (invalid_target); the code stays unused.
            if narrowed(code.resources, pair.resources) is None:
                return TARGET_REFUSED
            # The conditional update makes a double redemption impossible even if two
            # transactions got this far (PostgreSQL): only one sees `used_at IS NULL`.
            _require_enabled(conn, code.client_id)
            subject = conn.execute(
                select(users.c.username).where(users.c.id == code.user_id)
            ).scalar_one()
            grant = _new_grant(
                conn, code.client_id, code.user_id, subject, code.scope, now, policy, code.resources
            )
            claimed = conn.execute(
                update(authorization_codes)
                .where(
                    authorization_codes.c.digest == digest,
                    authorization_codes.c.used_at.is_(None),
                )
                .values(used_at=now, grant_id=grant.id)
            ).rowcount
            if claimed != 1:
                raise _LostRace()
            planned = plan_pair(grant, pair, 0, code.scope, now, policy)
            return Issued(_insert_pair(conn, planned, pair, None))

        try:
            return await self._write(work)
        except _LostRace:
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
    ) -> IssuedPair:
        policy = self.policy

        def work(conn: Connection) -> IssuedPair:
            _require_enabled(conn, client_id)
            grant = _new_grant(conn, client_id, None, None, scope, now, policy, resources)
            planned = plan_pair(grant, access, 0, scope, now, policy)
            return _insert_pair(conn, planned, access, None)

        return await self._write(work)

    async def exchange(self, ask: ExchangeAsk) -> ExchangeResult:
        policy = self.policy
        return await self._write(lambda conn: _exchange(conn, ask, policy))

    async def find_token(
        self, client: Client, digest: bytes | None, is_refresh: bool
    ) -> TokenFacts | ClientChanged | None:
        if digest is None:  # nothing to find: a read confirms the client
            return await self._read(_confirming(client, lambda conn: None))

        lineage = self.policy.retry is RetryPolicy.FORK

        def work(conn: Connection) -> TokenFacts | ClientChanged | None:
            if is_refresh:
                return _refresh_facts(conn, digest, client, lineage=lineage)
            return _access_facts(conn, digest, client)

        return await self._read(work)

    async def revoke_token(
        self, client: Client, digest: bytes | None, is_refresh: bool, now: int
    ) -> RevokeResult | ClientChanged:
        client_id = client.id
        if digest is None:  # nothing to revoke: a read confirms the client
            return await self._read(_confirming(client, lambda conn: "nothing"))

        def work(conn: Connection) -> RevokeResult | ClientChanged:
            if is_refresh:
                token = _refresh_facts(conn, digest, client)
                if isinstance(token, ClientChanged):
                    return token
                if token is None:
                    return "nothing"
                if token.grant.client_id != client_id:
                    return "other_client"
                # An exchanged token past its leeway is already dead; revoking it (a client
                # cleaning up) must not take the live family with it.
                if token.exchanged_at is not None and not token.in_leeway(now):
                    return "nothing"
                # RFC 7009 §2.1: revoking a refresh token SHOULD also invalidate all access
                # tokens of the same grant; a revoked grant kills every token of its family.
                revoked = _revoke_grant(
                    conn, token.grant.id, now, "revoked", token.grant, forget_consent=False
                )
                return "grant" if revoked else "nothing"
            access = _access_facts(conn, digest, client)
            if isinstance(access, ClientChanged):
                return access
            if access is None:
                return "nothing"
            if access.grant.client_id != client_id:
                return "other_client"
            if not _REVOKE_ACCESS.rowcount(conn, at_id=access.id, now=now):
                return "nothing"
            _announce_access_deaths(conn, _ANNOUNCE_ACCESS, access.id, now, now)
            return "access_token"

        return await self._write(work)

    async def get_grant(self, grant_id: str) -> GrantFacts | None:
        return await self._read(lambda conn: _grant(conn, grant_id))

    async def revoke_grant(self, grant_id: str, now: int, reason: str) -> bool:
        return await self._write(lambda conn: _revoke_grant(conn, grant_id, now, reason))

    async def list_grants(
        self, client_id: str | None = None, username: str | None = None
    ) -> list[GrantSummary]:
        def work(conn: Connection) -> list[GrantSummary]:
            stats = (
                select(
                    refresh_tokens.c.grant_id,
                    func.count().label("n"),
                    func.max(refresh_tokens.c.issued_at).label("last"),
                )
                .group_by(refresh_tokens.c.grant_id)
                .subquery()
            )
            query = (
                select(*_GRANT_COLUMNS, stats.c.n, stats.c.last)
                .outerjoin(users, users.c.id == grants.c.user_id)
                .outerjoin(stats, stats.c.grant_id == grants.c.id)
                .order_by(grants.c.created_at, grants.c.id)
            )
            if client_id is not None:
                query = query.where(grants.c.client_id == client_id)
            if username is not None:
                query = query.where(users.c.username == username)
            return [
                GrantSummary(_grant_from_labels(row), row["n"] or 0, row["last"])
                for row in conn.execute(query).mappings()
            ]

        return await self._read(work)

    async def security_events(self) -> list[SecurityEvent]:
        def work(conn: Connection) -> list[SecurityEvent]:
            rows = conn.execute(select(security_events).order_by(security_events.c.id)).mappings()
            return [SecurityEvent(**r) for r in rows]

        return await self._read(work)

    async def add_signing_key(self, key: StoredKey, retire_others_at: int | None) -> None:
        def work(conn: Connection) -> None:
            if retire_others_at is not None:
                conn.execute(
                    update(signing_keys)
                    .where(signing_keys.c.retires_at.is_(None))
                    .values(retires_at=retire_others_at)
                )
            conn.execute(insert(signing_keys).values(**asdict(key)))

        await self._write(work)

    async def signing_keys(self) -> list[StoredKey]:
        def work(conn: Connection) -> list[StoredKey]:
            rows = conn.execute(select(signing_keys).order_by(signing_keys.c.created_at)).mappings()
            return [StoredKey(**row) for row in rows]

        return await self._read(work)

    async def wait_for_revocations(self, timeout: float) -> float:
        started = time.monotonic()
        await self.runner.wait_for_feed(timeout)
        return time.monotonic() - started

    async def revocations_after(self, since: int, limit: int) -> list[RevocationEvent]:
        return await self._read(lambda conn: _feed_after(conn, since, limit)[0])

    async def read_feed(self, after: int, limit: int, gaps: Sequence[Gap] = ()) -> FeedRead:
        return await self._read(lambda conn: _read_feed(conn, after, limit, gaps))

    async def purge(self, now: int, retention: int, batch: int = 500) -> int:
        """One bounded batch of each kind of expired data; returns the rows changed.

        Call it again while it returns more than 0: each call is a short transaction of its
        own, so a large purge never holds token traffic up.
        """
        horizon = now - retention
        return await self._write(lambda conn: _purge_batch(conn, now, horizon, batch))


class UserExists(Exception):
    pass


class _LostRace(Exception):
    """Another transaction changed a row between our read and our conditional update."""


# -- transactions, as functions of a connection (shared by every dialect) --------------------------


_REUSE_DETAIL = {
    Reason.SIBLING_CONTINUED: "a sibling pair issued from the same token was refreshed first",
    Reason.RETRY_AFTER_CONTINUED: "retried after a pair issued from it was refreshed",
}


def end_user_sessions(conn: Connection, user_id: int, now: int) -> int:
    """Ends every live session of a user ("sign out everywhere"); how many there were."""
    live = (
        update(sessions)
        .where(
            sessions.c.user_id == user_id,
            sessions.c.ended_at.is_(None),
            sessions.c.expires_at > now,
        )
        .values(ended_at=now)
    )
    return int(conn.execute(live).rowcount)


def _exchange(conn: Connection, ask: ExchangeAsk, policy: Policy) -> ExchangeResult:
    fork = policy.retry is RetryPolicy.FORK
    token = _refresh_facts(conn, ask.digest, ask.client, lineage=fork)
    if isinstance(token, ClientChanged):
        return token
    decision = rules.decide_refresh(token, ask.client_id, ask.now, policy.retry)
    if isinstance(decision, rules.Reject):
        return Refused(decision.reason)
    assert token is not None
    if isinstance(decision, rules.Fork) and fork and not _GUARD_FORK.rowcount(conn, rt_id=token.id):
        # A child's chain continued since our read (PostgreSQL): decide again on it.
        return _exchange(conn, ask, policy)
    if isinstance(decision, rules.Replay | rules.Fork):
        # A retry inside the leeway is no attack, but it is what an operator asks about
        # ("which client lost a response?"): kept for the grant's timeline.
        _record(
            conn,
            "leeway_retry",
            token.grant,
            token.generation,
            ask.now,
            ask.source_address,
            "the same pair sent again (replay)"
            if isinstance(decision, rules.Replay)
            else "a sibling pair issued (fork)",
        )
    if isinstance(decision, rules.Replay):
        return Replayed(decision.sealed_response)
    if isinstance(decision, rules.Reuse):
        revoked = _revoke_grant(conn, token.grant.id, ask.now, rules.REUSE_REVOCATION, token.grant)
        if revoked:
            _record(
                conn,
                "refresh_token_reuse",
                token.grant,
                token.generation,
                ask.now,
                ask.source_address,
                _REUSE_DETAIL.get(
                    decision.reason,
                    f"exchanged at {token.exchanged_at}, leeway ended at {token.retire_at}",
                ),
            )
        return Refused(decision.reason, revoked_grant=revoked)

    granted = parse_scope(token.grant.scope)
    scope = granted if ask.scope is None else ask.scope
    if not scope <= granted:
        return ScopeRefused()
    # RFC 9700 §2.3 / RFC 8707 §2.2: a refresh may narrow the grant's resources, never widen.
    if narrowed(token.grant.resources, ask.child.resources) is None:
        return TARGET_REFUSED

    if isinstance(decision, rules.Fork):
        # Siblings are generation parent + 1; the parent's leeway still runs from its first
        # exchange (a retry never extends it).
        planned = plan_pair(
            token.grant, ask.child, token.generation + 1, render_scope(scope), ask.now, policy
        )
        return Issued(_insert_pair(conn, planned, ask.child, token.id), retry=True)

    if decision.continues is not None and not _CLAIM_CONTINUATION.rowcount(
        conn, parent_id=decision.continues, child_id=token.id
    ):
        # Another sibling's chain continued first (PostgreSQL: it committed while we waited for
        # the parent's row): decide again, on what it wrote; this token is now reuse.
        return _exchange(conn, ask, policy)
    # Rotate: claim the single successor slot first. Only one transaction can move
    # `exchanged_at` from NULL; on PostgreSQL a concurrent one waits for our row lock here and
    # then matches nothing.
    planned = plan_pair(
        token.grant, ask.child, token.generation + 1, render_scope(scope), ask.now, policy
    )
    sealed = ask.seal(planned.issued) if ask.seal is not None and policy.leeway > 0 else None
    # The leeway, like every lifetime, starts at the ceiling of the exchange's second, so a
    # client never gets less than the configured leeway to retry in; without a leeway (strict)
    # the old access token dies at the exchange itself.
    start = max(ask.now, ask.child.lifetimes_from or ask.now) if policy.leeway else ask.now
    retire_at = start + policy.leeway
    claimed = _CLAIM_SUCCESSOR.rowcount(
        conn, rt_id=token.id, exchanged=ask.now, retire=retire_at, sealed=sealed
    )
    if claimed != 1:
        # Lost the race (PostgreSQL only: SQLite serialized us before the read). The winner
        # has committed; decide again on what it wrote.
        return _exchange(conn, ask, policy)
    # The companion access token of the exchanged token dies at the end of the leeway:
    # announce it now, so resource servers schedule it themselves (no job runs at that time).
    _announce_access_deaths(conn, _ANNOUNCE_COMPANION, token.id, retire_at, ask.now)
    return Issued(_insert_pair(conn, planned, ask.child, token.id))


def _purge_batch(conn: Connection, now: int, horizon: int, batch: int) -> int:
    rt, at, codes = refresh_tokens, access_tokens, authorization_codes
    # Seals whose leeway has ended can never be opened again (and the leeway rules do not need
    # them: a missing seal after the leeway is simply the retired state).
    sealed = (
        select(rt.c.id)
        .where(rt.c.sealed_response.is_not(None), rt.c.retire_at <= now)
        .limit(batch)
        .scalar_subquery()
    )
    changed = conn.execute(
        update(rt).where(rt.c.id.in_(sealed)).values(sealed_response=None)
    ).rowcount
    # Access tokens and codes past their life plus the retention kept for audit.
    old_access = select(at.c.id).where(at.c.expires_at < horizon).limit(batch).scalar_subquery()
    changed += conn.execute(delete(at).where(at.c.id.in_(old_access))).rowcount
    old_codes = (
        select(codes.c.digest).where(codes.c.expires_at < horizon).limit(batch).scalar_subquery()
    )
    changed += conn.execute(delete(codes).where(codes.c.digest.in_(old_codes))).rowcount
    ev = revocation_events
    # The newest event stays, expired or not: SQLite gives a new row the largest id plus one,
    # and a feed emptied by a purge would hand out ids again that readers have passed.
    newest = select(func.max(ev.c.id)).scalar_subquery()
    old_events = (
        select(ev.c.id)
        .where(ev.c.expires_at < horizon, ev.c.id < newest)
        .limit(batch)
        .scalar_subquery()
    )
    changed += conn.execute(delete(ev).where(ev.c.id.in_(old_events))).rowcount
    changed += outbox.purge_batch(conn, horizon, batch)
    old_sessions = (
        select(sessions.c.digest)
        .where(sessions.c.expires_at < horizon)
        .limit(batch)
        .scalar_subquery()
    )
    changed += conn.execute(delete(sessions).where(sessions.c.digest.in_(old_sessions))).rowcount
    # Whole families of grants dead (revoked or expired) for longer than the retention. A live
    # grant keeps every refresh token it ever issued, so reuse detection (RFC 6749 §10.4) works
    # for its whole life.
    dead = (
        conn.execute(
            select(grants.c.id)
            .where(or_(grants.c.revoked_at < horizon, grants.c.expires_at < horizon))
            .limit(max(batch // 10, 1))
        )
        .scalars()
        .all()
    )
    if dead:
        changed += conn.execute(delete(codes).where(codes.c.grant_id.in_(dead))).rowcount
        # `access_tokens` is indexed by grant only for the access tokens without a companion
        # (migration 0005): the others go by their companions' ids, as index lookups (a join or
        # an IN subquery let PostgreSQL scan the whole table on fresh statistics).
        paired = conn.execute(select(rt.c.id).where(rt.c.grant_id.in_(dead))).scalars().all()
        for start in range(0, len(paired), batch):
            companions = paired[start : start + batch]
            changed += conn.execute(
                delete(at).where(at.c.refresh_token_id.in_(companions))
            ).rowcount
        changed += conn.execute(
            delete(at).where(at.c.refresh_token_id.is_(None), at.c.grant_id.in_(dead))
        ).rowcount
        changed += conn.execute(delete(rt).where(rt.c.grant_id.in_(dead))).rowcount
        changed += conn.execute(delete(grants).where(grants.c.id.in_(dead))).rowcount
    return changed


def _insert_pair(
    conn: Connection, planned: PlannedPair, pair: MintedPair, parent_id: int | None
) -> IssuedPair:
    issued = planned.issued
    refresh_id: int | None = None
    if pair.refresh is not None:
        assert issued.refresh_expires_at is not None
        refresh_id = _INSERT_REFRESH.run(
            conn,
            digest=pair.refresh.digest,
            grant_id=issued.grant_id,
            parent_id=parent_id,
            generation=issued.generation,
            issued_at=planned.issued_at,
            expires_at=issued.refresh_expires_at,
        ).fetchone()[0]
    _INSERT_ACCESS.run(
        conn,
        digest=planned.access_digest,
        grant_id=issued.grant_id,
        refresh_token_id=refresh_id,
        generation=issued.generation,
        scope=issued.scope,
        issued_at=planned.issued_at,
        expires_at=issued.access_expires_at,
        jti=planned.jti,
        audience=planned.audience,
    )
    return issued


def _announce_access_deaths(
    conn: Connection, which: Prepared, key: int, effective_at: int, now: int
) -> None:
    """Outbox events for access tokens that die at `effective_at`, before their own `exp`.

    `which` is `_ANNOUNCE_COMPANION` (the access tokens of refresh token `key`) or
    `_ANNOUNCE_ACCESS` (access token `key`)."""
    if which.rowcount(
        conn, key=key, effective_at=effective_at, expiring_after=effective_at, now=now
    ):
        _wake_feed(conn)


def _wake_feed(conn: Connection) -> None:
    """PostgreSQL: wake every process's feed readers once this transaction has committed.

    The runner sends the NOTIFY after the commit rather than in the transaction: a NOTIFY holds
    PostgreSQL's notification-queue lock through its transaction's commit, which made every
    revoking transaction of the database commit (and fsync) one at a time."""
    if conn.dialect.name == "postgresql":
        conn.info[WAKE_FEED] = True


def _feed_after(
    conn: Connection, after: int, limit: int
) -> tuple[list[RevocationEvent], int | None]:
    """The feed events above `after` (at most `limit`, oldest first), and, on PostgreSQL, the
    xmax of the snapshot they were read in: the horizon of the gaps among them (see
    `baton.core.watermark`). One statement, so that both come from the same snapshot."""
    ev = revocation_events
    postgres = conn.dialect.name == "postgresql"
    horizon = select(func.pg_snapshot_xmax(func.pg_current_snapshot(), type_=BigInteger))
    columns = [*ev.c, horizon.scalar_subquery().label("horizon")] if postgres else [*ev.c]
    rows = conn.execute(select(*columns).where(ev.c.id > after).order_by(ev.c.id).limit(limit))
    events: list[RevocationEvent] = []
    seen: int | None = None
    for row in rows.mappings():
        events.append(_feed_event(row))
        seen = row["horizon"] if postgres else None
    return events, seen


def _feed_event(row: RowMapping) -> RevocationEvent:
    return RevocationEvent(**{column.name: row[column.name] for column in revocation_events.c})


def _read_feed(conn: Connection, after: int, limit: int, given: Sequence[Gap]) -> FeedRead:
    """`SQLStore.read_feed`: one statement reads the events (and their gaps' horizon); only if
    a gap may still fill (PostgreSQL), a second one, in a newer snapshot, reads the events that
    filled the gaps and that snapshot's xmin, which tells which gaps are final."""
    events, horizon = _feed_after(conn, after, limit)
    read_to = events[-1].id if events else after
    full = len(events) == limit
    gaps = [*given, *gaps_below(after, (e.id for e in events), horizon)]
    if gaps and conn.dialect.name == "postgresql":
        ev = revocation_events
        snapshot = select(
            func.pg_snapshot_xmin(func.pg_current_snapshot(), type_=BigInteger).label("xmin_")
        ).subquery("snapshot")
        in_gaps = or_(*(ev.c.id.between(gap.first, gap.last) for gap in gaps))
        rows = conn.execute(
            select(snapshot.c.xmin_, *ev.c)
            .select_from(snapshot.outerjoin(ev, in_gaps))
            .order_by(ev.c.id)
        ).mappings()
        oldest_running: int | None = None
        found: list[RevocationEvent] = []
        for row in rows:
            oldest_running = row["xmin_"]
            if row["id"] is not None:
                found.append(_feed_event(row))
        assert oldest_running is not None  # the outer join gives one row at least
        gaps = settle(fill(gaps, (e.id for e in found)), oldest_running)
        events = sorted([*events, *found], key=lambda e: e.id)
    elif gaps:
        gaps = []  # SQLite: a gap below a visible id is final
    return FeedRead(events, read_to, gaps, full)


def _new_grant(
    conn: Connection,
    client_id: str,
    user_id: int | None,
    subject: str | None,
    scope: str,
    now: int,
    policy: Policy,
    resources: tuple[str, ...] = (),
) -> GrantFacts:
    grant = GrantFacts(
        id=random_id("grt_"),
        client_id=client_id,
        user_id=user_id,
        subject=subject,
        scope=scope,
        created_at=now,
        expires_at=policy.grant_expiry(now),
        revoked_at=None,
        revoked_reason=None,
        resources=resources,
    )
    conn.execute(
        insert(grants).values(
            id=grant.id,
            client_id=client_id,
            user_id=user_id,
            scope=scope,
            created_at=now,
            expires_at=grant.expires_at,
            resources=stored_resources(resources),
        )
    )
    return grant


def _revoke_grant(
    conn: Connection,
    grant_id: str,
    now: int,
    reason: str,
    known: GrantFacts | None = None,
    *,
    forget_consent: bool = True,
) -> bool:
    """Kills every token of the family at once: liveness is derived from the grant's row.

    The revocation feed hears of it in the same transaction; the entry matters until the last
    access token of the family would have expired anyway. A reuse, a replayed code, an
    operator's revocation also forget the user's remembered consent (`forget_consent`): the user
    is asked again next time, rather than a remembered consent handing whoever holds the client
    a fresh code. Only the client's own RFC 7009 revocation keeps it (signing out, cleaning up is
    no sign that its tokens were in the wrong hands, nor the user withdrawing consent).
    """
    if _REVOKE_GRANT.rowcount(conn, grant_id=grant_id, now=now, reason=reason) != 1:
        return False
    last = _last_access_expiry(conn, grant_id, now)
    _ANNOUNCE_GRANT.run(
        conn,
        grant_id=grant_id,
        effective_at=now,
        expires_at=now if last is None else last,
        created_at=now,
    )
    _wake_feed(conn)
    outbox.grant_revoked(conn, grant_id, reason, now, known)  # a webhook, in the same transaction
    if forget_consent:
        _FORGET_CONSENT.run(conn, grant_id=grant_id)
    return True


def _last_access_expiry(conn: Connection, grant_id: str, now: int) -> int | None:
    """The latest `exp` among the grant's access tokens that expire after `now`, or None.

    `access_tokens` has no index of every row by grant (migration 0005): the access tokens
    with a companion are found through it, the others (client_credentials) by the grant. The
    companions are read newest expiry first, and only while one could still hold a later
    access token: an access token never outlives its companion (`Policy.pair_expiries`), so
    once a companion expires no later than the best found, none after it can do better: the
    access tokens of one or two companions are read, however long the grant has rotated."""
    best: int | None = _UNPAIRED_LAST_EXPIRY.run(conn, grant_id=grant_id, after=now).fetchone()[0]
    for refresh_id, refresh_expires_at in _COMPANIONS_BY_EXPIRY.run(
        conn, grant_id=grant_id, after=now
    ):
        if best is not None and refresh_expires_at <= best:
            break
        found = _COMPANION_LAST_EXPIRY.run(conn, key=refresh_id, after=now).fetchone()[0]
        if found is not None and (best is None or found > best):
            best = found
    return best


def _record(
    conn: Connection,
    kind: str,
    grant: GrantFacts | None,
    generation: int | None,
    now: int,
    source_address: str | None,
    detail: str,
) -> None:
    fields = {
        "kind": kind,
        "grant_id": grant.id if grant else None,
        "client_id": grant.client_id if grant else None,
        "subject": grant.subject if grant else None,
        "generation": generation,
        "source_address": source_address,
        "detail": detail,
    }
    conn.execute(insert(security_events).values(occurred_at=now, **fields))
    outbox.security_event(conn, fields, now)  # a webhook


_GRANT_COLUMNS = (
    grants.c.id.label("g_id"),
    grants.c.client_id.label("g_client_id"),
    grants.c.user_id.label("g_user_id"),
    users.c.username.label("g_subject"),
    grants.c.scope.label("g_scope"),
    grants.c.created_at.label("g_created_at"),
    grants.c.expires_at.label("g_expires_at"),
    grants.c.revoked_at.label("g_revoked_at"),
    grants.c.revoked_reason.label("g_revoked_reason"),
    grants.c.resources.label("g_resources"),
)


def _confirming(
    client: Client | None, work: Callable[[Connection], T]
) -> Callable[[Connection], T | ClientChanged]:
    """`work`, done only if `client`'s row is unchanged, in the same transaction (see
    `ClientChanged`); with no client to confirm, `work` itself."""
    if client is None:
        return work
    seen = client

    def confirmed(conn: Connection) -> T | ClientChanged:
        return work(conn) if _client_unchanged(conn, seen) else CLIENT_CHANGED

    return confirmed


def _require_enabled(conn: Connection, client_id: str) -> None:
    """Before a new grant of `client_id`: the client is still enabled, read in this
    transaction, or `ClientDisabled`.

    The request authenticated on an earlier read; a disable committed since then must not be
    followed by a grant it could not see to revoke (`AdminStore.disable_client` revokes the
    grants it finds). On PostgreSQL the row is read FOR SHARE: a disable's UPDATE of it waits
    for this transaction to commit, and then finds this grant; one that committed first is
    seen here. SQLite's writers are serialized anyway (the clause is not rendered there)."""
    disabled_at = conn.execute(_CLIENT_DISABLED_AT, {"client_id": client_id}).first()
    if disabled_at is None or disabled_at[0] is not None:
        raise ClientDisabled(client_id)


_CLIENT_DISABLED_AT = (
    select(clients.c.disabled_at)
    .where(clients.c.id == bindparam("client_id"))
    .with_for_update(read=True)
)


def _client_unchanged(conn: Connection, client: Client) -> bool:
    """Whether `client`'s row still authenticates as `client` did: the same secret digest, the
    same kind, still enabled (see `ClientChanged`)."""
    return _authenticates_as(
        _CLIENT_AUTHENTICATION.run(conn, client_id=client.id).fetchone(), client
    )


def _authenticates_as(row: Sequence[Any] | None, client: Client) -> bool:
    """`row`: the client's (secret digest, is public, is resource server, disabled at), or None
    when it has no row any more."""
    return row is not None and (
        row[0] == client.secret_digest
        and bool(row[1]) is client.is_public
        and bool(row[2]) is client.is_resource_server
        and row[3] == client.disabled_at
    )


def _read_confirming(
    conn: Connection,
    facts: Prepared,
    client: Client | None,
    digest: bytes,
    build: Callable[[dict[str, Any]], F],
) -> F | ClientChanged | None:
    """A token's row by `digest` (`_REFRESH_FACTS` or `_ACCESS_FACTS`) as `build` makes it,
    if `client` (when given) still authenticates as it did (see `ClientChanged`): the client's
    row is joined to the token's (see `_CONFIRMING`), one query where the confirmation used to
    be a second. A token that is not found is no proof of anything, so the client is then
    confirmed on its own."""
    row = facts.one(conn, digest=digest, confirm_id=None if client is None else client.id)
    if client is None:
        return None if row is None else build(row)
    if row is None:
        return None if _client_unchanged(conn, client) else CLIENT_CHANGED
    now_stored = (
        row["c_secret_digest"],
        row["c_is_public"],
        row["c_is_resource_server"],
        row["c_disabled_at"],
    )
    confirmed = row["c_id"] is not None and _authenticates_as(now_stored, client)
    return build(row) if confirmed else CLIENT_CHANGED


def client_values(client: Client) -> dict[str, Any]:
    """The `clients` row that stores `client` (every way of registering one writes this)."""
    return {
        "id": client.id,
        "name": client.name,
        "secret_digest": client.secret_digest,
        "is_public": client.is_public,
        "is_resource_server": client.is_resource_server,
        "redirect_uris": json.dumps(list(client.redirect_uris)),
        "scope": client.scope,
        "created_at": client.created_at,
        "disabled_at": client.disabled_at,
        "resource_uri": client.resource_uri,
        "allowed_resources": stored_resources(client.allowed_resources),
        "remember_consent": client.remember_consent,
        "require_pkce": client.require_pkce,
    }


def client_from_row(row: RowMapping | dict[str, Any]) -> Client:
    """A `clients` row as the `Client` it stores."""
    return Client(
        id=row["id"],
        name=row["name"],
        secret_digest=row["secret_digest"],
        is_public=bool(row["is_public"]),
        is_resource_server=bool(row["is_resource_server"]),
        redirect_uris=tuple(json.loads(row["redirect_uris"])),
        scope=row["scope"],
        created_at=row["created_at"],
        disabled_at=row["disabled_at"],
        resource_uri=row["resource_uri"],
        allowed_resources=resources_from_stored(row["allowed_resources"]),
        remember_consent=bool(row["remember_consent"]),
        require_pkce=bool(row["require_pkce"]),
    )


def _grant_from_labels(row: RowMapping | dict[str, Any]) -> GrantFacts:
    return GrantFacts(
        id=row["g_id"],
        client_id=row["g_client_id"],
        user_id=row["g_user_id"],
        subject=row["g_subject"],
        scope=row["g_scope"],
        created_at=row["g_created_at"],
        expires_at=row["g_expires_at"],
        revoked_at=row["g_revoked_at"],
        revoked_reason=row["g_revoked_reason"],
        resources=resources_from_stored(row["g_resources"]),
    )


def _grant(conn: Connection, grant_id: str) -> GrantFacts | None:
    row = (
        conn.execute(
            select(*_GRANT_COLUMNS)
            .outerjoin(users, users.c.id == grants.c.user_id)
            .where(grants.c.id == grant_id)
        )
        .mappings()
        .first()
    )
    return _grant_from_labels(row) if row is not None else None


def _refresh_facts(
    conn: Connection, digest: bytes, client: Client | None = None, *, lineage: bool = False
) -> RefreshFacts | ClientChanged | None:
    """The refresh token stored under `digest`, if `client` (when given) still authenticates
    as it did; with its lineage (rule 3b) when `lineage`."""
    facts = _REFRESH_LINEAGE_FACTS if lineage else _REFRESH_FACTS
    return _read_confirming(conn, facts, client, digest, _refresh_from_row)


def _access_facts(
    conn: Connection, digest: bytes, client: Client | None = None
) -> AccessFacts | ClientChanged | None:
    """The access token stored under `digest`, if `client` (when given) still authenticates
    as it did."""
    return _read_confirming(conn, _ACCESS_FACTS, client, digest, _access_from_row)


def _refresh_from_row(row: dict[str, Any]) -> RefreshFacts:
    return RefreshFacts(
        id=row["id"],
        grant=_grant_from_labels(row),
        generation=row["generation"],
        issued_at=row["issued_at"],
        expires_at=row["expires_at"],
        exchanged_at=row["exchanged_at"],
        retire_at=row["retire_at"],
        revoked_at=row["revoked_at"],
        sealed_response=row["sealed_response"],
        parent_id=row.get("parent_id"),
        continued_id=row.get("continued_id"),
        parent_continued_id=row.get("parent_continued_id"),
    )


def _access_from_row(row: dict[str, Any]) -> AccessFacts:
    companion = None
    if row["refresh_token_id"] is not None:
        companion = CompanionFacts(retire_at=row["rt_retire_at"], revoked_at=row["rt_revoked_at"])
    return AccessFacts(
        id=row["id"],
        grant=_grant_from_labels(row),
        generation=row["generation"],
        scope=row["scope"],
        issued_at=row["issued_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        companion=companion,
        jti=row["jti"],
        audience=audience_from_stored(row["audience"]),
    )


def _code_facts(row: RowMapping) -> CodeFacts:
    return CodeFacts(
        client_id=row["client_id"],
        user_id=row["user_id"],
        redirect_uri=row["redirect_uri"],
        scope=row["scope"],
        code_challenge=row["code_challenge"],
        expires_at=row["expires_at"],
        used_at=row["used_at"],
        grant_id=row["grant_id"],
        resources=resources_from_stored(row["resources"]),
    )


def _user(conn: Connection, where: Any) -> User | None:
    row = conn.execute(select(users).where(where)).mappings().first()
    if row is None:
        return None
    return User(row["id"], row["username"], row["password_hash"], bool(row["is_admin"]))


__all__ = ["SQLStore", "UserExists"]


# -- the statements of the hot paths, compiled once per dialect (see baton.store.prepared) -------

_rt, _at = refresh_tokens, access_tokens

_CLIENT = Prepared(select(clients).where(clients.c.id == bindparam("client_id")))
_CLIENT_AUTHENTICATION = Prepared(
    select(
        clients.c.secret_digest,
        clients.c.is_public,
        clients.c.is_resource_server,
        clients.c.disabled_at,
    ).where(clients.c.id == bindparam("client_id"))
)

# The client a request authenticated as, joined to the token row it asks about: its row as it is
# now, to compare with the one it authenticated against (`_read_confirming`). `confirm_id` NULL
# (no client to confirm) matches nothing.
_confirm = clients.alias("confirm")
_CONFIRMING = (
    _confirm.c.id.label("c_id"),
    _confirm.c.secret_digest.label("c_secret_digest"),
    _confirm.c.is_public.label("c_is_public"),
    _confirm.c.is_resource_server.label("c_is_resource_server"),
    _confirm.c.disabled_at.label("c_disabled_at"),
)

_REFRESH_COLUMNS = (
    _rt.c.id,
    _rt.c.generation,
    _rt.c.issued_at,
    _rt.c.expires_at,
    _rt.c.exchanged_at,
    _rt.c.retire_at,
    _rt.c.revoked_at,
    _rt.c.sealed_response,
    *_GRANT_COLUMNS,
    *_CONFIRMING,
)
_REFRESH_FACTS = Prepared(
    select(*_REFRESH_COLUMNS)
    .join(grants, grants.c.id == _rt.c.grant_id)
    .outerjoin(users, users.c.id == grants.c.user_id)
    .outerjoin(_confirm, _confirm.c.id == bindparam("confirm_id"))
    .where(_rt.c.digest == bindparam("digest"))
)
# The same with the token's lineage (rule 3b), read only under `fork`, so that `replay` and
# `strict` pay nothing for it: the parent is one primary-key lookup.
_parent = refresh_tokens.alias("parent")
_REFRESH_LINEAGE_FACTS = Prepared(
    select(
        *_REFRESH_COLUMNS,
        _rt.c.parent_id,
        _rt.c.continued_id,
        _parent.c.continued_id.label("parent_continued_id"),
    )
    .join(grants, grants.c.id == _rt.c.grant_id)
    .outerjoin(users, users.c.id == grants.c.user_id)
    .outerjoin(_parent, _parent.c.id == _rt.c.parent_id)
    .outerjoin(_confirm, _confirm.c.id == bindparam("confirm_id"))
    .where(_rt.c.digest == bindparam("digest"))
)

# Rule 3b: the first child of a parent to be refreshed claims the parent's continuation. Only
# one transaction can move `continued_id` from NULL; on PostgreSQL (READ COMMITTED) a concurrent
# claim waits for our row lock, then re-evaluates the condition on the committed row and matches
# nothing unless the claim was its own token's. SQLite serializes writers before the read.
_CLAIM_CONTINUATION = Prepared(
    update(_rt)
    .where(
        _rt.c.id == bindparam("parent_id"),
        or_(_rt.c.continued_id.is_(None), _rt.c.continued_id == bindparam("child_id")),
    )
    .values(continued_id=bindparam("child_id"))
)
# A sibling is issued only while no child's chain has continued: the parent's row is locked
# and its condition checked in the issuing transaction (PostgreSQL: a concurrent claim is
# waited for, then seen).
_GUARD_FORK = Prepared(
    update(_rt)
    .where(_rt.c.id == bindparam("rt_id"), _rt.c.continued_id.is_(None))
    .values(continued_id=None)
)

_ACCESS_FACTS = Prepared(
    select(
        _at.c.id,
        _at.c.generation,
        _at.c.scope,
        _at.c.issued_at,
        _at.c.expires_at,
        _at.c.revoked_at,
        _at.c.refresh_token_id,
        _at.c.jti,
        _at.c.audience,
        _rt.c.retire_at.label("rt_retire_at"),
        _rt.c.revoked_at.label("rt_revoked_at"),
        *_GRANT_COLUMNS,
        *_CONFIRMING,
    )
    .join(grants, grants.c.id == _at.c.grant_id)
    .outerjoin(users, users.c.id == grants.c.user_id)
    .outerjoin(_rt, _rt.c.id == _at.c.refresh_token_id)
    .outerjoin(_confirm, _confirm.c.id == bindparam("confirm_id"))
    .where(_at.c.digest == bindparam("digest"))
)

# The single-successor claim: only one transaction can move `exchanged_at` from NULL.
_CLAIM_SUCCESSOR = Prepared(
    update(_rt)
    .where(
        _rt.c.id == bindparam("rt_id"),
        _rt.c.exchanged_at.is_(None),
        _rt.c.revoked_at.is_(None),
    )
    .values(
        exchanged_at=bindparam("exchanged"),
        retire_at=bindparam("retire"),
        sealed_response=bindparam("sealed"),
    )
)

_INSERT_REFRESH = Prepared(
    insert(_rt)
    .values(
        digest=bindparam("digest"),
        grant_id=bindparam("grant_id"),
        parent_id=bindparam("parent_id"),
        generation=bindparam("generation"),
        issued_at=bindparam("issued_at"),
        expires_at=bindparam("expires_at"),
    )
    .returning(_rt.c.id)
)

_INSERT_ACCESS = Prepared(
    insert(_at).values(
        digest=bindparam("digest"),
        grant_id=bindparam("grant_id"),
        refresh_token_id=bindparam("refresh_token_id"),
        generation=bindparam("generation"),
        scope=bindparam("scope"),
        issued_at=bindparam("issued_at"),
        expires_at=bindparam("expires_at"),
        jti=bindparam("jti"),
        audience=bindparam("audience"),
    )
)

_REVOKE_ACCESS = Prepared(
    update(_at)
    .where(_at.c.id == bindparam("at_id"), _at.c.revoked_at.is_(None))
    .values(revoked_at=bindparam("now"))
)


# The feed's INSERTs (`_ANNOUNCE_*`) are never the first write of their transaction: each runs
# only after an UPDATE changed a row (`_CLAIM_SUCCESSOR`, `_REVOKE_ACCESS`, `_REVOKE_GRANT`),
# so on PostgreSQL the transaction has its xid before its events take their ids. The feed's
# watermark relies on it (see `baton.core.watermark`); `tests/server/test_feed.py` checks every
# site.


def _announcement(which: Any) -> Prepared:
    """Feed events for the access tokens `which` selects that outlive `effective_at`."""
    dying = select(
        literal("access_token"),
        _at.c.grant_id,
        _at.c.jti,
        _at.c.digest,
        bindparam("effective_at", type_=BigInteger),
        _at.c.expires_at,
        bindparam("now", type_=BigInteger),
    ).where(which == bindparam("key"), _at.c.expires_at > bindparam("expiring_after"))
    return Prepared(
        insert(revocation_events).from_select(
            ["kind", "grant_id", "jti", "token_digest", "effective_at", "expires_at", "created_at"],
            dying,
        )
    )


_FORGET_CONSENT = Prepared(
    delete(consents).where(
        consents.c.user_id
        == select(grants.c.user_id).where(grants.c.id == bindparam("grant_id")).scalar_subquery(),
        consents.c.client_id
        == select(grants.c.client_id).where(grants.c.id == bindparam("grant_id")).scalar_subquery(),
    )
)
_REVOKE_GRANT = Prepared(
    update(grants)
    .where(grants.c.id == bindparam("grant_id"), grants.c.revoked_at.is_(None))
    .values(revoked_at=bindparam("now"), revoked_reason=bindparam("reason"))
)


# A revoked grant's feed entry matters until its last access token would have expired anyway
# (`_last_access_expiry`).
_UNPAIRED_LAST_EXPIRY = Prepared(
    select(func.max(_at.c.expires_at)).where(
        _at.c.refresh_token_id.is_(None),
        _at.c.grant_id == bindparam("grant_id"),
        _at.c.expires_at > bindparam("after"),
    )
)
_COMPANIONS_BY_EXPIRY = Prepared(
    select(_rt.c.id, _rt.c.expires_at)
    .where(_rt.c.grant_id == bindparam("grant_id"), _rt.c.expires_at > bindparam("after"))
    .order_by(_rt.c.expires_at.desc())
)
_COMPANION_LAST_EXPIRY = Prepared(
    select(func.max(_at.c.expires_at)).where(
        _at.c.refresh_token_id == bindparam("key"), _at.c.expires_at > bindparam("after")
    )
)
_ANNOUNCE_GRANT = Prepared(
    insert(revocation_events).values(
        kind="grant",
        grant_id=bindparam("grant_id"),
        effective_at=bindparam("effective_at"),
        expires_at=bindparam("expires_at"),
        created_at=bindparam("created_at"),
    )
)

_ANNOUNCE_COMPANION = _announcement(_at.c.refresh_token_id)
_ANNOUNCE_ACCESS = _announcement(_at.c.id)

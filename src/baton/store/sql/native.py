"""PostgreSQL's native paths: the common refresh, revocation and introspection in the fewest
round trips, with asyncpg's own statements.

The general transactions (`baton.store.sql.lifecycle`) run through SQLAlchemy's async engine,
a greenlet and SQLAlchemy's execution per statement, and a rotation there is about seven round
trips (BEGIN, the facts, the claim, the feed, two INSERTs, COMMIT). Here the common case takes
two, on the pooled connection's own asyncpg connection (`PostgresRunner.native`):

1. The facts, read in autocommit with the client's row joined, as the general path reads them
   (the same statements: `statements.REFRESH_FACTS`, `ACCESS_FACTS`), plus the client row's
   `xmin`, which changes with every update of the row.
2. For the common decision only, ONE statement of data-modifying CTEs, which PostgreSQL runs as
   one atomic transaction: a rotation claims the successor slot on every fact its decision
   relied on that may have changed since the read (the token neither exchanged nor revoked,
   its stamps as read, which `KEEP_REFRESH` moves; the grant not revoked; the client's row the
   one the request was confirmed against), and only if the claim matched, announces the
   companion's death to the feed and inserts the child pair.

Anything else (no claim: a lost race, a concurrent revocation, the client changed; a replay, a
fork, a reuse, a token that is kept, a lineage to read, a client not confirmed, a driver
error) takes the general transaction, which reads again and decides again: correctness is
carried by the general path, this one only short-cuts what it would have done. The rules
decide here exactly as there (`rules.decide_refresh`, `lifecycle.plan_rotation`).

The feed's watermark (`baton.core.watermark`) needs a feed INSERT never to be the first write
of its transaction. In a statement of CTEs, the feed INSERT's rows come from the claim's (or the
revocation's) UPDATE: no feed row, hence no id taken from the sequence, before that UPDATE has
changed a row and the transaction has its xid.

Only for PostgreSQL with `Settings.fast_paths` on (`SQLStore` asks `for_runner`): with fast
paths off everything takes the general path, so both can be run side by side.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any, Final, Literal

from sqlalchemy import literal_column
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import Select

from baton import spans
from baton.core import rules, signals
from baton.core.policy import Policy
from baton.core.vocabulary import FeedEntryKind, RevocationCause, WebhookEventType
from baton.store.base import (
    CLIENT_CHANGED,
    Client,
    ClientChanged,
    ExchangeAsk,
    ExchangeResult,
    Issued,
    Refused,
    RevokeResult,
    TokenFacts,
)
from baton.store.engines.postgresql import (
    NativeFailed,
    NativeOutcomeUnknown,
    PostgresRunner,
    wakes_feed,
)
from baton.store.prepared import Prepared
from baton.store.sql import lifecycle
from baton.store.sql.confirm import authenticates_as
from baton.store.sql.outbox import grant_revoked_payload
from baton.store.sql.rows import access_from_row, refresh_from_row
from baton.store.sql.statements import (
    ACCESS_FACTS,
    CLIENT_AUTHENTICATION,
    CONFIRMED_LABELS,
    REFRESH_FACTS,
    REFRESH_LINEAGE_FACTS,
)

if TYPE_CHECKING:
    import asyncpg  # annotations only: a server on SQLite never imports the driver


class Fallback(Enum):
    """What a native call returns when the general transaction must answer instead."""

    GENERAL = "general"


GENERAL: Final = Fallback.GENERAL


def for_runner(runner: object) -> Native | None:
    """The native paths of `runner`, or None (not PostgreSQL, or fast paths off)."""
    if isinstance(runner, PostgresRunner) and runner.fast_paths:
        return Native(runner)
    return None


_NAMED = re.compile(r"(?<![:\w]):([a-z_]+)")


def _numbered(sql: str) -> tuple[str, tuple[str, ...]]:
    """`sql` with its `:name` parameters as asyncpg's `$n`, and the names in `$n` order."""
    order: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in order:
            order.append(name)
        return f"${order.index(name) + 1}"

    return _NAMED.sub(number, sql), tuple(order)


class NativeStatement:
    """A statement as asyncpg runs it: SQL text with `$n`, and the parameter names in order."""

    __slots__ = ("order", "sql")

    def __init__(self, sql: str, order: Sequence[str]) -> None:
        self.sql = sql
        self.order = tuple(order)

    @classmethod
    def named(cls, sql: str) -> NativeStatement:
        """A statement written with `:name` parameters."""
        return cls(*_numbered(sql))

    def args(self, values: dict[str, Any]) -> list[Any]:
        return [values[name] for name in self.order]


def _compiled(statement: Any, dialect: Dialect) -> NativeStatement:
    """A Core statement of `statements` compiled for asyncpg (numbered `$n` parameters)."""
    compiled = statement.compile(dialect=dialect)
    return NativeStatement(compiled.string, compiled.positiontup or ())


def _with_client_xmin(facts: Prepared) -> Select[Any]:
    """A facts statement with the confirming client row's `xmin` (`c_xmin`): it changes with
    every update of the row, so a write may require the row to be still the one read."""
    statement = facts.statement
    assert isinstance(statement, Select)
    return statement.add_columns(literal_column("confirm.xmin").label("c_xmin"))


# One rotation, all or nothing. `claim` matches only the token as the decision saw it, under a
# live grant and an unchanged client row; every later part reads `claim`'s row, so nothing is
# written when it matched none. A concurrent claim of the token (READ COMMITTED) waits for our
# row lock, then matches nothing and takes the general path.
ROTATE = NativeStatement.named(
    """
WITH claim AS (
    UPDATE refresh_tokens
       SET exchanged_at = :now::bigint, retire_at = :retire_at::bigint,
           sealed_response = :sealed::bytea, sealed_id_token = :sealed_id_token::bytea
     WHERE id = :rt_id::bigint AND exchanged_at IS NULL AND revoked_at IS NULL
       AND issued_at = :issued_at::bigint AND expires_at = :expires_at::bigint
       AND EXISTS (SELECT 1 FROM grants
                    WHERE id = :grant_id::varchar AND revoked_at IS NULL FOR SHARE)
       AND EXISTS (SELECT 1 FROM clients
                    WHERE id = :client_id::varchar AND xmin = :client_xmin::xid)
    RETURNING id
), announce AS (
    INSERT INTO revocation_events
           (kind, grant_id, jti, token_digest, effective_at, expires_at, created_at)
    SELECT :access_kind::varchar, a.grant_id, a.jti, a.digest,
           :retire_at::bigint, a.expires_at, :now::bigint
      FROM access_tokens a JOIN claim ON a.refresh_token_id = claim.id
     WHERE a.expires_at > :retire_at::bigint
    RETURNING 1
), child AS (
    INSERT INTO refresh_tokens
           (digest, grant_id, parent_id, generation, issued_at, expires_at, access_expires_at)
    SELECT :refresh_digest::bytea, :grant_id::varchar, claim.id, :generation::int,
           :issued::bigint, :refresh_expires_at::bigint, :access_expires_at::bigint
      FROM claim
    RETURNING id
), access AS (
    INSERT INTO access_tokens
           (digest, grant_id, refresh_token_id, generation, scope, issued_at, expires_at,
            jti, audience)
    SELECT :access_digest::bytea, :grant_id::varchar, child.id, :generation::int,
           :scope::text, :issued::bigint, :access_expires_at::bigint, :jti::varchar,
           :audience::text
      FROM child
    RETURNING 1
)
SELECT (SELECT count(*) FROM access) AS issued, (SELECT count(*) FROM announce) AS announced
"""
)

# An RFC 7009 revocation of a refresh token: the grant, its feed entry and its webhook, all or
# nothing, under an unchanged client row. The feed entry matters until the grant's last access
# token would have expired anyway: the latest `exp` among its access tokens that outlive `now`,
# exactly (`lifecycle._last_access_expiry` reads the same, walking the companions; here
# PostgreSQL does it in the statement: the unpaired ones by the grant, the others through
# each companion that has not expired, one index lookup each: LATERAL, because written as a
# join the planner hashed a sequential scan of every access token on a freshly filled table,
# docs/postgresql.md). No early stop as in the walk: every live companion is looked up. And no
# earlier than `issued_now_expire_by`, the latest `exp` an access token issued now can have: the
# statement reads the access tokens as of its start, and a rotation of the grant that committed
# while the UPDATE waited for it (its claim holds the grant FOR SHARE) is not among them.
REVOKE_GRANT = NativeStatement.named(
    """
WITH revoked AS (
    UPDATE grants SET revoked_at = :now::bigint, revoked_reason = :reason::varchar
     WHERE id = :grant_id::varchar AND revoked_at IS NULL
       AND EXISTS (SELECT 1 FROM clients
                    WHERE id = :client_id::varchar AND xmin = :client_xmin::xid)
    RETURNING id
), last AS (
    SELECT GREATEST(
        (SELECT max(a.expires_at) FROM access_tokens a
          WHERE a.refresh_token_id IS NULL AND a.grant_id = :grant_id::varchar
            AND a.expires_at > :now::bigint),
        (SELECT max(companion.expires_at)
           FROM refresh_tokens r CROSS JOIN LATERAL (
                SELECT max(a.expires_at) AS expires_at FROM access_tokens a
                 WHERE a.refresh_token_id = r.id AND a.expires_at > :now::bigint
           ) companion
          WHERE r.grant_id = :grant_id::varchar AND r.expires_at > :now::bigint)
    ) AS expires_at
), announce AS (
    INSERT INTO revocation_events (kind, grant_id, effective_at, expires_at, created_at)
    SELECT :grant_kind::varchar, revoked.id, :now::bigint,
           GREATEST(last.expires_at, :issued_now_expire_by::bigint), :now::bigint
      FROM revoked, last
    RETURNING 1
), webhook AS (
    INSERT INTO webhook_outbox (event_type, payload, created_at, attempts, next_attempt_at)
    SELECT :event_type::varchar, :payload::text, :now::bigint, 0, :now::bigint
      FROM revoked
    RETURNING 1
)
SELECT (SELECT count(*) FROM announce) AS revoked
"""
)

# An RFC 7009 revocation of an access token: the token and its feed entry (if it outlives now).
REVOKE_ACCESS = NativeStatement.named(
    """
WITH revoked AS (
    UPDATE access_tokens SET revoked_at = :now::bigint
     WHERE id = :at_id::bigint AND revoked_at IS NULL
       AND EXISTS (SELECT 1 FROM clients
                    WHERE id = :client_id::varchar AND xmin = :client_xmin::xid)
    RETURNING grant_id, jti, digest, expires_at
), announce AS (
    INSERT INTO revocation_events
           (kind, grant_id, jti, token_digest, effective_at, expires_at, created_at)
    SELECT :access_kind::varchar, grant_id, jti, digest, :now::bigint, expires_at,
           :now::bigint
      FROM revoked WHERE expires_at > :now::bigint
    RETURNING 1
)
SELECT (SELECT count(*) FROM revoked) AS revoked, (SELECT count(*) FROM announce) AS announced
"""
)


def native_facts(dialect: Dialect) -> dict[str, NativeStatement]:
    """The facts reads of the native paths, compiled for `dialect` (asyncpg's)."""
    return {
        "refresh": _compiled(_with_client_xmin(REFRESH_FACTS), dialect),
        "lineage": _compiled(_with_client_xmin(REFRESH_LINEAGE_FACTS), dialect),
        "access": _compiled(_with_client_xmin(ACCESS_FACTS), dialect),
    }


class Native:
    """The native paths of one `PostgresRunner` (see the module's docstring). Each method
    answers, or returns `GENERAL` for the caller to run the general transaction."""

    def __init__(self, runner: PostgresRunner) -> None:
        self.runner = runner
        dialect = runner.engine.dialect
        facts = native_facts(dialect)
        self._refresh, self._lineage, self._access = (
            facts["refresh"],
            facts["lineage"],
            facts["access"],
        )
        self._client = _compiled(CLIENT_AUTHENTICATION.statement, dialect)
        self._rotate = ROTATE
        self._revoke_grant = REVOKE_GRANT
        self._revoke_access = REVOKE_ACCESS

    @staticmethod
    async def _run(conn: asyncpg.Connection, statement: NativeStatement, *args: Any) -> Any:
        """One statement's row, with its span (`spans.statement`, as `Prepared` statements get
        theirs: the text, never the values)."""
        with spans.statement(statement.sql, "postgresql"):
            return await conn.fetchrow(statement.sql, *args)

    async def _confirming(
        self, conn: asyncpg.Connection, facts: NativeStatement, client: Client, digest: bytes
    ) -> dict[str, Any] | ClientChanged | None:
        """`confirm.read_confirming` on asyncpg: the token's row (with `c_xmin`) if `client`
        still authenticates as it did; a token not found confirms the client on its own."""
        record = await self._run(
            conn, facts, *facts.args({"digest": digest, "confirm_id": client.id})
        )
        if record is None:
            stored = await self._run(conn, self._client, client.id)
            return None if authenticates_as(stored, client) else CLIENT_CHANGED
        row = dict(record)
        now_stored = tuple(row[label] for label in CONFIRMED_LABELS)
        if row["c_id"] is None or not authenticates_as(now_stored, client):
            return CLIENT_CHANGED
        return row

    # -- refresh --------------------------------------------------------------------------------

    async def exchange(
        self, ask: ExchangeAsk, policy: Policy
    ) -> ExchangeResult | Literal[Fallback.GENERAL]:
        """A refresh whose token's lineage need not be read (the caller checks): a rotation in
        two statements, a refusal in one; anything else `GENERAL`."""
        client = ask.client
        if client is None:
            return GENERAL
        writing = False
        try:
            async with self.runner.native() as conn:
                found = await self._confirming(conn, self._refresh, client, ask.digest)
                if isinstance(found, ClientChanged):
                    return found
                token = None if found is None else refresh_from_row(found)
                decision = rules.decide_refresh(token, ask.client_id, ask.now, policy)
                rejected = isinstance(decision, rules.Reject)
                if not rejected and (
                    token is None
                    or found is None
                    or not isinstance(decision, rules.Rotate)
                    or decision.continues is not None
                    or not policy.rotate
                ):
                    # The general transaction decides again, and its decision is the one
                    # traced (one decision span per exchange, as on the general path).
                    return GENERAL
                with spans.span(lifecycle.REFRESH_DECISION_SPAN) as span:
                    lifecycle.decided(span, decision, token)
                noted = signals.exchange_signals(
                    token,
                    decision,
                    ask.now,
                    ask.shadow,
                    None if token is None else token.access_expires_at,
                )
                if isinstance(decision, rules.Reject):
                    return Refused(decision.reason, signals=noted)  # nothing to write
                assert token is not None and found is not None
                scope = lifecycle.asked_scope(token, ask)
                if not isinstance(scope, frozenset):
                    return scope
                rotation = lifecycle.plan_rotation(token, ask, policy, scope)
                planned = rotation.planned
                issued = planned.issued
                if planned.refresh is None:
                    return GENERAL  # no child refresh token: not the common case
                values = {
                    "access_kind": FeedEntryKind.ACCESS_TOKEN,
                    "now": ask.now,
                    "retire_at": rotation.retire_at,
                    "sealed": rotation.sealed,
                    "sealed_id_token": rotation.sealed_id_token,
                    "rt_id": token.id,
                    "issued_at": token.issued_at,
                    "expires_at": token.expires_at,
                    "grant_id": token.grant.id,
                    "client_id": client.id,
                    "client_xmin": found["c_xmin"],
                    "refresh_digest": planned.refresh.digest,
                    "generation": issued.generation,
                    "issued": planned.issued_at,
                    "refresh_expires_at": issued.refresh_expires_at,
                    "access_expires_at": issued.access_expires_at,
                    "access_digest": planned.access_digest,
                    "scope": issued.scope,
                    "jti": planned.jti,
                    "audience": planned.audience,
                }
                writing = True
                written = await self._run(conn, self._rotate, *self._rotate.args(values))
        except NativeFailed as failed:
            if writing and failed.outcome_unknown:
                raise NativeOutcomeUnknown("the rotation may have committed") from failed
            return GENERAL
        assert written is not None
        if written["issued"] != 1:
            return GENERAL  # the claim matched nothing: the general path decides on what won
        if written["announced"] and wakes_feed(rotation.retire_at, ask.now):
            self.runner.wake_feed()
        return Issued(issued, signals=noted)

    # -- introspection --------------------------------------------------------------------------

    async def find_token(
        self, client: Client, digest: bytes | None, is_refresh: bool, server: Policy, now: int
    ) -> TokenFacts | ClientChanged | Literal[Fallback.GENERAL] | None:
        """`lifecycle.find_token` in one statement, for the common cases: an access token, or
        a refresh token of the asking client (its lineage read when `fork` may have applied)."""
        if digest is None:
            return GENERAL
        lineage = is_refresh and lifecycle.may_have_forked(server, client.policy, now)
        facts = self._access if not is_refresh else self._lineage if lineage else self._refresh
        try:
            async with self.runner.native() as conn:
                found = await self._confirming(conn, facts, client, digest)
        except NativeFailed:
            return GENERAL
        if not isinstance(found, dict):
            return found
        if not is_refresh:
            return access_from_row(found)
        token = refresh_from_row(found)
        if lineage or token.grant.client_id == client.id:
            return token
        return GENERAL  # another client's refresh token: its owner's policy is read there

    # -- revocation -----------------------------------------------------------------------------

    async def revoke_token(
        self, client: Client, digest: bytes, is_refresh: bool, server: Policy, now: int
    ) -> RevokeResult | ClientChanged | Literal[Fallback.GENERAL]:
        """`lifecycle.revoke_token` in two statements: the facts, then one that revokes the
        grant (its feed entry, its webhook) or the access token (its feed entry). `server`:
        the server's policy, over which `client`'s decides its access tokens' lifetime."""
        writing = False
        try:
            async with self.runner.native() as conn:
                found = await self._confirming(
                    conn, self._refresh if is_refresh else self._access, client, digest
                )
                if found is None:
                    return "nothing"
                if isinstance(found, ClientChanged):
                    return found
                if is_refresh:
                    token = refresh_from_row(found)
                    grant = token.grant
                    if grant.client_id != client.id:
                        return "other_client"
                    # An exchanged token past its leeway is already dead (`revoke_token`).
                    if token.exchanged_at is not None and not token.in_leeway(now):
                        return "nothing"
                    reason = RevocationCause.REVOKED
                    values = {
                        "grant_kind": FeedEntryKind.GRANT,
                        "event_type": WebhookEventType.GRANT_REVOKED,
                        "now": now,
                        "reason": reason,
                        "grant_id": grant.id,
                        "client_id": client.id,
                        "client_xmin": found["c_xmin"],
                        "payload": grant_revoked_payload(
                            grant.id, grant.client_id, grant.subject, reason, now
                        ),
                        # A token issued now lives from the next second at the latest
                        # (`MintedPair.lifetimes_from`), and a process's clock may run one
                        # second ahead of another's; its lifetime is the client's, or, if a
                        # change shortened that while we waited, at most the server's.
                        "issued_now_expire_by": now
                        + max(
                            client.policy.at(server, now).lifetimes.access_ttl,
                            server.lifetimes.access_ttl,
                        )
                        + 2,
                    }
                    statement = self._revoke_grant
                else:
                    access = access_from_row(found)
                    if access.grant.client_id != client.id:
                        return "other_client"
                    values = {
                        "access_kind": FeedEntryKind.ACCESS_TOKEN,
                        "now": now,
                        "at_id": access.id,
                        "client_id": client.id,
                        "client_xmin": found["c_xmin"],
                    }
                    statement = self._revoke_access
                writing = True
                written = await self._run(conn, statement, *statement.args(values))
        except NativeFailed as failed:
            if writing and failed.outcome_unknown:
                raise NativeOutcomeUnknown("the revocation may have committed") from failed
            return GENERAL
        assert written is not None
        if not written["revoked"]:
            # Revoked already, or the client's row changed: the general path tells which.
            return GENERAL
        if is_refresh:
            self.runner.wake_feed()
            return "grant"
        if written["announced"]:
            self.runner.wake_feed()
        return "access_token"

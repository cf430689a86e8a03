"""What the admin API's records need of the database beyond the console's queries: users paged
along their name, a user created with their claims and audited, remembered consents listed, and
the audit log read forward from a cursor for a SIEM (`baton.server.admin.api_records`).

`RecordStore` is a mixin of `baton.store.sql.admin.AdminStore` (it uses the host's `runner`,
`_read` and `_write`). Lists are keyset-paged: a page after the last row shown, never an offset,
so a page costs the same on the thousandth as on the first and rows added meanwhile are neither
skipped nor shown twice.

The audit export (`audit_after`) must never skip a row: a poller that read up to id N must not
later miss a row with an id below N. On PostgreSQL ids are drawn from a sequence when a row is
inserted, not when its transaction commits, so a transaction still open may commit id N-1 after
N was read. The export therefore takes `SHARE` lock on `audit_log` before it reads: that waits
for every transaction that inserted a row (they hold `ROW EXCLUSIVE` until they end) and keeps
new ones out until the read is done, so every id at or below the last one read has committed or
rolled back for good. The lock is held for one indexed read of at most `EXPORT_MAX` rows. It is
asked for with NOWAIT, never queued: a waiting `SHARE` request would make every new audit writer
(sign-ins among them) queue behind it. The export tries again every `EXPORT_RETRY_PAUSE` seconds,
outside any transaction, for at most `EXPORT_LOCK_WAIT_MS` (then it fails, and is polled again).
SQLite has one writer at a time, so a read there already sees a prefix of the ids.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio
from sqlalchemy import Connection, and_, or_, select, text
from sqlalchemy.exc import DBAPIError

from baton.core.audience import resources_from_stored
from baton.core.scope import parse as parse_scope
from baton.core.user_claims import ClaimChanges
from baton.passwords import NO_PASSWORD
from baton.store.admin import Actor, AuditRow, UserListing
from baton.store.base import User
from baton.store.engines import Runner
from baton.store.schema import audit_log, clients, consents, users
from baton.store.sql import registry
from baton.store.sql.audit import record
from baton.store.sql.users import listings

T = TypeVar("T")

EXPORT_MAX = 10_000  # audit rows in one export answer
# How long an export tries for a moment with no audit writer (PostgreSQL), and how often.
EXPORT_LOCK_WAIT_MS = 2_000
EXPORT_RETRY_PAUSE = 0.02
_LOCK_NOT_AVAILABLE = "55P03"


class AuditBusy(Exception):
    """An audit row's transaction stayed open longer than `EXPORT_LOCK_WAIT_MS`: ask again."""


@dataclass(frozen=True, slots=True)
class ConsentListing:
    """A user's remembered consent to a client: what a later authorization gets without asking
    (`expires_at`: a consent app's `remember_for`; None: until revoked)."""

    username: str
    client_id: str
    scope: frozenset[str]
    resources: tuple[str, ...]
    updated_at: int
    expires_at: int | None


class RecordStore:
    """The admin API's record queries, for a class with the store's `runner`, `_read` and
    `_write` (`baton.store.sql.admin.AdminStore`)."""

    runner: Runner

    async def _read(self, work: Callable[[Connection], T]) -> T:  # pragma: no cover - the host's
        raise NotImplementedError

    async def _write(self, work: Callable[[Connection], T]) -> T:  # pragma: no cover - the host's
        raise NotImplementedError

    # -- users --------------------------------------------------------------------------------

    async def user_page(
        self, after: str | None, limit: int
    ) -> tuple[list[UserListing], str | None]:
        """Users by name after `after` (deleted users left out), with their creation and last
        sign-in; and the name to page after next, if there are more."""

        def work(conn: Connection) -> tuple[list[UserListing], str | None]:
            stmt = select(users).where(users.c.deleted_at.is_(None))
            if after is not None:
                stmt = stmt.where(users.c.username > after)
            rows = list(
                conn.execute(stmt.order_by(users.c.username).limit(limit + 1)).mappings().all()
            )
            more = len(rows) > limit
            listed = listings(conn, rows[:limit])
            return listed, (listed[-1].user.username if more and listed else None)

        return await self._read(work)

    async def user_record(self, username: str) -> UserListing | None:
        """The user (deleted ones too: their name stays reserved), with creation and last
        sign-in; None when there is no such name."""

        def work(conn: Connection) -> UserListing | None:
            rows = list(
                conn.execute(select(users).where(users.c.username == username)).mappings().all()
            )
            listed = listings(conn, rows)
            return listed[0] if listed else None

        return await self._read(work)

    async def create_user_with_claims(
        self, username: str, password_hash: str, claims: ClaimChanges, actor: Actor
    ) -> User:
        """A new user (never a console administrator) with their claims (checked by the
        caller), audited in the same transaction with the names of the claims set, never their
        values. Raises `UserExists` or `UsernameOfDeletedUser` as `registry.create_user`."""

        def work(conn: Connection) -> User:
            created = registry.create_user(conn, username, password_hash, actor.now, False)
            if claims:
                found = registry.set_user_claims(conn, username, claims, actor.now)
                if found is not None:
                    created = found[1]
            detail = {
                "admin": False,
                "claims": sorted(claims.values),
                "has_password": password_hash != NO_PASSWORD,
            }
            record(conn, actor, "user.create", "user", username, detail)
            return created

        return await self._write(work)

    # -- consent ------------------------------------------------------------------------------

    async def consent_page(
        self,
        username: str | None,
        client_id: str | None,
        after: tuple[str, str] | None,
        limit: int,
        now: int,
    ) -> tuple[list[ConsentListing], tuple[str, str] | None]:
        """Remembered consents still in force, by username then client id, after `after`; and
        the (username, client id) to page after next, if there are more."""

        def work(conn: Connection) -> tuple[list[ConsentListing], tuple[str, str] | None]:
            c = consents.c
            stmt = (
                select(
                    users.c.username,
                    c.client_id,
                    c.scope,
                    c.resources,
                    c.updated_at,
                    c.expires_at,
                )
                .join(users, users.c.id == c.user_id)
                .join(clients, clients.c.id == c.client_id)
                .where(
                    or_(c.expires_at.is_(None), c.expires_at > now),
                    clients.c.deleted_at.is_(None),
                )
            )
            if username is not None:
                stmt = stmt.where(users.c.username == username)
            if client_id is not None:
                stmt = stmt.where(c.client_id == client_id)
            if after is not None:
                stmt = stmt.where(
                    or_(
                        users.c.username > after[0],
                        and_(users.c.username == after[0], c.client_id > after[1]),
                    )
                )
            stmt = stmt.order_by(users.c.username, c.client_id).limit(limit + 1)
            rows = conn.execute(stmt).all()
            found = [
                ConsentListing(
                    row.username,
                    row.client_id,
                    parse_scope(row.scope),
                    tuple(resources_from_stored(row.resources)),
                    row.updated_at,
                    row.expires_at,
                )
                for row in rows[:limit]
            ]
            more = len(rows) > limit
            cursor = (found[-1].username, found[-1].client_id) if more and found else None
            return found, cursor

        return await self._read(work)

    # -- the audit log, forward ----------------------------------------------------------------

    async def audit_after(self, after: int, limit: int) -> list[AuditRow]:
        """At most `limit` audit rows with ids above `after`, in ascending id order, such that no
        row with a lower id can commit later (see the module's docstring): a poller that goes on
        from the last id it got never misses a row, and never gets one twice. `AuditBusy` when
        a writer kept the log longer than `EXPORT_LOCK_WAIT_MS`."""
        limit = max(1, min(limit, EXPORT_MAX))
        postgres = self.runner.dialect == "postgresql"

        def work(conn: Connection) -> list[AuditRow]:
            if postgres:
                # NOWAIT: never in the lock queue, where it would hold up every audit writer.
                conn.execute(text("LOCK TABLE audit_log IN SHARE MODE NOWAIT"))
            stmt = (
                select(audit_log)
                .where(audit_log.c.id > after)
                .order_by(audit_log.c.id)
                .limit(limit)
            )
            return [AuditRow(**row) for row in conn.execute(stmt).mappings()]

        if not postgres:
            return await self._read(work)
        deadline = time.monotonic() + EXPORT_LOCK_WAIT_MS / 1000
        while True:
            try:
                # A lock stronger than ROW EXCLUSIVE needs a read-write transaction on PostgreSQL.
                return await self._write(work)
            except DBAPIError as exc:
                state = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
                if state != _LOCK_NOT_AVAILABLE:
                    raise
                if time.monotonic() >= deadline:
                    raise AuditBusy from exc
            await anyio.sleep(EXPORT_RETRY_PAUSE)


def audit_line(row: AuditRow) -> str:
    """One audit row as a JSON Lines line (no newline): what the export and
    `baton audit export` print."""
    return json.dumps(audit_payload(row), sort_keys=True, separators=(",", ":"))


def audit_payload(row: AuditRow) -> dict[str, object]:
    """An audit row as the admin API shows it: its detail parsed back into JSON."""
    try:
        detail = json.loads(row.detail) if row.detail else None
    except ValueError:
        detail = row.detail
    return {
        "id": str(row.id),
        "actor": row.actor,
        "action": row.action,
        "target_kind": row.target_kind,
        "target_id": row.target_id,
        "detail": detail,
        "occurred_at": row.occurred_at,
        "source_address": row.source_address,
    }


__all__ = [
    "EXPORT_LOCK_WAIT_MS",
    "EXPORT_MAX",
    "AuditBusy",
    "ConsentListing",
    "RecordStore",
    "audit_line",
    "audit_payload",
]

"""The `jti` of each `private_key_jwt` client assertion accepted (RFC 7523 §3), so that none is
accepted twice; purged past the assertion's `exp` (`baton.store.sql.purge`).

`ClientAssertionStore` is a mixin of `SQLStore`: each method is one unit of work through the
store's runner.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import Connection
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from baton.store.schema import client_assertions

T = TypeVar("T")


def remember(conn: Connection, digest: bytes, expires_at: int) -> bool:
    """Inserts the assertion's key; False when it was there already (a replay).

    `ON CONFLICT DO NOTHING` on the primary key: of two requests carrying one assertion at
    once, exactly one inserts the row (on PostgreSQL the second waits for the first to commit,
    then conflicts), so exactly one is accepted. A row past its `expires_at` that the purge has
    not reached yet still conflicts: its assertion could not be accepted anyway (expired)."""
    dialect_insert = postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert
    statement = (
        dialect_insert(client_assertions)
        .values(digest=digest, expires_at=expires_at)
        .on_conflict_do_nothing(index_elements=["digest"])
    )
    return bool(conn.execute(statement).rowcount)


class ClientAssertionStore:
    """Seen client assertions."""

    if TYPE_CHECKING:

        async def _write(self, work: Callable[[Connection], T]) -> T: ...

    async def remember_assertion(self, digest: bytes, expires_at: int) -> bool:
        """Records an accepted client assertion under `digest`
        (`baton.core.client_assertion.replay_digest`) until `expires_at`; False when one was
        recorded under it already: the assertion is a replay (RFC 7523 §3 item 7)."""
        return await self._write(lambda conn: remember(conn, digest, expires_at))

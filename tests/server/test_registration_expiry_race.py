"""The expiry of unused registrations never deletes a client whose first use is committing
(re-review #5, issue 26; PostgreSQL, READ COMMITTED).

The expiry reads its candidates, then deletes each in a transaction that checks again that it
was never used. A first use in flight (a code being saved: the code's row inserted, the
client's `used_at` set; or a consent being recorded) has not committed when that check reads,
so the check must wait for it, and the deletion must see what it committed: else the client
is tombstoned with a live code or consent. SQLite serializes writes: no race to lose there."""

from __future__ import annotations

import hashlib

import anyio
import asyncpg
import pytest
from sqlalchemy import select

from baton.store.admin import Actor
from baton.store.base import Client, RegisteredVia
from baton.store.schema import clients
from baton.store.sql import SQLStore
from tests.databases import empty_tables, plain_url
from tests.support import register_user, running_app

EXPIRY = 3600
CLIENT_ID = "cl_race"
# What each first use writes, in its own transaction: the row that names the client (whose
# foreign-key check locks the client's row FOR KEY SHARE) and, for a code, `mark_used`.
USES = {
    "code": (
        "INSERT INTO authorization_codes (digest, client_id, user_id, scope, code_challenge,"
        " created_at, expires_at) VALUES ('\\x01', $1, $2, '', 'c', 100, 160)",
        "UPDATE clients SET used_at = 100 WHERE id = $1 AND used_at IS NULL",
    ),
    "consent": (
        "INSERT INTO consents (user_id, client_id, scope, updated_at) VALUES ($2, $1, '', 100)",
    ),
}


def _deleted_at(store: SQLStore) -> int | None:
    query = select(clients.c.deleted_at).where(clients.c.id == CLIENT_ID)
    found: int | None = anyio.run(store.inspect, lambda conn: conn.execute(query).scalar_one())
    return found


@pytest.mark.parametrize("use", sorted(USES))
def test_a_first_use_in_flight_keeps_the_client(postgres_database: str, use: str) -> None:
    empty_tables(postgres_database)
    with running_app(postgres_database) as (_http, store, _clock):
        register_user(store)
        user = anyio.run(store.get_user, "alice")
        assert user is not None
        client = Client(
            id=CLIENT_ID,
            name="dynamic",
            secret_digest=None,
            is_public=True,
            is_resource_server=False,
            redirect_uris=("https://app.example/cb",),
            scope="",
            created_at=0,
            registered_via=RegisteredVia.DYNAMIC,
        )
        digest = hashlib.sha256(b"token").digest()
        anyio.run(store.register_dynamic_client, client, digest, Actor("test", None, 0))

        async def race() -> int:
            using = await asyncpg.connect(plain_url(postgres_database), timeout=5)
            watcher = await asyncpg.connect(plain_url(postgres_database), timeout=5)
            try:
                transaction = using.transaction()
                await transaction.start()
                for statement in USES[use]:
                    args = (CLIENT_ID, user.id) if "$2" in statement else (CLIENT_ID,)
                    await using.execute(statement, *args)
                outcome: list[int] = []
                async with anyio.create_task_group() as tasks:

                    async def expire() -> None:
                        deleted = await store.expire_dynamic_clients(2 * EXPIRY, EXPIRY, "expiry")
                        outcome.append(deleted)

                    tasks.start_soon(expire)
                    with anyio.fail_after(10):  # until the expiry waits on the client's row
                        while not await watcher.fetchval(
                            "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                            "current_database() AND wait_event_type = 'Lock'"
                        ):
                            assert not outcome, "the expiry did not wait for the first use"
                            await anyio.sleep(0.01)
                    await transaction.commit()
                return outcome[0]
            finally:
                await using.close()
                await watcher.close()

        assert anyio.run(race) == 0
        assert _deleted_at(store) is None

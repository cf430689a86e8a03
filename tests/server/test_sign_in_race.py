"""A sign-in that read the user just before a disable committed starts no session: the store checks
`disabled_at` in the transaction that would insert the session row (reading the row FOR SHARE on
PostgreSQL), and the login page says "This account is disabled."."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest
from sqlalchemy import select

from baton.store.admin import Actor
from baton.store.schema import sessions, users
from baton.store.sql import SQLStore
from tests.databases import empty_tables, plain_url
from tests.support import register_user, running_app, sign_in


def session_rows(store: SQLStore) -> list[Any]:
    return anyio.run(
        store.inspect, lambda conn: list(conn.execute(select(sessions.c.user_id)).all())
    )


def test_a_user_disabled_between_password_and_session_gets_no_session(
    database: Path | str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_app(database) as (http, store, clock):
        register_user(store)
        start = store.start_session

        async def disabled_first(*args: Any, **kwargs: Any) -> bool:
            # The password was right and the user enabled when the login handler read them;
            # an administrator's disable commits now, before the session is inserted.
            await store.admin().disable_user("alice", Actor("root", None, clock.now()))
            return await start(*args, **kwargs)

        monkeypatch.setattr(store, "start_session", disabled_first)
        answer = sign_in(http, "/login")
        assert answer.status_code == 403, answer.text
        assert "This account is disabled." in answer.text
        assert session_rows(store) == []
        assert "You are not signed in" in http.get("/logout").text

        # Enabled again, the same sign-in starts a session: the check refuses only the disabled.
        monkeypatch.setattr(store, "start_session", start)
        anyio.run(store.admin().enable_user, "alice", Actor("root", None, clock.now()))
        assert sign_in(http, "/login").status_code == 303
        assert len(session_rows(store)) == 1


def test_starting_a_session_waits_for_a_disable_in_flight(postgres_database: str) -> None:
    """PostgreSQL (READ COMMITTED): a disable that updated the user's row but has not committed
    yet is waited for, and once it commits the session is refused. Without the row read FOR
    SHARE, the session would be inserted at once under the disable's feet."""
    empty_tables(postgres_database)
    with running_app(postgres_database) as (_http, store, _clock):
        register_user(store)
        user = anyio.run(store.get_user, "alice")
        assert user is not None

        async def race() -> bool:
            disabling = await asyncpg.connect(plain_url(postgres_database), timeout=5)
            watcher = await asyncpg.connect(plain_url(postgres_database), timeout=5)
            try:
                transaction = disabling.transaction()
                await transaction.start()
                await disabling.execute("UPDATE users SET disabled_at = 1 WHERE id = $1", user.id)
                outcome: list[bool] = []
                async with anyio.create_task_group() as tasks:

                    async def start() -> None:
                        started = await store.start_session(b"r" * 32, user.id, 10, 20, None)
                        outcome.append(started)

                    tasks.start_soon(start)
                    with anyio.fail_after(10):  # until the session's transaction waits on the row
                        while not await watcher.fetchval(
                            "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                            "current_database() AND wait_event_type = 'Lock'"
                        ):
                            assert not outcome, "the session started without waiting"
                            await anyio.sleep(0.01)
                    await transaction.commit()
                return outcome[0]
            finally:
                await disabling.close()
                await watcher.close()

        assert anyio.run(race) is False
        assert session_rows(store) == []
        found = anyio.run(
            store.inspect,
            lambda conn: conn.execute(select(users.c.disabled_at)).scalar_one(),
        )
        assert found == 1

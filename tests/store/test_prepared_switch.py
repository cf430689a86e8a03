"""`Settings.fast_paths` off: the prepared statements run through `Connection.execute`, and a
rotation, its replay, a lookup and a revocation come out the same as on the driver's cursor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy import event

from baton.core.policy import Policy
from baton.store import migrate
from baton.store.base import Issued, Replayed
from baton.store.engines import PoolSettings, open_runner
from baton.store.sql import SQLStore
from tests.store.test_sql_store import NOW, ask_for, first_pair
from tests.support import register_client, register_user


def store_with(database: Path | str, fast_paths: bool) -> SQLStore:
    if isinstance(database, str):  # PostgreSQL: migrated by the fixture
        return SQLStore(
            open_runner(database, PoolSettings(size=0), fast_paths=fast_paths), Policy()
        )
    folder = database / ("fast" if fast_paths else "plain")
    folder.mkdir()
    store = SQLStore(
        open_runner(f"sqlite:///{folder / 'baton.db'}", fast_paths=fast_paths), Policy()
    )
    anyio.run(migrate.upgrade, store.runner)
    return store


def rotation(store: SQLStore, username: str) -> tuple[list[Any], int]:
    """What a rotation and what follows it return, with the tokens left out; and how many
    statements went through SQLAlchemy's execution (its `before_cursor_execute` event)."""
    register_user(store, username)
    client = register_client(store)
    parent = first_pair(store, client.id)
    assert parent.refresh_token is not None
    engine = store.runner.engine  # type: ignore[attr-defined]
    engine = getattr(engine, "sync_engine", engine)
    executed = 0

    def counted(*_args: object) -> None:
        nonlocal executed
        executed += 1

    event.listen(engine, "before_cursor_execute", counted)
    try:
        issued = anyio.run(store.exchange, ask_for(parent.refresh_token, client.id))
        replayed = anyio.run(store.exchange, ask_for(parent.refresh_token, client.id))
        assert isinstance(issued, Issued) and isinstance(replayed, Replayed)
        child = issued.pair
        assert child.refresh_token is not None
        stored = anyio.run(store.get_client, client.id)
        assert stored is not None
        access = anyio.run(
            store.find_token, stored, ask_for(child.access_token, "").digest, False, 0
        )
        refresh = anyio.run(
            store.find_token, stored, ask_for(child.refresh_token, "").digest, True, 0
        )
        revoked = anyio.run(
            store.revoke_token, stored, ask_for(child.refresh_token, "").digest, True, NOW + 1
        )
        again = anyio.run(
            store.revoke_token, stored, ask_for(child.access_token, "").digest, False, NOW + 1
        )
        events = anyio.run(store.revocations_after, 0, 100)
    finally:
        event.remove(engine, "before_cursor_execute", counted)
        anyio.run(store.close)
    summary = [
        type(issued).__name__,
        child.generation,
        type(replayed).__name__,
        type(access).__name__,
        getattr(access, "generation", None),
        getattr(access, "revoked_at", None),
        type(refresh).__name__,
        getattr(refresh, "exchanged_at", None),
        revoked,
        again,
        sorted(e.kind for e in events if e.grant_id == parent.grant_id),
    ]
    return summary, executed


def test_a_rotation_comes_out_the_same_with_fast_paths_off(database: Path | str) -> None:
    fast, through_driver = rotation(store_with(database, True), "alice")
    plain, through_sqlalchemy = rotation(store_with(database, False), "bob")
    assert plain == fast
    assert fast[0] == "Issued" and fast[8] == "grant"
    # Off, the hot statements go through SQLAlchemy's execution, which its events see.
    assert through_sqlalchemy > through_driver


@pytest.mark.parametrize("fast_paths", [True, False])
def test_the_runner_carries_the_switch_to_its_connections(tmp_path: Path, fast_paths: bool) -> None:
    from baton.store.prepared import enabled

    runner = open_runner(f"sqlite:///{tmp_path / 's.db'}", fast_paths=fast_paths)

    async def run() -> tuple[bool, bool]:
        try:
            return await runner.read(enabled), await runner.write(enabled)
        finally:
            await runner.close()

    assert anyio.run(run) == (fast_paths, fast_paths)

"""The accepted client assertions (`ClientAssertionStore`): each is accepted once."""

from __future__ import annotations

from pathlib import Path

import anyio

from baton.core.client_assertion import replay_digest
from tests.support import migrated_store


def test_an_assertion_is_remembered_once_and_purged_after_it_expires(
    database: Path | str,
) -> None:
    store = migrated_store(database / "baton.db" if isinstance(database, Path) else database)
    key = replay_digest("client", "jti-1")

    async def scenario() -> list[bool]:
        seen = [
            await store.remember_assertion(key, 1_000),
            await store.remember_assertion(key, 1_000),  # a replay: the insert conflicts
            await store.remember_assertion(replay_digest("client", "jti-2"), 1_000),
            await store.remember_assertion(replay_digest("other", "jti-1"), 1_000),
        ]
        await store.purge(1_000, 0)  # not past its expiry yet: kept
        seen.append(await store.remember_assertion(key, 1_000))
        await store.purge(1_001, 0)
        seen.append(await store.remember_assertion(key, 2_000))
        await store.close()
        return seen

    assert anyio.run(scenario) == [True, False, True, True, False, True]

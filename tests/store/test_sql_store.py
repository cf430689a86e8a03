"""The SQL store: the migration chain, the single successor under concurrency, the seal purge."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import ColumnElement, Connection, Table, func, select

from baton.core.pairs import IssuedPair, MintedPair
from baton.core.policy import Policy, RetryPolicy
from baton.core.rules import CodeRedemption
from baton.core.seal import open_seal, seal
from baton.core.tokens import TokenKind, digest, mint
from baton.store import migrate
from baton.store.base import ExchangeAsk, Issued, NewCode, Replayed
from baton.store.schema import access_tokens, metadata, refresh_tokens
from baton.store.sql import SQLStore
from tests.support import migrated_store, register_client, register_user

NOW = 1_700_000_000


def test_the_migration_chain_creates_exactly_the_schema(tmp_path: Path) -> None:
    store = SQLStore.open(f"sqlite:///{tmp_path / 'm.db'}")
    assert not anyio.run(store.schema_is_current)
    anyio.run(migrate.upgrade, store.runner)
    assert anyio.run(store.schema_is_current)
    diff = anyio.run(
        store.inspect, lambda conn: compare_metadata(MigrationContext.configure(conn), metadata)
    )
    anyio.run(store.close)
    assert diff == []


def first_pair(store: SQLStore, client_id: str) -> IssuedPair:
    """A grant and its first pair, through the public path: a code, then its redemption."""
    code = mint(TokenKind.CODE)
    new_code = NewCode(code.digest, client_id, 1, None, "read", None, NOW, NOW + 60)
    anyio.run(store.save_code, new_code)
    ask = CodeRedemption(client_id, None, None)
    result = anyio.run(store.redeem_code, code.digest, ask, MintedPair.new(), NOW, None)
    assert isinstance(result, Issued)
    return result.pair


def count(table: Table, *where: ColumnElement[bool]) -> Callable[[Connection], int]:
    def work(conn: Connection) -> int:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())

    return work


def ask_for(token: str, client_id: str, now: int = NOW) -> ExchangeAsk:
    token_digest = digest(token)
    return ExchangeAsk(
        digest=token_digest,
        client_id=client_id,
        scope=None,
        now=now,
        source_address="127.0.0.1",
        child=MintedPair.new(),
        seal=lambda pair: seal(token, token_digest, pair.seal_payload()),
    )


@pytest.mark.parametrize("retry", list(RetryPolicy))
def test_fifty_concurrent_exchanges_of_one_token(database: Path | str, retry: RetryPolicy) -> None:
    where = database / "baton.db" if isinstance(database, Path) else database
    store = migrated_store(where, Policy(retry=retry))
    register_user(store)
    client = register_client(store)
    parent = first_pair(store, client.id)
    assert parent.refresh_token is not None
    results: list[object] = []

    async def one() -> None:
        results.append(await store.exchange(ask_for(parent.refresh_token or "", client.id)))

    async def all_at_once() -> None:
        async with anyio.create_task_group() as tasks:
            for _ in range(50):
                tasks.start_soon(one)

    anyio.run(all_at_once)
    issued = [r for r in results if isinstance(r, Issued)]
    replayed = [r for r in results if isinstance(r, Replayed)]
    n_refresh = anyio.run(store.inspect, count(refresh_tokens))
    n_access = anyio.run(store.inspect, count(access_tokens))
    if retry is RetryPolicy.REPLAY:
        assert len(issued) == 1 and len(replayed) == 49
        opened = {
            open_seal(
                parent.refresh_token, ask_for(parent.refresh_token, "").digest, r.sealed_response
            )
            for r in replayed
        }
        assert opened == {issued[0].pair.seal_payload()}
        assert (n_refresh, n_access) == (2, 2)
    elif retry is RetryPolicy.FORK:
        assert len(issued) == 50
        assert len({r.pair.refresh_token for r in issued}) == 50
        assert (n_refresh, n_access) == (51, 51)
    else:
        assert len(issued) == 1
        assert (n_refresh, n_access) == (2, 2)
        grant = anyio.run(store.get_grant, parent.grant_id)
        assert grant is not None and grant.revoked_reason == "reuse"
    anyio.run(store.close)


def test_seals_are_purged_only_after_the_leeway(database: Path | str) -> None:
    store = migrated_store(database / "baton.db" if isinstance(database, Path) else database)
    register_user(store)
    client = register_client(store)
    parent = first_pair(store, client.id)
    assert parent.refresh_token is not None
    assert isinstance(anyio.run(store.exchange, ask_for(parent.refresh_token, client.id)), Issued)
    assert anyio.run(store.purge_seals, NOW + 599) == 0
    assert anyio.run(store.purge_seals, NOW + 600) == 1
    sealed = refresh_tokens.c.sealed_response.is_not(None)
    assert anyio.run(store.inspect, count(refresh_tokens, sealed)) == 0
    anyio.run(store.close)

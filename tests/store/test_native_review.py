"""Regressions of the native paths' review (issue 29): a write whose connection failed after it
committed is not decided again; a rotation and a revocation of one grant that overlap never
leave the child pair outside the grant's feed entry."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import anyio
import asyncpg
import pytest
from sqlalchemy import Connection, func, select

from baton.core.policy import Policy, RetryPolicy
from baton.store.base import Issued, Refused
from baton.store.engines import PoolSettings, open_runner
from baton.store.engines.postgresql import NativeOutcomeUnknown
from baton.store.schema import grants, refresh_tokens, revocation_events, security_events
from baton.store.sql import SQLStore
from tests.databases import empty_tables, plain_url
from tests.store.test_native_paths import NOW, _register, ask, first_refresh


def _open(url: str, retry: RetryPolicy = RetryPolicy.REPLAY, fast: bool = True) -> SQLStore:
    return SQLStore(open_runner(url, PoolSettings(size=2), fast_paths=fast), Policy(retry=retry))


class _DroppedAfterCommit:
    """The native connection, except that the rotation's statement commits and then the
    connection fails before its answer is read (a reset between CommandComplete and the read)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        row = await self._conn.fetchrow(sql, *args)
        if "WITH claim AS" in sql:
            raise asyncpg.exceptions.ConnectionDoesNotExistError("closed mid-operation")
        return row


def _drop_after_the_rotation(store: SQLStore) -> None:
    runner: Any = store.runner
    native = runner.native

    @contextlib.asynccontextmanager
    async def dropping() -> AsyncIterator[Any]:
        async with native() as conn:
            yield _DroppedAfterCommit(conn)

    runner.native = dropping


def _grant_and_events(conn: Connection) -> tuple[Any, list[str], int]:
    grant = conn.execute(select(grants.c.revoked_at, grants.c.revoked_reason)).one()
    events = [row.kind for row in conn.execute(select(security_events.c.kind))]
    children = conn.execute(
        select(func.count())
        .select_from(refresh_tokens)
        .where(refresh_tokens.c.parent_id.isnot(None))
    ).scalar_one()
    return tuple(grant), events, children


@pytest.mark.parametrize("retry", [RetryPolicy.STRICT, RetryPolicy.REPLAY])
def test_a_rotation_whose_connection_failed_after_its_commit_is_not_decided_again(
    postgres_database: str, retry: RetryPolicy
) -> None:
    """Before the fix the general path re-read the token this very request had exchanged and
    took it for a retry: under `strict`, reuse, the grant revoked. Now the outcome is unknown
    and answered so (503, a ConnectionError), as a general write whose connection failed is;
    the client's own retry is then decided as a retry."""
    empty_tables(postgres_database)

    async def run() -> None:
        store = _open(postgres_database, retry)
        try:
            client = await _register(store)
            refresh, _ = await first_refresh(store, client.id)
            _drop_after_the_rotation(store)
            with pytest.raises(NativeOutcomeUnknown) as raised:
                await store.exchange(ask(refresh, client, NOW + 1))
            assert isinstance(raised.value, ConnectionError)
            grant, events, children = await store.inspect(_grant_and_events)
            assert grant == (None, None)
            assert events == []
            assert children == 1  # it did commit
        finally:
            await store.close()

    anyio.run(run)


@pytest.mark.parametrize("fast", [True, False], ids=["native", "general"])
def test_a_rotation_waits_for_a_revocation_of_its_grant_in_flight(
    postgres_database: str, fast: bool
) -> None:
    """An operator's revocation that has updated the grant and announced its last access
    expiry, not yet committed: the rotation waits for it, then refuses; before the fix it
    issued a child pair whose access token outlived the grant's feed entry."""
    empty_tables(postgres_database)

    async def run() -> None:
        store = _open(postgres_database, fast=fast)
        admin = await asyncpg.connect(plain_url(postgres_database))
        try:
            client = await _register(store)
            refresh, _ = await first_refresh(store, client.id)
            revoking = admin.transaction()
            await revoking.start()
            await admin.execute(
                "UPDATE grants SET revoked_at = $1, revoked_reason = 'admin'", NOW + 1
            )
            rotation = asyncio.ensure_future(store.exchange(ask(refresh, client, NOW + 1)))
            await asyncio.sleep(0.3)
            assert not rotation.done()  # held on the grant's row
            await revoking.commit()
            result = await asyncio.wait_for(rotation, 10)
            assert isinstance(result, Refused)
            _, _, children = await store.inspect(_grant_and_events)
            assert children == 0
        finally:
            await admin.close()
            await store.close()

    anyio.run(run)


@pytest.mark.parametrize("fast", [True, False], ids=["native", "general"])
def test_a_revocation_waiting_for_a_rotation_covers_the_pair_it_issued(
    postgres_database: str, fast: bool
) -> None:
    """A rotation in flight holds the grant FOR SHARE (its claim); a revocation of the grant
    waits for it, and its feed entry lasts at least as long as the pair the rotation issued.
    The rotation is stood for by a transaction that holds the grant as a claim does and
    inserts an access token as the rotation would, with the longest lifetime it can have."""
    empty_tables(postgres_database)

    async def run() -> None:
        store = _open(postgres_database, fast=fast)
        rotating = await asyncpg.connect(plain_url(postgres_database))
        try:
            client = await _register(store)
            refresh, _ = await first_refresh(store, client.id)
            in_flight = rotating.transaction()
            await in_flight.start()
            grant_id = await rotating.fetchval("SELECT id FROM grants FOR SHARE")
            late = NOW + 1 + Policy().lifetimes.access_ttl + 1
            await rotating.execute(
                "INSERT INTO access_tokens (digest, grant_id, generation, scope, issued_at,"
                " expires_at, jti) VALUES ($1, $2, 1, 'read', $3, $4, 'jti-in-flight')",
                b"\x01" * 32,
                grant_id,
                NOW + 1,
                late,
            )
            revocation = asyncio.ensure_future(
                store.revoke_token(client, _digest(refresh), True, NOW + 1)
            )
            await asyncio.sleep(0.3)
            assert not revocation.done()  # held on the grant's row
            await in_flight.commit()
            assert await asyncio.wait_for(revocation, 10) == "grant"
            expires_at = await store.inspect(
                lambda conn: conn.execute(
                    select(revocation_events.c.expires_at).where(
                        revocation_events.c.kind == "grant"
                    )
                ).scalar_one()
            )
            assert expires_at >= late
        finally:
            await rotating.close()
            await store.close()

    anyio.run(run)


def _digest(token: str) -> bytes:
    from baton.core.tokens import digest

    return digest(token)


def test_a_kept_token_takes_the_general_path_at_once(postgres_database: str) -> None:
    """A client whose policy keeps its refresh token (`rotate` off) is never a native rotation:
    no facts read, decision and fallback before the general transaction."""
    empty_tables(postgres_database)

    async def run() -> None:
        store = _open(postgres_database)
        try:
            client = await _register(store)
            refresh, _ = await first_refresh(store, client.id)
            calls: list[str] = []
            native: Any = store._native
            original = native.exchange

            async def counted(*args: Any) -> Any:
                calls.append("native")
                return await original(*args)

            native.exchange = counted
            kept = replace(ask(refresh, client, NOW + 1), policy=Policy(rotate=False))
            result = await store.exchange(kept)
            assert isinstance(result, Issued) and result.kept
            assert calls == []
        finally:
            await store.close()

    anyio.run(run)

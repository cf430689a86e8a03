"""Regressions of the native paths' review (issue 29): a write whose connection failed after it
committed is not decided again; a rotation and a revocation of one grant that overlap never
leave the child pair outside the grant's feed entry."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
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
from baton.store.engines.postgresql import NativeOutcomeUnknown, PostgresRunner
from baton.store.schema import (
    access_tokens,
    grants,
    refresh_tokens,
    revocation_events,
    security_events,
)
from baton.store.sql import SQLStore, lifecycle, statements
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


def test_a_fork_under_a_grant_revoked_since_its_read_issues_no_sibling(
    postgres_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An operator's revocation commits between a fork retry's read and its guard: the guard
    holds the grant FOR SHARE too, matches nothing, and the retry, decided again, is refused;
    before the fix a sibling pair was issued under the revoked grant."""
    empty_tables(postgres_database)
    store = _open(postgres_database, RetryPolicy.FORK, fast=False)
    guard = statements.GUARD_FORK
    url = plain_url(postgres_database)

    class RevokedFirst:
        def rowcount(self, conn: Connection, **values: Any) -> int:
            # (Another session, from this thread: the store's event loop waits in this call.)
            subprocess.run(
                ["psql", url, "-qc", f"UPDATE grants SET revoked_at = {NOW + 2}"], check=True
            )
            return guard.rowcount(conn, **values)

    async def run() -> None:
        try:
            client = await _register(store)
            refresh, _ = await first_refresh(store, client.id)
            assert isinstance(await store.exchange(ask(refresh, client, NOW + 1)), Issued)
            monkeypatch.setattr(lifecycle, "GUARD_FORK", RevokedFirst())
            retried = await store.exchange(ask(refresh, client, NOW + 2))
            monkeypatch.setattr(lifecycle, "GUARD_FORK", guard)
            assert isinstance(retried, Refused)
            access = await store.inspect(
                lambda conn: conn.execute(
                    select(func.count()).select_from(access_tokens)
                ).scalar_one()
            )
            assert access == 2  # the first pair and its child, no sibling
        finally:
            await store.close()

    anyio.run(run)


def test_two_losers_that_both_find_reuse_do_not_deadlock(postgres_database: str) -> None:
    """`strict`, the general path: two requests wait on a token another transaction exchanges.
    Each claim held the grant FOR SHARE; deciding again in the same transaction, both found
    reuse and each waited, to revoke the grant, for the other's lock (PostgreSQL broke the
    deadlock after a second). Now a lost race runs again in a new transaction."""
    empty_tables(postgres_database)

    async def run() -> None:
        store = _open(postgres_database, RetryPolicy.STRICT, fast=False)
        winner = await asyncpg.connect(plain_url(postgres_database))
        try:
            client = await _register(store)
            refresh, _ = await first_refresh(store, client.id)
            before = await winner.fetchval(
                "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
            )
            exchanging = winner.transaction()
            await exchanging.start()
            await winner.execute(
                "UPDATE refresh_tokens SET exchanged_at = $1, retire_at = $1", NOW + 1
            )
            losers = [
                asyncio.ensure_future(store.exchange(ask(refresh, client, NOW + 1)))
                for _ in range(2)
            ]
            await asyncio.sleep(0.3)
            await exchanging.commit()
            started = asyncio.get_running_loop().time()
            answers = await asyncio.wait_for(asyncio.gather(*losers), 10)
            assert asyncio.get_running_loop().time() - started < 0.8
            assert all(isinstance(answer, Refused) for answer in answers)
            after = await winner.fetchval(
                "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
            )
            assert after == before
        finally:
            await winner.close()
            await store.close()

    anyio.run(run)


def test_a_runner_used_from_a_second_event_loop_serves_its_first_call(
    postgres_database: str,
) -> None:
    """A pool belongs to the loop that made it: a runner used again from another loop (the
    first one closed) makes a new one, and its first call is answered, not a RuntimeError."""
    runner = open_runner(postgres_database, PoolSettings(size=1))
    assert isinstance(runner, PostgresRunner)

    async def once() -> int:
        async with runner.native() as conn:
            return int(await conn.fetchval("SELECT 1"))

    assert anyio.run(once) == 1
    assert anyio.run(once) == 1

    async def close() -> None:
        await runner.close()

    anyio.run(close)

"""PostgreSQL's native paths (`baton.store.sql.native`): the same answers as the general
transactions, one successor under a race, the feed and its NOTIFY, the client confirmation up
to the write, and what they rely on in SQLAlchemy and asyncpg."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import anyio
import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from baton.core.pairs import MintedPair
from baton.core.policy import Policy, RetryPolicy
from baton.core.rules import CodeRedemption
from baton.core.seal import seal
from baton.core.tokens import TokenKind, digest, mint
from baton.store.base import (
    Client,
    ClientChanged,
    ExchangeAsk,
    Issued,
    NewCode,
    Replayed,
)
from baton.store.engines import FEED_CHANNEL, PoolSettings, open_runner
from baton.store.engines.postgresql import PostgresRunner
from baton.store.schema import clients, refresh_tokens, revocation_events, webhook_outbox
from baton.store.sql import SQLStore, native
from tests.databases import empty_tables, plain_url
from tests.support import register_client, register_user

NOW = 1_700_000_000


def open_store(url: str, *, fast_paths: bool = True, size: int = 4) -> SQLStore:
    return SQLStore(open_runner(url, PoolSettings(size=size), fast_paths=fast_paths), Policy())


async def first_refresh(store: SQLStore, client_id: str, now: int = NOW) -> tuple[str, str]:
    """A grant's first pair (a code redeemed): its (refresh token, access token)."""
    code = mint(TokenKind.CODE)
    await store.save_code(NewCode(code.digest, client_id, 1, None, "read", None, now, now + 60))
    result = await store.redeem_code(
        code.digest, CodeRedemption(client_id, None, None), MintedPair.new(), now, None
    )
    assert isinstance(result, Issued) and result.pair.refresh_token is not None
    return result.pair.refresh_token, result.pair.access_token


def ask(token: str, client: Client, now: int) -> ExchangeAsk:
    token_digest = digest(token)
    return ExchangeAsk(
        digest=token_digest,
        client_id=client.id,
        scope=None,
        now=now,
        source_address=None,
        child=MintedPair.new(),
        seal=lambda payload: seal(token, token_digest, payload),
        client=client,
    )


class Answered:
    """Counts the native calls that answered themselves (not `native.GENERAL`)."""

    def __init__(self, store: SQLStore) -> None:
        self.count = 0
        paths = store._native
        assert paths is not None
        for name in ("exchange", "find_token", "revoke_token"):
            original = getattr(paths, name)
            setattr(paths, name, self._counting(original))

    def _counting(self, original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def call(*args: Any) -> Any:
            result = await original(*args)
            if result is not native.GENERAL:
                self.count += 1
            return result

        return call


def test_fast_paths_off_or_sqlite_take_the_general_path(postgres_database: str) -> None:
    assert open_store(postgres_database, fast_paths=False)._native is None
    assert open_store(postgres_database)._native is not None


# -- the same answers ------------------------------------------------------------------------

# One step of a client's life with one grant: refresh the newest token, present the one before
# it again (a replay in the leeway, reuse after it), introspect, revoke either, let time pass.
STEPS = st.lists(
    st.sampled_from(
        ["refresh", "refresh", "refresh", "retry", "find", "find_access", "revoke", "revoke_access"]
    )
    | st.integers(min_value=1, max_value=4000),
    min_size=1,
    max_size=10,
)


def _outcome(result: object) -> object:
    if isinstance(result, Issued):
        pair = result.pair
        noted = [(s.kind, s.at, s.delay, s.reason) for s in result.signals]
        return ("issued", pair.generation, pair.access_expires_at, pair.refresh_expires_at, noted)
    if isinstance(result, Replayed):
        return ("replayed", [(s.kind, s.at, s.delay, s.reason) for s in result.signals])
    if result is None or isinstance(result, str | ClientChanged):
        return result
    facts = getattr(result, "__dict__", None) or {
        name: getattr(result, name) for name in getattr(type(result), "__slots__", ())
    }
    # A token's facts or a refusal: what the rules read and said, without ids (two clients,
    # two grants, two id sequences); a signal by its kind and figures.
    kept = {k: v for k, v in sorted(facts.items()) if k not in {"id", "grant", "companion", "jti"}}
    if "signals" in kept:
        kept["signals"] = [(s.kind, s.at, s.delay, s.reason) for s in kept["signals"]]
    return (type(result).__name__, kept)


async def _life(store: SQLStore, client: Client, steps: list[str | int]) -> list[object]:
    refresh, access = await first_refresh(store, client.id)
    previous: str | None = None
    now = NOW
    seen: list[object] = []
    for step in steps:
        if isinstance(step, int):
            now += step
            continue
        if step == "refresh":
            result: object = await store.exchange(ask(refresh, client, now))
            if isinstance(result, Issued) and result.pair.refresh_token is not None:
                previous, refresh = refresh, result.pair.refresh_token
                access = result.pair.access_token
        elif step == "retry":
            result = None if previous is None else await store.exchange(ask(previous, client, now))
        elif step == "find":
            result = await store.find_token(client, digest(refresh), True, now)
        elif step == "find_access":
            result = await store.find_token(client, digest(access), False, now)
        elif step == "revoke":
            result = await store.revoke_token(client, digest(refresh), True, now)
        else:
            result = await store.revoke_token(client, digest(access), False, now)
        seen.append((step, _outcome(result)))
    return seen


def _feed_kept(
    written: tuple[list[tuple[str, int, int]], list[str]],
) -> tuple[list[tuple[str, int, int]], list[str]]:
    """What the native and general paths write alike: a grant entry's end aside."""
    feed, outbox = written
    return [
        (kind, effective, 0 if kind == "grant" else end) for kind, effective, end in feed
    ], outbox


def _feed_and_outbox(conn: Connection) -> tuple[list[tuple[str, int, int]], list[str]]:
    feed = [
        (row.kind, row.effective_at - NOW, row.expires_at - NOW)
        for row in conn.execute(select(revocation_events).order_by(revocation_events.c.id))
    ]
    outbox = [row.event_type for row in conn.execute(select(webhook_outbox))]
    return feed, outbox


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=STEPS)
def test_the_native_paths_answer_as_the_general_transactions(
    postgres_database: str, steps: list[str | int]
) -> None:
    """The same steps on the native paths and on the general transactions (fast paths off),
    on one database: the same answers, the same feed entries and webhooks."""

    async def run(
        fast_paths: bool,
    ) -> tuple[list[object], tuple[list[tuple[str, int, int]], list[str]], int]:
        store = open_store(postgres_database, fast_paths=fast_paths, size=1)
        try:
            registered = await _register(store)
            answered = Answered(store) if fast_paths else None
            seen = await _life(store, registered, steps)
            written = await store.inspect(_feed_and_outbox)
            return seen, written, 0 if answered is None else answered.count
        finally:
            await store.close()

    empty_tables(postgres_database)
    general, general_written, _ = anyio.run(run, False)
    empty_tables(postgres_database)
    fast, fast_written, answered = anyio.run(run, True)
    assert fast == general
    assert _feed_kept(fast_written) == _feed_kept(general_written)
    # A grant's feed entry lasts at least as long on the native path; there, no shorter than an
    # access token issued at the revocation could live (`native.REVOKE_GRANT`): a rotation that
    # committed while its statement waited is not in the statement's snapshot.
    bound = Policy().lifetimes.access_ttl + 2
    for (kind, effective, fast_end), (_, _, general_end) in zip(
        fast_written[0], general_written[0], strict=True
    ):
        assert general_end <= fast_end <= max(general_end, effective + bound), kind
    assert answered or not steps or all(isinstance(s, int) or s == "retry" for s in steps)


async def _register(store: SQLStore) -> Client:
    registered = await anyio.to_thread.run_sync(lambda: _register_sync(store))
    client = await store.get_client(registered)
    assert client is not None
    return client


def _register_sync(store: SQLStore) -> str:
    """A user `alice` (id 1: the tables are emptied first) and a client. `register_client`
    drives a store with its own event loop, and a pooled asyncpg connection belongs to one
    loop: it runs on a store of its own, with no pool."""
    url = store.runner.url.render_as_string(hide_password=False)  # type: ignore[attr-defined]
    other = SQLStore.open(url, Policy(), PoolSettings(size=0))
    try:
        register_user(other)
        return register_client(other).id
    finally:
        anyio.run(other.close)


# -- races, the feed, the client ----------------------------------------------------------------


def test_two_concurrent_rotations_of_one_token_issue_one_successor(postgres_database: str) -> None:
    empty_tables(postgres_database)

    async def run() -> list[object]:
        store = open_store(postgres_database, size=8)
        try:
            client = await _register(store)
            refresh, _ = await first_refresh(store, client.id)
            answered = Answered(store)
            results = await asyncio.gather(
                *(store.exchange(ask(refresh, client, NOW + 1)) for _ in range(8))
            )
            children = await store.inspect(
                lambda conn: conn.execute(
                    select(refresh_tokens.c.id).where(refresh_tokens.c.parent_id.is_not(None))
                ).all()
            )
            assert len(children) == 1
            assert answered.count >= 1
            return list(results)
        finally:
            await store.close()

    results = anyio.run(run)
    assert sum(isinstance(r, Issued) and not r.retry for r in results) == 1
    assert all(isinstance(r, Issued | Replayed) for r in results)


@pytest.mark.parametrize("fast_paths", [True, False], ids=["native", "general"])
def test_a_rotation_announces_the_companion_and_a_revocation_the_grant_with_a_notify(
    postgres_database: str, fast_paths: bool
) -> None:
    """Both are written to the feed. The revocation, effective at once, wakes the readers
    (NOTIFY); the companion's death at the end of a 600 s leeway does not: every reader looks
    again within a second anyway, long before it takes effect (`wakes_feed`)."""
    empty_tables(postgres_database)

    async def run() -> None:
        store = open_store(postgres_database, fast_paths=fast_paths)
        listener = await asyncpg.connect(plain_url(postgres_database))
        heard: list[str] = []
        await listener.add_listener(FEED_CHANNEL, lambda *args: heard.append(args[2]))
        try:
            client = await _register(store)
            refresh, _ = await first_refresh(store, client.id)
            answered = Answered(store) if fast_paths else None
            rotated = await store.exchange(ask(refresh, client, NOW + 1))
            assert isinstance(rotated, Issued) and rotated.pair.refresh_token is not None
            revoked = await store.revoke_token(
                client, digest(rotated.pair.refresh_token), True, NOW + 2
            )
            assert revoked == "grant"
            await _until(lambda: len(heard) >= 1)
            await anyio.sleep(0.2)
            # The revocation's NOTIFY only: one for the rotation would have come first.
            assert len(heard) == 1
            assert answered is None or answered.count == 2
            feed, outbox = await store.inspect(_feed_and_outbox)
            # The old access token dies at the end of the leeway; the grant at once, its entry
            # kept until the new access token's own expiry.
            assert [kind for kind, _, _ in feed] == ["access_token", "grant"]
            # (On the native path no earlier than a token issued at the revocation could live.)
            bound = 2 + Policy().lifetimes.access_ttl + 2 if fast_paths else 0
            assert feed[1][1] == 2
            assert feed[1][2] == max(rotated.pair.access_expires_at - NOW, bound)
            assert outbox == ["grant.revoked"]
        finally:
            await listener.close()
            await store.close()

    anyio.run(run)


@pytest.mark.parametrize("fast_paths", [True, False], ids=["native", "general"])
def test_a_strict_rotation_wakes_the_readers_at_once(
    postgres_database: str, fast_paths: bool
) -> None:
    """Under `strict` the old access token dies at the exchange itself: readers are woken."""
    empty_tables(postgres_database)

    async def run() -> None:
        store = open_store(postgres_database, fast_paths=fast_paths)
        listener = await asyncpg.connect(plain_url(postgres_database))
        heard: list[str] = []
        await listener.add_listener(FEED_CHANNEL, lambda *args: heard.append(args[2]))
        try:
            client = await _register(store)
            refresh, _ = await first_refresh(store, client.id)
            strict = replace(ask(refresh, client, NOW + 1), policy=Policy(retry=RetryPolicy.STRICT))
            assert isinstance(await store.exchange(strict), Issued)
            await _until(lambda: len(heard) >= 1)
            feed, _ = await store.inspect(_feed_and_outbox)
            assert [(kind, effective) for kind, effective, _ in feed] == [("access_token", 1)]
        finally:
            await listener.close()
            await store.close()

    anyio.run(run)


async def _until(condition: Callable[[], bool]) -> None:
    with anyio.fail_after(5):
        while not condition():
            await anyio.sleep(0.01)


@pytest.mark.parametrize("change", ["disable", "rotate_secret"])
def test_a_client_change_committed_between_the_read_and_the_write_is_refused(
    postgres_database: str, change: str
) -> None:
    """The facts read confirmed the client; a disable (or a new secret) committed before the
    rotation's statement makes it claim nothing, and the general path answers ClientChanged."""
    empty_tables(postgres_database)

    async def run() -> tuple[object, int]:
        store = open_store(postgres_database)
        try:
            client = await _register(store)
            refresh, _ = await first_refresh(store, client.id)
            paths = store._native
            assert paths is not None
            reading = paths._confirming

            async def read_then_change(*args: Any) -> Any:
                found = await reading(*args)
                values = {"disabled_at": NOW} if change == "disable" else {"secret_digest": b"n"}
                other = open_store(postgres_database, fast_paths=False, size=1)
                try:
                    await other._write(
                        lambda conn: conn.execute(
                            update(clients).where(clients.c.id == client.id).values(**values)
                        )
                    )
                finally:
                    await other.close()
                return found

            paths._confirming = read_then_change  # type: ignore[method-assign,assignment]
            result = await store.exchange(ask(refresh, client, NOW + 1))
            children = await store.inspect(
                lambda conn: len(
                    conn.execute(
                        select(refresh_tokens.c.id).where(refresh_tokens.c.parent_id.is_not(None))
                    ).all()
                )
            )
            return result, children
        finally:
            await store.close()

    result, children = anyio.run(run)
    assert isinstance(result, ClientChanged)
    assert children == 0


# -- what the native paths rely on --------------------------------------------------------------


def test_sqlalchemy_and_asyncpg_still_give_what_the_native_paths_use(
    postgres_database: str,
) -> None:
    """The native connection is an asyncpg connection from asyncpg's pool, its statements see
    `$n` parameters and xids as integers, and handing the connection back to the pool after
    autocommit statements sends nothing (asyncpg's default reset, RESET ALL and more, is
    replaced; no ROLLBACK): a hidden round trip per request would undo the point of the native
    paths. Without a pool (`size=0`) the engine's connection is borrowed through
    `AsyncConnection.get_raw_connection().driver_connection`. If this fails, run with fast
    paths off (`BATON_FAST_PATHS=0`) until `PostgresRunner.native` is adapted."""
    assert hasattr(AsyncConnection, "get_raw_connection")
    assert "reset" in inspect.signature(asyncpg.create_pool).parameters

    async def run() -> list[str]:
        runner = open_runner(postgres_database, PoolSettings(size=1, max_overflow=0))
        assert isinstance(runner, PostgresRunner)
        logged: list[str] = []

        def log(record: Any) -> None:
            logged.append(record.query)

        try:
            async with runner.native() as conn:
                assert isinstance(conn, asyncpg.Connection)
                conn.add_query_logger(log)
                assert await conn.fetchval("SELECT $1::bigint + 1", 41) == 42
                assert isinstance(await conn.fetchval("SELECT txid_current()::text::xid"), int)
                # The logger sees a ROLLBACK when one is sent (the control of the check below).
                await conn.execute("ROLLBACK")
                pid = conn.get_server_pid()
            async with runner.native() as again:
                # the one pooled connection, back from the pool
                assert again.get_server_pid() == pid
                sent = list(logged)
                again.remove_query_logger(log)
            # A general read and write on it: their own statements only.
            await runner.read(lambda c: c.execute(text("SELECT 1")).scalar())
            return sent
        finally:
            await runner.close()

    sent = anyio.run(run)
    assert sent == ["SELECT $1::bigint + 1", "SELECT txid_current()::text::xid", "ROLLBACK"]


def test_without_a_pool_the_native_paths_borrow_the_engines_connection(
    postgres_database: str,
) -> None:
    """`size=0` (an external pooler such as PgBouncer): no pool of Baton's own, not even for
    the native paths; the engine's connection (NullPool: one per use) is borrowed."""

    async def run() -> int:
        runner = open_runner(postgres_database, PoolSettings(size=0))
        assert isinstance(runner, PostgresRunner)
        try:
            async with runner.native() as conn:
                assert isinstance(conn, asyncpg.Connection)
                return int(await conn.fetchval("SELECT $1::int * 2", 21))
        finally:
            await runner.close()

    assert anyio.run(run) == 42

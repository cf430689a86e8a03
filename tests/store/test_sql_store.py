"""The SQL store: the migration chain, the single successor under concurrency, the seal purge."""

from __future__ import annotations

import fcntl
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import anyio
import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import ColumnElement, Connection, Table, func, or_, select, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import IntegrityError

from baton.core.facts import AccessFacts, RefreshFacts
from baton.core.pairs import IssuedPair, MintedPair
from baton.core.policy import Lifetimes, Policy, RetryPolicy
from baton.core.rules import CodeProblem, CodeRedemption, Reason
from baton.core.seal import open_seal, seal
from baton.core.tokens import TokenKind, digest, mint
from baton.core.vocabulary import RevocationCause
from baton.store import migrate
from baton.store.base import (
    Client,
    ClientChanged,
    CodeRefused,
    ExchangeAsk,
    Issued,
    NewCode,
    Refused,
    Replayed,
)
from baton.store.engines import normalize_url, open_runner
from baton.store.engines.sqlite import ForeignKeysBroken
from baton.store.schema import access_tokens, authorization_codes, grants, metadata, refresh_tokens
from baton.store.sql import SQLStore
from tests.databases import plain_url
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


def test_the_migration_chain_creates_exactly_the_schema_on_postgresql(
    postgres_database: str,
) -> None:
    """On PostgreSQL too (it enforces the lengths SQLite ignores)."""
    store = SQLStore.open(postgres_database)
    try:
        diff = anyio.run(
            store.inspect,
            lambda conn: compare_metadata(MigrationContext.configure(conn), metadata),
        )
    finally:
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
        seal=lambda payload: seal(token, token_digest, payload),
    )


def store_on(database: Path | str, policy: Policy | None = None) -> SQLStore:
    """A store on the `database` fixture's SQLite folder or PostgreSQL URL."""
    return migrated_store(database / "baton.db" if isinstance(database, Path) else database, policy)


@pytest.mark.parametrize("retry", list(RetryPolicy))
def test_fifty_concurrent_exchanges_of_one_token(database: Path | str, retry: RetryPolicy) -> None:
    store = store_on(database, Policy(retry=retry))
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


RETENTION = 30 * 86400


def purge_all(store: SQLStore, now: int, batch: int = 500) -> int:
    total = 0
    while (changed := anyio.run(store.purge, now, RETENTION, batch)) > 0:
        total += changed
    return total


def test_seals_are_purged_only_after_the_leeway(database: Path | str) -> None:
    store = store_on(database)
    register_user(store)
    client = register_client(store)
    parent = first_pair(store, client.id)
    assert parent.refresh_token is not None
    assert isinstance(anyio.run(store.exchange, ask_for(parent.refresh_token, client.id)), Issued)
    sealed = refresh_tokens.c.sealed_response.is_not(None)
    purge_all(store, NOW + 599)
    assert anyio.run(store.inspect, count(refresh_tokens, sealed)) == 1
    purge_all(store, NOW + 600)
    assert anyio.run(store.inspect, count(refresh_tokens, sealed)) == 0
    anyio.run(store.close)


def test_an_id_token_seal_left_by_a_release_that_cleared_only_the_pair_is_purged_after_the_leeway(
    database: Path | str,
) -> None:
    """During a rolling upgrade a 0.1.0 server's purge clears `sealed_response` alone: the ID
    token sealed beside it (migration 0009) goes at the next purge past the leeway, not with the
    grant after the retention."""
    store = store_on(database)
    register_user(store)
    client = register_client(store)
    parent = first_pair(store, client.id)
    assert parent.refresh_token is not None
    assert isinstance(anyio.run(store.exchange, ask_for(parent.refresh_token, client.id)), Issued)
    rt = refresh_tokens

    def as_the_old_release_left_it(conn: Connection) -> None:
        conn.execute(
            update(rt)
            .where(rt.c.sealed_response.is_not(None))
            .values(sealed_response=None, sealed_id_token=b"sealed id token")
        )

    anyio.run(store._write, as_the_old_release_left_it)
    either = or_(rt.c.sealed_response.is_not(None), rt.c.sealed_id_token.is_not(None))
    purge_all(store, NOW + 599)
    assert anyio.run(store.inspect, count(rt, rt.c.sealed_id_token.is_not(None))) == 1
    purge_all(store, NOW + 600)
    assert anyio.run(store.inspect, count(rt, either)) == 0
    assert anyio.run(store.inspect, count(rt)) == 2  # the family lives on: only the seal went
    anyio.run(store.close)


def test_the_purge_keeps_live_families_and_drops_dead_ones_after_the_retention(
    database: Path | str,
) -> None:
    store = store_on(database)
    register_user(store)
    client = register_client(store)
    live = first_pair(store, client.id)
    dead = first_pair(store, client.id)
    assert live.refresh_token is not None
    child = anyio.run(store.exchange, ask_for(live.refresh_token, client.id))
    assert isinstance(child, Issued)
    anyio.run(store.revoke_grant, dead.grant_id, NOW, RevocationCause.REVOKED)
    tables = (refresh_tokens, access_tokens, authorization_codes, grants)

    def rows() -> list[int]:
        return [anyio.run(store.inspect, count(t)) for t in tables]

    assert rows() == [3, 3, 2, 2]
    # Codes expired at NOW + 60, access tokens at NOW + 3600, the dead grant was revoked at
    # NOW: nothing goes before the retention has passed.
    purge_all(store, NOW + RETENTION)
    assert rows() == [3, 3, 2, 2]
    # After it: the old access tokens and codes go, and the revoked grant with its whole
    # family; every refresh token of the live grant stays, so reuse is still detected.
    later = NOW + 3601 + RETENTION
    purge_all(store, later, batch=1)
    assert rows() == [2, 0, 0, 1]
    reuse = anyio.run(store.exchange, ask_for(live.refresh_token, client.id, later))
    assert isinstance(reuse, Refused) and reuse.reason is Reason.REUSED
    anyio.run(store.close)


def test_a_dead_grant_goes_whole_while_its_access_tokens_are_unexpired(
    database: Path | str,
) -> None:
    """A grant dead for longer than the retention goes with every row of its family, also its
    access tokens that have not reached their `exp` yet: those with a companion refresh token
    (found through it) and those of client_credentials (found by the grant)."""
    store = store_on(database)
    register_user(store)
    client = register_client(store)
    live = first_pair(store, client.id)
    rotated = first_pair(store, client.id)
    assert rotated.refresh_token is not None
    assert isinstance(anyio.run(store.exchange, ask_for(rotated.refresh_token, client.id)), Issued)
    machine = anyio.run(
        store.issue_client_credentials, client.id, "read", MintedPair.new(False), NOW
    )
    for grant_id in (rotated.grant_id, machine.grant_id):
        anyio.run(store.revoke_grant, grant_id, NOW, RevocationCause.REVOKED)
    tables = (refresh_tokens, access_tokens, grants)

    def rows() -> list[int]:
        return [anyio.run(store.inspect, count(t)) for t in tables]

    assert rows() == [3, 4, 3]
    # One second past the retention, every access token still has an hour to live.
    purge_all(store, NOW + RETENTION + 1, batch=1)
    assert rows() == [1, 1, 1]
    seen = anyio.run(store.get_client, client.id)
    assert seen is not None
    facts = anyio.run(store.find_token, seen, digest(live.access_token), False, NOW)
    assert isinstance(facts, AccessFacts) and facts.grant.id == live.grant_id
    anyio.run(store.close)


# Tables whose rows are deleted one at a time by an administrator (a user, a client, an upstream
# provider), never in bulk: the keys that refer to them may look their rows up by a scan.
DELETED_ONE_AT_A_TIME = {"users", "clients", "upstream_providers"}


def _lookup_columns(conn: Connection) -> dict[str, list[str]]:
    """Per table, the first column of each index, key and unique constraint a lookup by that
    column can use (a partial index only when it leaves out just that column's NULLs)."""
    inspector = sa_inspect(conn)
    found: dict[str, list[str]] = {}
    for table in inspector.get_table_names():
        firsts = found.setdefault(table, [])
        firsts += inspector.get_pk_constraint(table)["constrained_columns"][:1]
        firsts += [u["column_names"][0] for u in inspector.get_unique_constraints(table)]
        for index in inspector.get_indexes(table):
            column = index["column_names"][0]
            options = index.get("dialect_options", {})
            where = options.get("sqlite_where", options.get("postgresql_where"))
            predicate = " ".join(str(where).replace("(", " ").replace(")", " ").split()).lower()
            if column is not None and (where is None or predicate == f"{column} is not null"):
                firsts.append(column)
    return found


def test_every_key_that_refers_to_a_table_purged_in_bulk_has_an_index_to_find_its_rows(
    database: Path | str,
) -> None:
    """Deleting a row makes the database look for the rows whose foreign key refers to it; with
    no index to look them up by, that is a scan of the whole table per deleted row. The purge
    deletes grants, tokens and codes by the thousand: before migration 0012 it scanned
    `refresh_tokens` once per refresh token (by `parent_id`) and `access_tokens` and
    `authorization_codes` once per grant (about 9 s a batch at a million grants)."""
    store = store_on(database)

    def keys(conn: Connection) -> list[tuple[str, str, str]]:
        inspector = sa_inspect(conn)
        return [
            (table, key["constrained_columns"][0], key["referred_table"])
            for table in inspector.get_table_names()
            for key in inspector.get_foreign_keys(table)
        ]

    found, lookups = anyio.run(store.inspect, keys), anyio.run(store.inspect, _lookup_columns)
    anyio.run(store.close)
    assert found, "no foreign key reflected: the test would see nothing"
    scanned = [
        f"{table}.{column} -> {referred}"
        for table, column, referred in found
        if referred not in DELETED_ONE_AT_A_TIME and column not in lookups[table]
    ]
    assert scanned == []


def test_the_upgrade_that_drops_the_keys_keeps_every_row_and_the_other_keys_on_sqlite(
    tmp_path: Path,
) -> None:
    """SQLite builds the two token tables anew for migration 0012, with the foreign keys off for
    that transaction (`write_schema`): families, codes and their links come through whole, the
    keys left are enforced again afterwards, and the two dropped no longer are."""
    path = tmp_path / "old.db"
    runner = open_runner(f"sqlite:///{path}")
    anyio.run(migrate.upgrade, runner, "0011")
    anyio.run(runner.close)
    store = SQLStore.open(f"sqlite:///{path}")
    register_user(store)
    client = register_client(store)
    pair = first_pair(store, client.id)
    assert pair.refresh_token is not None
    child = anyio.run(store.exchange, ask_for(pair.refresh_token, client.id))
    assert isinstance(child, Issued)
    tables = (refresh_tokens, access_tokens, authorization_codes, grants)

    def rows(conn: Connection) -> list[tuple[object, ...]]:
        return [
            tuple(row)
            for table in tables
            for row in conn.execute(select(table).order_by(*table.primary_key))
        ]

    before = anyio.run(store.inspect, rows)
    anyio.run(migrate.upgrade, store.runner)
    assert anyio.run(store.inspect, rows) == before
    # The tables and their indexes as a database made at this release has them, partial
    # indexes' predicates included (which compare_metadata does not compare).
    fresh = migrated_store(tmp_path / "fresh.db")

    def schema(conn: Connection) -> set[tuple[str, str]]:
        return set(conn.exec_driver_sql("SELECT name, sql FROM sqlite_master").all())

    assert anyio.run(store.inspect, schema) == anyio.run(fresh.inspect, schema)
    anyio.run(fresh.close)
    assert (
        anyio.run(
            store.inspect, lambda conn: conn.exec_driver_sql("PRAGMA foreign_key_check").all()
        )
        == []
    )

    def orphan(statement: str) -> Callable[[Connection], object]:
        return lambda conn: conn.exec_driver_sql(statement)

    with pytest.raises(IntegrityError):  # still a key: a refresh token of no grant
        anyio.run(
            store._write,
            orphan(
                "INSERT INTO refresh_tokens (digest, grant_id, generation, issued_at, expires_at)"
                " VALUES (x'00', 'no such grant', 0, 0, 1)"
            ),
        )
    # No key any more: an access token names its grant without one looking it up.
    anyio.run(
        store._write,
        orphan(
            "INSERT INTO access_tokens (digest, grant_id, generation, scope, issued_at, expires_at)"
            " VALUES (x'01', 'no such grant', 0, 'read', 0, 1)"
        ),
    )
    # Exchanging the child still works on the rebuilt tables.
    assert child.pair.refresh_token is not None
    assert isinstance(
        anyio.run(store.exchange, ask_for(child.pair.refresh_token, client.id)), Issued
    )
    anyio.run(store.close)


def test_a_migration_that_breaks_a_foreign_key_on_sqlite_is_rolled_back(tmp_path: Path) -> None:
    """`write_schema` checks the keys it left unenforced in the tables the migration changed,
    before it commits, and enforces them again for every later write."""
    store = migrated_store(tmp_path / "baton.db")
    register_user(store)

    def breaks_a_key(conn: Connection) -> None:
        conn.exec_driver_sql("CREATE TABLE marker (user_id INTEGER REFERENCES users (id))")
        conn.exec_driver_sql("INSERT INTO marker VALUES (12345)")

    with pytest.raises(ForeignKeysBroken, match="marker row 1 -> users"):
        anyio.run(store.runner.write_schema, breaks_a_key)
    tables = anyio.run(store.inspect, lambda conn: sa_inspect(conn).get_table_names())
    assert "marker" not in tables
    with pytest.raises(IntegrityError):
        anyio.run(
            store._write,
            lambda conn: conn.exec_driver_sql(
                "INSERT INTO sessions (digest, user_id, created_at, expires_at)"
                " VALUES (x'03', 12345, 0, 1)"
            ),
        )
    anyio.run(store.close)


def test_a_row_broken_before_a_migration_in_a_table_it_leaves_alone_does_not_stop_it(
    tmp_path: Path,
) -> None:
    """A session whose user is gone (written by a tool with SQLite's keys off) is not the
    migration's to check: a migration that changes other tables goes through."""
    path = tmp_path / "baton.db"
    store = migrated_store(path)
    anyio.run(store.close)
    with sqlite3.connect(path) as conn:  # keys off: SQLite's default for a connection
        conn.execute(
            "INSERT INTO sessions (digest, user_id, created_at, expires_at)"
            " VALUES (x'02', 12345, 0, 1)"
        )
    store = SQLStore.open(f"sqlite:///{path}")
    anyio.run(
        store.runner.write_schema,
        lambda conn: conn.exec_driver_sql("CREATE TABLE marker (user_id INTEGER)"),
    )
    assert "marker" in anyio.run(store.inspect, lambda conn: sa_inspect(conn).get_table_names())
    anyio.run(store.close)


def test_a_migration_waits_for_a_write_of_its_own_loop_that_holds_the_turn(
    tmp_path: Path,
) -> None:
    """The turn is taken on a thread, not on the loop: a write of the same loop whose turn
    another process held when it asked is run by the loop once the turn comes, and then the
    migration has it. (Taken on the loop, the two waited for each other for ever, and the
    process kept the turn from every other process too.)"""
    path = tmp_path / "baton.db"
    store = migrated_store(path)
    register_user(store)
    other = open(f"{path}-writer.lock", "a+b")  # noqa: SIM115 (another process's turn)
    fcntl.flock(other, fcntl.LOCK_EX)
    done: list[str] = []

    async def scenario() -> None:
        async def write() -> None:
            await store.runner.write(lambda conn: conn.exec_driver_sql("SELECT 1"))
            done.append("write")

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(write)
            await anyio.sleep(0.1)  # the write waits for the turn, on the turn thread
            # The other process gives its turn back while the migration waits for it.
            threading.Timer(0.2, fcntl.flock, (other, fcntl.LOCK_UN)).start()
            await store.runner.write_schema(lambda conn: conn.exec_driver_sql("SELECT 1"))
            done.append("migration")

    # On a thread of its own: a deadlocked loop would never return, and the test must fail.
    running = threading.Thread(target=anyio.run, args=(scenario,), daemon=True)
    running.start()
    running.join(15)
    other.close()
    assert not running.is_alive(), "the migration and the write waited for each other"
    assert done == ["write", "migration"]
    anyio.run(store.close)


def test_the_purge_of_dead_families_reads_no_token_table_whole(postgres_database: str) -> None:
    """PostgreSQL, sequential scans forbidden wherever an index would do (`enable_seqscan`
    off): the purge of dead families, their foreign keys' checks included, scans none of the
    token tables. It scanned `refresh_tokens`, `access_tokens` and `authorization_codes` before
    migration 0012."""
    store = store_on(postgres_database)
    register_user(store)
    client = register_client(store)
    for _ in range(3):
        pair = first_pair(store, client.id)
        assert pair.refresh_token is not None
        assert isinstance(anyio.run(store.exchange, ask_for(pair.refresh_token, client.id)), Issued)
        anyio.run(store.revoke_grant, pair.grant_id, NOW, RevocationCause.REVOKED)
    anyio.run(store.close)
    watched = ("refresh_tokens", "access_tokens", "authorization_codes", "grants")
    name = normalize_url(postgres_database).database

    async def scans() -> dict[str, tuple[int, int]]:
        """Per table: (sequential scans, rows deleted). A backend's statistics reach the view
        at the latest when it exits: the store's connections (no pool) have."""
        conn = await asyncpg.connect(plain_url(postgres_database))
        try:
            rows = await conn.fetch(
                "SELECT relname, seq_scan, n_tup_del FROM pg_stat_user_tables"
                " WHERE relname = ANY($1)",
                list(watched),
            )
            return {row["relname"]: (row["seq_scan"], row["n_tup_del"]) for row in rows}
        finally:
            await conn.close()

    async def forbid_scans(setting: str) -> None:
        conn = await asyncpg.connect(plain_url(postgres_database))
        try:
            await conn.execute(f'ALTER DATABASE "{name}" SET enable_seqscan = {setting}')
        finally:
            await conn.close()

    anyio.run(forbid_scans, "off")
    try:
        before = anyio.run(scans)
        store = store_on(postgres_database)
        assert anyio.run(store.purge, NOW + 3601 + RETENTION, RETENTION, 500) > 0
        assert [anyio.run(store.inspect, count(t)) for t in (refresh_tokens, grants)] == [0, 0]
        anyio.run(store.close)
        after = before
        for _ in range(250):  # the backends' exit, then their statistics: the six deletions
            after = anyio.run(scans)
            if after["refresh_tokens"][1] - before["refresh_tokens"][1] >= 6:
                break
            time.sleep(0.02)
    finally:
        anyio.run(forbid_scans, "DEFAULT")
    deleted = {table: after[table][1] - before[table][1] for table in watched}
    assert deleted == {
        "refresh_tokens": 6,
        "access_tokens": 6,
        "authorization_codes": 3,
        "grants": 3,
    }, "the purge's statistics never arrived: the scans below would prove nothing"
    assert {table: after[table][0] - before[table][0] for table in watched} == dict.fromkeys(
        watched, 0
    )


def test_a_revoked_grant_s_feed_entry_lasts_until_its_last_access_token_expires(
    database: Path | str,
) -> None:
    """The entry matters until the latest `exp` among the grant's access tokens: found through
    their companion refresh tokens, or by the grant for client_credentials."""
    store = store_on(database)
    register_user(store)
    client = register_client(store)
    family = first_pair(store, client.id)
    assert family.refresh_token is not None
    # Rotated 100 s later: the child's access token expires 100 s after its parent's.
    child = anyio.run(store.exchange, ask_for(family.refresh_token, client.id, NOW + 100))
    assert isinstance(child, Issued)
    assert child.pair.access_expires_at == family.access_expires_at + 100
    machine = anyio.run(
        store.issue_client_credentials, client.id, "read", MintedPair.new(False), NOW + 7
    )
    untouched = first_pair(store, client.id)
    for grant_id in (family.grant_id, machine.grant_id, untouched.grant_id):
        assert anyio.run(store.revoke_grant, grant_id, NOW + 200, RevocationCause.REVOKED)
    ends = {
        e.grant_id: e.expires_at
        for e in anyio.run(store.revocations_after, 0, 100)
        if e.kind == "grant"
    }
    assert ends == {
        family.grant_id: child.pair.access_expires_at,
        machine.grant_id: machine.access_expires_at,
        untouched.grant_id: untouched.access_expires_at,
    }
    anyio.run(store.close)


def test_a_feed_entry_covers_an_older_access_token_that_outlives_the_newest(
    database: Path | str,
) -> None:
    """After the access lifetime was shortened, an older pair's access token can outlive the
    newest one: the grant's entry lasts until the older one's `exp`, and the companions read
    newest first stop only where no older one can hold a later `exp`."""
    long_lived = store_on(database, Policy(lifetimes=Lifetimes(access_ttl=7200)))
    register_user(long_lived)
    client = register_client(long_lived)
    first = first_pair(long_lived, client.id)
    assert first.refresh_token is not None
    child = anyio.run(long_lived.exchange, ask_for(first.refresh_token, client.id, NOW + 10))
    assert isinstance(child, Issued) and child.pair.refresh_token is not None
    anyio.run(long_lived.close)
    short_lived = store_on(database, Policy(lifetimes=Lifetimes(access_ttl=60)))
    newest = anyio.run(short_lived.exchange, ask_for(child.pair.refresh_token, client.id, NOW + 20))
    assert isinstance(newest, Issued)
    assert newest.pair.access_expires_at < child.pair.access_expires_at
    assert anyio.run(short_lived.revoke_grant, first.grant_id, NOW + 30, RevocationCause.REVOKED)
    (entry,) = [e for e in anyio.run(short_lived.revocations_after, 0, 100) if e.kind == "grant"]
    assert entry.expires_at == child.pair.access_expires_at == NOW + 10 + 7200
    anyio.run(short_lived.close)


def test_concurrent_redemptions_of_one_code_issue_one_grant_and_revoke_it(
    database: Path | str,
) -> None:
    """RFC 6749 §4.1.2: a code is used once; presenting it again revokes what it produced."""
    store = store_on(database)
    register_user(store)
    client = register_client(store)
    code = mint(TokenKind.CODE)
    anyio.run(
        store.save_code, NewCode(code.digest, client.id, 1, None, "read", None, NOW, NOW + 60)
    )
    ask = CodeRedemption(client.id, None, None)
    results: list[object] = []

    async def redeem() -> None:
        results.append(await store.redeem_code(code.digest, ask, MintedPair.new(), NOW, None))

    async def all_at_once() -> None:
        async with anyio.create_task_group() as tasks:
            for _ in range(20):
                tasks.start_soon(redeem)

    anyio.run(all_at_once)
    issued = [r for r in results if isinstance(r, Issued)]
    assert len(issued) == 1
    assert all(r.problem is CodeProblem.REUSED for r in results if isinstance(r, CodeRefused))
    assert anyio.run(store.inspect, count(grants)) == 1
    grant = anyio.run(store.get_grant, issued[0].pair.grant_id)
    assert grant is not None and grant.revoked_reason == "code_reuse"
    assert [e.kind for e in anyio.run(store.security_events)] == ["code_reuse"]
    anyio.run(store.close)


def test_a_changed_client_row_stops_the_work_it_authenticated(database: Path | str) -> None:
    """Exchange, lookup and revocation confirm the client's row in their own transaction: a
    client disabled, given a new secret or changed in kind since the request authenticated
    changes nothing and gets `ClientChanged`."""
    store = store_on(database)
    register_user(store)
    registered = register_client(store)
    seen = anyio.run(store.get_client, registered.id)
    assert seen is not None
    parent = first_pair(store, registered.id)
    assert parent.refresh_token is not None
    refresh = digest(parent.refresh_token)
    access = digest(parent.access_token)
    unknown = digest("a token never issued")

    def ask(client: Client) -> ExchangeAsk:
        return replace(ask_for(parent.refresh_token or "", registered.id), client=client)

    for stale in (
        replace(seen, secret_digest=digest("an older secret")),
        replace(seen, disabled_at=NOW),
        replace(seen, is_public=True),
        replace(seen, is_resource_server=True),
        replace(seen, id="cl_gone"),
    ):
        assert isinstance(anyio.run(store.exchange, ask(stale)), ClientChanged)
        assert isinstance(anyio.run(store.find_token, stale, refresh, True, NOW), ClientChanged)
        assert isinstance(anyio.run(store.revoke_token, stale, refresh, True, NOW), ClientChanged)
        assert isinstance(anyio.run(store.revoke_token, stale, None, False, NOW), ClientChanged)
        # The confirmation rides on the token's own read; a token not found is no confirmation.
        assert isinstance(anyio.run(store.find_token, stale, access, False, NOW), ClientChanged)
        assert isinstance(anyio.run(store.revoke_token, stale, access, False, NOW), ClientChanged)
        assert isinstance(anyio.run(store.find_token, stale, unknown, True, NOW), ClientChanged)
        assert isinstance(anyio.run(store.find_token, stale, unknown, False, NOW), ClientChanged)
        assert isinstance(anyio.run(store.revoke_token, stale, unknown, True, NOW), ClientChanged)

    # Nothing happened to the family: the parent is neither exchanged nor revoked.
    facts = anyio.run(store.find_token, seen, refresh, True, NOW)
    assert isinstance(facts, RefreshFacts)
    assert facts.exchanged_at is None and facts.revoked_at is None
    assert facts.grant.revoked_at is None
    assert anyio.run(store.find_token, seen, unknown, True, NOW) is None
    assert isinstance(anyio.run(store.find_token, seen, access, False, NOW), AccessFacts)
    # The client as it is now does the work.
    assert isinstance(anyio.run(store.exchange, ask(seen)), Issued)
    assert anyio.run(store.revoke_token, seen, refresh, True, NOW) == "grant"
    anyio.run(store.close)

"""The migrations since the last release only expand the schema, so that the release and the next
run side by side on one database during a rolling upgrade (docs/upgrades.md).

Each migration after `RELEASED_HEAD` is rendered as the SQL it runs on PostgreSQL (Alembic's
offline mode: no database), and every statement that would break the release still running is
named: a dropped or renamed table, column, index or constraint (but a foreign key may go: the
release never relies on one to refuse a write), a column made NOT NULL or given another type, a
NOT NULL column added without a default (the release's INSERTs do not name it), a column's
default dropped (likewise), a constraint, unique index or trigger added to a table the release
writes, rows deleted (DELETE, TRUNCATE) that the release may still read. A contraction belongs
to the release after the one that stopped using what it removes: list its revision in
`CONTRACTS` with that release, and say so under "Upgrading" in CHANGELOG.md.

tests/e2e/test_rolling_upgrade.py runs the release itself against the upgraded database.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import anyio
import asyncpg
import pytest
from alembic import command
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from sqlalchemy import Connection

from baton.script import one_line
from baton.store import migrate
from baton.store.engines import open_runner
from baton.store.engines.sqlite import ForeignKeysBroken
from baton.store.schema import metadata
from tests.databases import create_database, drop_database, plain_url, with_runner

# The head of the chain as the last release shipped it (0.1.0: migrations 0001 to 0006). Move it
# to the head of each release when it is cut.
RELEASED_HEAD = "0006"
# Revisions allowed to contract, each with the release it ships in (which must not run beside a
# release that still uses what it removes). Empty: nothing since 0.1.0 contracts.
CONTRACTS: dict[str, str] = {}

_CONTRACTING = [
    (re.compile(r"^DROP\b"), "drops"),
    (re.compile(r"\bDROP\s+(COLUMN|CONSTRAINT)\b"), "drops"),
    (re.compile(r"\bRENAME\b"), "renames"),
    (re.compile(r"\bALTER\s+COLUMN\b.*\bSET\s+NOT\s+NULL\b"), "makes a column NOT NULL"),
    # Even a wider varchar: the running release's cached statement plans become invalid, and
    # its next use of each fails (asyncpg's InvalidCachedStatementError: 500s).
    (re.compile(r"\bALTER\s+COLUMN\b.*\bTYPE\b"), "changes a column's type"),
    (re.compile(r"\bADD\s+CONSTRAINT\b"), "adds a constraint"),
    (re.compile(r"\bALTER\s+COLUMN\b.*\bDROP\s+DEFAULT\b"), "drops a column's default"),
    (re.compile(r"^CREATE\s+(OR\s+REPLACE\s+)?(CONSTRAINT\s+)?TRIGGER\b"), "adds a trigger"),
    (re.compile(r"^(DELETE|TRUNCATE)\b"), "deletes rows"),
]
# Dropping a foreign key (PostgreSQL names a key it was given no name for `<table>_<column>_fkey`)
# restricts nothing the release does: it never relies on a key to refuse a write (migration 0012).
_DROP_FOREIGN_KEY = re.compile(r"ALTER TABLE \S+ DROP CONSTRAINT (IF EXISTS )?\S+_FKEY")
_ADD_COLUMN = re.compile(r"^ALTER TABLE (\S+) ADD COLUMN (.*)$")
_CREATE_TABLE = re.compile(r"^CREATE TABLE (\S+)")
_UNIQUE_INDEX = re.compile(
    r"^CREATE UNIQUE INDEX (?:CONCURRENTLY )?(?:IF NOT EXISTS )?\S+ ON (?:ONLY )?(\S+)"
)


def rendered(script: Script) -> list[str]:
    """The statements `script`'s upgrade runs on PostgreSQL, each on one line."""
    out = io.StringIO()
    context = MigrationContext.configure(
        dialect_name="postgresql", opts={"as_sql": True, "output_buffer": out}
    )
    with Operations.context(context):
        script.module.upgrade()
    statements = (" ".join(part.split()) for part in out.getvalue().split(";"))
    return [statement for statement in statements if statement]


def contractions(statements: list[str]) -> list[str]:
    """What in `statements` the previous release, still running, could trip over."""
    created: set[str] = set()
    found = []
    for statement in statements:
        upper = statement.upper()
        table = _CREATE_TABLE.match(upper)
        if table:
            created.add(table.group(1))
            continue
        for pattern, what in _CONTRACTING:
            if pattern.search(upper) and not _DROP_FOREIGN_KEY.fullmatch(upper):
                found.append(f"{what}: {statement}")
        column = _ADD_COLUMN.match(upper)
        if column and "NOT NULL" in column.group(2) and "DEFAULT" not in column.group(2):
            found.append(f"adds a NOT NULL column without a default: {statement}")
        unique = _UNIQUE_INDEX.match(upper)
        if unique and unique.group(1) not in created:
            found.append(f"adds a unique index to a table in use: {statement}")
    return found


def since_release() -> list[Script]:
    scripts = ScriptDirectory.from_config(migrate._config())
    return list(reversed(list(scripts.iterate_revisions(migrate.head(), RELEASED_HEAD))))


def test_the_released_head_is_in_the_chain() -> None:
    scripts = ScriptDirectory.from_config(migrate._config())
    assert scripts.get_revision(RELEASED_HEAD) is not None
    assert set(CONTRACTS) <= {script.revision for script in since_release()}


@pytest.mark.parametrize("script", since_release(), ids=lambda script: script.revision)
def test_a_migration_since_the_release_only_expands(script: Script) -> None:
    if script.revision in CONTRACTS:
        pytest.skip(f"contracts, shipped in {CONTRACTS[script.revision]}")
    statements = rendered(script)
    assert statements, "renders no SQL: the guard would see nothing"
    assert contractions(statements) == [], (
        f"migration {script.revision} breaks the release still running during a rolling "
        "upgrade: add a nullable column (or one with a default) or a new table instead, and "
        "contract in a later release (see this module's docstring)"
    )


@pytest.mark.parametrize(
    "statement",
    [
        "ALTER TABLE grants DROP COLUMN sid",
        "DROP TABLE scopes",
        "DROP INDEX ix_sessions_sid",
        "ALTER TABLE users RENAME COLUMN email TO mail",
        "ALTER TABLE users RENAME TO people",
        "ALTER TABLE users ALTER COLUMN email SET NOT NULL",
        "ALTER TABLE users ALTER COLUMN email TYPE VARCHAR(100)",
        "ALTER TABLE grants ALTER COLUMN client_id TYPE VARCHAR(2048)",
        "ALTER TABLE users ADD COLUMN locale VARCHAR(8) NOT NULL",
        "ALTER TABLE users ADD CONSTRAINT uq_email UNIQUE (email)",
        "ALTER TABLE users DROP CONSTRAINT uq_email",
        "ALTER TABLE users DROP CONSTRAINT users_email_fkey_check",
        "ALTER TABLE users DROP COLUMN email, DROP CONSTRAINT users_client_id_fkey",
        "CREATE UNIQUE INDEX ix_users_email ON users (email)",
        "ALTER TABLE users ALTER COLUMN locale DROP DEFAULT",
        "CREATE UNIQUE INDEX CONCURRENTLY ix_users_email ON users (email)",
        "CREATE UNIQUE INDEX IF NOT EXISTS ix_users_email ON users (email)",
        "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS ix_users_email ON ONLY users (email)",
        "CREATE TRIGGER no_new_users BEFORE INSERT ON users EXECUTE FUNCTION refuse()",
        "CREATE OR REPLACE TRIGGER no_new_users BEFORE INSERT ON users EXECUTE FUNCTION refuse()",
        "DELETE FROM scopes WHERE name = 'legacy'",
        "TRUNCATE sessions",
    ],
)
def test_the_guard_names_a_contraction(statement: str) -> None:
    assert len(contractions([statement])) == 1


def test_the_guard_lets_an_expansion_pass() -> None:
    assert (
        contractions(
            [
                "ALTER TABLE users ADD COLUMN locale VARCHAR(8)",
                "ALTER TABLE users ADD COLUMN admin BOOLEAN DEFAULT false NOT NULL",
                "CREATE TABLE notes (id BIGINT NOT NULL, PRIMARY KEY (id))",
                "CREATE UNIQUE INDEX ix_notes_id ON notes (id)",
                "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS ix_notes_key ON notes (id)",
                "CREATE INDEX ix_users_locale ON users (locale)",
                "ALTER TABLE refresh_tokens DROP CONSTRAINT refresh_tokens_parent_id_fkey",
                "ALTER TABLE access_tokens DROP CONSTRAINT IF EXISTS access_tokens_grant_id_fkey",
            ]
        )
        == []
    )


def test_no_foreign_key_acts_when_its_row_goes() -> None:
    """The guard lets a foreign key's removal pass because the release never relies on one: no
    key of Baton's cascades, sets null or acts otherwise on a delete or an update (dropping a
    key that did would change what the release sees)."""
    acting = [
        f"{key.parent.table.name}.{key.parent.name}"
        for table in metadata.tables.values()
        for key in table.foreign_keys
        if key.ondelete or key.onupdate
    ]
    assert acting == []


def test_the_release_itself_would_not_have_passed() -> None:
    """The guard reads real migrations: the chain up to the release has contractions (0005
    replaced an index), which it names."""
    scripts = ScriptDirectory.from_config(migrate._config())
    found = [
        found
        for script in scripts.iterate_revisions(RELEASED_HEAD, "base")
        for found in contractions(rendered(script))
    ]
    assert found


def test_a_database_a_later_release_migrated_is_current_for_this_one(tmp_path: Path) -> None:
    """During the next rolling upgrade, this release's servers keep starting, answering /readyz
    and running their commands on the database the next release migrated (a revision these
    scripts do not know), and its `baton db upgrade` changes nothing there."""

    async def scenario() -> None:
        runner = open_runner(str(tmp_path / "baton.db"))
        try:
            await migrate.upgrade(runner, RELEASED_HEAD)
            assert not await migrate.is_current(runner)  # this release's migrations pending
            await migrate.upgrade(runner)
            assert await migrate.is_current(runner)
            # The next release's first migration, as Baton numbers them (0010 after 0009).
            top = migrate.head()
            assert top is not None
            following = f"{int(top) + 1:04d}"
            await runner.write(
                lambda conn: conn.exec_driver_sql(
                    f"UPDATE alembic_version SET version_num = '{following}'"
                )
            )
            assert await migrate.is_current(runner)
            assert (await migrate.plan(runner)).pending == ()
            await migrate.upgrade(runner)
            assert await migrate.current(runner) == following
        finally:
            await runner.close()

    anyio.run(scenario)


def test_a_migration_that_found_no_quiet_moment_says_so_in_one_line() -> None:
    busy = migrate.DatabaseBusy("the tables to migrate stayed busy for 120 s; nothing was changed")
    assert one_line(busy) == f"error: {busy}"


def test_a_migration_that_would_break_a_key_says_so_and_what_to_do_in_one_line() -> None:
    broken = ForeignKeysBroken([("access_tokens", 7, "refresh_tokens", 0)])
    assert one_line(broken) == (
        "error: the migration would leave 1 row(s) whose foreign key refers to no row"
        " (access_tokens row 7 -> refresh_tokens); nothing was changed: repair or delete those"
        " rows, then run it again"
    )


def test_a_migration_under_traffic_waits_for_a_quiet_moment_holding_nothing() -> None:
    """PostgreSQL: while a request's transaction holds a table the migration alters last, the
    migration holds no lock on the tables it alters first, so the request goes on to read them
    (it neither deadlocks with the migration nor queues behind it), and the migration runs as
    soon as the request commits."""
    url = create_database()

    def back_to_the_release(conn: Connection) -> None:
        command.downgrade(migrate._config(conn), RELEASED_HEAD)

    try:
        with_runner(url, lambda runner: runner.write(back_to_the_release))

        async def scenario() -> None:
            request = await asyncpg.connect(plain_url(url))
            runner = open_runner(url)
            try:
                transaction = request.transaction()
                await transaction.start()
                await request.fetch("SELECT 1 FROM refresh_tokens LIMIT 1")  # 0009 alters it
                async with anyio.create_task_group() as tasks:
                    done = anyio.Event()

                    async def migrate_now() -> None:
                        await migrate.upgrade(runner)
                        done.set()

                    tasks.start_soon(migrate_now)
                    await anyio.sleep(0.5)
                    assert not done.is_set()
                    # 0007 alters `clients` first, 0009 `refresh_tokens` later: a migration that
                    # held the one while waiting for the other kept this read waiting (for
                    # PostgreSQL's deadlock_timeout, 1 s, then cancelling one of the two).
                    with anyio.fail_after(0.5):
                        await request.fetch("SELECT count(*) FROM clients")
                    await transaction.commit()
                    with anyio.fail_after(10):
                        await done.wait()
                assert await migrate.current(runner) == migrate.head()
            finally:
                await request.close()
                await runner.close()

        anyio.run(scenario)
    finally:
        drop_database(url)

"""Schema migrations: one Alembic chain for every dialect, applied by `baton db upgrade`."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import anyio
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from baton.store.engines import Runner

_SCRIPTS = Path(__file__).with_name("migrations")


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head() -> str | None:
    return ScriptDirectory.from_config(_config()).get_current_head()


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def current(runner: Runner) -> str | None:
    return await runner.read(current_revision)


def is_later(revision: str | None) -> bool:
    """Whether `revision` is one these scripts do not know: a later release's, whose migrations
    only added to the schema (tests/store/test_expand_only.py), so that this release runs beside
    it during a rolling upgrade (docs/upgrades.md)."""
    if revision is None:
        return False
    try:
        ScriptDirectory.from_config(_config()).get_revision(revision)
    except CommandError:
        return True
    return False


async def is_current(runner: Runner) -> bool:
    """No migration of this release is pending: the database is at its head, or at a later
    release's revision (`is_later`)."""
    revision = await current(runner)
    return revision == head() or is_later(revision)


# PostgreSQL: servers keep serving while the migration runs (docs/upgrades.md). It takes the
# lock of every table at once or none (NOWAIT), and tries again `RETRY_PAUSE` later until
# `BUSY_DEADLINE`: a migration that waited for one table's lock while holding another's would
# hold up every request behind it, and deadlock with a request holding the first and wanting the
# second (PostgreSQL then cancels one of the two after `deadlock_timeout`).
RETRY_PAUSE = 0.02
BUSY_DEADLINE = 120.0
_BUSY = frozenset({"55P03", "40P01"})  # lock_not_available, deadlock_detected


class DatabaseBusy(RuntimeError):
    """The migration found no moment to take its locks within `BUSY_DEADLINE`."""


async def upgrade(runner: Runner, revision: str = "head") -> None:
    """Applies the pending migrations in one transaction (both dialects have transactional DDL);
    on PostgreSQL with every table locked first (`_lock_every_table`)."""

    def work(connection: Connection) -> None:
        now = current_revision(connection)
        if revision == "head" and is_later(now):
            return  # a later release migrated it: nothing of this one's is missing
        pending = revision != "head" or now != head()
        if pending and connection.dialect.name == "postgresql":
            _lock_every_table(connection)
        command.upgrade(_config(connection), revision)

    deadline = time.monotonic() + BUSY_DEADLINE
    while True:
        try:
            await runner.write(work)
            return
        except DBAPIError as exc:
            if _sqlstate(exc) not in _BUSY:
                raise
            if time.monotonic() > deadline:
                raise DatabaseBusy(
                    f"the tables to migrate stayed busy for {BUSY_DEADLINE:.0f} s; nothing was "
                    "changed: run it again at a quieter moment"
                ) from exc
        await anyio.sleep(RETRY_PAUSE)


def _lock_every_table(connection: Connection) -> None:
    """Every table of the schema, in one statement that fails at once when one is in use."""
    names = connection.exec_driver_sql(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename"
    ).scalars()
    quoted = ", ".join(connection.dialect.identifier_preparer.quote(name) for name in names)
    if quoted:
        connection.exec_driver_sql(f"LOCK TABLE {quoted} IN ACCESS EXCLUSIVE MODE NOWAIT")


def _sqlstate(exc: DBAPIError) -> str | None:
    value = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Pending:
    """A migration not applied yet: its revision id and its script's one-line title."""

    revision: str
    title: str


@dataclass(frozen=True)
class Plan:
    """What `upgrade` would do: the database's revision (None: never migrated), the scripts'
    head, and the migrations between them, oldest first."""

    current: str | None
    head: str | None
    pending: tuple[Pending, ...]


async def plan(runner: Runner) -> Plan:
    """The migrations `upgrade` would apply, read without running any (`baton db upgrade
    --check`). A database never migrated has every migration pending."""
    revision = await current(runner)
    scripts = ScriptDirectory.from_config(_config())
    top = scripts.get_current_head()
    if is_later(revision):
        return Plan(revision, top, ())
    # `iterate_revisions` walks from the head down to (not including) the current revision.
    steps = [
        Pending(script.revision, next(iter((script.doc or "").strip().splitlines()), ""))
        for script in scripts.iterate_revisions(top, revision)
    ]
    return Plan(revision, top, tuple(reversed(steps)))

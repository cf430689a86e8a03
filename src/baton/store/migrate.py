"""Schema migrations: one Alembic chain for every dialect, applied by `baton db upgrade`."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import anyio
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, inspect, text
from sqlalchemy.exc import DBAPIError

from baton.store.engines import Runner
from baton.store.schema import metadata

_SCRIPTS = Path(__file__).with_name("migrations")


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@cache
def _scripts() -> ScriptDirectory:
    """The migration scripts, read once: `/readyz` asks about them on every probe."""
    return ScriptDirectory.from_config(_config())


def head() -> str | None:
    return _scripts().get_current_head()


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def current(runner: Runner) -> str | None:
    return await runner.read(current_revision)


# Baton's own revision ids: four digits, numbered in order (migrations/versions/0001_...py).
_BATON_REVISION = re.compile(r"\d{4}")

PENDING = "pending: run `baton db upgrade`"


def _known(revision: str) -> bool:
    try:
        _scripts().get_revision(revision)
    except CommandError:
        return False
    return True


def is_later(revision: str | None) -> bool:
    """Whether `revision` is in Baton's own format and after this release's head: a later
    release's, whose migrations only added to the schema (tests/store/test_expand_only.py), so
    that this release runs beside it during a rolling upgrade (docs/upgrades.md). Whether the
    database really holds what this release reads is `unknown_revision_problem`'s to say."""
    top = head()
    return (
        revision is not None
        and _BATON_REVISION.fullmatch(revision) is not None
        and top is not None
        and revision > top
        and not _known(revision)
    )


def missing_schema(connection: Connection) -> list[str]:
    """The tables of `baton.store.schema` absent from the database, and the columns absent from
    the tables that are there ("table x", "column x.y"), read with the inspector: a few catalog
    queries, run only for a database at a revision these scripts do not know."""
    names = list(metadata.tables)
    found = {
        table: {column["name"] for column in columns}
        for (_schema, table), columns in inspect(connection)
        .get_multi_columns(filter_names=names)
        .items()
    }
    missing = []
    for name, table in metadata.tables.items():
        if name not in found:
            missing.append(f"table {name}")
            continue
        missing += [f"column {name}.{c.name}" for c in table.columns if c.name not in found[name]]
    return missing


def unknown_revision_problem(connection: Connection, revision: str) -> str | None:
    """Why a database at `revision`, one these scripts do not know, cannot serve this release;
    None for a later release's revision (`is_later`) with every table and column this release
    reads (`missing_schema`)."""
    if not is_later(revision):
        return (
            f"unknown revision {revision}: not one of Baton's migrations (head is {head()}); "
            "check --db (BATON_DB)"
        )
    missing = missing_schema(connection)
    if missing:
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        return (
            f"unknown revision {revision}: a later release's, but the database lacks what this "
            f"release reads ({shown})"
        )
    return None


def schema_problem_of(connection: Connection) -> str | None:
    """None when no migration of this release is pending and the database holds its schema: at
    its head, or at a later release's revision with every table and column this release reads.
    Else one line: `PENDING`, or the unknown revision and what is wrong with it."""
    revision = current_revision(connection)
    if revision == head():
        return None
    if revision is None or _known(revision):
        return PENDING
    return unknown_revision_problem(connection, revision)


async def schema_problem(runner: Runner) -> str | None:
    """`schema_problem_of`, in a read (`/readyz`, `baton serve`'s start, the commands)."""
    return await runner.read(schema_problem_of)


async def is_current(runner: Runner) -> bool:
    """No migration of this release is pending, and the database holds its schema
    (`schema_problem_of`)."""
    return await schema_problem(runner) is None


class UnknownSchema(RuntimeError):
    """`baton db upgrade` found a revision these scripts do not know, and not a sound later
    release's: it changed nothing."""


# PostgreSQL: servers keep serving while the migration runs (docs/upgrades.md). It takes the
# lock of each of Baton's tables at once or none (NOWAIT), and tries again `RETRY_PAUSE` later
# until `BUSY_DEADLINE`: a migration that waited for one table's lock while holding another's
# would hold up every request behind it, and deadlock with a request holding the first and
# wanting the second (PostgreSQL then cancels one of the two after `deadlock_timeout`). Tables
# Baton does not own (PostGIS's spatial_ref_sys, another application's) are left alone: Baton
# may not be allowed to lock them, and its migrations never touch them.
RETRY_PAUSE = 0.02
BUSY_DEADLINE = 120.0
_BUSY = frozenset({"55P03", "40P01"})  # lock_not_available, deadlock_detected
# The transaction-scoped advisory lock every `baton db upgrade` on a PostgreSQL database takes
# first: on an empty database there is no table to LOCK, and two first upgrades (several hosts'
# ExecStartPre on a first deploy) both created alembic_version, one failing. Advisory locks are
# per database; the key is "baton" in ASCII.
UPGRADE_LOCK = 0x6261746F6E


class DatabaseBusy(RuntimeError):
    """The migration found no moment to take its locks within `BUSY_DEADLINE`."""


class _Held(Exception):
    """Another `baton db upgrade` holds `UPGRADE_LOCK`: try again after `RETRY_PAUSE`."""


async def upgrade(runner: Runner, revision: str = "head") -> None:
    """Applies the pending migrations in one transaction (both dialects have transactional DDL);
    on PostgreSQL after `UPGRADE_LOCK`, with Baton's tables locked (`_lock_own_tables`). A
    database at a revision these scripts do not know is left as it is: a later release's
    (`is_later`) holding this release's schema is current, anything else is `UnknownSchema`."""

    def work(connection: Connection) -> None:
        postgres = connection.dialect.name == "postgresql"
        if postgres and not _took_upgrade_lock(connection):
            raise _Held
        now = current_revision(connection)
        if now is not None and not _known(now):
            problem = unknown_revision_problem(connection, now)
            if problem is not None:
                raise UnknownSchema(f"{problem}; nothing was changed")
            if revision == "head":
                return  # a later release migrated it: nothing of this one's is missing
        pending = revision != "head" or now != head()
        if pending and postgres:
            _lock_own_tables(connection)
        command.upgrade(_config(connection), revision)

    deadline = time.monotonic() + BUSY_DEADLINE
    while True:
        try:
            await runner.write_schema(work)
            return
        except (DBAPIError, _Held) as exc:
            if isinstance(exc, DBAPIError) and _sqlstate(exc) not in _BUSY:
                raise
            if time.monotonic() > deadline:
                raise DatabaseBusy(
                    f"the tables to migrate stayed busy for {BUSY_DEADLINE:.0f} s; nothing was "
                    "changed: run it again at a quieter moment"
                ) from exc
        await anyio.sleep(RETRY_PAUSE)


def _took_upgrade_lock(connection: Connection) -> bool:
    """`UPGRADE_LOCK`, held to the end of the transaction, or False at once when another
    transaction holds it."""
    took = connection.execute(
        text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": UPGRADE_LOCK}
    ).scalar_one()
    return bool(took)


def _lock_own_tables(connection: Connection) -> None:
    """Baton's tables (`baton.store.schema` and alembic_version) that exist, in one statement
    that fails at once when one is in use."""
    own = sorted([*metadata.tables, "alembic_version"])
    names = connection.execute(
        text(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
            "AND tablename = ANY(:own) ORDER BY tablename"
        ),
        {"own": own},
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
    head, the migrations between them, oldest first, and, for a revision these scripts do not
    know, what is wrong with it (None: a later release's, holding this release's schema)."""

    current: str | None
    head: str | None
    pending: tuple[Pending, ...]
    problem: str | None = None


async def plan(runner: Runner) -> Plan:
    """The migrations `upgrade` would apply, read without running any (`baton db upgrade
    --check`). A database never migrated has every migration pending."""

    def read(connection: Connection) -> tuple[str | None, str | None]:
        revision = current_revision(connection)
        if revision is None or _known(revision):
            return revision, None
        return revision, unknown_revision_problem(connection, revision)

    revision, problem = await runner.read(read)
    scripts = ScriptDirectory.from_config(_config())
    top = scripts.get_current_head()
    if revision is not None and not _known(revision):
        return Plan(revision, top, (), problem)
    # `iterate_revisions` walks from the head down to (not including) the current revision.
    steps = [
        Pending(script.revision, next(iter((script.doc or "").strip().splitlines()), ""))
        for script in scripts.iterate_revisions(top, revision)
    ]
    return Plan(revision, top, tuple(reversed(steps)))

"""Schema migrations: one Alembic chain for every dialect, applied by `baton db upgrade`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

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


async def is_current(runner: Runner) -> bool:
    return await current(runner) == head()


async def upgrade(runner: Runner, revision: str = "head") -> None:
    """Applies the pending migrations in one transaction (both dialects have transactional DDL)."""

    def work(connection: Connection) -> None:
        command.upgrade(_config(connection), revision)

    await runner.write(work)


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
    # `iterate_revisions` walks from the head down to (not including) the current revision.
    steps = [
        Pending(script.revision, next(iter((script.doc or "").strip().splitlines()), ""))
        for script in scripts.iterate_revisions(top, revision)
    ]
    return Plan(revision, top, tuple(reversed(steps)))

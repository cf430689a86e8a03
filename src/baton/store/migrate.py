"""Schema migrations: one Alembic chain for every dialect, applied by `baton db upgrade`."""

from __future__ import annotations

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

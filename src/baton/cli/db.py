"""`baton db upgrade`: the database schema, migrated."""

from __future__ import annotations

import anyio
import click

from baton.cli.common import db_option
from baton.store import migrate
from baton.store.engines import display_url, open_runner


@click.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@db_option
def db_upgrade(db: str) -> None:
    """Apply every pending migration."""
    runner = open_runner(db)

    async def work() -> str | None:
        try:
            await migrate.upgrade(runner)
            return await migrate.current(runner)
        finally:
            await runner.close()

    revision = anyio.run(work)
    click.echo(f"database {display_url(db)} is at revision {revision}")

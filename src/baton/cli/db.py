"""`baton db upgrade`: the database schema, migrated; `--check` says what would run.
`baton db backup`: a copy of a SQLite database taken while the server runs (`baton.store.backup`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import click

from baton.cli.common import db_option, emit, fail
from baton.store import backup, migrate
from baton.store.engines import display_url, open_runner


@click.group()
def db() -> None:
    """Database schema and backups."""


@db.command("upgrade")
@db_option
@click.option(
    "--check",
    is_flag=True,
    help="Run nothing: list the pending migrations (revision and title). Exit status 0 when "
    "the database is current, 1 when migrations are pending or its revision is not one Baton "
    "can serve.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='One JSON object (with --check: {"current", "head", "pending", "problem"}).',
)
def db_upgrade(db: str, check: bool, as_json: bool) -> None:
    """Apply every pending migration (with --check: only say which would run; exit status 0
    when the database is current, 1 when migrations are pending)."""
    runner = open_runner(db)
    if check:

        async def inspect() -> migrate.Plan:
            try:
                return await migrate.plan(runner)
            finally:
                await runner.close()

        plan = anyio.run(inspect)
        payload = {
            "current": plan.current,
            "head": plan.head,
            "pending": [{"revision": p.revision, "title": p.title} for p in plan.pending],
            "problem": plan.problem,
        }
        at = plan.current or "none (never migrated)"
        lines = [f"database {display_url(db)} is at revision {at}; head is {plan.head}"]
        if plan.problem:
            lines.append(plan.problem)
        elif plan.pending:
            lines.append(f"{len(plan.pending)} migration(s) pending:")
            lines += [f"  {p.revision}  {p.title}" for p in plan.pending]
        else:
            lines.append("up to date: no migration pending")
        emit(as_json, payload, "\n".join(lines))
        sys.exit(1 if plan.pending or plan.problem else 0)

    async def work() -> str | None:
        try:
            await migrate.upgrade(runner)
            return await migrate.current(runner)
        finally:
            await runner.close()

    revision = anyio.run(work)
    payload = {"revision": revision}
    emit(as_json, payload, f"database {display_url(db)} is at revision {revision}")


@db.command("backup")
@click.argument("dest", type=click.Path(path_type=Path))
@db_option
@click.option("--force", is_flag=True, help="Replace DEST if it exists.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='One JSON object: {"path", "bytes", "revision"}.',
)
def db_backup(dest: Path, db: str, force: bool, as_json: bool) -> None:
    """Copy the SQLite database to DEST, consistently, while the server runs (SQLite's online
    backup API); DEST is created mode 0600 and checked with PRAGMA integrity_check. PostgreSQL:
    use pg_dump (the command says how; docs/backups.md)."""
    try:
        made = backup.backup(db, dest, force=force)
    except backup.BackupError as exc:
        fail(str(exc))
    payload = {"path": str(made.path), "bytes": made.size, "revision": made.revision}
    emit(
        as_json,
        payload,
        f"backed up {display_url(db)} to {made.path} ({made.size} bytes, schema revision "
        f"{made.revision}); integrity check ok",
    )

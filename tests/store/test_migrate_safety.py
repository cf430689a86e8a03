"""What `baton db upgrade`, `--check`, `/readyz` and `baton serve` make of a database that is not
quite Baton's: a revision that is not one of Baton's, a later release's revision with a table
missing, tables of other applications beside Baton's, and two first upgrades at once."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Connection

from baton.cli import main
from baton.config import Settings
from baton.script import one_line
from baton.server.app import create_app
from baton.store import migrate
from baton.store.engines import normalize_url, open_runner
from baton.store.sql import SQLStore
from tests.databases import _admin, admin_url, unavailable
from tests.one_hop import OneHopTestClient
from tests.support import ISSUER

FOREIGN = "3f2a9c1b7e0d"  # an Alembic revision id of another application's


def later() -> str:
    """The revision the next release's first migration will have."""
    top = migrate.head()
    assert top is not None
    return f"{int(top) + 1:04d}"


def baton(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def migrated(tmp_path: Path, *statements: str) -> str:
    """A SQLite database at this release's head, then changed by `statements`."""
    db = str(tmp_path / "baton.db")

    async def work() -> None:
        runner = open_runner(db)
        try:
            await migrate.upgrade(runner)

            def change(conn: Connection) -> None:
                for statement in statements:
                    conn.exec_driver_sql(statement)

            await runner.write(change)
        finally:
            await runner.close()

    anyio.run(work)
    return db


def readyz(db: str) -> tuple[int, dict[str, object]]:
    store = SQLStore.open(db)
    try:
        http = OneHopTestClient(create_app(Settings(issuer=ISSUER), store), base_url=ISSUER)
        response = http.get("/readyz")
        return response.status_code, response.json()
    finally:
        anyio.run(store.close)


def test_a_foreign_revision_with_a_table_missing_is_not_current_and_says_so(
    tmp_path: Path,
) -> None:
    db = migrated(
        tmp_path,
        f"UPDATE alembic_version SET version_num = '{FOREIGN}'",
        "DROP TABLE refresh_tokens",
    )
    check = baton("db", "upgrade", "--check", "--db", db)
    assert check.exit_code == 1
    assert f"unknown revision {FOREIGN}: not one of Baton's migrations" in check.stdout
    assert "up to date" not in check.stdout

    status, body = readyz(db)
    assert status == 503
    assert body["checks"] == {
        "database": "ok",
        "migrations": f"unknown revision {FOREIGN}: not one of Baton's migrations (head is "
        f"{migrate.head()}); check --db (BATON_DB)",
    }

    upgrade = baton("db", "upgrade", "--db", db)
    assert upgrade.exit_code == 1 and isinstance(upgrade.exception, migrate.UnknownSchema)
    line = one_line(upgrade.exception)
    assert line.startswith(f"error: unknown revision {FOREIGN}") and "nothing was changed" in line
    assert "\n" not in line
    assert baton("db", "upgrade", "--check", "--db", db, "--json").stdout.startswith(
        f'{{"current": "{FOREIGN}"'
    )  # the upgrade left it as it was

    # `baton serve` and every command that needs the schema name the problem, not "migrate".
    serve = baton("serve", "--db", db, "--issuer", "http://127.0.0.1:8000")
    assert serve.exit_code == 1 and f"error: unknown revision {FOREIGN}" in serve.stderr
    listed = baton("client", "list", "--db", db)
    assert listed.exit_code == 1 and f"error: unknown revision {FOREIGN}" in listed.stderr


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        ("DROP TABLE refresh_tokens", "table refresh_tokens"),
        ("ALTER TABLE grants DROP COLUMN sid", "column grants.sid"),
    ],
)
def test_a_later_release_revision_missing_what_this_release_reads_is_not_current(
    tmp_path: Path, damage: str, named: str
) -> None:
    db = migrated(tmp_path, f"UPDATE alembic_version SET version_num = '{later()}'", damage)
    status, body = readyz(db)
    assert status == 503
    assert body["checks"] == {
        "database": "ok",
        "migrations": f"unknown revision {later()}: a later release's, but the database lacks "
        f"what this release reads ({named})",
    }
    check = baton("db", "upgrade", "--check", "--db", db)
    assert check.exit_code == 1 and named in check.stdout


def test_a_later_release_revision_with_this_release_schema_is_ready(tmp_path: Path) -> None:
    db = migrated(
        tmp_path,
        f"UPDATE alembic_version SET version_num = '{later()}'",
        "CREATE TABLE next_release_notes (id INTEGER PRIMARY KEY)",
        "ALTER TABLE grants ADD COLUMN next_release_flag INTEGER",
    )
    assert readyz(db) == (
        200,
        {"status": "ready", "checks": {"database": "ok", "migrations": "ok"}},
    )
    check = baton("db", "upgrade", "--check", "--db", db)
    assert check.exit_code == 0 and "up to date" in check.stdout


# -- PostgreSQL ---------------------------------------------------------------------------------


def _fresh(owner: str | None = None) -> str:
    name = f"baton_test_{secrets.token_hex(4)}"
    owned = f' OWNER "{owner}"' if owner else ""
    try:
        anyio.run(_admin, f'CREATE DATABASE "{name}"{owned}')
    except OSError as exc:
        unavailable(str(exc) or type(exc).__name__)
    return name


def _drop(name: str) -> None:
    anyio.run(_admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def empty_postgres() -> Iterator[str]:
    """A PostgreSQL database nobody migrated."""
    name = _fresh()
    try:
        yield normalize_url(admin_url()).set(database=name).render_as_string(hide_password=False)
    finally:
        _drop(name)


def test_two_first_upgrades_of_an_empty_postgresql_database_at_once_both_succeed(
    empty_postgres: str,
) -> None:
    """Three hosts' first deploy: each runs `baton db upgrade` before its server starts (two
    processes, as there: Alembic keeps its running migration in module globals)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
    command = [sys.executable, "-m", "baton.cli", "db", "upgrade", "--db", empty_postgres]
    hosts = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environ)
        for _ in range(3)
    ]
    done = [host.communicate(timeout=60) for host in hosts]
    assert [host.returncode for host in hosts] == [0, 0, 0], [err for _out, err in done]
    revision = f"at revision {migrate.head()}".encode()
    assert all(revision in out for out, _err in done)


def test_an_upgrade_leaves_other_applications_tables_alone() -> None:
    """A database Baton shares (PostGIS's spatial_ref_sys, another application's tables): Baton's
    role may not lock what it does not own, and its migrations never touch it."""
    role = f"baton_test_role_{secrets.token_hex(4)}"
    try:
        anyio.run(_admin, f'CREATE ROLE "{role}" LOGIN')
    except OSError as exc:
        unavailable(str(exc) or type(exc).__name__)
    name = _fresh(owner=role)
    as_admin = normalize_url(admin_url()).set(database=name).render_as_string(hide_password=False)
    as_baton = (
        normalize_url(admin_url())
        .set(database=name, username=role, password=None)
        .render_as_string(hide_password=False)
    )

    async def scenario() -> str | None:
        admin = open_runner(as_admin)
        try:
            await admin.write(
                lambda conn: conn.exec_driver_sql(
                    "CREATE TABLE spatial_ref_sys (srid INTEGER PRIMARY KEY)"
                )
            )
        finally:
            await admin.close()
        runner = open_runner(as_baton)
        try:
            await migrate.upgrade(runner, "0008")
            await migrate.upgrade(runner)  # the LOCK of the step to the head
            return await migrate.current(runner)
        finally:
            await runner.close()

    try:
        assert anyio.run(scenario) == migrate.head()
    finally:
        _drop(name)
        anyio.run(_admin, f'DROP ROLE IF EXISTS "{role}"')

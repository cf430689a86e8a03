"""`baton db backup`, and restoring what it (or `pg_dump`) wrote, under a serving app (issue 27).

The restore tests take the backup while the app serves, let the live database move past it,
stop, restore, start again, and check what docs/backups.md says a restore means for tokens:
the pairs current at backup time refresh and introspect active; a refresh token already
exchanged before the backup is still caught as reuse after its leeway (grant revoked, security
event recorded); whatever was issued after the backup is unknown (the client signs in again),
and whatever was rotated or revoked after the backup is alive again. SQLite through `baton db
backup` itself; PostgreSQL through the `pg_dump` command `baton db backup` prints for it, then
`pg_restore` into a fresh database. In-process apps under one fake clock; a few seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from click.testing import CliRunner, Result
from starlette.testclient import TestClient

from baton.cli import main
from baton.core.clock import FakeClock
from baton.core.rules import Reason
from baton.store.engines import normalize_url
from baton.store.sql import SQLStore
from tests.databases import _admin, admin_url, drop_database, empty_tables, plain_url
from tests.support import (
    RegisteredClient,
    first_pair,
    introspect,
    refresh,
    register_client,
    register_user,
    running_app,
)

LEEWAY = 600  # the default, as the app below runs


def baton(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def one_line(result: Result) -> str:
    """The error of a refused command: exit status 1, one line naming the problem and the fix."""
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ")
    return line


# -- the command -----------------------------------------------------------------------------------


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[TestClient, SQLStore, Path]]:
    with running_app(tmp_path) as (http, store, _clock):
        yield http, store, tmp_path / "baton.db"


def test_backup_writes_a_private_checked_copy_and_says_so(
    served: tuple[TestClient, SQLStore, Path], tmp_path: Path
) -> None:
    _http, store, database = served
    register_user(store)
    client = register_client(store)
    dest = tmp_path / "backups" / "baton-1.db"
    dest.parent.mkdir()
    old = os.umask(0o022)  # the usual umask, under which a plain new file is 0644
    try:
        result = baton("db", "backup", str(dest), "--db", str(database))
    finally:
        os.umask(old)

    assert result.exit_code == 0, result.output
    assert result.output.strip() == (
        f"backed up sqlite:///{database} to {dest} ({dest.stat().st_size} bytes, schema "
        f"revision {_revision(database)}); integrity check ok"
    )
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    # One self-contained file: no WAL beside it, none needed to read it, nothing left behind.
    assert sorted(p.name for p in dest.parent.iterdir()) == ["baton-1.db"]
    with sqlite3.connect(dest) as copy:
        assert copy.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        assert copy.execute("SELECT id FROM clients").fetchall() == [(client.id,)]
    assert sorted(p.name for p in dest.parent.iterdir()) == ["baton-1.db"]


def test_backup_json_and_force(served: tuple[TestClient, SQLStore, Path], tmp_path: Path) -> None:
    _http, store, database = served
    dest = tmp_path / "copy.db"
    first = json.loads(baton("db", "backup", str(dest), "--db", str(database), "--json").output)
    assert first == {
        "path": str(dest),
        "bytes": dest.stat().st_size,
        "revision": _revision(database),
    }

    register_client(store)  # the database moves on
    line = one_line(baton("db", "backup", str(dest), "--db", str(database)))
    assert line == f"error: {dest} already exists; name a new file, or pass --force to replace it"
    with sqlite3.connect(dest) as copy:
        assert copy.execute("SELECT count(*) FROM clients").fetchone() == (0,)  # untouched

    result = baton("db", "backup", str(dest), "--db", str(database), "--force", "--json")
    assert result.exit_code == 0, result.output
    with sqlite3.connect(dest) as copy:
        assert copy.execute("SELECT count(*) FROM clients").fetchone() == (1,)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600


def test_each_mistake_is_one_line_with_its_fix(tmp_path: Path) -> None:
    migrated = tmp_path / "baton.db"
    with running_app(tmp_path):
        pass
    garbage = tmp_path / "notes.txt"
    garbage.write_text("not a database\n")
    empty = tmp_path / "empty.db"
    empty.touch()
    dest = str(tmp_path / "out.db")
    cases = {
        (dest, str(tmp_path / "missing.db")): "there is no SQLite database at",
        (dest, str(garbage)): "cannot read",
        (dest, str(empty)): "holds no Baton schema (never migrated); check --db (BATON_DB)",
        (str(tmp_path), str(migrated)): "is a directory; name the backup file, e.g. ",
        (str(tmp_path / "no" / "out.db"), str(migrated)): "does not exist; create it first",
        (str(migrated), str(migrated)): "is the database itself; name another file",
        (dest, "mysql://db.example/baton"): "unsupported database 'mysql'",
        (dest, "sqlite:///:memory:"): "an in-memory database has nothing to back up",
    }
    for (where, db), says in cases.items():
        line = one_line(baton("db", "backup", where, "--db", db))
        assert says in line, (where, db, line)
    assert not (tmp_path / "out.db").exists()
    assert not (tmp_path / "missing.db").exists()  # never created by looking for it
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_postgresql_gets_the_pg_dump_command_without_its_password() -> None:
    db = "postgresql://baton:s3cret@db.example:5433/baton?sslmode=require"
    line = one_line(baton("db", "backup", "/backups/baton 1.dump", "--db", db))
    assert "s3cret" not in line
    assert line == (
        "error: baton db backup copies SQLite databases; back up PostgreSQL with its own tools: "
        "umask 077; pg_dump --format=custom --file='/backups/baton 1.dump' "
        "--dbname='postgresql://baton@db.example:5433/baton?sslmode=require' "
        "(the password left out: pg_dump reads the password from PGPASSWORD or ~/.pgpass); "
        "restore with pg_restore (see docs/backups.md)"
    )


def dump_command(line: str) -> str:
    """The shell command in the error line of `baton db backup` on a PostgreSQL URL."""
    command = line.partition("own tools: ")[2].partition("; restore with")[0]
    return command.partition(" (")[0]


def test_the_pg_dump_command_holds_no_credential_of_the_url_s_query() -> None:
    """libpq's `?password=` and `?sslpassword=` would be on a command line (seen in `ps` by every
    local user, kept in shell histories): left out, and said so."""
    for db, left_out in {
        "postgresql://baton@db.example/baton?password=hunter2&sslmode=require": (
            "(the password left out: pg_dump reads the password from PGPASSWORD or ~/.pgpass)"
        ),
        "postgresql://baton@db.example/baton?sslmode=require&sslpassword=hunter2": (
            "(sslpassword= left out: pg_dump asks for the SSL key's passphrase)"
        ),
        "postgresql://baton:pw@db.example/baton?sslmode=require&sslpassword=hunter2": (
            "(the password and sslpassword= left out: pg_dump reads the password from "
            "PGPASSWORD or ~/.pgpass and asks for the SSL key's passphrase)"
        ),
    }.items():
        line = one_line(baton("db", "backup", "/backups/baton.dump", "--db", db))
        assert "hunter2" not in line and "pw@" not in line, line
        assert left_out in line, line
        assert dump_command(line) == (
            "umask 077; pg_dump --format=custom --file=/backups/baton.dump "
            "--dbname='postgresql://baton@db.example/baton?sslmode=require'"
        ), line


def test_the_pg_dump_command_speaks_libpq_not_asyncpg() -> None:
    """Baton's driver takes `ssl=` (and parameters of its own); pg_dump wants libpq's `sslmode=`
    and refuses what it does not know."""
    db = (
        "postgresql://baton@db.example/baton?ssl=verify-full&sslrootcert=/etc/baton/ca.pem"
        "&prepared_statement_cache_size=0&application_name=baton"
    )
    line = one_line(baton("db", "backup", "/backups/baton.dump", "--db", db))
    assert dump_command(line) == (
        "umask 077; pg_dump --format=custom --file=/backups/baton.dump "
        "--dbname='postgresql://baton@db.example/baton?application_name=baton"
        "&sslmode=verify-full&sslrootcert=%2Fetc%2Fbaton%2Fca.pem'"
    )


def test_a_file_of_the_live_database_is_never_a_destination(
    served: tuple[TestClient, SQLStore, Path],
) -> None:
    """Its WAL, shared memory, journal, writers' lock or session key replaced by a backup, even
    with --force, would lose commits (or every browser session): refused, resolved paths
    compared (a symbolic link or `..` does not get around it)."""
    _http, _store, database = served
    link = database.parent / "link-to-wal"
    link.symlink_to(f"{database}-wal")
    companions = [f"{database}{s}" for s in ("-shm", "-journal", "-writer.lock", "-session.key")]
    for dest, what in [
        (f"{database}-wal", "the database's -wal file"),
        (str(link), "the database's -wal file"),
        (f"{database.parent}/../{database.parent.name}/baton.db-shm", "the database's -shm file"),
        *(
            (where, f"the database's {where.rpartition('baton.db')[2]} file")
            for where in companions
        ),
    ]:
        before = {p.name: p.read_bytes() for p in database.parent.iterdir() if p.is_file()}
        line = one_line(baton("db", "backup", dest, "--db", str(database), "--force"))
        assert line == f"error: {dest} is {what}; name another file"
        after = {p.name: p.read_bytes() for p in database.parent.iterdir() if p.is_file()}
        assert after.keys() == before.keys()
        assert after[f"{database.name}-wal"] == before[f"{database.name}-wal"]


def _revision(database: Path) -> str:
    with sqlite3.connect(database) as conn:
        return str(conn.execute("SELECT version_num FROM alembic_version").fetchone()[0])


# -- restore: what a restore means for tokens -----------------------------------------------------


def active(http: TestClient, rs: RegisteredClient, token: str) -> bool:
    return bool(introspect(http, rs, token)["active"])


def assert_invalid_grant(response: httpx2.Response, reason: Reason) -> None:
    assert response.status_code == 400, response.text
    assert response.json() == {"error": "invalid_grant", "error_description": reason.value}


def backup_then_restore(
    first: Path | str,
    second: Path | str,
    take_backup: Callable[[], None],
    restore: Callable[[], None],
) -> None:
    """Serve `first`, back it up while serving, move on, stop; `restore()`; serve `second`."""
    clock = FakeClock()
    pairs: dict[str, dict[str, Any]] = {}
    with running_app(first, clock=clock) as (http, store, _):
        register_user(store)
        client = register_client(store)
        rs = register_client(store, resource_server=True, name="api")
        # Before the backup: grant A untouched, grant B rotated once (B0 exchanged for B1),
        # grants C and E issued.
        for name in ("A", "B0", "C0", "E"):
            pairs[name] = first_pair(http, client)
        pairs["B1"] = refresh(http, client, pairs["B0"]["refresh_token"]).json()
        clock.advance(60)

        take_backup()

        # After it: C rotated (C0 exchanged for C1), grant D issued, grant E revoked.
        clock.advance(60)
        pairs["C1"] = refresh(http, client, pairs["C0"]["refresh_token"]).json()
        pairs["D"] = first_pair(http, client)
        revoked = http.post(
            "/revoke", data={"token": pairs["E"]["refresh_token"]}, auth=client.basic
        )
        assert revoked.status_code == 200
        assert not active(http, rs, pairs["E"]["access_token"])
        assert anyio.run(store.security_events) == []
    restore()
    clock.advance(60)

    with running_app(second, clock=clock) as (http, store, _):
        # The pairs current at backup time work: introspected active, and they refresh.
        for name in ("A", "B1"):
            for kind in ("access_token", "refresh_token"):
                assert active(http, rs, pairs[name][kind]), (name, kind)
        a1 = refresh(http, client, pairs["A"]["refresh_token"])
        b2 = refresh(http, client, pairs["B1"]["refresh_token"])
        assert a1.status_code == b2.status_code == 200
        # Whatever was issued after the backup is unknown: its grant (D) or its generation (C1)
        # is not in the restored database. The client signs in again.
        for name in ("C1", "D"):
            assert not active(http, rs, pairs[name]["access_token"])
            assert_invalid_grant(
                refresh(http, client, pairs[name]["refresh_token"]), Reason.UNKNOWN
            )
        # What was rotated or revoked after the backup is alive again: C0 (exchanged for C1
        # after the backup) is the current token of its grant once more, and E is not revoked.
        assert refresh(http, client, pairs["C0"]["refresh_token"]).status_code == 200
        assert active(http, rs, pairs["E"]["access_token"])
        assert refresh(http, client, pairs["E"]["refresh_token"]).status_code == 200

        # B0, exchanged before the backup, presented after its leeway: reuse, grant B revoked.
        clock.advance(LEEWAY)
        b_grant = introspect(http, rs, b2.json()["access_token"])["grant_id"]
        assert_invalid_grant(refresh(http, client, pairs["B0"]["refresh_token"]), Reason.REUSED)
        assert not active(http, rs, b2.json()["access_token"])
        assert_invalid_grant(
            refresh(http, client, b2.json()["refresh_token"]), Reason.GRANT_REVOKED_BY_REUSE
        )
        (event,) = anyio.run(store.security_events)
        assert (event.kind, event.grant_id, event.generation) == ("refresh_token_reuse", b_grant, 0)
        # Grant A is not touched by B's reuse.
        assert active(http, rs, a1.json()["access_token"])


def test_sqlite_restore_keeps_the_tokens_of_the_backup_and_reuse_detection(
    tmp_path: Path,
) -> None:
    live = tmp_path / "live"
    live.mkdir()
    database = live / "baton.db"
    dest = tmp_path / "baton-backup.db"

    def take_backup() -> None:
        result = baton("db", "backup", str(dest), "--db", f"sqlite:///{database}", "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["path"] == str(dest)

    def restore() -> None:
        # As docs/backups.md says: the server stopped, its WAL and shared memory removed (a
        # WAL left beside the restored file would be replayed into it), the copy put in place
        # mode 0600.
        for suffix in ("-wal", "-shm"):
            Path(f"{database}{suffix}").unlink(missing_ok=True)
        shutil.copyfile(dest, database)
        database.chmod(0o600)

    backup_then_restore(live, live, take_backup, restore)


@pytest.fixture
def postgres_pair(postgres_database: str) -> Iterator[tuple[str, str]]:
    """The run's PostgreSQL database, emptied (the live one), and a fresh empty one to restore
    into. Skipped with the reason when PostgreSQL is down (failed under CI=true)."""
    if shutil.which("pg_dump") is None or shutil.which("pg_restore") is None:
        reason = "pg_dump and pg_restore (PostgreSQL's client tools) are not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + "; CI must run the PostgreSQL backup test", pytrace=False)
        pytest.skip(reason)
    empty_tables(postgres_database)
    name = f"{normalize_url(postgres_database).database}_restored"
    anyio.run(_admin, f'CREATE DATABASE "{name}"')
    restored = normalize_url(admin_url()).set(database=name).render_as_string(hide_password=False)
    try:
        yield postgres_database, restored
    finally:
        drop_database(restored)


def test_postgresql_restore_keeps_the_tokens_of_the_dump_and_reuse_detection(
    postgres_pair: tuple[str, str], tmp_path: Path
) -> None:
    live, restored = postgres_pair
    dump = tmp_path / "baton.dump"

    def take_backup() -> None:
        # The very command `baton db backup` prints for a PostgreSQL URL.
        line = one_line(baton("db", "backup", str(dump), "--db", live))
        command = dump_command(line)
        assert command.startswith("umask 077; pg_dump --format=custom"), line
        subprocess.run(["sh", "-c", command], check=True, capture_output=True, timeout=60)
        assert stat.S_IMODE(dump.stat().st_mode) == 0o600

    def restore() -> None:
        subprocess.run(
            [
                "pg_restore",
                "--exit-on-error",
                "--single-transaction",
                "--no-owner",
                f"--dbname={plain_url(restored)}",
                str(dump),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )

    backup_then_restore(live, restored, take_backup, restore)

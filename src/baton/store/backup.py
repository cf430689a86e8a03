"""`baton db backup`: a consistent copy of a SQLite database, taken while the server runs.

The copy is SQLite's online backup API (`sqlite3.Connection.backup`) in one step: one read
transaction on the database, so one snapshot of it, the WAL's committed frames included and a
transaction still open elsewhere left out. In WAL mode a reader never blocks the server's
writers, nor they it; the server needs no pause. The copy is written to a file of its own beside
DEST (created 0600: it holds client secret and token digests, password hashes and the sealed
signing keys), turned into a single self-contained file (rollback journal, no `-wal` beside it),
checked with `PRAGMA integrity_check`, synced, and only then renamed to DEST. A DEST that exists
is never overwritten unless asked (`force`).

PostgreSQL has tools made for this (`pg_dump`, continuous archiving), whose versions, connection
options and schedules are the operator's to choose: `backup` does not run them behind the user's
back, it refuses with the `pg_dump` command to run instead (docs/backups.md).

Every refusal is a `BackupError` whose message names the problem and its fix, in one line.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from sqlalchemy.engine import URL

from baton.store.engines import SQLITE_SUFFIXES, libpq_url, normalize_url
from baton.store.engines.sqlite_wal import BUSY_TIMEOUT_MS
from baton.urls import is_credential_parameter

_CHECK = "check --db (BATON_DB)"
# The files beside a SQLite database that are part of it, or of the server using it: its WAL,
# shared memory, rollback journal and writers' lock (`SQLITE_SUFFIXES`), and the session key
# `baton serve` keeps beside it by default (`DATABASE-session.key`). A backup written over one
# of them would lose commits, or every browser session.
COMPANIONS = (*SQLITE_SUFFIXES, "-session.key")


class BackupError(Exception):
    """A backup refused or failed; the message is one line naming the problem and the fix."""


@dataclass(frozen=True)
class Backup:
    """A backup written: where, its size in bytes, and the schema revision it holds."""

    path: Path
    size: int
    revision: str


def backup(db: str, dest: Path, *, force: bool = False) -> Backup:
    """Copies the database at `db` to `dest` (see the module's docstring)."""
    url = normalize_url(db)
    if url.get_backend_name() == "postgresql":
        raise BackupError(
            "baton db backup copies SQLite databases; back up PostgreSQL with its own tools: "
            f"{pg_dump_command(url, dest)}; restore with pg_restore (see docs/backups.md)"
        )
    if url.get_backend_name() != "sqlite":
        raise BackupError(f"unsupported database {url.get_backend_name()!r}; {_CHECK}")
    database = url.database
    if database in (None, "", ":memory:"):
        raise BackupError(f"an in-memory database has nothing to back up; {_CHECK}")
    return backup_sqlite(Path(str(database)), dest, force=force)


def pg_dump_command(url: URL, dest: Path) -> str:
    """The shell command that dumps the PostgreSQL database at `url` to `dest`, and what it
    leaves out: the URL as libpq reads it (asyncpg's `ssl=` as `sslmode=`, none of asyncpg's
    or SQLAlchemy's own parameters), without its password or any credential in its query
    (`password=`, `sslpassword=`: a command line is seen by every local user and kept in shell
    histories), which pg_dump reads from PGPASSWORD or ~/.pgpass, or asks for. `umask 077`
    first: the dump holds what the database does, for its owner alone."""
    libpq = libpq_url(url)
    # (`passfile=` names a file, not a secret: pg_dump reads it.)
    dropped = sorted(
        name for name in libpq.query if is_credential_parameter(name) and name != "passfile"
    )
    # `URL.set` takes None for "unchanged": the URL is made anew, without its password.
    plain = URL.create(
        "postgresql",
        libpq.username,
        None,
        libpq.host,
        libpq.port,
        libpq.database,
        {name: value for name, value in libpq.query.items() if name not in dropped},
    )
    dbname = shlex.quote(plain.render_as_string(hide_password=False))
    command = (
        f"umask 077; pg_dump --format=custom --file={shlex.quote(str(dest))} --dbname={dbname}"
    )
    password = bool(url.password) or "password" in dropped
    left_out = (["the password"] if password else []) + [
        f"{name}=" for name in dropped if name != "password"
    ]
    if not left_out:
        return command
    how = ["reads the password from PGPASSWORD or ~/.pgpass"] if password else []
    if "sslpassword" in dropped:
        how.append("asks for the SSL key's passphrase")
    note = f"{' and '.join(left_out)} left out: pg_dump " + (" and ".join(how) or "asks for it")
    return f"{command} ({note})"


def backup_sqlite(source: Path, dest: Path, *, force: bool = False) -> Backup:
    if not source.is_file():
        raise BackupError(f"there is no SQLite database at {source}; {_CHECK}")
    _check_destination(source, dest, force)
    partial = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.partial")
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except PermissionError:
        raise BackupError(
            f"cannot write in {dest.parent}: permission denied; choose a directory you may write to"
        ) from None
    os.close(fd)
    try:
        revision = _copy(source, partial)
        _sync(partial)
        if dest.exists() and not force:  # appeared while the copy ran
            raise BackupError(_exists(dest))
        os.replace(partial, dest)
        _sync(dest.parent)
    finally:
        for leftover in (partial, *(Path(f"{partial}{s}") for s in ("-journal", "-wal", "-shm"))):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
    return Backup(dest.resolve(), dest.stat().st_size, revision)


def _check_destination(source: Path, dest: Path, force: bool) -> None:
    if dest.is_dir():
        raise BackupError(
            f"{dest} is a directory; name the backup file, e.g. "
            f"{os.path.join(dest, 'baton-backup.db')}"
        )
    if not dest.parent.is_dir():
        raise BackupError(f"the directory {dest.parent} does not exist; create it first")
    where = dest.resolve()
    for database in {source, source.resolve()}:  # SQLite's files beside the path, or its target
        for suffix in COMPANIONS:
            if where == Path(f"{database}{suffix}").resolve():
                what = "the database itself" if not suffix else f"the database's {suffix} file"
                raise BackupError(f"{dest} is {what}; name another file")
    if dest.exists():
        if dest.samefile(source):
            raise BackupError(f"{dest} is the database itself; name another file")
        if not force:
            raise BackupError(_exists(dest))


def _exists(dest: Path) -> str:
    return f"{dest} already exists; name a new file, or pass --force to replace it"


def _copy(source: Path, partial: Path) -> str:
    """The backup into `partial`, checked; returns the schema revision it holds."""
    # `mode=rw`: never create a database that is not there. The timeout covers the moments a
    # WAL reader may be told to wait (the WAL being started over or recovered).
    try:
        reader = sqlite3.connect(
            f"file:{quote(str(source))}?mode=rw", uri=True, timeout=BUSY_TIMEOUT_MS / 1000
        )
    except sqlite3.Error as exc:
        raise BackupError(f"cannot open {source} ({exc}); check its permissions") from exc
    copy = sqlite3.connect(partial)
    try:
        try:
            # pages=-1 (the default): the whole database in one step, so in one read transaction
            # and one snapshot. Stepping would start over whenever another process writes.
            reader.backup(copy)
        except sqlite3.Error as exc:
            raise BackupError(_failed(source, partial, exc)) from exc
        # The pages say WAL mode, as the database's do; a backup should be one file on its own.
        copy.execute("PRAGMA journal_mode=DELETE")
        try:
            problems = [row[0] for row in copy.execute("PRAGMA integrity_check")]
        except sqlite3.DatabaseError as exc:  # too damaged for the check to go through
            problems = [str(exc)]
        if problems != ["ok"]:
            raise BackupError(
                f"the copy of {source} fails its integrity check ({'; '.join(problems[:3])}): "
                f"the database itself may be damaged; check it with "
                f"`sqlite3 {source} 'PRAGMA integrity_check'`"
            )
        try:
            row = copy.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.OperationalError:
            row = None
        if row is None:
            raise BackupError(
                f"{source} holds no Baton schema (never migrated); {_CHECK}, or run "
                "`baton db upgrade` first"
            )
        return str(row[0])
    finally:
        copy.close()
        reader.close()


def _failed(source: Path, partial: Path, exc: sqlite3.Error) -> str:
    """What a failed copy says: the database is not one, the backup's disk is full, or else."""
    name = getattr(exc, "sqlite_errorname", "")
    if name == "SQLITE_NOTADB":
        return f"cannot read {source} as a SQLite database ({exc}); {_CHECK}"
    if name == "SQLITE_FULL":
        return f"no room for the backup in {partial.parent} ({exc}); free space or write elsewhere"
    return f"the backup of {source} failed ({exc}); {_CHECK}"


def _sync(path: Path) -> None:
    """fsync a file or a directory (so the rename that made the backup survives a power cut)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

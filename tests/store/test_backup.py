"""`baton.store.backup` on SQLite files built by hand, so the WAL's state is known: the copy
holds what is committed (in the WAL too, not yet checkpointed) and nothing a transaction still
open has written, without waiting for that writer; a damaged database leaves no backup behind.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from baton.store.backup import BackupError, backup


def _database(path: Path) -> sqlite3.Connection:
    """A WAL database with a schema revision, whose WAL is never checkpointed by itself."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
    conn.execute("INSERT INTO alembic_version VALUES ('0042')")
    conn.execute("CREATE TABLE grants (id INTEGER PRIMARY KEY, label TEXT NOT NULL)")
    conn.execute("CREATE INDEX grants_label ON grants (label)")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return conn


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[Path, sqlite3.Connection]]:
    path = tmp_path / "baton.db"
    conn = _database(path)
    try:
        yield path, conn
    finally:
        conn.close()


def labels(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("SELECT label FROM grants ORDER BY id")]


def test_the_copy_holds_the_wal_and_not_an_open_transaction(
    live: tuple[Path, sqlite3.Connection], tmp_path: Path
) -> None:
    path, conn = live
    with conn:  # one transaction
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO grants (label) VALUES (?)", [(f"g{i}",) for i in range(200)])
    assert Path(f"{path}-wal").stat().st_size > 0  # committed, in the WAL only
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # holds the write lock through the backup
    writer.execute("INSERT INTO grants (label) VALUES ('uncommitted')")
    try:
        made = backup(f"sqlite:///{path}", tmp_path / "copy.db")
    finally:
        writer.execute("COMMIT")
        writer.close()
    assert made.revision == "0042"
    assert made.size == (tmp_path / "copy.db").stat().st_size
    assert labels(tmp_path / "copy.db") == [f"g{i}" for i in range(200)]
    assert labels(path)[-1] == "uncommitted"


def test_a_damaged_database_leaves_no_backup(
    live: tuple[Path, sqlite3.Connection], tmp_path: Path
) -> None:
    path, conn = live
    with conn:
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO grants (label) VALUES (?)", [(f"grant-{i:06}",) for i in range(2000)]
        )
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'grants_label'")
    conn.close()
    # The index's root page overwritten past its type byte: the table reads, the index does not.
    with path.open("r+b") as file:
        file.seek((root[0] - 1) * 4096 + 1)
        file.write(b"\xff" * 4095)
    dest = tmp_path / "copy.db"
    with pytest.raises(BackupError) as failed:
        backup(str(path), dest)
    assert "fails its integrity check" in str(failed.value)
    assert f"sqlite3 {path} 'PRAGMA integrity_check'" in str(failed.value)
    assert "\n" not in str(failed.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["baton.db"]

"""The SDK's security review findings (issue 21, L5 to L7): private store files, no symlinks,
the issuer checked in the callback and in the metadata."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import pytest

from baton.client import (
    ClientError,
    FileStore,
    MemoryStore,
    Refresher,
    SQLiteStore,
    TokenPair,
    store_pair,
)
from baton.client.refresher import METADATA_PATH
from tests.client.conftest import CHILD_PYTHONPATH

PAIR = TokenPair("access-secret", "refresh-secret", 1.0)


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask, under which a file created without a mode is readable by everyone."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# -- L5: FileStore and planted symbolic links ----------------------------------------------------


def test_file_store_refuses_a_symlink_planted_as_its_lock_file(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    directory = tmp_path / "store"
    directory.mkdir(mode=0o700)
    (directory / "tokens.json.lock").symlink_to(victim)
    store = FileStore(directory / "tokens.json")
    with pytest.raises(ClientError, match="symbolic link"):
        store_pair(store, PAIR)
    assert victim.read_text() == "precious\n"  # no fence written through the link
    assert store.load() is None


def test_file_store_does_not_read_through_a_symlink(tmp_path: Path) -> None:
    planted = tmp_path / "planted.json"
    planted.write_text(TokenPair("attacker-access", "attacker-refresh").to_json())
    directory = tmp_path / "store"
    directory.mkdir(mode=0o700)
    (directory / "tokens.json").symlink_to(planted)
    with pytest.raises(ClientError, match="symbolic link"):
        FileStore(directory / "tokens.json").load()


@pytest.mark.parametrize(
    "shared_mode",
    [0o1777, 0o770],  # like /tmp: anyone may plant a file or a link; or any of a group
)
def test_file_store_refuses_a_directory_others_can_write(tmp_path: Path, shared_mode: int) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(shared_mode)
    store = FileStore(shared / "tokens.json")
    with pytest.raises(ClientError, match="others may write to it"):
        store_pair(store, PAIR)
    assert list(shared.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory away needs root")
def test_file_store_refuses_a_directory_of_another_user(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, 4242, 4242)
    with pytest.raises(ClientError, match="belongs to uid 4242"):
        store_pair(FileStore(theirs / "tokens.json"), PAIR)
    assert list(theirs.iterdir()) == []


def test_file_store_creates_its_directory_private(tmp_path: Path, umask_022: None) -> None:
    store = FileStore(tmp_path / "new" / "tokens.json")
    store_pair(store, PAIR)
    assert mode(store.path.parent) == 0o700
    assert mode(store.path) == 0o600 and mode(store.lock_path) == 0o600
    assert store.load() == PAIR


def test_the_sdk_imports_where_fcntl_does_not_exist() -> None:
    # Windows has no fcntl: `import baton.client` must not need it (only FileStore.lock does).
    code = "import sys; sys.modules['fcntl'] = None; import baton.client; print('ok')"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": CHILD_PYTHONPATH},
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


# -- L6: SQLiteStore files are 0600 before anything is written -----------------------------------


def test_sqlite_store_files_are_private_before_the_first_write(
    tmp_path: Path, umask_022: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "tokens.db"
    seen: dict[str, set[int]] = {}

    def check(_statement: str) -> None:
        # Before each statement SQLite runs: every file of the database, as it is on disk.
        for suffix in ("", "-wal", "-shm", "-journal"):
            target = Path(str(path) + suffix)
            if target.exists():
                seen.setdefault(suffix or "db", set()).add(mode(target))

    connect = SQLiteStore._connect

    def traced(self: SQLiteStore) -> sqlite3.Connection:
        conn = connect(self)
        conn.set_trace_callback(check)
        return conn

    monkeypatch.setattr(SQLiteStore, "_connect", traced)
    reader = sqlite3.connect(path)  # another process, already there: the WAL outlives writers
    try:
        store = SQLiteStore(path, "user-1")
        store_pair(store, PAIR)
        reader.execute("SELECT count(*) FROM baton_tokens").fetchone()
        store_pair(store, PAIR)
        assert store.load() == PAIR
    finally:
        reader.close()
    assert {"db", "-wal", "-shm"} <= set(seen), seen
    assert seen == {name: {0o600} for name in seen}, {
        k: sorted(map(oct, v)) for k, v in seen.items()
    }


def test_sqlite_store_makes_files_left_readable_private(tmp_path: Path, umask_022: None) -> None:
    path = tmp_path / "old.db"
    sqlite3.connect(path).close()  # created 0644 by something else (or an earlier version)
    assert mode(path) == 0o644
    store = SQLiteStore(path)
    assert mode(path) == 0o600
    store_pair(store, PAIR)
    for suffix in ("", "-wal", "-shm"):
        target = Path(str(path) + suffix)
        assert not target.exists() or mode(target) == 0o600


# -- L7: the issuer in the metadata (the callback's `iss` is in test_unit.py) --------------------


def metadata_transport(document: Mapping[str, object]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == METADATA_PATH
        return httpx.Response(200, json=document)

    return httpx.MockTransport(handler)


def test_discover_refuses_metadata_naming_another_issuer() -> None:
    # RFC 8414 §3.3: the document must name the very issuer its URL was built from; otherwise an
    # attacker's server (or a mix-up) would hand the client its own token endpoint.
    evil = {"issuer": "https://evil.example", "token_endpoint": "https://evil.example/token"}
    unnamed = {"token_endpoint": "https://as.example/token"}
    for document, named in ((evil, "'https://evil.example'"), (unnamed, "None")):
        with (
            httpx.Client(transport=metadata_transport(document)) as http,
            pytest.raises(ClientError, match=f"names issuer {named}, not"),
        ):
            Refresher.discover("https://as.example", "cid", "secret", MemoryStore(), http=http)


def test_discover_accepts_metadata_naming_its_issuer() -> None:
    document = {
        "issuer": "https://as.example",
        "token_endpoint": "https://as.example/token",
        "refresh_token_rotation": {"retry_policy": "replay", "leeway_seconds": 30},
    }
    with httpx.Client(transport=metadata_transport(document)) as http:
        refresher = Refresher.discover("https://as.example", "cid", None, MemoryStore(), http=http)
    assert refresher.client.token_endpoint == "https://as.example/token"
    assert refresher.retry_window() == 30

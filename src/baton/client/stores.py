"""Where the pair lives: a store is one slot holding one `TokenPair`, plus an exclusive lock.

Every store offers the same three operations:

- `load()` reads the current pair (no lock needed: writes are atomic);
- `lock()` is an exclusive lock across threads *and* processes (and hosts, for Redis), yielding a
  `Lease` with a fencing token;
- `save(pair, lease)` writes atomically, and only while the lease is still the newest one.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from baton.client.errors import ClientError, LockLost
from baton.client.tokens import TokenPair

if TYPE_CHECKING:
    import redis


@dataclass
class Lease:
    """Proof of holding a store's lock. `fence` grows with every acquisition."""

    fence: int
    _renew: Callable[[], None] | None = field(default=None, repr=False)

    def renew(self) -> None:
        """Extends a lease that expires (Redis, SQLite); raises `LockLost` if it already has."""
        if self._renew is not None:
            self._renew()


@runtime_checkable
class TokenStore(Protocol):
    def load(self) -> TokenPair | None: ...

    def lock(self) -> contextlib.AbstractContextManager[Lease]: ...

    def save(self, pair: TokenPair | None, lease: Lease) -> None: ...


class MemoryStore:
    """One process only: for scripts and tests."""

    def __init__(self, pair: TokenPair | None = None) -> None:
        self._pair = pair
        self._lock = threading.Lock()
        self._fence = 0
        self._holder = 0

    def load(self) -> TokenPair | None:
        return self._pair

    @contextlib.contextmanager
    def lock(self) -> Iterator[Lease]:
        with self._lock:
            self._fence += 1
            self._holder = self._fence
            yield Lease(self._fence)

    def save(self, pair: TokenPair | None, lease: Lease) -> None:
        if lease.fence != self._holder or not self._lock.locked():
            raise LockLost("memory store written without holding its lock")
        self._pair = pair


# Never through a symbolic link: a link planted in the store's directory would otherwise make
# the SDK read, or write its fence into, a file of the attacker's choosing. (0 where the platform
# has no such flag.)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class FileStore:
    """A JSON file, mode 0600, replaced atomically (temp file, fsync, rename, fsync of the
    directory), with an `flock` lock on a sidecar `.lock` file: shared by every thread and
    process on the host that opens the same path.

    The directory must belong to the user and be writable by no one else (otherwise another
    user could plant or swap files in it); the store and its lock file are never opened through
    a symbolic link. Either is refused with `ClientError`."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    def load(self) -> TokenPair | None:
        try:
            data = read_private(self.path)
        except FileNotFoundError:
            return None
        return TokenPair.from_json(data) if data.strip() else None

    @contextlib.contextmanager
    def lock(self) -> Iterator[Lease]:
        import fcntl  # POSIX only: imported here so that `import baton.client` works anywhere

        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _check_private_directory(self.path.parent)
        # A new open file description per acquisition: flock then excludes other threads of this
        # process as well as other processes. The lock file also holds the fence counter.
        fd = _open_private(self.lock_path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                fence = int(os.pread(fd, 32, 0) or b"0") + 1
            except ValueError:
                fence = 1
            os.pwrite(fd, str(fence).encode().ljust(20), 0)
            yield Lease(fence)
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def save(self, pair: TokenPair | None, lease: Lease) -> None:
        try:
            current = int(read_private(self.lock_path) or b"0")
        except (FileNotFoundError, ValueError):
            current = -1
        if current != lease.fence:
            raise LockLost(f"file store {self.path} written without holding its lock")
        _atomic_write(self.path, b"" if pair is None else pair.to_json().encode("utf-8"))


def _check_private_directory(directory: Path) -> None:
    info = os.stat(directory)
    getuid = getattr(os, "getuid", None)
    if getuid is not None and info.st_uid != getuid():
        raise ClientError(
            f"refusing the token store directory {directory}: it belongs to uid {info.st_uid},"
            " not to this user"
        )
    if info.st_mode & (stat.S_IWOTH | stat.S_IWGRP):
        raise ClientError(
            f"refusing the token store directory {directory}: others may write to it"
            f" (mode {stat.S_IMODE(info.st_mode):o})"
        )


def _open_private(path: Path, flags: int) -> int:
    """Opens a store file, never through a symbolic link; created 0600."""
    try:
        return os.open(path, flags | _NOFOLLOW, 0o600)
    except OSError as exc:
        if path.is_symlink():
            raise ClientError(
                f"refusing the token store file {path}: it is a symbolic link"
            ) from exc
        raise


def read_private(path: Path) -> bytes:
    """A private file's bytes (never read through a symbolic link): a store's, or a file kept
    beside it (`baton.client.mcp`'s client registration)."""
    fd = _open_private(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


def write_private(path: Path, data: bytes) -> None:
    """Replaces a private file beside a store (mode 0600, atomically), creating its directory
    0700 and refusing one another user could write to, as a `FileStore` does."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _check_private_directory(path.parent)
    _atomic_write(path, data)


def _atomic_write(path: Path, data: bytes) -> None:
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class SQLiteStore:
    """A row per `key` in a SQLite database (WAL, synchronous=FULL), shared by processes on one
    host. The lock is a lease row with an expiry and a fencing counter, taken by a conditional
    update, so a holder that died frees the lock when its lease expires; a write checks the fence
    in the same transaction."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        key: str = "default",
        *,
        lease_seconds: float = 30.0,
        poll_seconds: float = 0.01,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = str(path)
        self.key = key
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.clock = clock
        self._make_private()
        with contextlib.closing(self._connect()) as conn, conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS baton_tokens (key TEXT PRIMARY KEY, pair TEXT,"
                " holder TEXT, lease_until REAL NOT NULL DEFAULT 0,"
                " fence INTEGER NOT NULL DEFAULT 0)"
            )
            conn.execute("INSERT OR IGNORE INTO baton_tokens (key) VALUES (?)", (key,))

    def _make_private(self) -> None:
        """The database is created 0600 before SQLite opens it (SQLite gives its `-wal`, `-shm`
        and `-journal` files the database's mode when it creates them), and files left readable
        by an earlier version are made 0600 before anything is written to them."""
        if self.path in ("", ":memory:") or self.path.startswith("file:"):
            return
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(OSError):  # absent, or another user's (left as it is)
                os.chmod(self.path + suffix, 0o600)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    def load(self) -> TokenPair | None:
        with contextlib.closing(self._connect()) as conn:
            row = conn.execute(
                "SELECT pair FROM baton_tokens WHERE key = ?", (self.key,)
            ).fetchone()
        return TokenPair.from_json(row[0]) if row and row[0] else None

    @contextlib.contextmanager
    def lock(self) -> Iterator[Lease]:
        holder = secrets.token_hex(16)
        with contextlib.closing(self._connect()) as conn:
            while True:
                now = self.clock()
                cursor = conn.execute(
                    "UPDATE baton_tokens SET holder = ?, lease_until = ?, fence = fence + 1"
                    " WHERE key = ? AND (holder IS NULL OR lease_until < ?) RETURNING fence",
                    (holder, now + self.lease_seconds, self.key, now),
                )
                row = cursor.fetchone()
                cursor.close()
                if row is not None:
                    break
                time.sleep(self.poll_seconds)
            fence = int(row[0])

            def renew() -> None:
                cursor = conn.execute(
                    "UPDATE baton_tokens SET lease_until = ? WHERE key = ? AND fence = ?",
                    (self.clock() + self.lease_seconds, self.key, fence),
                )
                if cursor.rowcount != 1:
                    raise LockLost("SQLite store lease expired and was taken over")

            try:
                yield Lease(fence, renew)
            finally:
                conn.execute(
                    "UPDATE baton_tokens SET holder = NULL, lease_until = 0"
                    " WHERE key = ? AND fence = ?",
                    (self.key, fence),
                )

    def save(self, pair: TokenPair | None, lease: Lease) -> None:
        with contextlib.closing(self._connect()) as conn:
            cursor = conn.execute(
                "UPDATE baton_tokens SET pair = ? WHERE key = ? AND fence = ?",
                (None if pair is None else pair.to_json(), self.key, lease.fence),
            )
            if cursor.rowcount != 1:
                raise LockLost("SQLite store written by a holder whose lease was taken over")


_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""
# The fence check and the write are one atomic script: a holder whose lease expired (and was
# taken by another, who incremented the fence) can no longer write.
_SAVE = """
if redis.call('get', KEYS[2]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('del', KEYS[1]) else redis.call('set', KEYS[1], ARGV[2]) end
return 1
"""


class RedisStore:
    """A key in Redis, shared by processes on many hosts. The lock is `SET NX PX` with a random
    holder id (released and renewed only by its holder) and a fencing counter (`INCR`); a write
    is accepted only if its fence is still the newest."""

    def __init__(
        self,
        client: redis.Redis,
        key: str = "baton:tokens",
        *,
        lease_seconds: float = 30.0,
        poll_seconds: float = 0.01,
    ) -> None:
        self.redis = client
        self.key = key
        self.lock_key = key + ":lock"
        self.fence_key = key + ":fence"
        self.lease_ms = int(lease_seconds * 1000)
        self.poll_seconds = poll_seconds

    @classmethod
    def from_url(cls, url: str, key: str = "baton:tokens", **options: Any) -> RedisStore:
        import redis

        return cls(redis.Redis.from_url(url), key, **options)

    def load(self) -> TokenPair | None:
        data = self.redis.get(self.key)
        return TokenPair.from_json(data) if data else None

    @contextlib.contextmanager
    def lock(self) -> Iterator[Lease]:
        holder = secrets.token_hex(16)
        while not self.redis.set(self.lock_key, holder, nx=True, px=self.lease_ms):
            time.sleep(self.poll_seconds)
        fence = int(self.redis.incr(self.fence_key))

        def renew() -> None:
            if not self.redis.eval(_RENEW, 1, self.lock_key, holder, self.lease_ms):
                raise LockLost("Redis store lease expired before it was renewed")

        try:
            yield Lease(fence, renew)
        finally:
            self.redis.eval(_RELEASE, 1, self.lock_key, holder)

    def save(self, pair: TokenPair | None, lease: Lease) -> None:
        data = "" if pair is None else pair.to_json()
        if not self.redis.eval(_SAVE, 2, self.key, self.fence_key, str(lease.fence), data):
            raise LockLost("Redis store written by a holder whose lease was taken over")


def store_pair(store: TokenStore, pair: TokenPair) -> None:
    """Puts a first pair (from `exchange_code`) into a store, under its lock."""
    with store.lock() as lease:
        store.save(pair, lease)

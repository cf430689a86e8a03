"""How a transaction reaches the database: one `Runner` per dialect, behind one seam.

A transaction is always a plain function of a SQLAlchemy `Connection`, written once for every
dialect (`baton.store.sql`). A `Runner` promises to drive such functions, and nothing else
reaches the database:

- `write(work)`: runs `work` in a write transaction, committed (and durable as configured)
  before it returns its result; an exception in `work` rolls back its work and no one else's.
- `read(work)`: runs `work` on a connection that sees committed data, never holding the write
  lock; whatever it leaves open is rolled back.
- `wait_for_feed(timeout)`: returns when revocation feed events may have been committed.
- `pool_use()`: (connections checked out, capacity) for the metrics, or None.
- `close()`: commits what was asked for, then gives back every connection and thread.

`open_runner` chooses the runner from the URL: `postgresql.PostgresRunner` (asyncpg, the
concurrency left to PostgreSQL) or `sqlite.SQLiteRunner` (the stdlib driver, with the group
commit, writer turns, fsync thread and checkpointer that let several server processes share one
file). Each module says why each mechanism exists; docs/performance.md holds what each is worth,
measured side by side. `fast_paths=False` runs the prepared statements through SQLAlchemy's
ordinary execution (`baton.store.prepared`), for bisecting.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

from sqlalchemy import Connection
from sqlalchemy.engine import URL, make_url

from baton.store.engines.postgresql import (
    FEED_CHANNEL,
    MAX_ATTEMPTS,
    RETRYABLE_SQLSTATES,
    WAKE_FEED,
    PoolSettings,
    PostgresRunner,
    libpq_url,
    wakes_feed,
)
from baton.store.engines.sqlite import (
    MMAP_BYTES,
    SQLITE_FEED_POLL,
    SQLITE_POOL,
    SQLITE_SUFFIXES,
    SYNCHRONOUS_MODES,
    SQLiteRunner,
    SQLiteSettings,
    private_database_files,
)
from baton.store.engines.sqlite_wal import (
    BUSY_TIMEOUT_MS,
    CATCH_UP_PASSES,
    CHECKPOINT_IDLE,
    CHECKPOINT_SPACING,
    FINAL_PASS_AFTER,
    FLUSH_CHUNK_BYTES,
    IDLE_TRUNCATE_WAIT_MS,
    WAL_RESTART_FRAMES,
)
from baton.urls import masked_url

__all__ = [
    "BUSY_TIMEOUT_MS",
    "CATCH_UP_PASSES",
    "CHECKPOINT_IDLE",
    "CHECKPOINT_SPACING",
    "DEFAULT_URL",
    "FEED_CHANNEL",
    "FINAL_PASS_AFTER",
    "FLUSH_CHUNK_BYTES",
    "IDLE_TRUNCATE_WAIT_MS",
    "MAX_ATTEMPTS",
    "MMAP_BYTES",
    "RETRYABLE_SQLSTATES",
    "SQLITE_FEED_POLL",
    "SQLITE_POOL",
    "SQLITE_SUFFIXES",
    "SYNCHRONOUS_MODES",
    "WAKE_FEED",
    "WAL_RESTART_FRAMES",
    "PoolSettings",
    "PostgresRunner",
    "Runner",
    "SQLiteRunner",
    "SQLiteSettings",
    "display_url",
    "libpq_url",
    "normalize_url",
    "open_runner",
    "private_database_files",
    "wakes_feed",
]

T = TypeVar("T")

DEFAULT_URL = "sqlite:///baton.db"


class Runner(Protocol):
    """What the store asks of a database (see the module's docstring)."""

    dialect: str

    async def write(self, work: Callable[[Connection], T]) -> T: ...
    async def write_schema(self, work: Callable[[Connection], T]) -> T:
        """`write` for a migration: alone in its transaction, and on SQLite with the foreign
        keys unenforced until they are checked, before the commit (a table is changed there by
        building it anew, which the keys of others referring to it would refuse)."""
        ...

    async def read(self, work: Callable[[Connection], T]) -> T: ...
    async def wait_for_feed(self, timeout: float) -> None:
        """Returns when new revocation feed events may have been committed, or at `timeout`."""
        ...

    def pool_use(self) -> tuple[int, int] | None:
        """(connections checked out, the pool's capacity), or None without a pool that counts."""
        ...

    async def close(self) -> None: ...


def normalize_url(db: str) -> URL:
    """A SQLAlchemy URL from `--db`: a URL, or a plain file path (taken as SQLite).

    `postgresql://` and `postgres://` select the asyncpg driver.
    """
    if "://" not in db:
        return make_url("sqlite:///" + str(Path(db)))
    url = make_url(db.replace("postgres://", "postgresql://", 1))
    if url.get_backend_name() == "postgresql" and url.get_driver_name() != "asyncpg":
        url = url.set(drivername="postgresql+asyncpg")
    return url


def display_url(db: str) -> str:
    """The database URL as it can be shown (normalized, a bare path as `sqlite:///...`): never
    with its password, masked by the one rule of `baton.urls`."""
    return masked_url(normalize_url(db).render_as_string(hide_password=False))


def open_runner(
    db: str,
    pool: PoolSettings | None = None,
    sqlite: SQLiteSettings | None = None,
    *,
    fast_paths: bool = True,
) -> Runner:
    """The runner for `db`. `fast_paths` (`Settings.fast_paths`): whether the prepared
    statements skip SQLAlchemy's per-call work (`baton.store.prepared`)."""
    url = normalize_url(db)
    backend = url.get_backend_name()
    if backend == "sqlite":
        return SQLiteRunner(url, sqlite, fast_paths=fast_paths)
    if backend == "postgresql":
        return PostgresRunner(url, pool or PoolSettings(), fast_paths=fast_paths)
    raise ValueError(f"unsupported database {backend!r}: use sqlite:/// or postgresql://")

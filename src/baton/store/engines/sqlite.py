"""The SQLite runner: the stdlib driver, made to serve several server processes at once.

SQLite lets one writer in at a time per database and its stock answers to contention (a busy
handler that sleeps, an fsync and a checkpoint inside COMMIT) cost more than the SQL of a
rotation. So the runner does four things of its own, each for one reason:

- Group commit on the event loop: the write transactions asked for during one turn of a
  process's loop run inline on that loop, on one writer connection, and commit together, so one
  BEGIN IMMEDIATE, one COMMIT and (with `full`) one fsync serve the whole batch; a writer thread
  used to fight the loop for the GIL while it held the database's write lock.
- Writer turns between processes: an exclusive flock of `<database>-writer.lock` is held for
  each batch. The kernel hands it over the moment it is released, where SQLite's busy handler
  sleeps for milliseconds between attempts; a loop never blocks on it (a thread waits for the
  turn and hands it to the loop).
- The fsync thread (`sqlite_wal.WalSync`): `full` durability with the fsync after the write
  lock is given back and before anyone is answered.
- The checkpointer (`sqlite_wal.Checkpointer`): checkpoints on a thread of their own, the WAL
  started over under writes that never pause, and emptied once writes stop.

Reads run inline on one connection kept open: a point query in WAL mode never waits for a
writer. What each mechanism is worth, measured side by side, is in docs/performance.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import fcntl
import logging
import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL
from sqlalchemy.pool import QueuePool

from baton import spans
from baton.store.engines.postgresql import PoolSettings
from baton.store.engines.sqlite_wal import (
    BUSY_TIMEOUT_MS,
    Checkpointer,
    WalSync,
    driver_connection,
)
from baton.store.prepared import FAST_PATHS_OPTION

T = TypeVar("T")
log = logging.getLogger("baton.store")

# SQLite has no notifications: feed readers look again this often (seconds).
SQLITE_FEED_POLL = 0.02
# The readers' memory map of the database, off: the pages a map touches count in each worker's
# resident memory, the same page once per process, and a map's share grows with the file (up to
# its size, per process); read() through the kernel's page cache costs a little CPU per page
# instead (docs/performance.md, "The writer's memory map").
MMAP_BYTES = 0
# The pool of a database file's connections: SQLAlchemy's defaults for a file, written here so
# the runner can say what its capacity is. The runner itself holds three (the reader, the
# writer and the checkpointer's); the others are for `baton` commands and tests.
SQLITE_POOL = PoolSettings(size=5, max_overflow=10)


@dataclass(frozen=True)
class SQLiteSettings:
    """How an embedded SQLite database trades durability for speed (`--sqlite-synchronous`).

    In WAL mode, `full` answers a write only once the WAL holding its commit has been fsynced,
    so an answered rotation or revocation survives a power cut; `normal` syncs only at
    checkpoints, so it survives a crash of the server but a power cut can lose the last commits
    (a revoked token alive again, a rotation forgotten while the client holds the new pair);
    `off` never syncs. Group commit shares one fsync among the write transactions that arrive
    together, and the fsync runs after the write lock is given back (see `WalSync`), which is
    what keeps `full` affordable.
    """

    synchronous: str = "full"


SYNCHRONOUS_MODES = ("full", "normal", "off")


class SQLiteRunner:
    dialect = "sqlite"

    def __init__(
        self, url: URL, settings: SQLiteSettings | None = None, *, fast_paths: bool = True
    ) -> None:
        self.url = url
        self.settings = settings or SQLiteSettings()
        database = url.database
        is_file = database not in (None, "", ":memory:")
        # An in-memory database has no pool that counts (one connection per thread).
        self.pool_settings: PoolSettings | None = SQLITE_POOL if is_file else None
        if database and is_file:
            private_database_files(database)
        # `full` on a file: each commit runs as `normal` (no fsync inside it, so none while the
        # write lock is held) and the runner fsyncs the WAL itself after the lock is given back
        # and before anyone is answered (`WalSync`).
        self._wal_sync: WalSync | None = None
        synchronous = self.settings.synchronous
        if synchronous == "full" and is_file:
            self._wal_sync = WalSync(f"{url.database}-wal")
            synchronous = "normal"
        self.engine = _sqlite_engine(url, synchronous, self.pool_settings, fast_paths)
        # Reads run on the caller's thread, on one connection kept open: a point query in WAL
        # mode never waits for a writer and costs far less than the hop to a worker thread (and
        # the connection set-up) it used to cost.
        self._reader: Connection | None = None
        self._reading = threading.Lock()
        # Writes run on the event loop that asked for them, on one writer connection: the write
        # transactions asked for during one turn of the loop are committed together (group
        # commit: one fsync for the batch with `full`), every request answered only after the
        # commit that holds its work. They used to run on a writer thread, which fought the
        # event loop for the GIL in the middle of each statement while holding the database's
        # write lock, so the other process's writer waited on that fight too.
        self._writer_conn: Connection | None = None
        self._pending: dict[asyncio.AbstractEventLoop, list[_WriteJob]] = {}
        # One batch at a time in this process (`_writing`), and one process at a time on the
        # database: an exclusive flock of a file beside it, which the kernel hands over the
        # moment it is released, where SQLite's own busy handler sleeps for milliseconds
        # between attempts. An event loop never blocks on either: when the turn is taken, a
        # thread waits for it and hands it to the loop, which keeps serving (and queueing more
        # writes for the batch) meanwhile.
        self._writing = threading.Lock()
        self._turns = _WriterTurns(url.database)
        self._turn_requests: queue.SimpleQueue[asyncio.AbstractEventLoop | None] = (
            queue.SimpleQueue()
        )
        self._turn_thread: threading.Thread | None = None
        self._closed = False
        # Checkpoints (copying the WAL back into the database, with an fsync of each) run on a
        # thread of their own rather than inside whichever commit crosses SQLite's threshold,
        # where they stalled every request of that batch.
        self._checkpointer: Checkpointer | None = None
        if is_file:
            self._checkpointer = Checkpointer(
                self.engine, self._holding_the_turn, flush=self.settings.synchronous != "off"
            )

    def pool_use(self) -> tuple[int, int] | None:
        """(connections checked out, the pool's capacity), or None without a pool that counts."""
        pool = self.engine.pool
        if self.pool_settings is None or not isinstance(pool, QueuePool):
            return None
        return pool.checkedout(), self.pool_settings.capacity

    async def write(self, work: Callable[[Connection], T]) -> T:
        if self._closed:
            raise RuntimeError("this SQLite runner is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if spans.enabled():
            # The batch runs in the context of the write that began it: traced, each job runs
            # in its own caller's, so its statements are spans of its own request.
            work = _in_context(contextvars.copy_context(), work)
        pending = self._pending.get(loop)
        if pending is None:
            # The first write of this batch: the batch is run once the loop has run what is
            # ready now, so the writes other requests reach meanwhile join it.
            pending = self._pending[loop] = []
            loop.call_soon(self._ask_for_turn, loop)
        pending.append(_WriteJob(work, future))
        result: T = await future
        return result

    async def write_schema(self, work: Callable[[Connection], T]) -> T:
        """`work` (a migration) in a transaction of its own, with the foreign keys unenforced
        until they are checked, just before the commit, in every table it changed and every
        table that refers to one (`_check_keys`): SQLite changes a table other than by adding
        to it only by building it anew, and would refuse to drop the old one while another
        table's enforced key refers to it (the steps of
        https://www.sqlite.org/lang_altertable.html#otheralter). The pragma takes effect only
        outside a transaction, so this cannot be a job of a batch. It runs on a thread: the
        turn it waits for may be held for a batch of this loop's, which the loop must run to
        give it back."""
        if self._closed:
            raise RuntimeError("this SQLite runner is closed")
        result = await anyio.to_thread.run_sync(self._migrate, work)
        # Answered as a batch is: once the checkpointer knows and the WAL's fsync is done.
        job = _WriteJob(work, asyncio.get_running_loop().create_future())
        self._answer(asyncio.get_running_loop(), [job], [(result, None)])
        answered: T = await job.future
        return answered

    def _migrate(self, work: Callable[[Connection], T]) -> T:
        with self._holding_the_turn():
            conn = self._writer_connection()
            driver = driver_connection(conn)
            driver.execute("PRAGMA foreign_keys=OFF")
            try:
                with conn.begin():
                    before = _table_definitions(conn)
                    result = work(conn)
                    _check_keys(conn, before, conn.dialect.identifier_preparer.quote)
            finally:
                try:
                    driver.execute("PRAGMA foreign_keys=ON")
                except Exception:
                    # Never used again with its keys off: the next write opens a connection,
                    # whose keys are on (`_on_connect`); the migration's own error stands.
                    conn.invalidate()
        return result

    def _ask_for_turn(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._writing.acquire(blocking=False):
            if self._turns.try_acquire():
                self._take_turn(loop)
                return
            self._writing.release()
        self._hand_over(loop)

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._turn_thread is None:
            self._turn_thread = threading.Thread(
                target=self._wait_for_turns, name="baton-sqlite-turns", daemon=True
            )
            self._turn_thread.start()
        self._turn_requests.put(loop)

    def _wait_for_turns(self) -> None:
        """Takes the turn on the loops' behalf when it was taken, and hands it to them."""
        while (loop := self._turn_requests.get()) is not None:
            self._writing.acquire()
            self._turns.acquire()
            try:
                loop.call_soon_threadsafe(self._take_turn, loop)
            except RuntimeError:  # that loop has closed: nobody waits for its writes any more
                self._pending.pop(loop, None)
                self._release_turn()

    def _take_turn(self, loop: asyncio.AbstractEventLoop) -> None:
        """Runs the writes queued on `loop` in one transaction with the turn held, gives the
        turn back, and has the batch answered (at once, or after the WAL's fsync)."""
        batch = self._pending.pop(loop, [])
        try:
            conn = self._writer_connection()
            with conn.begin():
                outcomes: list[_Outcome] = [(job.work(conn), None) for job in batch]
        except Exception as exc:
            if len(batch) > 1:
                self._run_alone(loop, batch)
                return
            outcomes = [(None, exc)]  # alone, it would only fail again
        self._release_turn()
        self._answer(loop, batch, outcomes)

    def _run_alone(self, loop: asyncio.AbstractEventLoop, batch: list[_WriteJob]) -> None:
        """A job of the batch failed, or its commit did: the whole batch was rolled back, so
        each job runs again in a transaction of its own (the turn still held) and only the
        failing one fails. Jobs are functions of the connection alone, so running one again
        after a rollback is safe; failures are rare enough that this costs less than a
        savepoint around every job."""
        try:
            conn = self._writer_connection()
            outcomes = [self._run_one(conn, job) for job in batch]
        except Exception as exc:  # no connection could be had: nothing of the batch ran
            outcomes = [(None, exc)] * len(batch)
        finally:
            self._release_turn()
        self._answer(loop, batch, outcomes)

    def _answer(
        self, loop: asyncio.AbstractEventLoop, batch: list[_WriteJob], outcomes: list[_Outcome]
    ) -> None:
        if self._checkpointer is not None:
            self._checkpointer.wrote()
        if self._wal_sync is None:
            _resolve(batch, outcomes)
            return

        def synced(failure: OSError | None) -> None:
            _resolve(batch, outcomes if failure is None else [(None, failure)] * len(batch))

        self._wal_sync.after_sync(loop, synced)

    @staticmethod
    def _run_one(conn: Connection, job: _WriteJob) -> _Outcome:
        try:
            with conn.begin():
                return job.work(conn), None
        except Exception as exc:
            return None, exc

    def _writer_connection(self) -> Connection:
        conn = self._writer_conn
        if conn is None or conn.invalidated or conn.closed:
            conn = self._writer_conn = self.engine.connect()
            if self._turns.is_file:
                # Checkpoints are the checkpointer thread's (see __init__), never a commit's.
                driver_connection(conn).execute("PRAGMA wal_autocheckpoint=0")
                # No memory map for the writer: each checkpoint that grows the file made every
                # mapping connection unmap and map the whole file again, and the writer then
                # faulted in, page by page, the index pages it had just read. Its pages are
                # read with pread instead (docs/performance.md, "The writer's memory map"),
                # whatever the readers' map (`MMAP_BYTES`).
                driver_connection(conn).execute("PRAGMA mmap_size=0")
        return conn

    def _release_turn(self) -> None:
        self._turns.release()
        self._writing.release()

    @contextlib.contextmanager
    def _holding_the_turn(self) -> Iterator[None]:
        """The writer turn of this process and of every other, for the checkpointer."""
        with self._writing:
            self._turns.acquire()
            try:
                yield
            finally:
                self._turns.release()

    async def read(self, work: Callable[[Connection], T]) -> T:
        """Runs `work` on the reading connection, in autocommit mode until it executes through
        SQLAlchemy: a prepared point query (`baton.store.prepared`) is then one implicit read
        transaction with no BEGIN or COMMIT around it, and a Core statement begins a deferred
        transaction that ends here, so several such statements share one snapshot."""
        with self._reading:
            reader = self._reader
            if reader is None or reader.invalidated or reader.closed:
                reader = self._reader = self.engine.execution_options(
                    baton_read_only=True
                ).connect()
            try:
                return work(reader)
            finally:
                if reader.in_transaction():
                    reader.rollback()

    async def wait_for_feed(self, timeout: float) -> None:
        await anyio.sleep(min(timeout, SQLITE_FEED_POLL))

    async def close(self) -> None:
        if self._closed:
            return
        await self.write(lambda conn: None)  # whatever this loop queued before is committed
        self._closed = True
        if self._turn_thread is not None:
            self._turn_requests.put(None)
            await anyio.to_thread.run_sync(self._turn_thread.join)
            self._turn_thread = None
        if self._wal_sync is not None:
            await anyio.to_thread.run_sync(self._wal_sync.close)
        if self._checkpointer is not None:
            await anyio.to_thread.run_sync(self._checkpointer.close)
        with self._writing:
            if self._writer_conn is not None:
                self._writer_conn.close()
                self._writer_conn = None
        with self._reading:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
        self._turns.close()
        await anyio.to_thread.run_sync(self.engine.dispose)
        if self._checkpointer is not None:
            self._checkpointer.release()  # no connection of this process is open any more


_Outcome = tuple[Any, BaseException | None]


# The files of a SQLite database: SQLite creates the WAL and shared-memory files with the mode
# of the database file, so a database file created 0600 keeps them all 0600.
SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal", "-writer.lock")


def private_database_files(database: str) -> None:
    """Creates the database file 0600 before SQLite does (which would create it 0644 under the
    usual umask, its WAL and shared memory too: a token digest, a password hash and the audit
    log readable by every local user), and tightens to 0600 the files of an existing one that
    others may read."""
    path = Path(database)
    if not path.parent.is_dir():
        return  # SQLite reports it ("unable to open database file")
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    except OSError:
        return  # SQLite reports it
    for suffix in SQLITE_SUFFIXES:
        name = f"{database}{suffix}"
        try:
            mode = os.stat(name).st_mode
            if mode & 0o077:
                os.chmod(name, 0o600)
                log.warning("database file %s was readable by others: now mode 0600", name)
        except FileNotFoundError:
            continue
        except OSError as exc:  # not ours to change: say so, and go on as before
            log.warning("database file %s is readable by others (%s)", name, exc)


class ForeignKeysBroken(Exception):
    """After a migration, rows of a table it changed (or of one referring to such a table)
    whose foreign key refers to no row (`write_schema`): the migration was rolled back."""

    def __init__(self, rows: Sequence[Any]) -> None:
        shown = ", ".join(f"{row[0]} row {row[1]} -> {row[2]}" for row in rows[:5])
        super().__init__(
            f"the migration would leave {len(rows)} row(s) whose foreign key refers to no row"
            f" ({shown}); nothing was changed: repair or delete those rows, then run it again"
        )


def _table_definitions(conn: Connection) -> dict[str, str]:
    rows = conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'table'")
    return {str(name): str(sql) for name, sql in rows}


def _check_keys(conn: Connection, before: dict[str, str], quoted: Callable[[str], str]) -> None:
    """Raises `ForeignKeysBroken` if a table whose definition changed since `before` (built
    anew, or new), or a table whose keys refer to one, has a row whose key refers to no row.
    Only those: a row broken elsewhere (by a tool that wrote with the keys off) is not this
    migration's, and checking every table would hold the write lock for seconds on every
    migration of a large database."""
    after = _table_definitions(conn)
    changed = {name for name, sql in after.items() if before.get(name) != sql}
    referring = {
        table
        for table in after
        for key in conn.exec_driver_sql(f"PRAGMA foreign_key_list({quoted(table)})")
        if key[2] in changed
    }
    broken = [
        row
        for table in sorted(changed | referring)
        for row in conn.exec_driver_sql(f"PRAGMA foreign_key_check({quoted(table)})")
    ]
    if broken:
        raise ForeignKeysBroken(broken)


class _WriterTurns:
    """An exclusive flock of `<database>-writer.lock`, held for one batch of write transactions."""

    def __init__(self, database: str | None) -> None:
        self._fd: int | None = None
        self.is_file = database not in (None, "", ":memory:")
        if self.is_file:
            self._fd = os.open(f"{database}-writer.lock", os.O_RDWR | os.O_CREAT, 0o600)

    def acquire(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_EX)

    def try_acquire(self) -> bool:
        if self._fd is None:
            return True
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@dataclass(frozen=True)
class _WriteJob:
    work: Callable[[Connection], Any]
    future: asyncio.Future[Any]


def _in_context(
    context: contextvars.Context, work: Callable[[Connection], T]
) -> Callable[[Connection], T]:
    def run(conn: Connection) -> T:
        return context.run(work, conn)

    return run


def _resolve(batch: list[_WriteJob], outcomes: list[_Outcome]) -> None:
    for job, (result, error) in zip(batch, outcomes, strict=True):
        if job.future.done():  # the waiter was cancelled
            continue
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result)


def _sqlite_engine(
    url: URL, synchronous: str, pool: PoolSettings | None, fast_paths: bool
) -> Engine:
    if synchronous not in SYNCHRONOUS_MODES:
        raise ValueError(f"synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}")
    sizing: dict[str, Any] = (
        {} if pool is None else {"pool_size": pool.size, "max_overflow": pool.max_overflow}
    )
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30},
        execution_options={FAST_PATHS_OPTION: fast_paths},
        **sizing,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below emit BEGIN, so writers can take the lock first.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        # Switching a database into WAL takes its write lock, and SQLite may refuse that with
        # "database is locked" at once rather than wait (seen when another connection was
        # checkpointing): ask first, and switch only a database that is not in WAL yet, so the
        # connections a server opens under load never take the lock to set what is already set.
        if url.database not in (None, "", ":memory:"):
            mode = cursor.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
        # FULL by default: a committed rotation or revocation survives a power cut, so no
        # acknowledged revocation is ever lost and no token a client holds is unknown after a
        # crash. See SQLiteSettings for what the other modes give up.
        cursor.execute(f"PRAGMA synchronous={synchronous.upper()}")
        cursor.execute("PRAGMA foreign_keys=ON")
        # The memory map, if any (`MMAP_BYTES`; the writer connection never maps: see
        # `SQLiteRunner._writer_connection`).
        cursor.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        read_only = conn.get_execution_options().get("baton_read_only", False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine

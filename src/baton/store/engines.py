"""How a transaction reaches the database: one `Runner` per dialect.

A transaction is always a plain function of a SQLAlchemy `Connection`, written once for every
dialect (`baton.store.sql`). The runner decides how it is driven:

- SQLite: the stdlib driver. Reads run inline on one open connection; writes run inline too, on
  the event loop, the transactions asked for during one turn of the loop committed together
  (group commit), each batch started with `BEGIN IMMEDIATE` and taking turns with other
  processes on a file lock.
- PostgreSQL: asyncpg on the event loop, the function run through `AsyncConnection.run_sync`
  (no thread hop), READ COMMITTED, a bounded retry on serialization failures and deadlocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import anyio
import anyio.to_thread
import asyncpg
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

T = TypeVar("T")
log = logging.getLogger("baton.store")

DEFAULT_URL = "sqlite:///baton.db"

# SQLSTATEs that mean "run the transaction again": serialization_failure, deadlock_detected.
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})
MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class PoolSettings:
    """Connections per server process (PostgreSQL). Size it to the requests in flight that
    reach the database at once: a pool larger than the server's max_connections divided by the
    number of processes only moves the queue into PostgreSQL. `size=0` keeps no pool at all (a
    connection per transaction), for an external pooler such as PgBouncer."""

    size: int = 10
    max_overflow: int = 10
    timeout: float = 30.0


# The channel PostgreSQL notifies when a transaction wrote revocation feed events.
FEED_CHANNEL = "baton_revocations"
# `Connection.info` key a transaction sets when it wrote feed events: the runner notifies the
# channel once the transaction has committed (see `baton.store.sql._wake_feed`).
WAKE_FEED = "baton_wake_feed"
# SQLite has no notifications: feed readers look again this often (seconds).
SQLITE_FEED_POLL = 0.02


class Runner(Protocol):
    dialect: str

    async def write(self, work: Callable[[Connection], T]) -> T: ...
    async def read(self, work: Callable[[Connection], T]) -> T: ...
    async def wait_for_feed(self, timeout: float) -> None:
        """Returns when new revocation feed events may have been committed, or at `timeout`."""
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
    """The URL as it can be shown: never with its password."""
    return normalize_url(db).render_as_string(hide_password=True)


def open_runner(
    db: str, pool: PoolSettings | None = None, sqlite: SQLiteSettings | None = None
) -> Runner:
    url = normalize_url(db)
    backend = url.get_backend_name()
    if backend == "sqlite":
        return SQLiteRunner(url, sqlite)
    if backend == "postgresql":
        return PostgresRunner(url, pool or PoolSettings())
    raise ValueError(f"unsupported database {backend!r}: use sqlite:/// or postgresql://")


class SQLiteRunner:
    dialect = "sqlite"

    def __init__(self, url: URL, settings: SQLiteSettings | None = None) -> None:
        self.url = url
        self.settings = settings or SQLiteSettings()
        if url.database not in (None, "", ":memory:"):
            private_database_files(url.database)
        # `full` on a file: each commit runs as `normal` (no fsync inside it, so none while the
        # write lock is held) and the runner fsyncs the WAL itself after the lock is given back
        # and before anyone is answered (`_WalSync`).
        self._wal_sync: _WalSync | None = None
        synchronous = self.settings.synchronous
        if synchronous == "full" and url.database not in (None, "", ":memory:"):
            self._wal_sync = _WalSync(f"{url.database}-wal")
            synchronous = "normal"
        self.engine = _sqlite_engine(url, synchronous)
        # Reads run on the caller's thread, on one connection kept open: a point query in WAL
        # mode never waits for a writer and takes tens of microseconds, far less than the hop to
        # a worker thread (and the connection set-up) it used to cost.
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
        self._wrote = threading.Event()
        self._closing = threading.Event()
        self._checkpointer: threading.Thread | None = None
        if url.database not in (None, "", ":memory:"):
            self._checkpointer = threading.Thread(
                target=self._checkpoint_loop, name="baton-sqlite-checkpoint", daemon=True
            )
            self._checkpointer.start()

    async def write(self, work: Callable[[Connection], T]) -> T:
        if self._closed:
            raise RuntimeError("this SQLite runner is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        pending = self._pending.get(loop)
        if pending is None:
            # The first write of this batch: the batch is run once the loop has run what is
            # ready now, so the writes other requests reach meanwhile join it.
            pending = self._pending[loop] = []
            loop.call_soon(self._ask_for_turn, loop)
        pending.append(_WriteJob(work, future))
        result: T = await future
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
        self._wrote.set()
        if self._wal_sync is not None:
            self._wal_sync.answer_after_sync(loop, batch, outcomes)
        else:
            _resolve(batch, outcomes)

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
                _driver(conn).execute("PRAGMA wal_autocheckpoint=0")
                # No memory map for the writer: each checkpoint that grows the file made every
                # mapping connection unmap and map the whole file again, and the writer then
                # faulted in, page by page, the index pages it had just read. Its pages are
                # read with pread instead (measured, wrk c16 with 2 workers: 1,900/s with the
                # map, 2,300/s without). Readers keep it: their pages stay mapped between
                # checkpoints, and a workload that only reads never remaps at all.
                _driver(conn).execute("PRAGMA mmap_size=0")
        return conn

    def _release_turn(self) -> None:
        self._turns.release()
        self._writing.release()

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

    def _checkpoint_loop(self) -> None:
        conn: Connection | None = None
        wal_to_empty = False  # written since the WAL was last emptied
        try:
            while not self._closing.is_set():
                if not self._wrote.wait(CHECKPOINT_IDLE):
                    if wal_to_empty and conn is not None:
                        try:
                            wal_to_empty = not _empty_the_wal(conn)
                        except sqlite3.Error as exc:
                            log.warning("emptying the WAL failed (%s); will retry", exc)
                    continue
                self._wrote.clear()
                wal_to_empty = True
                try:
                    # Connected after the first write rather than at start: the first
                    # connection to a new database switches it to WAL, and two switching at
                    # once made one fail with "database is locked", which ended this thread
                    # for good (no checkpoint ever again in that process).
                    conn = conn or self.engine.connect()
                    self._checkpoint(conn)
                except (sqlite3.Error, DBAPIError) as exc:
                    log.warning("WAL checkpoint failed (%s); will retry", exc)
                self._closing.wait(CHECKPOINT_SPACING)
        finally:
            if conn is not None:
                conn.close()

    def _checkpoint(self, conn: Connection) -> None:
        """Copies the WAL back into the database, and starts the WAL over once it is long.

        A PASSIVE checkpoint copies the frames there are when it starts, while writers keep
        adding more; SQLite writes from the start of the WAL again only at a commit that finds
        every frame copied, which never happens while writes do not pause. The file then grew
        by every commit for as long as the load lasted: `bench/rounds.py --rounds 1 --duration
        40` (wrk c16, 2 workers) left a WAL of 2.7 and 2.8 GB, about 70 MB a second, and in one
        process a commit's share of a rotation went from 41 us over the first 5,000 rotations
        to 85 us over 50,000, its frames going to newly allocated pages. So once the WAL is
        past `WAL_RESTART_FRAMES`, more passes copy what arrived during the one before, each
        shorter than the last, and the last frames are copied with the writer turn held (1.5
        to 9 ms measured): nobody commits in between, and the next commit, of whichever
        process, starts the WAL over. Same runs: a WAL of 102 and 114 MB; in one process,
        36 us a commit over the 50,000 rotations."""
        _busy, frames, _copied = _wal_checkpoint(conn, "PASSIVE")
        if frames < WAL_RESTART_FRAMES:
            return  # short, or -1: another connection is checkpointing
        for _ in range(CATCH_UP_PASSES):
            _busy, now, _copied = _wal_checkpoint(conn, "PASSIVE")
            if now < 0:
                return
            added, frames = now - frames, now
            if added <= FINAL_PASS_FRAMES:
                break
        else:
            return  # the writers outpace the copying: the next round tries again
        with self._writing:
            self._turns.acquire()
            try:
                _wal_checkpoint(conn, "PASSIVE")
            finally:
                self._turns.release()

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
        self._closing.set()
        self._wrote.set()
        if self._checkpointer is not None:
            await anyio.to_thread.run_sync(self._checkpointer.join)
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


# Seconds between two checkpoints of a process, at most. A checkpoint copies each page written
# since the last one once, however often it was rewritten meanwhile (the tails of the tables and
# their indexes, rewritten by every batch), and fsyncs the database file: measured, wrk c16 with
# 2 workers, 12 alternating rounds each, refresh median ~2,470/s at 0.5 s against ~2,110/s at
# 0.1 s, with lower p99. The price is a longer WAL between checkpoints (tens of MB at that load).
CHECKPOINT_SPACING = 0.5
CHECKPOINT_IDLE = 1.0  # seconds without writes after which the checkpointer empties the WAL
IDLE_TRUNCATE_WAIT_MS = 100  # how long emptying the WAL waits for readers and writers
BUSY_TIMEOUT_MS = 30_000
MMAP_BYTES = 256 * 1024 * 1024  # address space, not memory: the kernel pages it in and out
# A WAL longer than this many frames (64 MB of 4 KB pages) is started over (see `_checkpoint`);
# the passes that catch up first are at most `CATCH_UP_PASSES`, and the one with the turn held
# copies at most about `FINAL_PASS_FRAMES`.
WAL_RESTART_FRAMES = 16_384
CATCH_UP_PASSES = 4
FINAL_PASS_FRAMES = 256


@dataclass(frozen=True)
class SQLiteSettings:
    """How an embedded SQLite database trades durability for speed (`--sqlite-synchronous`).

    In WAL mode, `full` answers a write only once the WAL holding its commit has been fsynced,
    so an answered rotation or revocation survives a power cut; `normal` syncs only at
    checkpoints, so it survives a crash of the server but a power cut can lose the last commits
    (a revoked token alive again, a rotation forgotten while the client holds the new pair);
    `off` never syncs. Group commit shares one fsync among the write transactions that arrive
    together, and the fsync runs after the write lock is given back (see `_WalSync`), which is
    what keeps `full` affordable.
    """

    synchronous: str = "full"


SYNCHRONOUS_MODES = ("full", "normal", "off")


_Outcome = tuple[Any, BaseException | None]
_Answer = tuple[asyncio.AbstractEventLoop, list["_WriteJob"], list[_Outcome]]


class _WalSync:
    """`full` durability with the fsync outside the write lock.

    SQLite's own `synchronous=FULL` fsyncs the WAL inside COMMIT, while it holds the database's
    write lock: every other writer (the server's other processes) waits for that fsync, about
    0.7 ms under load, so the lock was busy syncing most of the time. Here commits run as
    `synchronous=NORMAL` (the frames are written to the WAL, not synced) and this thread then
    fdatasyncs the WAL file and only then lets the batch be answered. What is answered is on
    disk exactly as with FULL; what changes is that others may see a commit before it is on
    disk, and a write that builds on it is answered only after a later fsync of the same file,
    which covers it. The WAL file is never replaced while the runner's writer connection is
    open (SQLite removes it only when the last connection closes), and a checkpoint syncs the
    WAL before it copies it back and the database after, so no commit escapes the fsync by
    being checkpointed. Batches that finish their commit while an fsync runs share the next one.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self._queue: queue.SimpleQueue[_Answer | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="baton-sqlite-sync", daemon=True)
        self._thread.start()

    def answer_after_sync(
        self, loop: asyncio.AbstractEventLoop, batch: list[_WriteJob], outcomes: list[_Outcome]
    ) -> None:
        self._queue.put((loop, batch, outcomes))

    def _loop(self) -> None:
        while (first := self._queue.get()) is not None:
            waiting = [first]
            stop = False
            while True:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                waiting.append(more)
            failure = self._sync()
            for loop, batch, outcomes in waiting:
                if failure is not None:
                    outcomes = [(None, failure)] * len(batch)
                with contextlib.suppress(RuntimeError):  # that loop has closed
                    loop.call_soon_threadsafe(_resolve, batch, outcomes)
            if stop:
                break
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _sync(self) -> OSError | None:
        try:
            fd = self._fd
            if fd is None or os.fstat(fd).st_ino != os.stat(self.path).st_ino:
                if fd is not None:
                    os.close(fd)
                fd = self._fd = os.open(self.path, os.O_RDONLY)
            os.fdatasync(fd)
        except OSError as exc:
            # The commits happened but may not be on disk: their requests fail (503), and a
            # client that retries finds the work done (a rotation replays, a revocation is 200).
            log.error("fsync of %s failed: %s", self.path, exc)
            return exc
        return None

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()


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


def _empty_the_wal(conn: Connection) -> bool:
    """Once writes have stopped: empties the WAL file (a TRUNCATE checkpoint) if every frame in
    it has been copied back. Returns whether it is empty now (False: another process is still
    writing, or reading an old snapshot; tried again at the next idle round).

    The WAL file keeps the largest size a burst gave it (450 MB after a few seconds of wrk c16
    with 2 workers) and the next burst writes it again from its start. Its pages are written and
    read with write() and read(), never mapped, so they are the page cache a kernel reclaims
    first once idle (this VM pages out unmapped file pages idle for 60 s), and each frame written
    over them (24 bytes of header and a page: never page-aligned) first reads its pages back
    from disk. Measured, `bench/rounds.py --rounds 3 --gap 150`: 3,072 refreshes/s, then 1,905/s
    and 1,766/s after 150 s of idle (CPU per refresh 484, then 583 and 599 us); with the WAL
    emptied when idle, 3,185/s, then 2,945/s and 2,891/s. An empty file takes the next burst's
    frames on new pages, which are not read.

    Only a fully copied WAL is emptied: TRUNCATE blocks writers while it runs, and with nothing
    left to copy that is an ftruncate. Its wait for readers is cut to 100 ms."""
    busy, frames, copied = _wal_checkpoint(conn, "PASSIVE")
    if frames <= 0:
        return frames == 0  # -1: another connection was checkpointing
    if busy or copied != frames:
        return False
    driver = _driver(conn)
    driver.execute(f"PRAGMA busy_timeout={IDLE_TRUNCATE_WAIT_MS}").close()
    try:
        busy, frames, _copied = _wal_checkpoint(conn, "TRUNCATE")
    finally:
        driver.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}").close()
    return not busy and frames == 0


def _wal_checkpoint(conn: Connection, mode: str) -> tuple[int, int, int]:
    """`PRAGMA wal_checkpoint(mode)`: whether it was kept from finishing (1 or 0), the frames in
    the WAL and the frames copied back (-1 and -1 when another connection was checkpointing).
    PASSIVE never waits for readers or writers (nor calls the busy handler): it copies what it
    can now and leaves the rest for the next one."""
    cursor = _driver(conn).execute(f"PRAGMA wal_checkpoint({mode})")
    try:
        busy, frames, copied = cursor.fetchone()
    finally:
        cursor.close()
    return int(busy), int(frames), int(copied)


def _driver(conn: Connection) -> sqlite3.Connection:
    """The stdlib connection under `conn`, for statements outside any transaction."""
    driver = conn.connection.driver_connection
    assert isinstance(driver, sqlite3.Connection)
    return driver


@dataclass(frozen=True)
class _WriteJob:
    work: Callable[[Connection], Any]
    future: asyncio.Future[Any]


def _resolve(batch: list[_WriteJob], outcomes: list[_Outcome]) -> None:
    for job, (result, error) in zip(batch, outcomes, strict=True):
        if job.future.done():  # the waiter was cancelled
            continue
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result)


def _sqlite_engine(url: URL, synchronous: str = "full") -> Engine:
    if synchronous not in SYNCHRONOUS_MODES:
        raise ValueError(f"synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}")
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

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
        # Pages read through a memory map rather than a read() call each: every write of another
        # connection empties a connection's page cache, so the hot pages are read again often.
        # (The writer connection turns it off again: see `SQLiteRunner._writer_connection`.)
        cursor.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        read_only = conn.get_execution_options().get("baton_read_only", False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


class PostgresRunner:
    dialect = "postgresql"

    def __init__(self, url: URL, pool: PoolSettings) -> None:
        self.url = url
        sizing: dict[str, Any] = (
            {"poolclass": NullPool}
            if pool.size == 0
            else {
                "pool_size": pool.size,
                "max_overflow": pool.max_overflow,
                "pool_timeout": pool.timeout,
                # No ping before each checkout (a round trip per transaction): a statement
                # that finds the database gone invalidates every pooled connection at once
                # (SQLAlchemy's disconnect handling, which prepared statements share), so the
                # request that met the outage gets a 503 and the next ones reconnect.
            }
        )
        self.engine: AsyncEngine = create_async_engine(
            url, isolation_level="READ COMMITTED", **sizing
        )
        self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._listener = _Listener(url)
        self._notifier = _Notifier(self.engine)

    async def write(self, work: Callable[[Connection], T]) -> T:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                async with self.engine.begin() as conn:
                    result = await conn.run_sync(work)
                    # (Left set by a failed transaction, the flag costs the connection's next
                    # transaction one NOTIFY too many: harmless.)
                    wake = conn.sync_connection.info.pop(WAKE_FEED, False)  # type: ignore[union-attr]
                if wake:
                    self._notifier.wake()
                return result
            except DBAPIError as exc:
                state = _sqlstate(exc)
                if state not in RETRYABLE_SQLSTATES or attempt == MAX_ATTEMPTS:
                    raise
                log.warning(
                    "transaction failed with SQLSTATE %s (attempt %d of %d); retrying",
                    state,
                    attempt,
                    MAX_ATTEMPTS,
                )
                await anyio.sleep(0.005 * 2**attempt)
        raise AssertionError("unreachable")

    async def read(self, work: Callable[[Connection], T]) -> T:
        """Reads run in autocommit: under READ COMMITTED every statement takes its own snapshot
        anyway, so a transaction around them only cost a BEGIN and a COMMIT round trip.

        A read that meets a pooled connection the database dropped (a restart, a network cut)
        runs once more: that failure invalidated the pool, so the second attempt connects
        afresh, and a read, unlike a write, is safe to repeat. A write still answers 503 there,
        since its outcome is unknown."""
        try:
            async with self._autocommit.connect() as conn:
                return await conn.run_sync(work)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            log.warning("a pooled connection was gone (%s); reading again", type(exc).__name__)
        async with self._autocommit.connect() as conn:
            return await conn.run_sync(work)

    async def wait_for_feed(self, timeout: float) -> None:
        await self._listener.wait(timeout)

    async def close(self) -> None:
        await self._notifier.close()
        await self._listener.close()
        await self.engine.dispose()


def _sqlstate(exc: DBAPIError) -> str | None:
    orig = exc.orig
    for name in ("sqlstate", "pgcode"):
        value = getattr(orig, name, None)
        if isinstance(value, str):
            return value
    return None


class _Notifier:
    """Sends `NOTIFY baton_revocations` after commits that wrote feed events: one at a time per
    process, and commits that land while one is on its way get one more after it. (Each NOTIFY
    is a transaction that takes the notification-queue lock and flushes a commit record, so one
    per rotation would serialize the database again.)"""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._wanted = False
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wanted = True
        loop = asyncio.get_running_loop()
        task = self._task
        if task is None or task.done() or task.get_loop() is not loop:
            self._task = loop.create_task(self._send())

    async def _send(self) -> None:
        while self._wanted:
            # Cleared before sending: a commit from here on asks for one more NOTIFY.
            self._wanted = False
            try:
                async with self._engine.connect() as conn:
                    await conn.exec_driver_sql(f"NOTIFY {FEED_CHANNEL}")
            except Exception as exc:  # readers look again within a second anyway
                log.warning("could not notify the revocation feed (%s)", type(exc).__name__)

    async def close(self) -> None:
        task, self._task = self._task, None
        # (A task of an event loop that has ended, as in tests, can no longer be awaited.)
        if task is not None and not task.done() and task.get_loop() is asyncio.get_running_loop():
            await asyncio.gather(task, return_exceptions=True)


class _Listener:
    """One LISTEN connection per process, shared by every feed reader in it.

    A notification wakes every waiter at once. If the connection cannot be had, readers fall
    back to looking again every second; so they do anyway, in case a notification is missed.
    """

    FALLBACK_POLL = 1.0

    def __init__(self, url: URL) -> None:
        self._dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._conn: Any = None
        self._changed = asyncio.Event()
        self._connecting = asyncio.Lock()

    async def wait(self, timeout: float) -> None:
        try:
            await self._ensure_connected()
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("cannot LISTEN for revocation events (%s); polling instead", exc)
        changed = self._changed
        with anyio.move_on_after(min(timeout, self.FALLBACK_POLL)):
            await changed.wait()

    async def _ensure_connected(self) -> None:
        if self._conn is not None and not self._conn.is_closed():
            return
        async with self._connecting:
            if self._conn is not None and not self._conn.is_closed():
                return
            conn = await asyncpg.connect(self._dsn, timeout=5)
            await conn.add_listener(FEED_CHANNEL, self._notified)
            self._conn = conn

    def _notified(self, *_args: object) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def close(self) -> None:
        if self._conn is not None and not self._conn.is_closed():
            await self._conn.close()

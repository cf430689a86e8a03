"""The SQLite runner's WAL, kept short and on disk by two threads of its own.

- `WalSync`, the fsync thread: `full` durability with the fsync outside the database's write
  lock. SQLite's own `synchronous=FULL` fsyncs inside COMMIT, while every other process's writer
  waits for the lock; here commits run as `normal` and this thread fdatasyncs the WAL before the
  batch is answered, batches that commit meanwhile sharing the next fsync.
- `Checkpointer`, the checkpoint thread: copies the WAL back into the database on a spacing of
  its own (never inside a commit, where a checkpoint stalled the whole batch), starts the WAL
  over when writes never pause long enough for SQLite to do it, and empties the file once writes
  stop, so the next burst does not read back pages the kernel reclaimed meanwhile.

What each is worth, measured side by side, and the commands that reproduce it:
docs/performance.md ("fsync thread", "Checkpointer").
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

log = logging.getLogger("baton.store")

# Seconds between two checkpoints of a process, at most. A checkpoint copies each page written
# since the last one once, however often it was rewritten meanwhile (the tails of the tables and
# their indexes, rewritten by every batch), and fsyncs the database file: checkpointing less
# often copies and syncs less per write, at the price of a longer WAL between checkpoints.
CHECKPOINT_SPACING = 0.5
CHECKPOINT_IDLE = 1.0  # seconds without writes after which the checkpointer empties the WAL
IDLE_TRUNCATE_WAIT_MS = 100  # how long emptying the WAL waits for readers and writers
BUSY_TIMEOUT_MS = 30_000
# A WAL longer than this many frames (64 MB of 4 KB pages) is started over (see
# `Checkpointer.checkpoint`): at most `CATCH_UP_PASSES` rounds of catching up first, until one
# takes at most `FINAL_PASS_AFTER` seconds, then the final pass with the writer turn held.
WAL_RESTART_FRAMES = 16_384
CATCH_UP_PASSES = 8
FINAL_PASS_AFTER = 0.005
FLUSH_CHUNK_BYTES = 16 << 20  # written back a piece at a time (`sync_database`)

# What the fsync thread hands back to a batch's loop: None, or the error that kept its commit
# from being known to be on disk.
SyncDone = Callable[[OSError | None], None]


class WalSync:
    """`full` durability with the fsync outside the write lock.

    Commits run as `synchronous=NORMAL` (their frames are written to the WAL, not synced) and
    this thread then fdatasyncs the WAL file and only then has the batch answered. What is
    answered is on disk exactly as with FULL; what changes is that others may see a commit
    before it is on disk, and a write that builds on it is answered only after a later fsync of
    the same file, which covers it. The WAL file is never replaced while the runner's writer
    connection is open (SQLite removes it only when the last connection closes), and a
    checkpoint syncs the WAL before it copies it back and the database after, so no commit
    escapes the fsync by being checkpointed. Batches that finish their commit while an fsync
    runs share the next one.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self._queue: queue.SimpleQueue[tuple[asyncio.AbstractEventLoop, SyncDone] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._loop, name="baton-sqlite-sync", daemon=True)
        self._thread.start()

    def after_sync(self, loop: asyncio.AbstractEventLoop, done: SyncDone) -> None:
        """Calls `done` on `loop` once the WAL as it is now is on disk (or failed to be)."""
        self._queue.put((loop, done))

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
            for loop, done in waiting:
                with contextlib.suppress(RuntimeError):  # that loop has closed
                    loop.call_soon_threadsafe(done, failure)
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
            fdatasync(fd)
        except OSError as exc:
            # The commits happened but may not be on disk: their requests fail (503), and a
            # client that retries finds the work done (a rotation replays, a revocation is 200).
            log.error("fsync of %s failed: %s", self.path, exc)
            return exc
        return None

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()


class Checkpointer:
    """The thread that copies the WAL back into the database, of one runner.

    `exclusive` holds the runner's writer turn (this process's and every other's) while it is
    entered: the last frames of a long WAL are copied with it held, so that the next commit
    starts the WAL over. `flush`: whether it flushes the database file itself between passes
    (`sync_database`), as it does unless the runner never syncs (`synchronous=off`).

    The descriptor it flushes through stays open until `release`, which the runner calls once
    it has closed every SQLite connection of this process. POSIX record locks belong to a
    process and a file, and closing any descriptor of the file drops every lock the process
    holds on it, SQLite's included: its SHARED lock tells another process closing what it
    thinks is the last connection that the WAL is still in use, and without it that process
    would checkpoint past our readers and delete the WAL we still write to."""

    def __init__(
        self,
        engine: Engine,
        exclusive: Callable[[], AbstractContextManager[object]],
        *,
        flush: bool = True,
    ) -> None:
        self._engine = engine
        self._path = os.path.abspath(str(engine.url.database))
        self._flush_database = flush
        self._database_fd: int | None = None
        self._flush_failed = False
        self._exclusive = exclusive
        self._wrote = threading.Event()
        self._closing = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name="baton-sqlite-checkpoint", daemon=True
        )
        self._thread.start()

    def wrote(self) -> None:
        """A batch was committed: there is something to copy back."""
        self._wrote.set()

    def close(self) -> None:
        self._closing.set()
        self._wrote.set()
        self._thread.join()

    def release(self) -> None:
        """Closes the database file's descriptor: only once no SQLite connection of this
        process is open (see the class's docstring)."""
        if self._database_fd is not None:
            os.close(self._database_fd)
            self._database_fd = None

    def _flush(self) -> None:
        """`sync_database` on the descriptor kept open; a failure is logged once and the
        checkpoint goes on without it (SQLite's own fsync at the end of the final pass still
        comes before the WAL starts over)."""
        if not self._flush_database:
            return
        try:
            if self._database_fd is None:
                self._database_fd = os.open(self._path, os.O_RDONLY)
            sync_database(self._database_fd)
        except OSError as exc:
            if not self._flush_failed:
                self._flush_failed = True
                log.warning("flushing the database between checkpoints failed (%s)", exc)

    def _loop(self) -> None:
        conn: Connection | None = None
        wal_to_empty = False  # written since the WAL was last emptied
        try:
            while not self._closing.is_set():
                if not self._wrote.wait(CHECKPOINT_IDLE):
                    if wal_to_empty and conn is not None:
                        try:
                            wal_to_empty = not empty_the_wal(conn)
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
                    conn = conn or self._engine.connect()
                    self.checkpoint(conn)
                except (sqlite3.Error, DBAPIError, OSError) as exc:
                    log.warning("WAL checkpoint failed (%s); will retry", exc)
                self._closing.wait(CHECKPOINT_SPACING)
        finally:
            if conn is not None:
                conn.close()

    def checkpoint(self, conn: Connection) -> None:
        """Copies the WAL back into the database, and starts the WAL over once it is long.

        A PASSIVE checkpoint copies the frames there are when it starts, while writers keep
        adding more; SQLite writes from the start of the WAL again only at a commit that finds
        every frame copied, which never happens while writes do not pause. The file then grew
        by every commit for as long as the load lasted, each commit's frames going to newly
        allocated pages, which made commits slower as the run went on. So once the WAL is past
        `WAL_RESTART_FRAMES`, rounds of catching up copy what arrived during the one before,
        each shorter than the last, and the last frames are copied with the writer turn held
        (a pause of a few milliseconds): nobody commits in between, and the next commit, of
        whichever process, starts the WAL over.

        Each round first flushes the database file (`sync_database`). SQLite fsyncs it only at
        the end of a checkpoint that copied the whole WAL, which under writes that never pause
        is only the final pass: that one fsync, with the turn held, flushed every page the
        passes before it had copied, scattered through the file once it is large (tens of MB at
        a million grants: every request waited 60 to 90 ms, once a second). Flushed round by
        round without the turn, the final pass is left with the pages the last short round
        copied and the frames that arrived since. Where no round is that short (a disk whose
        fsync alone takes longer), the final pass follows the last round that copied every
        frame, as it did before the flushes: the WAL still starts over."""
        _busy, frames, _copied = wal_checkpoint(conn, "PASSIVE")
        if frames < WAL_RESTART_FRAMES:
            return  # short, or -1: another connection is checkpointing
        caught_up = False
        for _ in range(CATCH_UP_PASSES):
            if self._closing.is_set():
                return
            started = time.monotonic()
            self._flush()
            _busy, frames, copied = wal_checkpoint(conn, "PASSIVE")
            if frames < 0:
                return
            caught_up = copied == frames
            if caught_up and time.monotonic() - started <= FINAL_PASS_AFTER:
                break  # few frames can have arrived meanwhile: the final pass is short
        if not caught_up:
            return  # the writers outpace the copying: the next round tries again
        with self._exclusive():
            wal_checkpoint(conn, "PASSIVE")


def fdatasync(fd: int) -> None:
    """fdatasync where the system has one (Linux), fsync where it has none (macOS)."""
    sync = getattr(os, "fdatasync", None) or os.fsync
    sync(fd)


def sync_database(fd: int) -> None:
    """The pages checkpoints have copied into the database file (`fd`), on disk. Always safe:
    SQLite's own fsync at the end of a checkpoint then has little left to do.

    On Linux the file is written back `FLUSH_CHUNK_BYTES` at a time (sync_file_range) before the
    fdatasync: every answer waits for an fsync of the WAL on the same disk (`WalSync`), and one
    flush of the whole file queued tens of MB of scattered writes ahead of it, where a piece at
    a time queues a few milliseconds' worth."""
    write_back = _sync_file_range()
    if write_back is not None:
        for offset in range(0, os.fstat(fd).st_size, FLUSH_CHUNK_BYTES):
            write_back(fd, offset, FLUSH_CHUNK_BYTES)
    fdatasync(fd)


@functools.cache
def _sync_file_range() -> Callable[[int, int, int], None] | None:
    """Linux's sync_file_range from the C library, waiting for the range's writes in flight,
    starting the rest and waiting for them; None where there is none (the fdatasync alone then
    flushes the whole file at once). A failure raises OSError: the write-back error it reports
    would not be reported again by the fdatasync after it. Looked up on first use: most
    processes of Baton never checkpoint a SQLite file."""
    import ctypes

    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    wait_write_wait = 1 | 2 | 4  # SYNC_FILE_RANGE_WAIT_BEFORE | _WRITE | _WAIT_AFTER

    def write_back(fd: int, offset: int, length: int) -> None:
        if function(fd, offset, length, wait_write_wait) != 0:
            number = ctypes.get_errno()
            raise OSError(number, os.strerror(number))

    return write_back


def empty_the_wal(conn: Connection) -> bool:
    """Once writes have stopped: empties the WAL file (a TRUNCATE checkpoint) if every frame in
    it has been copied back. Returns whether it is empty now (False: another process is still
    writing, or reading an old snapshot; tried again at the next idle round).

    The WAL file keeps the largest size a burst gave it (hundreds of MB under a long wrk run)
    and the next burst writes it again from its start. Its pages are written and read with
    write() and read(), never mapped, so they are the page cache a kernel reclaims first once
    idle, and each frame written over them (24 bytes of header and a page: never page-aligned)
    first reads its pages back from disk: throughput after an idle gap fell well below the
    first burst's. An empty file takes the next burst's frames on new pages, which are not read.

    Only a fully copied WAL is emptied: TRUNCATE blocks writers while it runs, and with nothing
    left to copy that is an ftruncate. Its wait for readers is cut to `IDLE_TRUNCATE_WAIT_MS`."""
    busy, frames, copied = wal_checkpoint(conn, "PASSIVE")
    if frames <= 0:
        return frames == 0  # -1: another connection was checkpointing
    if busy or copied != frames:
        return False
    driver = driver_connection(conn)
    driver.execute(f"PRAGMA busy_timeout={IDLE_TRUNCATE_WAIT_MS}").close()
    try:
        busy, frames, _copied = wal_checkpoint(conn, "TRUNCATE")
    finally:
        driver.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}").close()
    return not busy and frames == 0


def wal_checkpoint(conn: Connection, mode: str) -> tuple[int, int, int]:
    """`PRAGMA wal_checkpoint(mode)`: whether it was kept from finishing (1 or 0), the frames in
    the WAL and the frames copied back (-1 and -1 when another connection was checkpointing).
    PASSIVE never waits for readers or writers (nor calls the busy handler): it copies what it
    can now and leaves the rest for the next one."""
    cursor = driver_connection(conn).execute(f"PRAGMA wal_checkpoint({mode})")
    try:
        busy, frames, copied = cursor.fetchone()
    finally:
        cursor.close()
    return int(busy), int(frames), int(copied)


def driver_connection(conn: Connection) -> sqlite3.Connection:
    """The stdlib connection under `conn`, for statements outside any transaction."""
    driver = conn.connection.driver_connection
    assert isinstance(driver, sqlite3.Connection)
    return driver

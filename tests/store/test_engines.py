"""The runners: URL handling, the bounded retry of serialization failures and deadlocks on
PostgreSQL, and SQLite's group commit, writer turns and durability setting."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import asyncpg
import pytest
from sqlalchemy import Connection, event, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from baton.store.engines import (
    CHECKPOINT_SPACING,
    MAX_ATTEMPTS,
    MMAP_BYTES,
    PoolSettings,
    PostgresRunner,
    SQLiteRunner,
    SQLiteSettings,
    normalize_url,
    sqlite_wal,
)
from tests.databases import plain_url


def test_urls() -> None:
    assert normalize_url("baton.db").render_as_string() == "sqlite:///baton.db"
    assert normalize_url("postgresql://u@h/db").drivername == "postgresql+asyncpg"
    assert normalize_url("postgres://u@h/db").drivername == "postgresql+asyncpg"
    assert normalize_url("sqlite:////tmp/x.db").database == "/tmp/x.db"


class _Conflict(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def failing(times: int, sqlstate: str) -> tuple[list[int], object]:
    calls: list[int] = []

    def work(conn: Connection) -> int:
        calls.append(1)
        if len(calls) <= times:
            raise DBAPIError("UPDATE ...", None, _Conflict(sqlstate))
        return int(conn.execute(text("SELECT 41 + 1")).scalar_one())

    return calls, work


@pytest.mark.parametrize("sqlstate", ["40001", "40P01"])
def test_conflicts_are_retried_and_logged(
    postgres_database: str, sqlstate: str, caplog: pytest.LogCaptureFixture
) -> None:
    calls, work = failing(2, sqlstate)

    async def run() -> int:
        runner = PostgresRunner(normalize_url(postgres_database), PoolSettings(size=0))
        try:
            return await runner.write(work)  # type: ignore[arg-type]
        finally:
            await runner.close()

    with caplog.at_level(logging.WARNING, logger="baton.store"):
        assert anyio.run(run) == 42
    assert len(calls) == 3
    assert sum(sqlstate in r.getMessage() for r in caplog.records) == 2


def test_retries_are_bounded_and_other_errors_are_not_retried(postgres_database: str) -> None:
    async def run(work: object) -> int:
        runner = PostgresRunner(normalize_url(postgres_database), PoolSettings(size=0))
        try:
            return await runner.write(work)  # type: ignore[arg-type]
        finally:
            await runner.close()

    calls, work = failing(MAX_ATTEMPTS, "40001")
    with pytest.raises(DBAPIError):
        anyio.run(run, work)
    assert len(calls) == MAX_ATTEMPTS
    calls, work = failing(1, "23505")  # unique_violation: a real error, not a conflict
    with pytest.raises(DBAPIError):
        anyio.run(run, work)
    assert len(calls) == 1


def test_a_statement_prepared_before_a_schema_change_runs_again(postgres_database: str) -> None:
    """A later release's migration that changes a column's type (a wider varchar) invalidates
    the statements this process prepared: the unit of work runs again, prepared afresh, rather
    than failing (a rolling upgrade's 500s)."""
    table = f"plan_{secrets.token_hex(4)}"

    def select(conn: Connection) -> list[str]:
        return [row[0] for row in conn.exec_driver_sql(f"SELECT x FROM {table}")]

    async def run() -> tuple[list[str], list[str], list[str]]:
        runner = PostgresRunner(normalize_url(postgres_database), PoolSettings(size=1))
        other = await asyncpg.connect(plain_url(postgres_database))
        try:
            await other.execute(
                f"CREATE TABLE {table} (x varchar(8)); INSERT INTO {table} VALUES ('a')"
            )
            before = await runner.write(select)
            await runner.read(select)
            await other.execute(f"ALTER TABLE {table} ALTER COLUMN x TYPE varchar(80)")
            written = await runner.write(select)
            await other.execute(f"ALTER TABLE {table} ALTER COLUMN x TYPE varchar(90)")
            read = await runner.read(select)
            return before, written, read
        finally:
            await other.execute(f"DROP TABLE IF EXISTS {table}")
            await other.close()
            await runner.close()

    assert anyio.run(run) == (["a"], ["a"], ["a"])


# -- SQLite: group commit, writer turns between processes, durability setting --------------------


def _sqlite_runner(path: Path, synchronous: str = "full") -> SQLiteRunner:
    return SQLiteRunner(normalize_url(str(path)), SQLiteSettings(synchronous))


def test_a_failing_job_in_a_group_commit_fails_alone(tmp_path: Path) -> None:
    """Writes asked for during one turn of the event loop share one transaction; one that raises
    must not undo the others."""
    begins: list[int] = []

    async def run() -> list[object]:
        runner = _sqlite_runner(tmp_path / "g.db")
        try:
            await runner.write(lambda c: c.exec_driver_sql("CREATE TABLE t (x INTEGER UNIQUE)"))
            await runner.write(lambda c: c.exec_driver_sql("INSERT INTO t VALUES (0)"))
            event.listen(runner.engine, "begin", lambda conn: begins.append(1))

            def insert(value: int) -> Callable[[Connection], int]:
                def work(conn: Connection) -> int:
                    conn.exec_driver_sql(f"INSERT INTO t VALUES ({value})")
                    return value

                return work

            outcomes: list[object] = [None] * 6

            async def submit(i: int, value: int) -> None:
                try:
                    outcomes[i] = await runner.write(insert(value))
                except IntegrityError as exc:
                    outcomes[i] = exc

            async with anyio.create_task_group() as tasks:
                for i, value in enumerate([1, 2, 0, 3, 4, 2]):  # 0 and the second 2 collide
                    tasks.start_soon(submit, i, value)
            transactions = len(begins)
            rows = await runner.read(
                lambda c: [r[0] for r in c.exec_driver_sql("SELECT x FROM t ORDER BY x")]
            )
            return [*outcomes, rows, transactions]
        finally:
            await runner.close()

    *outcomes, rows, transactions = anyio.run(run)
    assert rows == [0, 1, 2, 3, 4]
    assert sorted(o for o in outcomes if isinstance(o, int)) == [1, 2, 3, 4]
    assert sum(isinstance(o, IntegrityError) for o in outcomes) == 2
    # One transaction for the six writes, rolled back, then one for each of them.
    assert transactions == 1 + 6


def test_a_group_commit_is_one_transaction_and_one_commit(tmp_path: Path) -> None:
    """Sixteen requests' writes in one turn of the loop: one BEGIN, one COMMIT, all kept."""
    begins: list[int] = []
    commits: list[int] = []

    async def run() -> tuple[int, int, int]:
        runner = _sqlite_runner(tmp_path / "c.db")
        try:
            await runner.write(lambda c: c.exec_driver_sql("CREATE TABLE t (x INTEGER)"))
            event.listen(runner.engine, "begin", lambda conn: begins.append(1))
            event.listen(runner.engine, "commit", lambda conn: commits.append(1))

            def insert(value: int) -> Callable[[Connection], object]:
                return lambda c: c.exec_driver_sql(f"INSERT INTO t VALUES ({value})")

            async with anyio.create_task_group() as tasks:
                for i in range(16):
                    tasks.start_soon(runner.write, insert(i))
            transactions = (len(begins), len(commits))
            count = await runner.read(
                lambda c: c.exec_driver_sql("SELECT count(*) FROM t").scalar_one()
            )
            return int(count), *transactions
        finally:
            await runner.close()

    assert anyio.run(run) == (16, 1, 1)


def test_a_write_waiting_for_another_process_does_not_hold_the_event_loop(
    tmp_path: Path,
) -> None:
    """While another process has the writer's turn, this loop keeps serving (reads, timers),
    and its write lands as soon as the turn is given back."""
    path = tmp_path / "held.db"

    async def run() -> tuple[int, int]:
        runner = _sqlite_runner(path)
        try:
            await runner.write(lambda c: c.exec_driver_sql("CREATE TABLE t (x INTEGER)"))
            other = os.open(f"{path}-writer.lock", os.O_RDWR)  # another process's turn
            fcntl.flock(other, fcntl.LOCK_EX)
            ticks = 0
            done = anyio.Event()

            async def write() -> None:
                await runner.write(lambda c: c.exec_driver_sql("INSERT INTO t VALUES (1)"))
                done.set()

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(write)
                for _ in range(10):
                    await anyio.sleep(0.01)
                    ticks += 1
                    await runner.read(lambda c: c.exec_driver_sql("SELECT 1").scalar_one())
                assert not done.is_set()
                fcntl.flock(other, fcntl.LOCK_UN)
                os.close(other)
                with anyio.fail_after(5):
                    await done.wait()
            count = await runner.read(
                lambda c: c.exec_driver_sql("SELECT count(*) FROM t").scalar_one()
            )
            return ticks, int(count)
        finally:
            await runner.close()

    assert anyio.run(run) == (10, 1)


def test_writers_of_two_processes_take_turns_without_losing_a_write(tmp_path: Path) -> None:
    """Two runners on one file stand for two server processes: every increment is kept."""
    path = tmp_path / "turns.db"

    async def run() -> int:
        first, second = _sqlite_runner(path), _sqlite_runner(path)
        try:
            await first.write(lambda c: c.exec_driver_sql("CREATE TABLE n (v INTEGER)"))
            await first.write(lambda c: c.exec_driver_sql("INSERT INTO n VALUES (0)"))

            def increment(conn: Connection) -> None:
                value = conn.exec_driver_sql("SELECT v FROM n").scalar_one()
                conn.exec_driver_sql(f"UPDATE n SET v = {value + 1}")

            async with anyio.create_task_group() as tasks:
                for i in range(400):
                    tasks.start_soon((first if i % 2 else second).write, increment)
            return int(
                await second.read(lambda c: c.exec_driver_sql("SELECT v FROM n").scalar_one())
            )
        finally:
            await first.close()
            await second.close()

    assert anyio.run(run) == 400
    assert (tmp_path / "turns.db-writer.lock").exists()


DURABILITY = [("full", 1, True), ("normal", 1, False), ("off", 0, False)]


@pytest.mark.parametrize(("mode", "pragma", "syncs"), DURABILITY)
def test_the_durability_setting_reaches_every_connection(
    tmp_path: Path, mode: str, pragma: int, syncs: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`full` commits as NORMAL and fsyncs the WAL itself before answering (see the next
    test); `normal` and `off` are SQLite's own and never fsync before an answer."""
    synced: list[str] = []
    fdatasync = os.fdatasync

    def recording(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        fdatasync(fd)

    monkeypatch.setattr("baton.store.engines.sqlite_wal.os.fdatasync", recording)

    assert pragma_as_writer_and_reader(tmp_path / "s.db", mode, "synchronous") == (pragma, pragma)
    assert set(synced) == ({str(tmp_path / "s.db-wal")} if syncs else set())
    with pytest.raises(ValueError, match="synchronous must be one of"):
        _sqlite_runner(tmp_path / "bad.db", "extra")


def test_full_answers_after_the_fsync_and_lets_others_write_during_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With `full`, a write is answered only once the WAL is fsynced, and the fsync runs after
    the write lock is given back: another process's write commits while it is under way."""
    path = tmp_path / "f.db"
    release = threading.Event()
    syncing = threading.Event()
    fdatasync = os.fdatasync

    def slow_fdatasync(fd: int) -> None:
        syncing.set()
        release.wait(10)
        fdatasync(fd)

    async def run() -> tuple[bool, int, bool]:
        first, second = _sqlite_runner(path), _sqlite_runner(path, "normal")
        try:
            await second.write(lambda c: c.exec_driver_sql("CREATE TABLE t (x INTEGER)"))
            monkeypatch.setattr("baton.store.engines.sqlite_wal.os.fdatasync", slow_fdatasync)
            answered = anyio.Event()

            async def write_first() -> None:
                await first.write(lambda c: c.exec_driver_sql("INSERT INTO t VALUES (1)"))
                answered.set()

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(write_first)
                with anyio.fail_after(5):
                    while not syncing.is_set():
                        await anyio.sleep(0.005)
                    # The other "process" takes its turn while the first write's fsync waits.
                    await second.write(lambda c: c.exec_driver_sql("INSERT INTO t VALUES (2)"))
                before_sync = answered.is_set()
                count = await second.read(
                    lambda c: c.exec_driver_sql("SELECT count(*) FROM t").scalar_one()
                )
                release.set()
            return before_sync, int(count), answered.is_set()
        finally:
            release.set()
            await first.close()
            await second.close()

    assert anyio.run(run) == (False, 2, True)


def test_a_failed_fsync_fails_the_writes_it_was_to_make_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    async def run() -> None:
        runner = _sqlite_runner(tmp_path / "e.db")
        try:
            await runner.write(lambda c: c.exec_driver_sql("CREATE TABLE t (x INTEGER)"))
            monkeypatch.setattr("baton.store.engines.sqlite_wal.os.fdatasync", failing)
            with pytest.raises(OSError, match="Input/output error"):
                await runner.write(lambda c: c.exec_driver_sql("INSERT INTO t VALUES (1)"))
        finally:
            monkeypatch.undo()
            await runner.close()

    anyio.run(run)


@pytest.mark.parametrize("first_connection_fails", [False, True])
def test_the_wal_is_checkpointed_off_the_commit_path_and_stays_bounded(
    tmp_path: Path,
    first_connection_fails: bool,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Writers never checkpoint (no commit stalls for one); the checkpointer thread keeps the WAL
    from growing: 24 MB written, and the WAL file ends far smaller. A connection the
    checkpointer could not open (two connections switching a new database to WAL at once, one
    told "database is locked") is tried again at its next round, not the end of checkpoints."""
    path = tmp_path / "wal.db"

    async def run() -> int:
        runner = _sqlite_runner(path, "normal")
        if first_connection_fails:
            connect = runner.engine.connect
            failed: list[bool] = []

            def connect_once_locked() -> Connection:
                if threading.current_thread().name == "baton-sqlite-checkpoint" and not failed:
                    failed.append(True)
                    locked = sqlite3.OperationalError("database is locked")
                    raise OperationalError("PRAGMA journal_mode=WAL", None, locked)
                return connect()

            monkeypatch.setattr(runner.engine, "connect", connect_once_locked)
        try:
            await runner.write(lambda c: c.exec_driver_sql("CREATE TABLE b (v BLOB)"))
            blob = b"x" * 8192
            for _ in range(3000):
                await runner.write(lambda c: c.exec_driver_sql("INSERT INTO b VALUES (?)", (blob,)))
            await anyio.sleep(CHECKPOINT_SPACING + 0.1)  # one more checkpoint round
            return int(
                await runner.read(
                    lambda c: c.exec_driver_sql("SELECT count(*) FROM b").scalar_one()
                )
            )
        finally:
            await runner.close()

    with caplog.at_level(logging.WARNING, logger="baton.store"):
        assert anyio.run(run) == 3000
    assert (tmp_path / "wal.db").stat().st_size > 24_000_000
    wal = tmp_path / "wal.db-wal"
    assert not wal.exists() or wal.stat().st_size < 8_000_000
    locked = [r for r in caplog.records if "database is locked" in r.getMessage()]
    assert len(locked) == int(first_connection_fails)


def test_the_wal_starts_over_under_continuous_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under writes that never pause, a checkpoint never catches up: writers add frames while it
    copies, SQLite goes back to the start of the WAL only once every frame is copied, and the
    file grew by every commit for as long as the load lasted (1.5 GB after 50,000 rotations in
    one process). Once the WAL is past its limit, the checkpointer catches up and copies the
    last frames with the writer turn held, so the next commit starts the WAL over."""
    monkeypatch.setattr(sqlite_wal, "CHECKPOINT_SPACING", 0.02)
    monkeypatch.setattr(sqlite_wal, "WAL_RESTART_FRAMES", 400)
    path = tmp_path / "busy.db"
    wal = tmp_path / "busy.db-wal"
    blob = b"x" * 4000  # about one page a row

    async def run() -> tuple[int, int]:
        runner = _sqlite_runner(path, "normal")
        largest = 0
        try:
            await runner.write(lambda c: c.exec_driver_sql("CREATE TABLE b (v BLOB)"))

            async def writer() -> None:
                for _ in range(1500):
                    await runner.write(
                        lambda c: c.exec_driver_sql("INSERT INTO b VALUES (?)", (blob,))
                    )

            done = anyio.Event()

            async def watch() -> None:
                nonlocal largest
                while not done.is_set():
                    largest = max(largest, wal.stat().st_size if wal.exists() else 0)
                    await anyio.sleep(0.005)

            async with anyio.create_task_group() as outer:
                outer.start_soon(watch)
                async with anyio.create_task_group() as writers:
                    for _ in range(8):  # batches of several writes, one after another, no pause
                        writers.start_soon(writer)
                done.set()
            rows = await runner.read(
                lambda c: c.exec_driver_sql("SELECT count(*) FROM b").scalar_one()
            )
            return largest, int(rows)
        finally:
            await runner.close()

    largest, rows = anyio.run(run)
    assert rows == 8 * 1500
    # Every commit appended (the limit set out of reach), the file grew to 63 MB; started
    # over, it is reused from its start: 5 to 15 MB, and 33 MB once with `make bench` running
    # beside the test.
    assert largest < 40_000_000


def _unflushed_pages(fd: int) -> int | None:
    """Pages of the file open as `fd` in the page cache not yet on disk (dirty or being written
    back), by Linux's cachestat (6.5 and newer); None where the kernel has no such call. Takes
    a descriptor kept open: closing one of a database's descriptors would drop the SQLite
    locks this process holds on it (`Checkpointer`)."""
    import ctypes

    class Range(ctypes.Structure):
        _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]

    class Stat(ctypes.Structure):
        _fields_ = [(name, ctypes.c_uint64) for name in ("cache", "dirty", "writeback", "e", "r")]

    libc = ctypes.CDLL(None, use_errno=True)
    whole, found = Range(0, 0), Stat()
    if libc.syscall(451, fd, ctypes.byref(whole), ctypes.byref(found), 0) != 0:  # cachestat
        return None
    return int(found.dirty + found.writeback)


@contextlib.contextmanager
def _counting_unflushed(path: Path) -> Iterator[Callable[[], int]]:
    """A counter of `path`'s unflushed pages, or a skip where they cannot be counted: no
    cachestat, or a file system that keeps no dirty pages (tmpfs)."""
    fd = os.open(path, os.O_RDWR)
    try:
        if _unflushed_pages(fd) is None:
            pytest.skip("this kernel has no cachestat (Linux 6.5 and newer)")
        os.pwrite(fd, os.pread(fd, 4096, 0), 0)
        if not _unflushed_pages(fd):
            pytest.skip("this file system keeps no dirty pages to count")
        os.fsync(fd)
        yield lambda: _unflushed_pages(fd) or 0
    finally:
        os.close(fd)


async def _pages_without_pause(
    runner: SQLiteRunner, writers: int, rows: int, until: Callable[[], bool] | None = None
) -> None:
    """`writers` tasks each inserting `rows` rows of about a page into table `t`, one write
    after another: batches that never pause, every frame a page a checkpoint copies. With
    `until`, each stops as soon as it is true."""
    blob = b"x" * 4000

    async def writer() -> None:
        for _ in range(rows):
            if until is not None and until():
                return
            await runner.write(lambda c: c.exec_driver_sql("INSERT INTO t VALUES (?)", (blob,)))

    async with anyio.create_task_group() as tasks:
        for _ in range(writers):
            tasks.start_soon(writer)


def test_the_turn_is_held_only_to_flush_the_last_frames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite fsyncs the database only at the end of a checkpoint that copied the whole WAL,
    which under writes that never pause is only the final pass, the one with the writer turn
    held: that fsync flushed every page the passes before it had copied, and every request of
    every process waited for it (60 to 90 ms, once a second, at a million grants). The
    checkpointer flushes the database between its passes, so when it takes the turn only the
    pages of the last short round are left."""
    path = tmp_path / "flush.db"
    with sqlite3.connect(path) as first:
        first.execute("CREATE TABLE t (v BLOB)")
    monkeypatch.setattr(sqlite_wal, "CHECKPOINT_SPACING", 0.02)
    monkeypatch.setattr(sqlite_wal, "WAL_RESTART_FRAMES", 2000)
    at_turns: list[int] = []
    holding = SQLiteRunner._holding_the_turn
    with _counting_unflushed(path) as unflushed:

        @contextlib.contextmanager
        def counted(runner: SQLiteRunner) -> Iterator[None]:
            with holding(runner):
                at_turns.append(unflushed())
                yield

        monkeypatch.setattr(SQLiteRunner, "_holding_the_turn", counted)

        async def run() -> None:
            runner = _sqlite_runner(path, "normal")
            try:
                # Until the WAL has started over three times: on a machine the suite shares,
                # the writers may outpace the copying for a while (each such checkpoint gives
                # up, and the next tries again), so no fixed number of rows is enough.
                await _pages_without_pause(
                    runner, writers=8, rows=10_000, until=lambda: len(at_turns) >= 3
                )
            finally:
                await runner.close()

        anyio.run(run)
    assert at_turns, "the WAL never started over"
    # Without the flushes, at least every page copied since the WAL last started over (more
    # than WAL_RESTART_FRAMES: 2,570 to 3,362 here); with them, what the last short round
    # copied and what arrived since (150 to 330 here).
    assert max(at_turns) < 1000, at_turns


@pytest.mark.parametrize("piecewise", [True, False], ids=["sync_file_range", "fdatasync only"])
def test_the_database_is_flushed_a_piece_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, piecewise: bool
) -> None:
    """`sync_database` leaves nothing of the file unflushed, written back a piece at a time
    where Linux's sync_file_range is there (so that a WAL fsync queued meanwhile waits behind
    one piece, not the whole file's scattered pages), and with the fdatasync alone elsewhere."""
    path = tmp_path / "pieces.db"
    path.write_bytes(os.urandom(10 * 4096))
    real = sqlite_wal._sync_file_range()
    if piecewise and real is None:
        pytest.skip("no sync_file_range in this C library")
    pieces: list[tuple[int, int]] = []

    def spy(fd: int, offset: int, length: int) -> None:
        pieces.append((offset, length))
        assert real is not None
        real(fd, offset, length)

    monkeypatch.setattr(sqlite_wal, "_sync_file_range", lambda: spy if piecewise else None)
    monkeypatch.setattr(sqlite_wal, "FLUSH_CHUNK_BYTES", 4 * 4096)
    with _counting_unflushed(path) as unflushed:
        fd = os.open(path, os.O_RDWR)
        try:
            for page in (0, 3, 5, 9):  # scattered over three pieces
                os.pwrite(fd, b"y" * 4096, page * 4096)
            assert unflushed() >= 4

            sqlite_wal.sync_database(fd)

            assert unflushed() == 0
        finally:
            os.close(fd)
    expected = [(0, 4 * 4096), (4 * 4096, 4 * 4096), (8 * 4096, 4 * 4096)]
    assert pieces == (expected if piecewise else [])


def test_sync_file_range_failures_are_raised(tmp_path: Path) -> None:
    """sync_file_range reports a write-back error once (the fdatasync after it would not see
    it again): a failure is an OSError, never ignored."""
    write_back = sqlite_wal._sync_file_range()
    if write_back is None:
        pytest.skip("no sync_file_range in this C library")
    read, write = os.pipe()  # not a file: ESPIPE
    try:
        with pytest.raises(OSError) as failed:
            write_back(read, 0, 4096)
        assert failed.value.errno == errno.ESPIPE
    finally:
        os.close(read)
        os.close(write)


def test_the_database_file_stays_open_until_every_connection_is_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Closing a descriptor of the database drops every POSIX lock this process holds on it,
    SQLite's SHARED lock included, which tells another process closing its last connection that
    the WAL is still in use. The checkpointer's own descriptor is closed only after the runner
    has closed every SQLite connection, and a flush never opens and closes one of its own."""
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("descriptors are told apart through /proc/self/fd (Linux)")
    monkeypatch.setattr(sqlite_wal, "CHECKPOINT_SPACING", 0.02)
    monkeypatch.setattr(sqlite_wal, "WAL_RESTART_FRAMES", 200)
    path = tmp_path / "locks.db"
    closed_while_connected: list[int] = []
    open_connections: list[int] = []
    real_close = os.close

    def watched_close(fd: int) -> None:
        with contextlib.suppress(OSError):
            if os.path.samefile(f"/proc/self/fd/{fd}", path) and open_connections:
                closed_while_connected.append(fd)
        real_close(fd)

    async def run() -> None:
        runner = _sqlite_runner(path, "normal")

        @event.listens_for(runner.engine, "connect")
        def opened(dbapi_connection: object, record: object) -> None:
            open_connections.append(1)

        @event.listens_for(runner.engine, "close")
        def closed(dbapi_connection: object, record: object) -> None:
            open_connections.pop()

        try:
            await runner.write(lambda c: c.exec_driver_sql("CREATE TABLE t (v BLOB)"))
            for _ in range(6):
                await _pages_without_pause(runner, writers=4, rows=200)
        finally:
            await runner.close()

    monkeypatch.setattr(os, "close", watched_close)
    anyio.run(run)
    assert not open_connections
    assert closed_while_connected == []


def test_the_wal_is_emptied_once_writes_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The WAL file keeps the size a burst of writes gave it, and the next burst writes over it;
    idle, those pages are the first a kernel reclaims, and each frame written over them first
    reads them back from disk. Once writes stop, the checkpointer empties it; the data stays."""
    monkeypatch.setattr(sqlite_wal, "CHECKPOINT_IDLE", 0.05)
    monkeypatch.setattr(sqlite_wal, "CHECKPOINT_SPACING", 0.05)
    wal = tmp_path / "idle.db-wal"
    blob = b"x" * 8192

    async def burst(runner: SQLiteRunner, rows: int) -> None:
        for _ in range(rows):
            await runner.write(lambda c: c.exec_driver_sql("INSERT INTO b VALUES (?)", (blob,)))

    async def wal_sizes_after(runner: SQLiteRunner, rows: int) -> tuple[int, int]:
        await burst(runner, rows)
        written = wal.stat().st_size
        with anyio.fail_after(5):
            while wal.stat().st_size:
                await anyio.sleep(0.02)
        return written, wal.stat().st_size

    async def run() -> tuple[tuple[int, int], tuple[int, int], int]:
        runner = _sqlite_runner(tmp_path / "idle.db", "normal")
        try:
            await runner.write(lambda c: c.exec_driver_sql("CREATE TABLE b (v BLOB)"))
            first = await wal_sizes_after(runner, 200)
            second = await wal_sizes_after(runner, 200)  # emptied again, not just once
            rows = await runner.read(
                lambda c: c.exec_driver_sql("SELECT count(*) FROM b").scalar_one()
            )
            return first, second, int(rows)
        finally:
            await runner.close()

    first, second, rows = anyio.run(run)
    assert first[0] > 0 and first[1] == 0
    assert second[0] > 0 and second[1] == 0
    assert rows == 400


def test_postgresql_feed_readers_wake_right_after_the_commit(postgres_database: str) -> None:
    """The NOTIFY goes out after the commit, from the runner; a reader in another process (here:
    another runner) wakes at once, not at its one-second fallback poll."""
    from baton.store.sql.feed import wake_feed

    async def run() -> float:
        reader = PostgresRunner(normalize_url(postgres_database), PoolSettings(size=0))
        writer = PostgresRunner(normalize_url(postgres_database), PoolSettings(size=0))
        woke_after: list[float] = []
        try:
            await reader.wait_for_feed(0.01)  # connects the LISTEN

            async def wait() -> None:
                started = time.perf_counter()
                await reader.wait_for_feed(5)
                woke_after.append(time.perf_counter() - started)

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(wait)
                await anyio.sleep(0.05)
                await writer.write(lambda conn: wake_feed(conn))
            return woke_after[0]
        finally:
            await reader.close()
            await writer.close()

    assert anyio.run(run) < 0.5


def test_the_writer_reads_without_a_memory_map_and_readers_with_theirs(tmp_path: Path) -> None:
    """A checkpoint that grows the file makes every mapping connection map it again; the writer,
    whose pages are the ones each rotation dirties, pays that on every batch, so it reads with
    pread whatever the readers' map (`MMAP_BYTES`, now none: a worker's resident memory)."""

    assert pragma_as_writer_and_reader(tmp_path / "m.db", "full", "mmap_size") == (0, MMAP_BYTES)


def pragma_as_writer_and_reader(path: Path, mode: str, pragma: str) -> tuple[int, int]:
    """`PRAGMA <pragma>` as the runner's writer connection and its reader see it."""

    async def run() -> tuple[int, int]:
        runner = _sqlite_runner(path, mode)
        try:
            query = f"PRAGMA {pragma}"
            written = await runner.write(lambda c: c.exec_driver_sql(query).scalar_one())
            read = await runner.read(lambda c: c.exec_driver_sql(query).scalar_one())
            return int(written), int(read)
        finally:
            await runner.close()

    return anyio.run(run)

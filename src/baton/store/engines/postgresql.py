"""The PostgreSQL runner: asyncpg under SQLAlchemy's async pool, on the event loop.

A transaction, a plain function of a sync `Connection`, runs through `AsyncConnection.run_sync`:
on the loop itself, with no thread hop, since asyncpg's calls are awaited underneath. Writes run
in READ COMMITTED with a bounded retry of serialization failures and deadlocks; reads run in
autocommit, one snapshot per statement, with no BEGIN and COMMIT round trips. The revocation
feed's readers wait on one LISTEN connection per process, woken by a NOTIFY the runner sends
after commits that wrote feed events, at most one at a time per process (each NOTIFY takes the
notification queue's lock and flushes a commit record). Nothing here is a home-grown engine:
PostgreSQL does the concurrency. See docs/postgresql.md for operating it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
from sqlalchemy import Connection
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool, QueuePool

from baton.store.prepared import FAST_PATHS_OPTION

if TYPE_CHECKING:
    # asyncpg and SQLAlchemy's asyncio extension are imported where a PostgreSQL runner uses
    # them: a server on SQLite imports this module (its settings, its URL helpers) and needs
    # neither (tests/server/test_lean_imports.py).
    import asyncpg
    from sqlalchemy.ext.asyncio import AsyncEngine

T = TypeVar("T")
log = logging.getLogger("baton.store")

# SQLSTATEs that mean "run the transaction again": serialization_failure, deadlock_detected.
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})
MAX_ATTEMPTS = 5

# The channel PostgreSQL notifies when a transaction wrote revocation feed events.
FEED_CHANNEL = "baton_revocations"
# `Connection.info` key a transaction sets when it wrote feed events: the runner notifies the
# channel once the transaction has committed (see `baton.store.sql.feed.wake_feed`, which the
# transactions that write feed events call).
WAKE_FEED = "baton_wake_feed"
# Feed readers look again at least this often, notified or not (`_Listener`).
FEED_POLL = 1.0
# The least time between two NOTIFYs of one process (`_Notifier`). (A reader also looks again
# every `FEED_POLL`, NOTIFY or not.)
NOTIFY_SPACING = 0.005


def wakes_feed(effective_at: int, now: int) -> bool:
    """Whether a feed event taking effect at `effective_at` is worth a NOTIFY now: one that
    takes effect later than two of the readers' own looks (`FEED_POLL`) after `now`, and two
    seconds more for the request's commit to come after `now` was read, is read by every
    reader before it takes effect anyway, such as a companion's death at the end of a
    rotation's leeway. Each NOTIFY is a transaction of its own, flushed to the WAL."""
    return effective_at - now <= 2 * FEED_POLL + 2


@dataclass(frozen=True)
class PoolSettings:
    """Connections per server process (PostgreSQL). Size it to the requests in flight that
    reach the database at once: a pool larger than the server's max_connections divided by the
    number of processes only moves the queue into PostgreSQL. A process keeps two pools of this
    size, one for the general transactions and one for the native paths (`PostgresRunner.
    native`), and one LISTEN connection: at most `2 * capacity + 1` connections (docs/
    postgresql.md). `size=0` keeps no pool at all (a connection per transaction), for an
    external pooler such as PgBouncer."""

    size: int = 10
    max_overflow: int = 10
    timeout: float = 30.0

    @property
    def capacity(self) -> int:
        """The most connections the pool hands out at once."""
        return self.size + max(self.max_overflow, 0)


# libpq's connection parameters: what a `postgresql://` URL's query may say to psql, pg_dump and
# asyncpg's own DSN parser (which takes any other as a server setting to send).
LIBPQ_PARAMETERS = frozenset(
    {
        "host",
        "hostaddr",
        "port",
        "dbname",
        "user",
        "password",
        "passfile",
        "require_auth",
        "channel_binding",
        "connect_timeout",
        "client_encoding",
        "options",
        "application_name",
        "fallback_application_name",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "tcp_user_timeout",
        "replication",
        "gssencmode",
        "sslmode",
        "requiressl",
        "sslnegotiation",
        "sslcompression",
        "sslcert",
        "sslkey",
        "sslkeylogfile",
        "sslpassword",
        "sslcertmode",
        "sslrootcert",
        "sslcrl",
        "sslcrldir",
        "sslsni",
        "requirepeer",
        "ssl_min_protocol_version",
        "ssl_max_protocol_version",
        "min_protocol_version",
        "max_protocol_version",
        "krbsrvname",
        "gsslib",
        "gssdelegation",
        "service",
        "target_session_attrs",
        "load_balance_hosts",
        "scram_client_key",
        "scram_server_key",
        "oauth_issuer",
        "oauth_client_id",
        "oauth_client_secret",
        "oauth_scope",
    }
)


def asyncpg_url(url: URL) -> URL:
    """`url` (`postgresql+asyncpg://`) with libpq's `sslmode=`, which psql and pg_dump take and
    SQLAlchemy would hand asyncpg's `connect()` as an unknown argument, as asyncpg's `ssl=` (the
    same values: `disable` ... `verify-full`); an `ssl=` already there wins."""
    if "sslmode" not in url.query:
        return url
    mode = url.query["sslmode"]
    url = url.difference_update_query(["sslmode"])
    if "ssl" in url.query:
        return url
    return url.update_query_dict({"ssl": mode})


def libpq_url(url: URL) -> URL:
    """`url` as libpq reads it (`postgresql://`, for psql, pg_dump and asyncpg's DSN parser):
    asyncpg's `ssl=` as `sslmode=`, and no parameter libpq does not know (SQLAlchemy's and
    asyncpg's own, such as `prepared_statement_cache_size`)."""
    query: dict[str, str | tuple[str, ...]] = {}
    for name, value in url.query.items():
        if name == "ssl":
            if "sslmode" not in url.query:
                query["sslmode"] = value
        elif name in LIBPQ_PARAMETERS:
            query[name] = value
    return url.set(drivername="postgresql", query=query)


class PostgresRunner:
    dialect = "postgresql"

    def __init__(self, url: URL, pool: PoolSettings, *, fast_paths: bool = True) -> None:
        self.url = url
        self.pool_settings = pool
        self.fast_paths = fast_paths
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
        from sqlalchemy.ext.asyncio import create_async_engine

        self.engine: AsyncEngine = create_async_engine(
            asyncpg_url(url),
            isolation_level="READ COMMITTED",
            execution_options={FAST_PATHS_OPTION: fast_paths},
            **sizing,
        )
        self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._listener = _Listener(url)
        self._notifier = _Notifier(self)
        self._native_pool = None if pool.size == 0 else _NativePool(url, pool)

    def pool_use(self) -> tuple[int, int] | None:
        """(connections checked out, the pools' capacity), or None without a pool (`size=0`):
        the engine's pool and the native paths' (`native`), each of `PoolSettings.capacity`."""
        pool = self.engine.sync_engine.pool
        if not isinstance(pool, QueuePool) or self._native_pool is None:
            return None
        in_use = pool.checkedout() + self._native_pool.in_use()
        return in_use, 2 * self.pool_settings.capacity

    async def write_schema(self, work: Callable[[Connection], T]) -> T:
        """A migration is a write like any other here: PostgreSQL alters a table in place."""
        return await self.write(work)

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
                if _plan_invalidated(exc) and attempt < MAX_ATTEMPTS:
                    # The transaction failed at its first use of a cached statement, before
                    # the statement ran; SQLAlchemy has dropped the connection's cache.
                    log.warning(
                        "a cached statement plan was invalidated (a schema change); retrying"
                    )
                    continue
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
            if not (exc.connection_invalidated or _plan_invalidated(exc)):
                raise
            log.warning("a pooled connection was gone (%s); reading again", type(exc).__name__)
        async with self._autocommit.connect() as conn:
            return await conn.run_sync(work)

    @contextlib.asynccontextmanager
    async def native(self) -> AsyncIterator[asyncpg.Connection]:
        """An asyncpg connection in autocommit, for the statements of the native paths
        (`baton.store.sql.native`): SQL text with `$n` parameters, run by asyncpg itself (its
        own prepared-statement cache), with no greenlet or SQLAlchemy execution per statement.
        Each statement is its own transaction; one of data-modifying CTEs is one atomic
        transaction.

        The connections come from asyncpg's own pool (`_NativePool`), sized as the engine's:
        a checkout through SQLAlchemy's async pool (a greenlet, the connection's events and
        isolation level set and reset) cost more than the two statements it was for
        (docs/performance.md). With no pool (`size=0`, an external pooler) the engine's
        connection is borrowed instead. Public APIs only, either way; given back, a connection
        costs no round trip (nothing began: `tests/store/test_native_paths.py`).

        A driver error is raised as `NativeFailed` (the caller then takes the general path,
        whose own statements report a database gone as the server expects); a connection it
        closed is not pooled again."""
        import asyncpg

        if self._native_pool is None:
            async with self._autocommit.connect() as conn:
                raw = await conn.get_raw_connection()
                driver = raw.driver_connection
                try:
                    yield driver
                except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                    if driver is None or driver.is_closed():
                        await conn.invalidate()
                    raise NativeFailed(exc) from exc
            return
        try:
            pool = await self._native_pool.get()
            connection = await pool.acquire(timeout=self.pool_settings.timeout)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            raise NativeFailed(exc) from exc
        try:
            yield connection
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            raise NativeFailed(exc) from exc
        finally:
            # (A connection the failure closed is replaced by asyncpg's pool, not handed out.)
            await pool.release(connection)

    def wake_feed(self) -> None:
        """Wakes every process's feed readers: a native statement committed feed events."""
        self._notifier.wake()

    async def wait_for_feed(self, timeout: float) -> None:
        await self._listener.wait(timeout)

    async def close(self) -> None:
        await self._notifier.close()
        await self._listener.close()
        if self._native_pool is not None:
            await self._native_pool.close()
        await self.engine.dispose()


class _NativePool:
    """asyncpg's pool of the native paths' connections, made on first use in the event loop
    that asks (a pool belongs to one loop; a runner used from another loop, as tests do, gets
    a new one and the old one's connections are closed). A failure to make it is not kept:
    the next request tries again."""

    def __init__(self, url: URL, settings: PoolSettings) -> None:
        self._dsn = libpq_url(url).render_as_string(hide_password=False)
        self._settings = settings
        self._made: asyncio.Task[asyncpg.Pool] | None = None

    async def get(self) -> asyncpg.Pool:
        loop = asyncio.get_running_loop()
        made = self._made
        if made is None or made.get_loop() is not loop:
            self._made = loop.create_task(self._make())
            if made is not None and made.done() and not made.cancelled() and not made.exception():
                # Another loop's pool (tests run a runner in several): its connections closed,
                # which on a loop already closed raises, and is then done anyway.
                with contextlib.suppress(Exception):
                    made.result().terminate()
            made = self._made
        try:
            return await asyncio.shield(made)
        except BaseException:
            if made.done() and self._made is made:
                self._made = None
            raise

    def in_use(self) -> int:
        """Connections checked out of the pool now."""
        made = self._made
        if made is None or not made.done() or made.cancelled() or made.exception():
            return 0
        pool = made.result()
        return int(pool.get_size() - pool.get_idle_size())

    async def _make(self) -> asyncpg.Pool:
        import asyncpg

        pool: asyncpg.Pool = await asyncpg.create_pool(
            self._dsn,
            min_size=0,
            max_size=self._settings.capacity,
            reset=_reset,
        )
        return pool

    async def close(self) -> None:
        made, self._made = self._made, None
        if made is None or made.get_loop() is not asyncio.get_running_loop():
            return
        with contextlib.suppress(Exception):
            await (await made).close()


async def _reset(connection: asyncpg.Connection) -> None:
    """What a native connection needs given back: nothing, since its statements run in
    autocommit and set nothing (asyncpg's default reset is a round trip of RESET ALL, UNLISTEN
    and more per checkout). A transaction left open by a failure is rolled back."""
    if connection.is_in_transaction():
        await connection.execute("ROLLBACK")


class NativeFailed(Exception):
    """A native path's statement failed in the driver (`PostgresRunner.native`).

    `outcome_unknown`: the connection failed rather than the statement (PostgreSQL reported no
    error), so a write may have committed; a statement PostgreSQL refused changed nothing."""

    def __init__(self, cause: BaseException) -> None:
        import asyncpg

        super().__init__(type(cause).__name__)
        # asyncpg reports a lost connection as a PostgresError too (class 08, connection
        # exceptions), though PostgreSQL itself never answered; and a server shutting down
        # (class 57, operator intervention) is counted with them, whatever it managed to do.
        self.outcome_unknown = not isinstance(cause, asyncpg.PostgresError) or isinstance(
            cause,
            asyncpg.exceptions.PostgresConnectionError
            | asyncpg.exceptions.OperatorInterventionError,
        )


class NativeOutcomeUnknown(ConnectionError):
    """A native write whose connection failed before its answer came back: it may have
    committed, so it is neither answered nor decided again (the general path, deciding on what
    it wrote, would take its own commit for a retry, or under `strict` for reuse). The server
    answers 503, as it answers a general write whose outcome it does not know, and the client
    retries (under `replay`, it then gets the same pair)."""


def _plan_invalidated(exc: DBAPIError) -> bool:
    """asyncpg's InvalidCachedStatementError: a statement prepared before a schema change (a
    column's type changed by a migration while this process serves) cannot run; prepared again,
    it can. Run again, so that a later release may widen a column while this one is running
    beside it during a rolling upgrade (docs/upgrades.md)."""
    return type(exc.orig).__name__ == "InvalidCachedStatementError"


def _sqlstate(exc: DBAPIError) -> str | None:
    orig = exc.orig
    for name in ("sqlstate", "pgcode"):
        value = getattr(orig, name, None)
        if isinstance(value, str):
            return value
    return None


class _Notifier:
    """Sends `NOTIFY baton_revocations` after commits that wrote feed events: one at a time per
    process, at most one per `NOTIFY_SPACING`, and commits that land meanwhile get one more
    after it. (Each NOTIFY is a transaction that takes the notification-queue lock and flushes
    a commit record: one per revocation would serialize the database again, and back to back
    under load they cost the database and the process more than the revocations themselves.)
    It is sent as a native statement (`PostgresRunner.native`)."""

    def __init__(self, runner: PostgresRunner) -> None:
        self._runner = runner
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
            sent = asyncio.get_running_loop().time()
            try:
                async with self._runner.native() as conn:
                    await conn.execute(f"NOTIFY {FEED_CHANNEL}")
            except Exception as exc:  # readers look again within a second anyway
                log.warning("could not notify the revocation feed (%s)", type(exc).__name__)
            if self._wanted:
                await asyncio.sleep(sent + NOTIFY_SPACING - asyncio.get_running_loop().time())

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

    FALLBACK_POLL = FEED_POLL

    def __init__(self, url: URL) -> None:
        self._dsn = libpq_url(url).render_as_string(hide_password=False)
        self._conn: Any = None
        self._changed = asyncio.Event()
        self._connecting = asyncio.Lock()

    async def wait(self, timeout: float) -> None:
        import asyncpg

        try:
            await self._ensure_connected()
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("cannot LISTEN for revocation events (%s); polling instead", exc)
        changed = self._changed
        with anyio.move_on_after(min(timeout, self.FALLBACK_POLL)):
            await changed.wait()

    async def _ensure_connected(self) -> None:
        import asyncpg

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

"""The databases the suite runs against: SQLite files, and a PostgreSQL database per test run.

PostgreSQL comes from BATON_TEST_POSTGRES_URL (default: the local server). A run creates its own
database and drops it at the end; each test starts from empty tables. Without a server the
PostgreSQL cases skip with the reason, except under CI=true, where they fail.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import anyio
import asyncpg
import pytest
from sqlalchemy import Connection, text

from baton.store import migrate
from baton.store.engines import Runner, normalize_url, open_runner
from baton.store.schema import metadata

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
BACKENDS = ["sqlite", "postgresql"]


def admin_url() -> str:
    return os.environ.get("BATON_TEST_POSTGRES_URL", DEFAULT_POSTGRES)


def plain_url(url: str) -> str:
    """The URL as asyncpg itself takes it (no SQLAlchemy driver suffix)."""
    return normalize_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _admin(statement: str) -> None:
    conn = await asyncpg.connect(plain_url(admin_url()), timeout=5)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def unavailable(reason: str) -> None:
    message = f"PostgreSQL at {admin_url()} is not reachable ({reason})"
    if os.environ.get("CI") == "true":
        pytest.fail(message + "; CI must run the PostgreSQL suite", pytrace=False)
    pytest.skip(message + "; set BATON_TEST_POSTGRES_URL to run these tests")


def create_database() -> str:
    name = f"baton_test_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        anyio.run(_admin, f'CREATE DATABASE "{name}"')
    except (OSError, asyncpg.PostgresError) as exc:
        unavailable(str(exc) or type(exc).__name__)
    url = normalize_url(admin_url()).set(database=name).render_as_string(hide_password=False)
    with_runner(url, migrate.upgrade)
    return url


def with_runner(url: str, use: Callable[[Runner], Awaitable[object]]) -> None:
    async def run() -> None:
        runner = open_runner(url)
        try:
            await use(runner)
        finally:
            await runner.close()

    anyio.run(run)


def drop_database(url: str) -> None:
    name = normalize_url(url).database
    anyio.run(_admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def empty_tables(url: str) -> None:
    tables = ", ".join(t.name for t in metadata.sorted_tables)

    def work(conn: Connection) -> None:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))

    with_runner(url, lambda runner: runner.write(work))


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    url = create_database()
    try:
        yield url
    finally:
        drop_database(url)


def database_for(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Path | str:
    """A tmp dir (SQLite) or an emptied PostgreSQL URL, for `tests.support.running_app`."""
    if backend == "sqlite":
        return tmp_path
    url: str = request.getfixturevalue("postgres_database")
    empty_tables(url)
    return url

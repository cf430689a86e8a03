"""The runners: URL handling, and the bounded retry of serialization failures and deadlocks."""

from __future__ import annotations

import logging

import anyio
import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from baton.store.engines import MAX_ATTEMPTS, PoolSettings, PostgresRunner, normalize_url


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

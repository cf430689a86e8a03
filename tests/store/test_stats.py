"""The pool figures of the metrics come from what each runner knows of its own pool."""

from __future__ import annotations

from pathlib import Path

import anyio

from baton.store.engines import SQLITE_POOL, PoolSettings, Runner, open_runner


def figures_of(runner: Runner) -> tuple[int, int] | None:
    async def run() -> tuple[int, int] | None:
        try:
            if runner.dialect == "sqlite":  # (PostgreSQL: nothing listens at that port)
                await runner.read(lambda conn: None)
            return runner.pool_use()
        finally:
            await runner.close()

    return anyio.run(run)


def test_a_postgresql_pool_reports_its_settings_capacity() -> None:
    pooled = open_runner("postgresql://u@127.0.0.1:1/db", PoolSettings(size=3, max_overflow=2))
    # Two pools of the settings' capacity: the general transactions' and the native paths'.
    assert figures_of(pooled) == (0, 10)
    unpooled = open_runner("postgresql://u@127.0.0.1:1/db", PoolSettings(size=0))
    assert figures_of(unpooled) is None


def test_a_sqlite_file_reports_its_pool_and_memory_none(tmp_path: Path) -> None:
    # The reader connection stays checked out between reads.
    assert figures_of(open_runner(str(tmp_path / "s.db"))) == (1, SQLITE_POOL.capacity)
    assert figures_of(open_runner("sqlite:///:memory:")) is None

"""bench/purge_scale.py and bench/pg_explain.py at a tiny size: the figures docs/performance.md
quotes come from these scripts, so they must keep measuring what they say.

Each runs in a few seconds: a purge batch that deletes exactly the dead grants' families on both
databases, and plans of the two native statements that name them and carry real figures."""

from __future__ import annotations

import time
from pathlib import Path
from types import ModuleType

import pytest

from tests.bench import bench_module
from tests.databases import admin_url, create_database, drop_database


@pytest.fixture(scope="module")
def purge_scale() -> ModuleType:
    return bench_module("purge_scale")


@pytest.fixture(scope="module")
def pg_explain() -> ModuleType:
    return bench_module("pg_explain")


def test_a_purge_batch_deletes_the_dead_families_on_sqlite(
    purge_scale: ModuleType, tmp_path: Path
) -> None:
    database = purge_scale.SQLiteDatabase(tmp_path / "baton.db")
    line = purge_scale.measure(database, 400, 10, 2)
    assert "400 grants: a batch of 10 dead grants in" in line
    # 400 grants in all (the store's own and the filler), 10 of them purged in each round.
    assert database.count("grants") == 400 - 2 * 10
    assert database.count("refresh_tokens") == database.count("access_tokens") == 400 - 20


def test_a_purge_batch_deletes_the_dead_families_on_postgresql(purge_scale: ModuleType) -> None:
    drop_database(create_database())  # skips (or fails under CI) without a PostgreSQL server
    database = purge_scale.PostgresDatabase(admin_url(), f"baton_purge_test_{time.monotonic_ns()}")
    try:
        purge_scale.measure(database, 300, 10, 1)
        assert database.count("grants") == 300 - 10
        assert database.count("refresh_tokens") == database.count("access_tokens") == 300 - 10
    finally:
        database.drop()


def test_the_plans_of_both_native_statements_are_explained(
    pg_explain: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    drop_database(create_database())  # skips (or fails under CI) without a PostgreSQL server
    argv = ["--url", admin_url(), "--grants", "300", "--requests", "20", "--real", "40"]
    assert pg_explain.main(argv) == 0
    out = capsys.readouterr().out
    # Every rotation's two statements, named, with the claim's UPDATE and both INSERTs.
    assert "refresh: 20 runs (1.00 per rotation)" in out
    assert "rotate: 20 runs (1.00 per rotation)" in out
    for node in ("Update refresh_tokens [CTE claim]", "Insert access_tokens [CTE access]"):
        assert node in out
    assert "per rotation, one at a time: the backends' CPU" in out
    assert "rotate" in out.split("plan cache of the native connections:")[1]

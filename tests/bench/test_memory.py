"""`bench/memory.py`: which mappings count as the database's, and each process's VmHWM."""

from __future__ import annotations

import mmap
import os
from pathlib import Path
from types import ModuleType

import pytest

from tests.bench import bench_module


@pytest.fixture(scope="module")
def memory() -> ModuleType:
    return bench_module("memory")


SMAPS = b"""\
55d0c0000000-55d0c0010000 r--p 00000000 08:01 1234                       /usr/bin/python3.11
Rss:                  64 kB
7f0000000000-7f0000100000 rw-s 00000000 08:01 2001                       /work/my dir/memory.db
Size:               1024 kB
Rss:                 100 kB
VmFlags: rd wr sh mr mw me ms sd
7f0000100000-7f0000108000 rw-s 00000000 08:01 2002                       /work/my dir/memory.db-shm
Rss:                  32 kB
7f0000200000-7f0000300000 rw-s 00000000 00:2a 3001                       /tmp/baton-metrics-x/c.db
Rss:                1000 kB
7f0000300000-7f0000400000 rw-s 00000000 08:01 2003                       /work/my dir/other.db
Rss:                 500 kB
7f0000400000-7f0000500000 rw-p 00000000 00:00 0
Rss:                 700 kB
"""


def test_only_the_databases_own_files_count(memory: ModuleType) -> None:
    """prometheus_client's multiprocess files end in `.db` too: they are not the database."""
    files = ("/work/my dir/memory.db", "/work/my dir/memory.db-wal", "/work/my dir/memory.db-shm")
    assert memory.mapped_files_rss(SMAPS.splitlines(keepends=True), files) == 132 * 1024


def test_the_database_files_of_a_url(memory: ModuleType, tmp_path: Path) -> None:
    path = os.path.realpath(tmp_path / "memory.db")
    assert memory.database_files(f"sqlite:///{tmp_path}/memory.db") == (
        path,
        f"{path}-wal",
        f"{path}-shm",
    )
    assert memory.database_files("postgresql://bench@127.0.0.1/bench") == ()


def _map(path: Path, size: int) -> mmap.mmap:
    path.write_bytes(b"\0" * size)
    with path.open("r+b") as file:
        mapped = mmap.mmap(file.fileno(), size)
    mapped[:] = b"\1" * size  # resident
    return mapped


def test_a_live_process_counts_its_database_not_the_metrics_files(
    memory: ModuleType, tmp_path: Path
) -> None:
    metrics = tmp_path / "baton-metrics-test"
    metrics.mkdir()
    database = _map(tmp_path / "memory.db", 16 * mmap.PAGESIZE)
    index = _map(tmp_path / "memory.db-shm", 8 * mmap.PAGESIZE)
    counters = _map(metrics / "counter_1.db", 32 * mmap.PAGESIZE)
    try:
        found = memory.mapped_database(str(os.getpid()), f"sqlite:///{tmp_path}/memory.db")
        assert found == 24 * mmap.PAGESIZE
    finally:
        for mapped in (database, index, counters):
            mapped.close()


def test_each_process_peak_as_the_kernel_saw_it(memory: ModuleType) -> None:
    parts = memory.rss_parts(str(os.getpid()))
    assert parts["VmHWM"] >= parts["VmRSS"] > 0

"""`baton serve --workers 2` holds the app in its workers only: the supervisor (the process the
operator started, same pid) maps none of the server's libraries and stays small, and the
settings, secrets included, are on no process's command line."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.e2e.conftest import Seed, Server, start_server
from tests.e2e.test_workers import children, listening_workers

pytestmark = pytest.mark.e2e

# Shared libraries of the app's dependencies: a process that mapped one imported the app.
APP_LIBRARIES = ("cryptography", "sqlalchemy", "uvloop", "httptools", "asyncpg", "argon2")
SUPERVISOR_MAX_RSS_KB = 40 * 1024  # the app alone is over twice that


@pytest.fixture(scope="module")
def server(seed: Seed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    started = start_server(seed, tmp_path_factory.mktemp("memory"), {"workers": "2"})
    try:
        deadline = time.monotonic() + 30
        while len(listening_workers(started)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(listening_workers(started)) == 2
        yield started
    finally:
        started.stop()


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def test_the_supervisor_maps_none_of_the_app(server: Server) -> None:
    supervisor = server.process.pid
    mapped = Path(f"/proc/{supervisor}/maps").read_text()
    assert [lib for lib in APP_LIBRARIES if f"/{lib}/" in mapped] == []
    assert _rss_kb(supervisor) < SUPERVISOR_MAX_RSS_KB
    # No helper process beside the workers (multiprocessing's resource tracker was one).
    assert sorted(children(supervisor)) == sorted(listening_workers(server))


def test_the_workers_serve_the_app(server: Server) -> None:
    for worker in listening_workers(server):
        assert "/sqlalchemy/" in Path(f"/proc/{worker}/maps").read_text()


def test_no_setting_is_on_a_command_line(server: Server) -> None:
    """The session key (generated beside the database) and the settings reach the workers in
    their environment, readable by the same user only, never in argv (`ps` shows argv to all)."""
    key = Path(f"{server.db}-session.key").read_text().strip()
    port = str(urlsplit(server.url).port)
    for pid in [server.process.pid, *children(server.process.pid)]:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode()
        assert key not in argv
        assert "BATON_SERVE_CONFIG" not in argv and "session_key" not in argv
        if pid != server.process.pid:
            assert port not in argv.split("\0")

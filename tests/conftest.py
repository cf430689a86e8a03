"""Fixtures shared by every test package, and the check that no log of the run holds a secret."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from baton.core.clock import FakeClock
from baton.store.sql import SQLStore
from tests.databases import BACKENDS, database_for, postgres_database
from tests.support import RegisteredClient, register_client, register_user, running_app


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Each test that asks for it runs twice: on SQLite and on PostgreSQL."""
    return database_for(request.param, tmp_path, request)


@pytest.fixture
def server(database: Path | str) -> Iterator[tuple[TestClient, SQLStore, FakeClock]]:
    """A Baton app (default policy: replay, 600 s leeway) under a fake clock."""
    with running_app(database) as running:
        yield running


@pytest.fixture
def http(server: tuple[TestClient, SQLStore, FakeClock]) -> TestClient:
    return server[0]


@pytest.fixture
def store(server: tuple[TestClient, SQLStore, FakeClock]) -> SQLStore:
    return server[1]


@pytest.fixture
def clock(server: tuple[TestClient, SQLStore, FakeClock]) -> FakeClock:
    return server[2]


@pytest.fixture
def client(store: SQLStore) -> RegisteredClient:
    """A confidential client, with a user `alice` who can sign in."""
    register_user(store)
    return register_client(store)


@pytest.fixture
def resource_server(store: SQLStore) -> RegisteredClient:
    return register_client(store, resource_server=True, name="api")


__all__ = ["postgres_database"]  # a session fixture, shared with every test package


class _ServerLogs(logging.Handler):
    """Every record Baton's and uvicorn's loggers emit during the run, formatted."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(("baton", "uvicorn", "starlette")):
            self.lines.append(self.format(record))


_server_logs = _ServerLogs()


def pytest_configure(config: pytest.Config) -> None:
    logging.getLogger().addHandler(_server_logs)
    logging.getLogger("baton").setLevel(logging.DEBUG)


_leaked_by_workers: list[str] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The logs of the whole run contain no token, code, secret or password (issue 7).

    Under pytest-xdist each worker scans the logs of its own tests and hands what it found to
    the controller (a worker's exit status is not the run's), which fails the run."""
    from tests.secrets_scan import find_secrets

    leaked = find_secrets("\n".join(_server_logs.lines))
    workeroutput: dict[str, Any] | None = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["leaked_secrets"] = leaked[:10]
        return
    leaked += _leaked_by_workers
    if leaked:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"SECRETS IN THE SERVER LOGS OF THIS RUN: {leaked[:10]}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """The controller collects what each xdist worker's scan of its logs found."""
    _leaked_by_workers.extend(getattr(node, "workeroutput", {}).get("leaked_secrets", []))


# -- running the suite on every core (pytest-xdist) -----------------------------------------------
#
# `pytest -n auto` (or `-n 2`): these hooks decide how many workers and what each one runs.

# Test files that share something outside the test process and must not run at the same time:
# test_limits empties Redis database 0, which test_redis_store uses; the interop files share a
# node package cache (an npm install must not run twice at once) and their session fixtures.
# The "load" files measure what a burst of traffic from many processes does in a fixed time (so
# much traffic, so many rotations, reuse seen, servers answering within their timeouts): run
# one after the other, on one worker, they never compete with each other for the cores.
_SHARED_SCOPES = {
    "tests/server/test_limits.py": "redis",
    "tests/client/test_redis_store.py": "redis",
    "tests/hardening/test_soak.py": "load",
    "tests/client/test_baton_e2e.py": "load",
    "tests/client/test_stalled_answers.py": "load",
    "tests/bench/test_smoke.py": "load",
    "tests/bench/test_scaling.py": "load",
    "tests/e2e/test_postgres_processes.py": "load",
}
_SHARED_FOLDERS = {"tests/interop/": "interop"}
# The slowest units first, so that no worker is left with a long one at the end of the run.
_SLOW_FIRST = ("load", "interop", "tests/browser/", "tests/e2e/", "tests/resource/e2e/")
_SLOW_FILES = {
    "tests/server/test_stateful.py",
    "tests/hardening/test_schemathesis.py",
    "tests/store/test_query_plans.py",
}
_MAX_WORKERS = 4


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Marks the "load" files' tests `load`: `make test` runs them after the rest, alone on
    the machine (`-m load`), so their fixed-time measurements never share the cores."""
    for item in items:
        if scope_of(item.nodeid) == "load":
            item.add_marker(pytest.mark.load)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """`pytest -m load` (make test's second run) imports only the "load" files: collecting the
    rest of the suite, to deselect every test of it, took seconds of imports."""
    if config.getoption("markexpr", "") != "load" or collection_path.suffix != ".py":
        return None
    if not collection_path.name.startswith("test_"):
        return None
    try:
        path = collection_path.relative_to(config.rootpath).as_posix()
    except ValueError:
        return None
    return True if scope_of(path) != "load" else None


def scope_of(nodeid: str) -> str:
    """The unit of work one xdist worker runs whole: a test file (its module fixtures, servers
    and databases start once), or a group of files that share an outside resource."""
    path = nodeid.split("::", 1)[0]
    for folder, name in _SHARED_FOLDERS.items():
        if path.startswith(folder):
            return name
    return _SHARED_SCOPES.get(path, path)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: one worker per core (at most four), or PYTEST_XDIST_AUTO_NUM_WORKERS; none
    (the tests run in this process, with -s and --pdb working) when the command line names
    only test files or tests, the usual run of a developer at work on one module."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return int(os.environ["PYTEST_XDIST_AUTO_NUM_WORKERS"])
    named = [arg.split("::", 1)[0] for arg in config.args]
    if named and all(Path(path).is_file() for path in named):
        return 0
    return min(len(os.sched_getaffinity(0)), _MAX_WORKERS)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Whole files (or groups of files, `scope_of`) per worker, the slow ones first, whichever
    load-balancing --dist is asked for: the groups are what keeps shared resources apart."""
    if config.getvalue("dist") not in ("load", "loadscope", "loadfile", "loadgroup"):
        return None
    from xdist.scheduler import (  # type: ignore[import-not-found,import-untyped,unused-ignore]
        LoadScopeScheduling,
    )

    class FileGroupScheduling(LoadScopeScheduling):  # type: ignore[misc,unused-ignore]
        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid)

        def _assign_work_unit(self, node: Any) -> None:
            if not getattr(self, "slow_first", False):  # the first assignment: reorder once
                self.slow_first = True
                slow = sorted(
                    (s for s in self.workqueue if s.startswith(_SLOW_FIRST) or s in _SLOW_FILES),
                    key=lambda s: next(
                        (i for i, p in enumerate(_SLOW_FIRST) if s.startswith(p)), len(_SLOW_FIRST)
                    ),
                )
                for scope in reversed(slow):
                    self.workqueue.move_to_end(scope, last=False)
            super()._assign_work_unit(node)

    return FileGroupScheduling(config, log)

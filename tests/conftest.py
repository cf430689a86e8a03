"""Fixtures shared by every test package, and the check that no log of the run holds a secret."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

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


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The logs of the whole run contain no token, code, secret or password (issue 7)."""
    from tests.secrets_scan import find_secrets

    leaked = find_secrets("\n".join(_server_logs.lines))
    if leaked:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"SECRETS IN THE SERVER LOGS OF THIS RUN: {leaked[:10]}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED

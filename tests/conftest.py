"""Fixtures shared by every test package."""

from __future__ import annotations

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

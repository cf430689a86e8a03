"""Fixtures shared by every test package."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from baton.core.clock import FakeClock
from baton.store.sql import SQLStore
from tests.support import RegisteredClient, register_client, register_user, running_app


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[TestClient, SQLStore, FakeClock]]:
    """A Baton app (default policy: replay, 600 s leeway) under a fake clock."""
    with running_app(tmp_path) as running:
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

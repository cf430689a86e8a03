"""Fixtures for baton.resource against real processes: `baton serve` (tests/e2e/conftest.py)
and the example API under uvicorn."""

from __future__ import annotations

import functools
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import (  # noqa: F401 (fixtures and the failure-report hook)
    BATON,
    Seed,
    Server,
    ServerFactory,
    baton_server,
    cli_in_process,
    pytest_runtest_makereport,
    seed,
    start_server,
)
from tests.resource.e2e.support import ExampleApi, Grants, start_api

# JWT signing keys are sealed at rest under this key; every `baton` process started by these
# tests inherits it.
os.environ.setdefault("BATON_KEY_ENCRYPTION_KEY", secrets.token_urlsafe(32))

ApiFactory = Callable[[Server], ExampleApi]
GrantsFactory = Callable[[Server], Grants]


@functools.cache
def server_supports_jwt() -> bool:
    """Whether `baton serve --help` offers JWTs (asked in this process: a `baton` process spends
    a second on its imports)."""
    return "--access-token-format" in cli_in_process("serve", "--help")


@pytest.fixture(params=["opaque", "jwt"])
def token_format(request: pytest.FixtureRequest) -> str:
    if request.param == "jwt" and not server_supports_jwt():
        pytest.skip("this baton serve has no --access-token-format")
    return str(request.param)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ApiFactory]:
    started: list[ExampleApi] = []

    def start(server: Server) -> ExampleApi:
        running = start_api(server, tmp_path / f"api{len(started)}")
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


@pytest.fixture(scope="module")
def default_server(
    seed: Seed,  # noqa: F811 (the fixture imported above)
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    """A `baton serve` with the default options (opaque tokens), shared by the tests of a module
    that need nothing else of it: each works on grants of its own, and starts its own API."""
    server = start_server(seed, tmp_path_factory.mktemp("default"), {"rate_limit_login": "0"})
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def grants() -> Iterator[GrantsFactory]:
    made: list[Grants] = []

    def make(server: Server) -> Grants:
        made.append(Grants(server))
        return made[-1]

    yield make
    for item in made:
        item.close()

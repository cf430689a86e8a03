"""Fixtures for baton.resource against real processes: `baton serve` (tests/e2e/conftest.py)
and the example API under uvicorn."""

from __future__ import annotations

import functools
import os
import secrets
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import (  # noqa: F401 (fixtures and the failure-report hook)
    BATON,
    Server,
    ServerFactory,
    baton_server,
    pytest_runtest_makereport,
    seed,
)
from tests.resource.e2e.support import ExampleApi, Grants, start_api

# JWT signing keys are sealed at rest under this key; every `baton` process started by these
# tests inherits it.
os.environ.setdefault("BATON_KEY_ENCRYPTION_KEY", secrets.token_urlsafe(32))

ApiFactory = Callable[[Server], ExampleApi]
GrantsFactory = Callable[[Server], Grants]


@functools.cache
def server_supports_jwt() -> bool:
    usage = subprocess.run([*BATON, "serve", "--help"], capture_output=True, text=True, check=False)
    return "--access-token-format" in usage.stdout


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


@pytest.fixture
def grants() -> Iterator[GrantsFactory]:
    made: list[Grants] = []

    def make(server: Server) -> Grants:
        made.append(Grants(server))
        return made[-1]

    yield make
    for item in made:
        item.close()

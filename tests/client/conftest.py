"""Fixtures for the SDK tests: the real `baton serve` fixtures of tests/e2e, and the test API."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import (  # noqa: F401 (fixtures and the failure-report hook)
    START_TIMEOUT,
    Server,
    baton_server,
    free_port,
    pytest_runtest_makereport,
    seed,
    spawn_uvicorn,
)

ROOT = Path(__file__).resolve().parents[2]
# For a child process: this checkout's sources first (the shared virtualenv's editable install
# may point at another checkout), then the tests package.
CHILD_PYTHONPATH = os.pathsep.join([str(ROOT / "src"), str(ROOT)])


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@dataclass
class Api:
    url: str
    process: subprocess.Popen[bytes]
    log: Path


ApiFactory = Callable[[Server], Api]


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ApiFactory]:
    """Starts tests/client/api_app.py under uvicorn, in front of a given Baton server."""
    started: list[Api] = []

    def start(server: Server) -> Api:
        port = free_port()
        log = tmp_path / f"api-{port}.log"
        env = {
            **os.environ,
            "PYTHONPATH": CHILD_PYTHONPATH,
            "BATON_URL": server.url,
            "BATON_RS_ID": server.resource_server.client_id,
            "BATON_RS_SECRET": server.resource_server.client_secret,
        }
        process = spawn_uvicorn(["tests.client.api_app:app"], port, env, log)
        running = Api(f"http://127.0.0.1:{port}", process, log)
        started.append(running)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"the test API exited:\n{log.read_text()}")
            try:
                httpx.get(running.url + "/hello")
                return running
            except httpx.TransportError:
                time.sleep(0.05)
        pytest.fail(f"the test API did not start:\n{log.read_text()}")

    yield start
    for running in started:
        running.process.terminate()
        try:
            running.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            running.process.kill()
            running.process.wait()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"

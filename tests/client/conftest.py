"""Fixtures for the SDK tests: the real `baton serve` fixtures of tests/e2e, and the test API."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
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


@dataclass
class Api:
    url: str
    process: subprocess.Popen[bytes]
    log: Path


ApiFactory = Callable[[Server], Api]


@contextmanager
def api_process(server: Server, directory: Path) -> Iterator[Api]:
    """tests/client/api_app.py under uvicorn, in front of `server`, until the block ends."""
    port = free_port()
    log = directory / f"api-{port}.log"
    env = {
        **os.environ,
        "PYTHONPATH": CHILD_PYTHONPATH,
        "BATON_URL": server.url,
        "BATON_RS_ID": server.resource_server.client_id,
        "BATON_RS_SECRET": server.resource_server.client_secret,
    }
    process = spawn_uvicorn(["tests.client.api_app:app"], port, env, log)
    running = Api(f"http://127.0.0.1:{port}", process, log)
    try:
        _wait_for_api(running)
        yield running
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for_api(running: Api) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if running.process.poll() is not None:
            pytest.fail(f"the test API exited:\n{running.log.read_text()}")
        try:
            httpx.get(running.url + "/hello")
            return
        except httpx.TransportError:
            time.sleep(0.05)
    pytest.fail(f"the test API did not start:\n{running.log.read_text()}")


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ApiFactory]:
    """Starts tests/client/api_app.py under uvicorn, in front of a given Baton server."""
    with ExitStack() as started:
        yield lambda server: started.enter_context(api_process(server, tmp_path))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"

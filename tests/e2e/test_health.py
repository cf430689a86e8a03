"""The health probes of a real `baton serve`, on SQLite with two workers and on PostgreSQL: both
answer, and neither leaves an access-log line among the requests that do."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.e2e.conftest import ServerFactory

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_served_process_is_alive_and_ready_and_its_probes_are_not_logged(
    database: str, request: pytest.FixtureRequest
) -> None:
    factory: ServerFactory = request.getfixturevalue(
        "baton_server" if database == "sqlite" else "postgres_server"
    )
    server = factory(workers=2, log_level="info")
    for _ in range(4):  # each worker, most likely
        alive = httpx.get(server.url + "/healthz")
        ready = httpx.get(server.url + "/readyz")
        assert alive.status_code == 200 and alive.json() == {"status": "ok"}
        assert ready.status_code == 200, ready.text
        assert ready.json() == {"status": "ready", "checks": {"database": "ok", "migrations": "ok"}}
    assert httpx.get(server.url + "/openapi.json").status_code == 200
    # The access log reaches the file a moment after the answer: wait for the request that is
    # logged, then look for the probes before it.
    deadline = time.monotonic() + 10
    while "/openapi.json" not in (logged := server.stderr()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "/openapi.json" in logged
    assert "/healthz" not in logged and "/readyz" not in logged

"""No plaintext token, code or secret reaches the database or a log line."""

from __future__ import annotations

import logging
from pathlib import Path

import anyio
import pytest
from starlette.testclient import TestClient

from baton.core.clock import FakeClock
from baton.store.sql import SQLStore
from tests.support import PASSWORD, RegisteredClient, authorize, first_pair, refresh


def test_the_database_holds_no_plaintext(
    http: TestClient, client: RegisteredClient, clock: FakeClock, store: SQLStore, tmp_path: Path
) -> None:
    query, _ = authorize(http, client)
    secrets = [query["code"][0], client.secret or "", PASSWORD]
    pair = first_pair(http, client)
    child = refresh(http, client, pair["refresh_token"]).json()
    refresh(http, client, pair["refresh_token"])  # a replay: the child pair stays sealed
    secrets += [pair["access_token"], pair["refresh_token"]]
    secrets += [child["access_token"], child["refresh_token"]]
    anyio.run(store.close)
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("baton.db*"))
    assert raw  # the database and its WAL were read
    for secret in secrets:
        assert secret.encode() not in raw


def test_logs_carry_no_token(
    http: TestClient, client: RegisteredClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    query, _ = authorize(http, client)
    pair = first_pair(http, client)
    child = refresh(http, client, pair["refresh_token"]).json()
    http.post("/revoke", data={"token": child["refresh_token"]}, auth=client.basic)
    http.get("/nowhere", params={"access_token": pair["access_token"]})
    # The server's own loggers (the test's HTTP client logs its URLs: not the server's doing).
    text = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("httpx"))
    assert '"POST /token" 200' in text  # one line per request was logged
    for secret in (
        query["code"][0],
        pair["access_token"],
        pair["refresh_token"],
        child["refresh_token"],
        client.secret or "",
        PASSWORD,
    ):
        assert secret not in text

"""No plaintext token, code or secret reaches the database or a log line."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy import Connection, select
from starlette.testclient import TestClient

from baton.store.schema import metadata
from baton.store.sql import SQLStore
from tests.support import PASSWORD, RegisteredClient, authorize, first_pair, refresh


def test_the_database_holds_no_plaintext(
    http: TestClient, client: RegisteredClient, store: SQLStore, database: Path | str
) -> None:
    query, _ = authorize(http, client)
    secrets = [query["code"][0], client.secret or "", PASSWORD]
    pair = first_pair(http, client)
    child = refresh(http, client, pair["refresh_token"]).json()
    refresh(http, client, pair["refresh_token"])  # a replay: the child pair stays sealed
    secrets += [pair["access_token"], pair["refresh_token"]]
    secrets += [child["access_token"], child["refresh_token"]]
    rows = anyio.run(store.inspect, dump_every_table)
    assert len(rows) > 10
    raw = repr(rows).encode()
    if isinstance(database, Path):  # SQLite: the files too, WAL included
        anyio.run(store.close)
        raw += b"".join(p.read_bytes() for p in database.glob("baton.db*"))
    for secret in secrets:
        assert secret.encode() not in raw


def dump_every_table(conn: Connection) -> list[tuple[Any, ...]]:
    return [tuple(row) for table in metadata.sorted_tables for row in conn.execute(select(table))]


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
    logged = [r.msg for r in caplog.records if r.name == "baton.access"]  # structlog events
    token_lines = [m for m in logged if isinstance(m, dict) and m.get("path") == "/token"]
    assert any(m["method"] == "POST" and m["status"] == 200 for m in token_lines)
    for secret in (
        query["code"][0],
        pair["access_token"],
        pair["refresh_token"],
        child["refresh_token"],
        client.secret or "",
        PASSWORD,
    ):
        assert secret not in text

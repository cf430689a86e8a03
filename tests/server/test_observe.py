"""Request ids and the JSON access log: one line per request, its id in it, never a secret."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from baton.logs import REQUEST_ID, formatter
from tests.secrets_scan import find_secrets
from tests.support import PASSWORD, first_pair, refresh, register_client, register_user, running_app


@contextmanager
def json_lines(renderer: str = "json") -> Iterator[io.StringIO]:
    """What Baton's loggers write through the formatter `baton serve` installs."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter(renderer))
    logger = logging.getLogger("baton")
    logger.addHandler(handler)
    try:
        yield out
    finally:
        logger.removeHandler(handler)


def parsed(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


def test_each_request_gets_an_id_echoed_and_logged_with_no_secret(tmp_path: Path) -> None:
    with running_app(tmp_path) as (http, store, _clock), json_lines() as out:
        register_user(store)
        client = register_client(store)
        pair = first_pair(http, client)
        response = refresh(http, client, pair["refresh_token"], scope="read")
        # A careless client puts a token in the query, or in a path: the log never has it.
        http.get(f"/revocations?token={pair['access_token']}&password=x")
        http.get(f"/no/such/{pair['refresh_token']}/x")
        http.get(f"/no/such/{'a' * 40}/{'eyJ' + 'b' * 60}")
        # A route's parameters are logged as its template: a login challenge is a secret.
        http.get(f"/admin/api/v1/login-challenges/{'c' * 43}")
    lines = parsed(out)
    requests = [line for line in lines if line["logger"] == "baton.access"]
    assert len(requests) >= 6
    for line in requests:
        assert set(line) >= {"request_id", "method", "path", "route", "status", "duration_ms"}
        assert "?" not in line["path"]
        assert line["level"] == "info" and line["event"] == "request" and "timestamp" in line
    refreshed = [line for line in requests if line["route"] == "/token"][-1]
    assert refreshed["request_id"] == response.headers["x-request-id"]
    assert len({line["request_id"] for line in requests}) == len(requests)
    text = out.getvalue()
    assert not find_secrets(text), find_secrets(text)
    for secret in (pair["refresh_token"], pair["access_token"], client.secret, PASSWORD):
        assert secret and secret not in text
    paths = [line["path"] for line in requests]
    assert "/no/such/bat_rt_.../x" in paths
    assert "/no/such/aaaaaaa.../eyJbbbb..." in paths
    assert "/admin/api/v1/login-challenges/{challenge}" in paths
    assert "c" * 43 not in text


def test_a_sane_incoming_request_id_is_kept_and_an_odd_one_replaced(tmp_path: Path) -> None:
    with running_app(tmp_path) as (http, _store, _clock), json_lines() as out:
        kept = http.get("/jwks.json", headers={"X-Request-ID": "edge-7f3a.9:1"})
        odd = http.get("/jwks.json", headers={b"X-Request-ID": b"two words\xc3\xa9"})
        long = http.get("/jwks.json", headers={"X-Request-ID": "a" * 65})
        missing = http.get("/jwks.json")
    assert kept.headers["x-request-id"] == "edge-7f3a.9:1"
    for response in (odd, long, missing):
        assert len(response.headers["x-request-id"]) == 16  # a fresh random id
    assert len({r.headers["x-request-id"] for r in (kept, odd, long, missing)}) == 4
    assert [line["request_id"] for line in parsed(out)] == [
        r.headers["x-request-id"] for r in (kept, odd, long, missing)
    ]


def test_plain_logging_records_are_json_too_and_carry_the_request_id() -> None:
    reset = REQUEST_ID.set("req-1")
    try:
        with json_lines() as out:
            logging.getLogger("baton.store").warning("retrying %s (attempt %d)", "40001", 2)
    finally:
        REQUEST_ID.reset(reset)
    (line,) = parsed(out)
    assert line["event"] == "retrying 40001 (attempt 2)"
    assert line["request_id"] == "req-1" and line["level"] == "warning"
    assert line["logger"] == "baton.store" and isinstance(line["pid"], int)


def test_the_console_format_is_one_readable_line() -> None:
    with json_lines("console") as out:
        logging.getLogger("baton").info("hello")
    text = out.getvalue()
    assert "hello" in text and "[info" in text and not text.lstrip().startswith("{")

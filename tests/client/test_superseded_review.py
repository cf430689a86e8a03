"""Review fixes to the SDK's reading of `Baton-Token-Superseded` (issue 28). The header is
advisory: the API already answered, so nothing about reading it (the store, a hostile value) may
fail the request or cost real CPU. An API faked with `httpx.MockTransport`, a fake clock."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from typing import Any

import httpx
import pytest
import requests
import requests.adapters

import baton.client.superseded as superseded_module
from baton.client import (
    BearerAuth,
    Hooks,
    MemoryStore,
    OAuthClient,
    Refresher,
    RequestsAuth,
    SupersededEvent,
    TokenPair,
    fingerprint,
    store_pair,
)
from baton.client.superseded import HEADER, MAX_HEADER, SupersededWatch, dies_at_of

API = "https://api.example/orders"
NOW = 1_000_000.0
DIES = int(NOW) + 30


class BrokenReadStore(MemoryStore):
    """A store whose reads fail from `fail_after` reads on (SQLite busy, a Redis blip, a
    corrupt document)."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        store_pair(self, TokenPair("at0", "rt0", expires_at=NOW + 3600, obtained_at=NOW))
        self.error = error
        self.loads = 0
        self.fail_after = 10**9

    def load(self) -> TokenPair | None:
        self.loads += 1
        if self.loads > self.fail_after:
            raise self.error
        return super().load()


class RedisLikeError(Exception):
    """Stands for `redis.exceptions.ConnectionError`, which is neither OSError nor ClientError."""


STORE_ERRORS = [
    sqlite3.OperationalError("database is locked"),
    RedisLikeError("Connection reset by peer"),
    ValueError("corrupt token document: at0"),  # a message that names a token must stay unlogged
    json.JSONDecodeError("Expecting value", "{", 1),
]


def refresher(store: MemoryStore, hooks: Hooks) -> Refresher:
    return Refresher(
        OAuthClient("https://as.example/token", "app", "secret"),
        store,
        leeway=30,
        hooks=hooks,
        clock=lambda: NOW,
    )


def created(request: httpx.Request) -> httpx.Response:
    return httpx.Response(201, headers={HEADER: f"dies-at={DIES}"}, json={"id": 1})


@pytest.mark.parametrize("error", STORE_ERRORS, ids=lambda error: type(error).__name__)
def test_a_store_that_fails_while_the_header_is_read_never_fails_the_answered_request(
    error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    """A POST the API answered 201 must not look failed (an app would retry the order)."""
    store = BrokenReadStore(error)
    events: list[SupersededEvent] = []
    auth = BearerAuth(refresher(store, Hooks(on_superseded=events.append)))
    posted: list[bytes] = []

    def api(request: httpx.Request) -> httpx.Response:
        posted.append(request.content)
        store.fail_after = store.loads  # the request's own read worked; the next ones fail
        return created(request)

    caplog.set_level(logging.DEBUG, logger="baton")
    with httpx.Client(auth=auth, transport=httpx.MockTransport(api)) as http:
        response = http.post(API, json={"buy": 1})
    assert (response.status_code, len(posted)) == (201, 1)
    # Still told: the store's state is unknown, so the event does not claim a newer pair.
    assert events == [SupersededEvent(DIES, fingerprint("at0"), NOW + 3600, stored_newer=False)]
    assert type(error).__name__ in caplog.text
    assert "at0" not in caplog.text and "rt0" not in caplog.text


def test_async_clients_survive_a_failing_store_too() -> None:
    store = BrokenReadStore(sqlite3.OperationalError("database is locked"))
    events: list[SupersededEvent] = []
    auth = BearerAuth(refresher(store, Hooks(on_superseded=events.append)))

    def api(request: httpx.Request) -> httpx.Response:
        store.fail_after = store.loads
        return created(request)

    async def main() -> int:
        async with httpx.AsyncClient(auth=auth, transport=httpx.MockTransport(api)) as http:
            return (await http.post(API, json={"buy": 1})).status_code

    assert asyncio.run(main()) == 201
    assert [event.dies_at for event in events] == [DIES]


class _Adapter(requests.adapters.BaseAdapter):
    def __init__(self, store: BrokenReadStore) -> None:
        super().__init__()
        self.store = store

    def send(  # type: ignore[override]
        self, request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        self.store.fail_after = self.store.loads
        response = requests.Response()
        response.status_code, response.request, response._content = 201, request, b"{}"
        response.headers[HEADER] = f"dies-at={DIES}"
        return response

    def close(self) -> None:
        pass


def test_requests_users_survive_a_failing_store_too() -> None:
    store = BrokenReadStore(RedisLikeError("Connection reset by peer"))
    events: list[SupersededEvent] = []
    with requests.Session() as session:
        session.mount("https://", _Adapter(store))
        session.auth = RequestsAuth(refresher(store, Hooks(on_superseded=events.append)))
        assert session.post(API, json={"buy": 1}).status_code == 201
    assert [event.dies_at for event in events] == [DIES]


def test_a_header_longer_than_the_cap_is_ignored() -> None:
    """`dies-at=<seconds>` is 18 bytes; a longer value is not one `baton.resource` sends."""
    assert dies_at_of(["dies-at=5"]) == 5
    padded = "dies-at=5," + " " * (MAX_HEADER - 10)
    assert len(padded) == MAX_HEADER and dies_at_of([padded]) == 5
    assert dies_at_of([padded + " "]) is None
    assert dies_at_of(["dies-at=5", "x" * MAX_HEADER]) is None  # the lines are one dictionary


def test_a_hostile_header_costs_no_real_cpu() -> None:
    """16 KB of whitespace took seconds with the quadratic member pattern."""
    started = time.perf_counter()
    for hostile in (" " * 16384, "a=" + " " * 16384, ", " * 8192, '"' * 16384):
        assert dies_at_of([hostile]) is None
    assert time.perf_counter() - started < 0.5


def test_a_malformed_header_is_read_once_per_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """A malformed value counts as told: later answers for the same token are not parsed."""
    parsed: list[list[str]] = []

    def counting(values: list[str]) -> int | None:
        parsed.append(list(values))
        return dies_at_of(values)

    monkeypatch.setattr(superseded_module, "dies_at_of", counting)
    store = MemoryStore(TokenPair("at0", "rt0", expires_at=NOW + 3600, obtained_at=NOW))
    events: list[SupersededEvent] = []
    auth = BearerAuth(refresher(store, Hooks(on_superseded=events.append)))

    def api(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={HEADER: "dies-at=soon"}, json={})

    with httpx.Client(auth=auth, transport=httpx.MockTransport(api)) as http:
        for _ in range(3):
            assert http.get(API).status_code == 200
    assert (len(parsed), events) == (1, [])


@pytest.mark.parametrize("error", STORE_ERRORS, ids=lambda error: type(error).__name__)
def test_the_watch_every_auth_shares_never_raises_on_a_store_error(error: Exception) -> None:
    """`MCPAuth` calls `SupersededWatch.event` (in a worker thread) just as `BearerAuth` does."""

    def load() -> TokenPair | None:
        raise error

    used = TokenPair("at0", "rt0", expires_at=NOW + 3600, obtained_at=NOW)
    event = SupersededWatch().event([f"dies-at={DIES}"], used, load)
    assert event == SupersededEvent(DIES, fingerprint("at0"), NOW + 3600, stored_newer=False)

"""Issue 22 against real `baton serve` processes: a token response that never comes back.

A loopback proxy forwards `POST /token` to Baton, which rotates and answers 200, and then never
passes the answer on (the connection stays open and silent, as behind a stalled proxy or a
sleeping laptop) for the first N attempts. For leeways of 3, 5, 10 and 600 s and timeouts of 2,
10 and 30 s, the SDK must get the very pair back (`replay`) or a sibling (`fork`), and never
make Baton detect reuse.

Small leeways run in real time: the whole point is that the attempts fit in them. The 600 s
leeway runs on a compressed clock for the SDK only (its clock, its sleeps and its socket timeouts
run 20 times faster): the server and the proxy are real, and the server's leeway, in real time,
is then larger than the SDK believes, never smaller.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import requests

from baton.client import (
    FailureEvent,
    Hooks,
    MemoryStore,
    OAuthClient,
    ReauthorizationRequired,
    Refresher,
    RotationEvent,
    TokenPair,
    store_pair,
)
from baton.client.refresher import METADATA_PATH
from tests.client.proxy import DropProxy, body_of
from tests.e2e.conftest import (
    Seed,
    Server,
    first_pair,
    start_server,
)

pytestmark = pytest.mark.e2e

COMPRESSION = 20.0


SERVERS = [
    ("replay", 3),
    ("replay", 5),
    ("replay", 10),
    ("replay", 600),
    ("fork", 5),
    ("strict", 0),
]


@pytest.fixture(scope="module")
def servers(seed: Seed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One `baton serve` per (policy, leeway), shared by the tests of this module: all started
    at once, in the background, each test waiting only for its own."""

    def start(policy: str, leeway: int) -> Server:
        directory = tmp_path_factory.mktemp(f"{policy}-{leeway}")
        options = {"retry_policy": policy, "leeway": str(leeway), "rate_limit_login": "0"}
        return start_server(seed, directory, options)

    with ThreadPoolExecutor(len(SERVERS)) as pool:
        starting = {key: pool.submit(start, *key) for key in SERVERS}
        try:
            yield lambda policy, leeway: starting[policy, leeway].result()
        finally:
            for future in starting.values():
                if future.exception() is None:
                    future.result().stop()
            for browser in BROWSERS.values():
                browser.close()
            BROWSERS.clear()


BROWSERS: dict[str, requests.Session] = {}


def new_grant(server: Server) -> dict[str, Any]:
    """A new grant's first pair, from a browser that signed in once per server (the password
    hash is what costs time)."""
    return first_pair(server, browser=BROWSERS.setdefault(server.url, requests.Session()))


@pytest.fixture
def proxies() -> Iterator[list[DropProxy]]:
    running: list[DropProxy] = []
    yield running
    for proxy in running:
        proxy.stop()


class Compressed(httpx.BaseTransport):
    """Socket timeouts `factor` times shorter than the SDK asks for."""

    def __init__(self, factor: float) -> None:
        self.factor = factor
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout")
        if isinstance(timeout, dict):
            request.extensions["timeout"] = {
                name: None if value is None else value / self.factor
                for name, value in timeout.items()
            }
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


class Run:
    """A grant's first pair in a store, and a refresher that reaches Baton through a proxy that
    swallows the answers to the first `stalls` token requests."""

    def __init__(
        self,
        server: Server,
        proxies: list[DropProxy],
        stalls: int,
        compressed: bool = False,
        **options: Any,
    ) -> None:
        self.server = server
        self.proxy = DropProxy(int(server.url.rsplit(":", 1)[1]), "stall").start()
        proxies.append(self.proxy)
        self.store = MemoryStore()
        self.first = TokenPair.from_response(new_grant(server), time.time())
        store_pair(self.store, self.first)
        self.grant_id = server.introspect(self.first.access_token)["grant_id"]
        self.rotations: list[RotationEvent] = []
        self.failures: list[FailureEvent] = []
        if compressed:
            real, origin = time.time(), time.monotonic()
            options |= {
                "http": httpx.Client(transport=Compressed(COMPRESSION)),
                "clock": lambda: real + (time.monotonic() - origin) * COMPRESSION,
                "sleep": lambda seconds: time.sleep(seconds / COMPRESSION),
            }
        self.refresher = self.new_refresher(**options)
        self.proxy.armed = stalls

    def refresh(self) -> TokenPair:
        try:
            return self.refresher.refresh(self.first)
        except ReauthorizationRequired as exc:  # say what each attempt saw
            raise AssertionError(f"{exc}; attempts: {self.failures}") from exc

    def new_refresher(self, **options: Any) -> Refresher:
        """A refresher on the run's store: another process, when called again."""
        return Refresher(
            OAuthClient(
                self.proxy.url + "/token",
                self.server.client.client_id,
                self.server.client.client_secret,
            ),
            self.store,
            metadata_url=self.server.url + METADATA_PATH,
            hooks=Hooks(on_rotation=self.rotations.append, on_failure=self.failures.append),
            **options,
        )

    def lost(self) -> list[dict[str, Any]]:
        """The token responses Baton sent that never reached the SDK."""
        return [json.loads(body_of(response)) for response in self.proxy.dropped]

    def generations(self) -> list[int]:
        rows = self.server.sql(
            "SELECT generation FROM refresh_tokens WHERE grant_id = ? ORDER BY id", self.grant_id
        )
        return [row[0] for row in rows]

    def assert_no_reuse_detected(self) -> None:
        grant = self.server.sql(
            "SELECT revoked_at, revoked_reason FROM grants WHERE id = ?", self.grant_id
        )
        assert grant == [(None, None)]
        events = self.server.sql(
            "SELECT count(*) FROM security_events WHERE kind LIKE '%reuse' AND grant_id = ?",
            self.grant_id,
        )
        assert events[0][0] == 0


# Every leeway and timeout of the issue, on real servers. An attempt waits at most a third of
# what is left of the window, so a timeout above that share behaves as the window allows; many
# more combinations run on a fake clock in test_lost_response.py.
@pytest.mark.parametrize("leeway", [3, 5, 10])
@pytest.mark.parametrize("timeout", [2, 10, 30])
def test_a_stalled_answer_is_replayed_inside_a_short_leeway(
    servers: Any, proxies: list[DropProxy], leeway: int, timeout: int
) -> None:
    run = Run(servers("replay", leeway), proxies, stalls=1, timeout=timeout)
    started = time.monotonic()
    pair = run.refresh()
    assert time.monotonic() - started < leeway
    (lost,) = run.lost()
    assert (pair.access_token, pair.refresh_token) == (lost["access_token"], lost["refresh_token"])
    assert [f.will_retry for f in run.failures] == [True]
    assert run.failures[0].detail.startswith("ReadTimeout")
    assert [r.attempts for r in run.rotations] == [2]
    assert run.generations() == [0, 1]  # one child, no sibling
    assert run.server.introspect(pair.access_token)["active"] is True
    run.assert_no_reuse_detected()


@pytest.mark.parametrize("timeout", [2, 10, 30])
def test_stalled_answers_are_replayed_inside_a_long_leeway(
    servers: Any, proxies: list[DropProxy], timeout: int
) -> None:
    run = Run(servers("replay", 600), proxies, stalls=2, compressed=True, timeout=timeout)
    started = time.monotonic()
    pair = run.refresh()
    assert time.monotonic() - started < 2 * timeout / COMPRESSION + 2
    assert len(run.lost()) == 2 and all(
        lost["access_token"] == pair.access_token for lost in run.lost()
    )
    assert [f.will_retry for f in run.failures] == [True, True]
    assert run.generations() == [0, 1]
    run.assert_no_reuse_detected()


def test_stalled_answers_leave_one_sibling_under_fork(
    servers: Any, proxies: list[DropProxy]
) -> None:
    stalls = 2
    run = Run(servers("fork", 5), proxies, stalls=stalls, timeout=30)
    pair = run.refresh()
    lost = run.lost()
    assert len(lost) == stalls
    assert pair.refresh_token not in {body["refresh_token"] for body in lost}  # a sibling
    assert run.generations() == [0] + [1] * (stalls + 1)
    assert run.server.introspect(pair.access_token)["active"] is True
    # The SDK keeps that one sibling and goes on with it.
    following = run.refresher.refresh(pair)
    assert run.server.introspect(following.access_token)["generation"] == 2
    run.assert_no_reuse_detected()


def test_when_no_answer_comes_back_inside_the_leeway_the_token_is_never_presented_again(
    servers: Any, proxies: list[DropProxy]
) -> None:
    # The issue's own set-up with a 3 s leeway and the default timeout (10 s): every answer is
    # lost. Before, one attempt used the whole window, and the next call sent the exchanged
    # token after the leeway: Baton detected reuse and revoked the grant.
    run = Run(servers("replay", 3), proxies, stalls=1000)
    with pytest.raises(ReauthorizationRequired, match="was lost") as caught:
        run.refresher.refresh(run.first)
    assert "reuse" not in caught.value.reason
    attempts = len(run.lost())
    assert attempts >= 3 and [f.will_retry for f in run.failures] == [True] * (attempts - 1) + [
        False
    ]
    for later in (run.refresher, run.new_refresher()):  # this process, and the next one
        with pytest.raises(ReauthorizationRequired, match="was lost"):
            later.refresh()
    assert len(run.lost()) == attempts  # nothing more reached Baton
    run.assert_no_reuse_detected()


def test_strict_is_never_sent_the_token_twice(servers: Any, proxies: list[DropProxy]) -> None:
    # Under `strict` Baton advertises no leeway: a lost answer cannot be recovered from, and a
    # retry would be reuse. The SDK says so without retrying; the grant is not revoked.
    run = Run(servers("strict", 0), proxies, stalls=1, timeout=1)
    with pytest.raises(ReauthorizationRequired, match="without a leeway") as caught:
        run.refresher.refresh(run.first)
    assert caught.value.error is None
    assert len(run.lost()) == 1 and [f.will_retry for f in run.failures] == [False]
    run.assert_no_reuse_detected()

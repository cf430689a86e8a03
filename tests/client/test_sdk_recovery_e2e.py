"""The SDK against real `baton serve` processes: lost responses, kill -9, 401 retries (the chaos
run, which measures a burst of traffic, is test_baton_e2e.py, in make test's serial phase)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests

from baton.client import (
    BearerAuth,
    FailureEvent,
    FileStore,
    Hooks,
    MemoryStore,
    OAuthClient,
    Refresher,
    RequestsAuth,
    RotationEvent,
    TokenPair,
    TokenStore,
    fingerprint,
    store_pair,
)
from baton.client.refresher import METADATA_PATH
from tests.client.conftest import CHILD_PYTHONPATH, ROOT, Api, ApiFactory, api_process
from tests.client.proxy import DropProxy, body_of
from tests.e2e.conftest import (
    Seed,
    Server,
    ServerFactory,
    cli_in_process,
    first_pair,
    start_server,
)

pytestmark = pytest.mark.e2e


def seeded(server: Server, store: TokenStore) -> TokenPair:
    body = first_pair(server)
    pair = TokenPair.from_response(body, time.time())
    store_pair(store, pair)
    return pair


def refresher_for(
    server: Server, store: TokenStore, token_url: str | None = None, **options: Any
) -> tuple[Refresher, list[RotationEvent], list[FailureEvent]]:
    rotations: list[RotationEvent] = []
    failures: list[FailureEvent] = []
    refresher = Refresher(
        OAuthClient(
            token_url or server.token_url, server.client.client_id, server.client.client_secret
        ),
        store,
        metadata_url=server.url + METADATA_PATH,
        hooks=Hooks(on_rotation=rotations.append, on_failure=failures.append),
        **options,
    )
    return refresher, rotations, failures


def grant_status(server: Server, grant_id: str) -> str:
    """What `baton grants list` says of the grant (run in this process: no second of imports)."""
    grants = json.loads(cli_in_process("grants", "list", "--db", str(server.db), "--json"))
    (grant,) = [g for g in grants["grants"] if g["grant_id"] == grant_id]
    status: str = grant["status"]
    return status


def refresh_rows(server: Server, grant_id: str) -> list[tuple[Any, ...]]:
    return server.sql(
        "SELECT id, parent_id, generation FROM refresh_tokens WHERE grant_id = ? ORDER BY id",
        grant_id,
    )


def worker_command(mode: str, store: FileStore, server: Server, *extra: str) -> list[str]:
    """`python -m tests.client.worker MODE` against this server, through this store."""
    return [
        sys.executable,
        "-m",
        "tests.client.worker",
        mode,
        "--store",
        str(store.path),
        "--issuer",
        server.url,
        "--client-id",
        server.client.client_id,
        "--client-secret",
        server.client.client_secret,
        *extra,
    ]


# -- a lost token response ------------------------------------------------------------------------


@pytest.fixture
def proxy_factory() -> Iterator[list[DropProxy]]:
    proxies: list[DropProxy] = []
    yield proxies
    for proxy in proxies:
        proxy.stop()


def port_of(server: Server) -> int:
    return int(server.url.rsplit(":", 1)[1])


@pytest.mark.parametrize("policy", ["replay", "fork"])
def test_lost_token_response_is_recovered_inside_the_leeway(
    baton_server: ServerFactory, proxy_factory: list[DropProxy], policy: str
) -> None:
    # A reset after the server answered (stalled answers and `strict`: test_stalled_answers.py).
    leeway = 5
    server = baton_server(retry_policy=policy, leeway=leeway)
    proxy = DropProxy(port_of(server), "close").start()
    proxy_factory.append(proxy)
    store = MemoryStore()
    first = seeded(server, store)
    grant_id = server.introspect(first.access_token)["grant_id"]
    refresher, rotations, failures = refresher_for(
        server, store, token_url=proxy.url + "/token", timeout=1.0
    )
    assert refresher.retry_window() == leeway

    proxy.armed = 1
    started = time.monotonic()
    pair = refresher.refresh(first)
    elapsed = time.monotonic() - started
    assert elapsed < leeway, elapsed
    assert len(proxy.dropped) == 1, "the proxy must have lost exactly one answered response"
    lost = json.loads(body_of(proxy.dropped[0]))
    assert failures and failures[0].kind == "transport" and failures[0].will_retry
    assert [r.attempts for r in rotations] == [2]
    assert store.load() == pair
    if policy == "replay":
        assert (pair.access_token, pair.refresh_token) == (
            lost["access_token"],
            lost["refresh_token"],
        )
        assert len(refresh_rows(server, grant_id)) == 2  # one child, no sibling
    else:
        assert pair.refresh_token != lost["refresh_token"]  # a sibling pair
        assert server.introspect(lost["access_token"])["active"] is True
        assert len(refresh_rows(server, grant_id)) == 3
    assert server.introspect(pair.access_token)["active"] is True
    assert grant_status(server, grant_id) == "active"
    # The recovered pair rotates normally afterwards.
    following = refresher.refresh(pair)
    assert server.introspect(following.access_token)["generation"] == 2


# -- kill -9 between the response and the store -------------------------------------------------


def test_kill_9_after_the_response_before_the_store_is_recovered_by_the_next_process(
    baton_server: ServerFactory, api: ApiFactory, tmp_path: Path
) -> None:
    server = baton_server(retry_policy="replay", leeway=30)
    resource = api(server)
    store = FileStore(tmp_path / "tokens.json")
    first = seeded(server, store)
    grant_id = server.introspect(first.access_token)["grant_id"]
    note = tmp_path / "received.json"

    crashed = subprocess.run(
        worker_command("crash", store, server, "--note", str(note)),
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": CHILD_PYTHONPATH},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert crashed.returncode == -9, crashed.stderr
    received = json.loads(note.read_text())
    # The server rotated; the store still holds the old pair, marked with the exchange in flight.
    assert len(refresh_rows(server, grant_id)) == 2
    left = store.load()
    assert left is not None and left.exchanging_since is not None
    assert left.refresh_token == first.refresh_token
    assert (store.path.stat().st_mode & 0o777) == 0o600

    refresher, rotations, failures = refresher_for(server, store)
    response = httpx.get(resource.url + "/hello", auth=BearerAuth(refresher))
    assert response.status_code == 200, response.text
    assert [r.recovered for r in rotations] == [True]
    assert failures == []
    recovered = store.load()
    assert recovered is not None and recovered.exchanging_since is None
    # The very pair the dead process received: no sibling, no reauthorization.
    assert recovered.describe()["access_token"] == received["access_token"]
    assert fingerprint(recovered.refresh_token) == received["refresh_token"]
    assert len(refresh_rows(server, grant_id)) == 2
    assert grant_status(server, grant_id) == "active"
    assert response.json()["generation"] == 1


# -- a 401 invalid_token: refresh and retry once ------------------------------------------------


def revoke(server: Server, token: str) -> None:
    response = httpx.post(server.url + "/revoke", data={"token": token}, auth=server.client.basic)
    assert response.status_code == 200


@pytest.fixture(scope="module")
def default_server(
    seed: Seed, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Api]]:
    """One `baton serve` with the default options and the test API in front of it, shared by the
    401 tests below: each works on a grant of its own, and revokes only its own access token."""
    server = start_server(seed, tmp_path_factory.mktemp("default"), {"rate_limit_login": "0"})
    try:
        with api_process(server, tmp_path_factory.mktemp("api")) as resource:
            yield server, resource
    finally:
        server.stop()


def own_grant(server: Server) -> tuple[TokenPair, Refresher, list[RotationEvent]]:
    """A grant of the test's own on the shared server: its first pair, in a memory store, and a
    refresher over that store with the rotations it reports."""
    store = MemoryStore()
    first = seeded(server, store)
    refresher, rotations, _ = refresher_for(server, store)
    return first, refresher, rotations


def test_httpx_auth_refreshes_on_invalid_token_and_retries_once(
    default_server: tuple[Server, Api],
) -> None:
    server, resource = default_server
    first, refresher, rotations = own_grant(server)
    with httpx.Client(auth=BearerAuth(refresher)) as http:
        assert http.get(resource.url + "/hello").status_code == 200
        assert rotations == []  # an hour left: no refresh ahead of time
        revoke(server, first.access_token)  # an access token revokes only itself
        response = http.post(resource.url + "/hello", content=b"body")
        assert response.status_code == 405  # the API has no POST: the point is the body replay
        response = http.get(resource.url + "/hello")
    assert response.status_code == 200
    assert [r.status_code for r in response.history] == [401]
    assert len(rotations) == 1


@pytest.mark.anyio
async def test_async_httpx_auth_refreshes_on_invalid_token(
    default_server: tuple[Server, Api],
) -> None:
    server, resource = default_server
    first, refresher, rotations = own_grant(server)
    revoke(server, first.access_token)
    async with httpx.AsyncClient(auth=BearerAuth(refresher)) as http:
        responses = await asyncio.gather(*(http.get(resource.url + "/hello") for _ in range(10)))
    assert [r.status_code for r in responses] == [200] * 10
    assert len(rotations) == 1  # ten tasks, one exchange


def test_requests_adapter_refreshes_on_invalid_token(
    default_server: tuple[Server, Api],
) -> None:
    server, resource = default_server
    first, refresher, rotations = own_grant(server)
    with requests.Session() as session:
        session.auth = RequestsAuth(refresher)
        assert session.get(resource.url + "/hello").status_code == 200
        revoke(server, first.access_token)
        response = session.get(resource.url + "/hello")
    assert response.status_code == 200
    assert [r.status_code for r in response.history] == [401]
    assert len(rotations) == 1

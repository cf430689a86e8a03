"""Several `baton serve` processes on one database: the rotation stays single-successor across
processes, and a server killed mid-load loses nothing it acknowledged."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from baton.store.engines import normalize_url
from tests.e2e.conftest import Seed, Server, ServerFactory, first_pair, start_server
from tests.proxy import CuttableProxy

pytestmark = pytest.mark.e2e

REFRESHES = 200


def refresh_across(servers: list[Server], refresh_token: str) -> list[httpx.Response]:
    """REFRESHES concurrent refreshes of one token, alternating between the servers."""
    barrier = threading.Barrier(REFRESHES)

    def one(i: int) -> httpx.Response:
        server = servers[i % len(servers)]
        # A client (and connection) per request, so all 200 are in flight at once; one client
        # shared by 200 threads without keep-alive once lost a socket to its own pool (EBADF).
        with httpx.Client(timeout=60) as http:
            barrier.wait(timeout=60)
            return http.post(
                server.token_url,
                data={"grant_type": "refresh_token", "refresh_token": refresh_token},
                auth=server.client.basic,
            )

    with ThreadPoolExecutor(REFRESHES) as pool:
        responses = list(pool.map(one, range(REFRESHES)))
    assert all(r.status_code < 500 for r in responses), [r.text for r in responses]
    return responses


def family_rows(server: Server, grant_id: str) -> tuple[int, int]:
    ((n_refresh,),) = server.sql("SELECT count(*) FROM refresh_tokens WHERE grant_id = ?", grant_id)
    ((n_access,),) = server.sql("SELECT count(*) FROM access_tokens WHERE grant_id = ?", grant_id)
    return n_refresh, n_access


@pytest.mark.parametrize("policy", ["replay", "fork", "strict"])
def test_two_processes_on_one_postgresql(postgres_server: ServerFactory, policy: str) -> None:
    with ThreadPoolExecutor(2) as pool:  # both start at once: a second of imports each
        servers = list(pool.map(lambda _: postgres_server(retry_policy=policy), range(2)))
    first = first_pair(servers[0])
    grant_id = servers[1].introspect(first["access_token"])["grant_id"]
    responses = refresh_across(servers, first["refresh_token"])
    ok = [r.json() for r in responses if r.status_code == 200]
    refused = [r.json() for r in responses if r.status_code != 200]
    returned = {t for body in ok for t in (body["access_token"], body["refresh_token"])}

    if policy == "replay":
        assert len(ok) == REFRESHES
        assert len({(b["access_token"], b["refresh_token"]) for b in ok}) == 1
        assert family_rows(servers[0], grant_id) == (2, 2)
    elif policy == "fork":
        assert len(ok) == REFRESHES
        assert len({b["refresh_token"] for b in ok}) == REFRESHES
        assert family_rows(servers[0], grant_id) == (1 + REFRESHES, 1 + REFRESHES)
    else:
        assert len(ok) == 1
        assert {b["error"] for b in refused} == {"invalid_grant"}
        assert family_rows(servers[0], grant_id) == (2, 2)
        ((reason,),) = servers[0].sql("SELECT revoked_reason FROM grants WHERE id = ?", grant_id)
        assert reason == "reuse"

    # No token is both revoked and reported active, whichever process is asked.
    ((revoked_at,),) = servers[0].sql("SELECT revoked_at FROM grants WHERE id = ?", grant_id)
    with httpx.Client() as http:
        for token in returned:
            for server in servers:
                seen = http.post(
                    server.url + "/introspect",
                    data={"token": token},
                    auth=server.resource_server.basic,
                ).json()
                assert seen["active"] is (revoked_at is None)


@dataclass
class Chain:
    """One client's line of rotations, and everything the server acknowledged to it."""

    refresh_token: str
    received: list[str] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)  # refresh tokens revoked with a 200


def run_chains(server: Server, chains: list[Chain], stop: threading.Event) -> None:
    def drive(index: int, chain: Chain) -> None:
        with httpx.Client(timeout=10) as http:
            step = 0
            while not stop.is_set():
                step += 1
                try:
                    if index % 4 == 0 and step % 5 == 0:
                        response = http.post(
                            server.url + "/revoke",
                            data={"token": chain.refresh_token},
                            auth=server.client.basic,
                        )
                        if response.status_code == 200:
                            chain.revoked.append(chain.refresh_token)
                        return
                    response = http.post(
                        server.token_url,
                        data={"grant_type": "refresh_token", "refresh_token": chain.refresh_token},
                        auth=server.client.basic,
                    )
                except httpx.TransportError:
                    return  # the server died under us: nothing was acknowledged
                assert response.status_code == 200, response.text
                body = response.json()
                chain.received += [body["access_token"], body["refresh_token"]]
                chain.refresh_token = body["refresh_token"]

    with ThreadPoolExecutor(len(chains)) as pool:
        list(pool.map(lambda args: drive(*args), enumerate(chains)))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_kill_9_mid_load_loses_nothing_acknowledged(
    baton_server: ServerFactory,
    postgres_server: ServerFactory,
    backend: str,
    request: pytest.FixtureRequest,
) -> None:
    start = postgres_server if backend == "postgresql" else baton_server
    server = start()
    chains = [Chain(first_pair(server)["refresh_token"]) for _ in range(12)]
    stop = threading.Event()
    load = threading.Thread(target=run_chains, args=(server, chains, stop))
    load.start()
    # Killed mid-load: once the load is well under way (tokens received, every revoking chain
    # has revoked), or after 1.5 s at the latest, the time this once always waited.
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline and not under_way(chains):
        time.sleep(0.01)
    server.process.kill()  # SIGKILL: no shutdown, no flush
    server.process.wait(timeout=10)
    stop.set()
    load.join(timeout=30)

    restarted = start_again(start, server)
    request.addfinalizer(restarted.stop)
    received = [t for chain in chains for t in chain.received]
    assert len(received) > 50, "the load did not get going before the kill"
    # Every token a client received is in the database, under its digest.
    assert restarted.unstored(received) == [], "tokens acknowledged are missing after the restart"
    # The newest pair of every chain that was not revoked still works...
    for chain in chains:
        state = restarted.introspect(chain.refresh_token)
        assert state["active"] is (not chain.revoked)
    # ...and no acknowledged revocation came undone.
    revoked = [t for chain in chains for t in chain.revoked]
    assert revoked, "no revocation happened before the kill"
    for token in revoked:
        assert restarted.introspect(token)["active"] is False


def under_way(chains: list[Chain]) -> bool:
    """Over 200 tokens received, and every chain that revokes (one in four) has revoked: well
    past what test_kill_9_mid_load_loses_nothing_acknowledged asks of the load before the kill,
    while the other chains go on rotating."""
    received = sum(len(chain.received) for chain in chains)
    revoking = chains[::4]
    return received > 200 and all(chain.revoked for chain in revoking)


def start_again(start: ServerFactory, killed: Server) -> Server:
    """A new process on the killed server's database (for SQLite: that very file)."""
    if isinstance(killed.db, str):
        return start()
    seed = Seed(killed.db, killed.client, killed.resource_server)
    return start_server(seed, killed.db.parent, {})


@pytest.mark.parametrize("policy", ["replay", "strict"])
def test_workers_on_one_sqlite_file(baton_server: ServerFactory, policy: str) -> None:
    """`--workers 2` on SQLite: two processes, one file, still exactly one successor."""
    server = baton_server(workers=2, retry_policy=policy)
    first = first_pair(server)
    grant_id = server.introspect(first["access_token"])["grant_id"]
    responses = refresh_across([server], first["refresh_token"])
    ok = [r.json() for r in responses if r.status_code == 200]
    assert family_rows(server, grant_id) == (2, 2)
    if policy == "replay":
        assert len(ok) == REFRESHES
        assert len({(b["access_token"], b["refresh_token"]) for b in ok}) == 1
    else:
        assert len(ok) == 1
        assert {r.json()["error"] for r in responses if r.status_code != 200} == {"invalid_grant"}
    pids = {line["pid"] for line in server.log_lines() if line.get("logger") == "baton.access"}
    assert len(pids) == 2, "both worker processes should have answered requests"


def server_behind_proxy(
    postgres_seed: Seed, tmp_path: Path, request: pytest.FixtureRequest
) -> tuple[Server, CuttableProxy]:
    """A server (pool of 4) whose database connections go through a proxy the test can cut."""
    target = normalize_url(str(postgres_seed.db))
    proxy = CuttableProxy((target.host or "127.0.0.1", target.port or 5432))
    request.addfinalizer(proxy.close)
    via_proxy = target.set(host="127.0.0.1", port=proxy.port).render_as_string(False)
    seed = Seed(via_proxy, postgres_seed.client, postgres_seed.resource_server)
    server = start_server(seed, tmp_path / "server", {"db_pool_size": "4", "rate_limit_login": "0"})
    request.addfinalizer(server.stop)
    return server, proxy


def test_postgresql_away_under_load_gives_503_then_recovers(
    postgres_seed: Seed, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The database connection is cut for two seconds under load: requests meanwhile get 503
    with Retry-After, the server recovers by itself, and every token it answered with is
    stored."""
    server, proxy = server_behind_proxy(postgres_seed, tmp_path, request)
    chains = [Chain(first_pair(server)["refresh_token"]) for _ in range(8)]
    statuses: list[int] = []
    stop = threading.Event()

    def drive(chain: Chain) -> None:
        with httpx.Client(timeout=10) as http:
            while not stop.is_set():
                response = http.post(
                    server.token_url,
                    data={"grant_type": "refresh_token", "refresh_token": chain.refresh_token},
                    auth=server.client.basic,
                )
                statuses.append(response.status_code)
                if response.status_code == 503:
                    assert response.headers["retry-after"] == "2"
                    time.sleep(0.1)
                    continue  # retry the same token: under replay, the same pair if it won
                assert response.status_code == 200, response.text
                body = response.json()
                chain.received += [body["access_token"], body["refresh_token"]]
                chain.refresh_token = body["refresh_token"]

    def wait_for(condition: Callable[[], bool], at_most: float) -> None:
        deadline = time.monotonic() + at_most
        while time.monotonic() < deadline and not condition():
            time.sleep(0.01)

    with ThreadPoolExecutor(len(chains)) as pool:
        futures = [pool.submit(drive, chain) for chain in chains]
        # Load before the cut: every chain has rotated a few times (at most the 1 s this waited).
        wait_for(lambda: all(len(chain.received) >= 6 for chain in chains), at_most=1.0)
        proxy.cut()
        time.sleep(2.0)
        proxy.restore()
        # Recovered: after the restore, a few answers of 200 per chain (a round of answers
        # after the first 200 of each chain, so the last status is a 200 in a steady state).
        restored = len(statuses)
        wait_for(lambda: statuses[restored:].count(200) >= 4 * len(chains), at_most=10.0)
        stop.set()
        for future in futures:
            future.result()

    cut_at = statuses.index(503)
    assert 200 in statuses[:cut_at], "no load before the cut"
    assert statuses[-1] == 200 and statuses.count(503) >= 1
    received = [t for chain in chains for t in chain.received]
    assert server.unstored(received) == [], "the server answered with tokens it had not stored"
    for chain in chains:
        assert server.introspect(chain.refresh_token)["active"] is True


def test_a_postgresql_restart_nobody_noticed_costs_a_write_at_most_one_503(
    postgres_seed: Seed, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Pooled connections are not pinged before use. After the database dropped them all while
    no request was running, a read that meets one runs again on a fresh connection (no 503);
    the first write to meet one gets a 503 with Retry-After (its outcome is unknown); either
    invalidates the pool, and the next requests are answered on fresh connections."""
    server, proxy = server_behind_proxy(postgres_seed, tmp_path, request)
    pair = first_pair(server)
    for _ in range(8):  # several pooled connections in use
        assert server.introspect(pair["access_token"])["active"] is True

    proxy.cut()  # a restart: every connection dropped...
    proxy.restore()  # ...and the database back before anyone asked
    with httpx.Client(timeout=10) as http:
        statuses = [
            http.post(
                server.url + "/introspect",
                data={"token": pair["access_token"]},
                auth=server.resource_server.basic,
            ).status_code
            for _ in range(10)
        ]
    assert statuses == [200] * 10, statuses

    for _ in range(8):
        assert server.introspect(pair["access_token"])["active"] is True
    proxy.cut()
    proxy.restore()
    statuses = []
    token = pair["refresh_token"]
    with httpx.Client(timeout=10) as http:
        for _ in range(10):
            response = http.post(
                server.token_url,
                data={"grant_type": "refresh_token", "refresh_token": token},
                auth=server.client.basic,
            )
            statuses.append(response.status_code)
            if response.status_code == 503:
                assert response.headers["retry-after"] == "2"
                continue  # the same token again: under replay, the same pair if it won
            assert response.status_code == 200, response.text
            token = response.json()["refresh_token"]
    assert statuses.count(503) <= 1 and statuses[-1] == 200, statuses
    assert server.introspect(token)["active"] is True

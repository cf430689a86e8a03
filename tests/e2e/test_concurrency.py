"""Fifty concurrent refreshes of one refresh token at a real server, under each retry policy.

The threads meet at a barrier, each with its own connection, so the requests reach the server
together; afterwards the family is checked in the server's own database and by introspection.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Server, ServerFactory, first_pair

pytestmark = pytest.mark.e2e

CONCURRENCY = 50


def refresh_all_at_once(server: Server, refresh_token: str) -> list[httpx.Response]:
    barrier = threading.Barrier(CONCURRENCY)

    def one(_: int) -> httpx.Response:
        with httpx.Client(timeout=60) as http:
            http.get(server.url + "/.well-known/oauth-authorization-server")  # connect first
            barrier.wait(timeout=30)
            return http.post(
                server.token_url,
                data={"grant_type": "refresh_token", "refresh_token": refresh_token},
                auth=server.client.basic,
            )

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        responses = list(pool.map(one, range(CONCURRENCY)))
    statuses = [r.status_code for r in responses]
    assert all(status < 500 for status in statuses), [r.text for r in responses]
    return responses


def family(server: Server, grant_id: str) -> tuple[list[tuple[Any, ...]], int]:
    """(refresh token rows as (parent_id, generation, exchanged_at IS NOT NULL), access rows)."""
    refresh_rows = server.sql(
        "SELECT parent_id, generation, exchanged_at IS NOT NULL FROM refresh_tokens "
        "WHERE grant_id = ? ORDER BY id",
        grant_id,
    )
    (access_count,) = server.sql("SELECT count(*) FROM access_tokens WHERE grant_id = ?", grant_id)
    return refresh_rows, access_count[0]


def start(baton_server: ServerFactory, policy: str) -> tuple[Server, dict[str, Any], str, int]:
    server = baton_server(retry_policy=policy)
    first = first_pair(server)
    grant_id = server.introspect(first["access_token"])["grant_id"]
    (root_id,) = server.sql(
        "SELECT id FROM refresh_tokens WHERE grant_id = ? AND generation = 0", grant_id
    )
    return server, first, grant_id, root_id[0]


def test_replay_converges_on_one_child(baton_server: ServerFactory) -> None:
    server, first, grant_id, root_id = start(baton_server, "replay")
    responses = refresh_all_at_once(server, first["refresh_token"])

    assert [r.status_code for r in responses] == [200] * CONCURRENCY, [r.text for r in responses]
    pairs = {(r.json()["access_token"], r.json()["refresh_token"]) for r in responses}
    assert len(pairs) == 1  # every caller got the one child pair, byte for byte
    ((access, refresh),) = pairs
    assert {access, refresh}.isdisjoint({first["access_token"], first["refresh_token"]})

    # The parent was exchanged exactly once: one child in the family, nothing more.
    refresh_rows, access_count = family(server, grant_id)
    assert refresh_rows == [(None, 0, 1), (root_id, 1, 0)]
    assert access_count == 2
    assert server.introspect(access)["active"] is True
    assert server.introspect(refresh)["generation"] == 1
    assert server.introspect(first["access_token"])["active"] is True  # in its leeway


def test_fork_gives_every_caller_a_sibling(baton_server: ServerFactory) -> None:
    server, first, grant_id, root_id = start(baton_server, "fork")
    responses = refresh_all_at_once(server, first["refresh_token"])

    assert [r.status_code for r in responses] == [200] * CONCURRENCY, [r.text for r in responses]
    access_tokens = {r.json()["access_token"] for r in responses}
    refresh_tokens = {r.json()["refresh_token"] for r in responses}
    assert len(access_tokens) == len(refresh_tokens) == CONCURRENCY  # distinct pairs

    refresh_rows, access_count = family(server, grant_id)
    assert refresh_rows[0] == (None, 0, 1)
    assert refresh_rows[1:] == [(root_id, 1, 0)] * CONCURRENCY  # one child per success
    assert access_count == 1 + CONCURRENCY
    for token in (*list(access_tokens)[:3], *list(refresh_tokens)[:3]):
        assert server.introspect(token)["active"] is True


def test_strict_lets_one_win_and_revokes_the_grant(baton_server: ServerFactory) -> None:
    server, first, grant_id, root_id = start(baton_server, "strict")
    responses = refresh_all_at_once(server, first["refresh_token"])

    winners = [r for r in responses if r.status_code == 200]
    losers = [r for r in responses if r.status_code != 200]
    assert len(winners) == 1, [r.text for r in responses]
    assert {r.status_code for r in losers} == {400}
    assert {r.json()["error"] for r in losers} == {"invalid_grant"}
    assert all("reuse" in r.json()["error_description"] for r in losers)

    # The second use was reuse: the grant is revoked, every token of the family is dead.
    assert server.sql("SELECT revoked_reason FROM grants WHERE id = ?", grant_id) == [("reuse",)]
    refresh_rows, access_count = family(server, grant_id)
    assert refresh_rows == [(None, 0, 1), (root_id, 1, 0)]
    assert access_count == 2
    won = winners[0].json()
    for token in (first["access_token"], first["refresh_token"]):
        assert server.introspect(token) == {"active": False}
    for token in (won["access_token"], won["refresh_token"]):
        assert server.introspect(token) == {"active": False}

"""A client's policy at the endpoints, as a review of issue 28 found it wanting: a family forked
before a move from `fork` stays one family at /token and /introspect; a cached client is never
trusted to refuse; a refresh token's `exp` is the one its owner's policy gives it; and only a
resource server's introspection is a use of an access token.

Each test runs on SQLite and on PostgreSQL, under a fake clock (the server's defaults: replay,
a 600 s leeway, 1 h access tokens, 90 d idle refresh tokens)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from baton.core.client_policy import ClientPolicy, PolicySettings
from baton.core.policy import RetryPolicy
from baton.core.signals import SignalKind, Source
from baton.server.endpoints import clientauth
from baton.store.base import Client
from tests.server.test_client_policy_enforcement import (
    Server,
    fresh,
    noted,
    schedule,
    server,
    set_policy,
)
from tests.support import (
    first_pair,
    introspect,
    refresh,
    register_client,
    register_user,
    running_app,
)

__all__ = ["server"]  # the fixture, shared with the enforcement tests

DAY = 86_400


def policy_of(server: Server, client_id: str) -> ClientPolicy:
    client = anyio.run(server[1].get_client, client_id)
    assert isinstance(client, Client)
    return client.policy


def change(server: Server, client_id: str, **settings: Any) -> None:
    """A change in force now, over the client's policy and keeping its history (as the admin
    store schedules one)."""
    _, store, clock = server
    now = clock.now()
    policy = policy_of(server, client_id).schedule(PolicySettings(**settings), now, now)
    set_policy(store, client_id, policy)


# -- a forked family after a move from `fork` -----------------------------------------------------


def test_a_sibling_forked_before_a_move_to_replay_is_refused_and_ends_the_grant(
    server: Server,
) -> None:
    http, store, clock = server
    register_user(store)
    client = register_client(store)
    api = register_client(store, resource_server=True, name="api")
    change(server, client.id, retry=RetryPolicy.FORK)
    pair = first_pair(http, client)
    clock.advance(10)
    r1 = refresh(http, client, pair["refresh_token"]).json()
    clock.advance(10)
    sibling = refresh(http, client, pair["refresh_token"]).json()  # a retry: a sibling
    assert sibling["refresh_token"] != r1["refresh_token"]
    clock.advance(10)
    r2 = refresh(http, client, r1["refresh_token"]).json()  # R1's chain continues
    clock.advance(10)
    change(server, client.id, retry=RetryPolicy.REPLAY)
    clock.advance(10)
    # Introspection and the token endpoint agree: the sibling is dead, the retry of the
    # continued parent too, and the continued chain lives.
    assert introspect(http, api, sibling["refresh_token"]) == {"active": False}
    assert introspect(http, client, sibling["refresh_token"]) == {"active": False}
    assert introspect(http, api, pair["refresh_token"]) == {"active": False}
    assert introspect(http, api, r2["refresh_token"])["active"] is True
    refused = refresh(http, client, sibling["refresh_token"])
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    # A reuse: the grant is revoked, the continued chain with it.
    assert introspect(http, api, r2["refresh_token"]) == {"active": False}
    assert refresh(http, client, r2["refresh_token"]).status_code == 400


def test_a_retry_of_a_continued_parent_after_a_move_to_strict_is_refused(server: Server) -> None:
    http, store, clock = server
    register_user(store)
    client = register_client(store)
    change(server, client.id, retry=RetryPolicy.FORK)
    pair = first_pair(http, client)
    clock.advance(10)
    r1 = refresh(http, client, pair["refresh_token"]).json()
    clock.advance(10)
    r2 = refresh(http, client, r1["refresh_token"]).json()
    change(server, client.id, retry=RetryPolicy.STRICT)
    clock.advance(10)
    # Inside the leeway promised at its exchange, but R1's chain continued: no fresh sibling.
    refused = refresh(http, client, pair["refresh_token"])
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    assert refresh(http, client, r2["refresh_token"]).status_code == 400  # the grant ended


# -- a cached client never refuses on its own -----------------------------------------------------


def test_a_lifted_grant_type_restriction_holds_at_once_in_a_process_that_cached_the_client(
    server: Server,
) -> None:
    http, store, clock = server
    register_user(store)
    client = register_client(store)
    a = first_pair(http, client)
    b = first_pair(http, client)
    a2 = refresh(http, client, a["refresh_token"]).json()  # the client is now cached
    schedule(store, clock, client.id, grant_types=("authorization_code",))
    refused = refresh(http, client, a2["refresh_token"])
    assert refused.status_code == 400 and refused.json()["error"] == "unauthorized_client"
    # The operator rolls it back; the next refresh, a second later, is served.
    schedule(store, clock, client.id, grant_types=("authorization_code", "refresh_token"))
    clock.advance(1)
    answer = refresh(http, client, b["refresh_token"])
    assert answer.status_code == 200, answer.json()
    # And the refusal stands while the row says so, cached or not.
    schedule(store, clock, client.id, grant_types=("authorization_code",))
    for _ in range(2):
        refused = refresh(http, client, answer.json()["refresh_token"])
        assert refused.status_code == 400 and refused.json()["error"] == "unauthorized_client"


def test_a_cached_client_refused_for_its_request_is_refused_as_it_was(server: Server) -> None:
    """A refusal the fresh row confirms (a token of another client) is answered as it was,
    once, with nothing done twice."""
    http, store, _ = server
    register_user(store)
    client = register_client(store)
    other = register_client(store)
    mine = first_pair(http, client)
    theirs = first_pair(http, other)
    assert refresh(http, client, mine["refresh_token"]).status_code == 200  # cached
    refused = refresh(http, client, theirs["refresh_token"])
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    assert refresh(http, other, theirs["refresh_token"]).status_code == 200


# -- a refresh token's exp under its owner's policy -----------------------------------------------


def test_a_refresh_tokens_exp_is_capped_by_the_policy_in_force(server: Server) -> None:
    http, store, clock = server
    register_user(store)
    client = register_client(store)
    api = register_client(store, resource_server=True, name="api")
    pair = first_pair(http, client)
    issued_at = clock.now()
    assert introspect(http, api, pair["refresh_token"])["exp"] == issued_at + 90 * DAY
    clock.advance(100)
    changed_at = clock.now()
    change(server, client.id, refresh_idle_ttl=DAY)
    http.app.state.baton.clients.forget(client.id)  # type: ignore[attr-defined]
    # Issued before the change: its idle lifetime is capped by it (`Policy.refresh_deadline`:
    # a day from its issue, not before the change).
    assert changed_at > issued_at
    assert introspect(http, api, pair["refresh_token"])["exp"] == issued_at + DAY
    assert introspect(http, client, pair["refresh_token"])["exp"] == issued_at + DAY
    clock.advance(100)
    change(server, client.id, refresh_idle_ttl=3600)
    http.app.state.baton.clients.forget(client.id)  # type: ignore[attr-defined]
    assert introspect(http, api, pair["refresh_token"])["exp"] == issued_at + 3600
    # An access token's exp is stamped: no policy moves it.
    assert introspect(http, api, pair["access_token"])["exp"] == issued_at + 3600


def test_a_refresh_tokens_exp_is_capped_by_its_grants_absolute_lifetime(server: Server) -> None:
    http, store, clock = server
    register_user(store)
    client = register_client(store)
    api = register_client(store, resource_server=True, name="api")
    pair = first_pair(http, client)
    created_at = clock.now()
    clock.advance(100)
    change(server, client.id, refresh_absolute_ttl=DAY)
    http.app.state.baton.clients.forget(client.id)  # type: ignore[attr-defined]
    # The grant was created before the change: it ends a day after its creation, though its
    # refresh token's own idle expiry is 90 days away.
    assert introspect(http, api, pair["refresh_token"])["exp"] == created_at + DAY


# -- only a resource server's introspection is a use ----------------------------------------------


def test_a_client_checking_its_own_superseded_token_is_no_stale_use(server: Server) -> None:
    http, store, clock = server
    register_user(store)
    client = register_client(store)
    api = register_client(store, resource_server=True, name="api")
    old = first_pair(http, client)
    refresh(http, client, old["refresh_token"])
    fresh(http)
    clock.advance(30)
    assert introspect(http, client, old["access_token"])["active"] is True
    assert noted(http) == []
    # The same check by a resource server is a use at its API.
    assert introspect(http, api, old["access_token"])["active"] is True
    assert noted(http) == [
        (client.id, SignalKind.STALE_ACCESS, None, Source.INTROSPECTION, 1, {30: 1})
    ]


def test_junk_refresh_tokens_cost_no_client_reads(
    database: Path | str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a refusal decided on the cached row (a grant type) is checked on a fresh read: a
    malformed token naming a cached public client is refused without reading its row, and the
    client stays cached (re-review M1)."""
    with running_app(database) as (http, store, _clock):
        register_user(store)
        client = register_client(store, public=True)
        reads: list[str] = []
        real = clientauth.enabled_client

        async def counting(store_: Any, client_id: str) -> Any:
            reads.append(client_id)
            return await real(store_, client_id)

        monkeypatch.setattr(clientauth, "enabled_client", counting)
        for _ in range(5):
            answer = http.post(
                "/token",
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": "junk",
                    "client_id": client.id,
                },
            )
            assert answer.status_code == 400
        assert len(reads) <= 1, reads

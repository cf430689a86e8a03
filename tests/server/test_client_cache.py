"""The machine endpoints authenticate against the clients a process has cached, and still refuse
a client at once when its row changes in any process: the store call that does the work confirms
the row in its own transaction (`baton.store.base.ClientChanged`).

"Elsewhere" below is a write through `AdminStore` on the same database, which the app's cache
never hears of: what another server process, or `baton` on the command line, would do.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from starlette.testclient import TestClient

from baton.core.facts import RefreshFacts
from baton.core.tokens import TokenKind, digest, mint
from baton.store.admin import Actor
from baton.store.base import CLIENT_CHANGED, ClientChanged
from baton.store.sql import SQLStore
from tests.support import (
    RegisteredClient,
    first_pair,
    introspect,
    refresh,
    register_client,
    register_user,
    running_app,
)

ELSEWHERE = Actor("admin", None, 0)


def revoke(http: TestClient, client: RegisteredClient, token: str) -> int:
    return http.post("/revoke", data={"token": token}, auth=client.basic).status_code


def refused_as_invalid_client(status: int, body: dict[str, str]) -> bool:
    return status == 401 and body.get("error") == "invalid_client"


def test_a_clients_row_is_read_once_per_process(
    http: TestClient,
    store: SQLStore,
    client: RegisteredClient,
    resource_server: RegisteredClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pair = first_pair(http, client)
    reads: list[str] = []
    read_client = store.get_client

    async def counted(client_id: str) -> object:
        reads.append(client_id)
        return await read_client(client_id)

    monkeypatch.setattr(store, "get_client", counted)
    token = pair["refresh_token"]
    for _ in range(3):
        answer = refresh(http, client, token)
        assert answer.status_code == 200, answer.text
        token = answer.json()["refresh_token"]
    for _ in range(3):
        assert "active" in introspect(http, resource_server, pair["access_token"])
        assert revoke(http, client, "bat_rt_unknown") == 200
    assert reads == [client.id, resource_server.id]


def test_a_client_disabled_elsewhere_is_refused_at_once(
    http: TestClient, store: SQLStore, client: RegisteredClient, resource_server: RegisteredClient
) -> None:
    pair = first_pair(http, client)
    answer = refresh(http, client, pair["refresh_token"])  # both clients now cached
    assert answer.status_code == 200, answer.text
    live = answer.json()
    assert introspect(http, resource_server, live["access_token"])["active"] is True

    admin = store.admin()
    assert anyio.run(admin.disable_client, client.id, ELSEWHERE)
    assert anyio.run(admin.disable_client, resource_server.id, ELSEWHERE)

    refused = refresh(http, client, live["refresh_token"])
    assert refused_as_invalid_client(refused.status_code, refused.json())
    # Refused before its token was read, a malformed token included: not `invalid_grant`.
    malformed = refresh(http, client, "bat_rt_not-a-token")
    assert refused_as_invalid_client(malformed.status_code, malformed.json())
    assert revoke(http, client, live["refresh_token"]) == 401
    inspected = http.post(
        "/introspect", data={"token": live["access_token"]}, auth=resource_server.basic
    )
    assert refused_as_invalid_client(inspected.status_code, inspected.json())

    # Nothing was done for them: the refresh token was not exchanged; its grant died with the
    # disabling itself (issue 21, M3), not with these requests.
    now = anyio.run(store.get_client, client.id)
    assert now is not None and now.disabled_at is not None
    facts = anyio.run(store.find_token, now, digest(live["refresh_token"]), True, 0)
    assert isinstance(facts, RefreshFacts)
    assert facts.exchanged_at is None and facts.grant.revoked_reason == "client_disabled"


def test_a_secret_rotated_elsewhere_works_at_once_and_the_old_one_fails_at_once(
    http: TestClient, store: SQLStore, client: RegisteredClient
) -> None:
    pair = first_pair(http, client)
    answer = refresh(http, client, pair["refresh_token"])  # the client, cached with its secret
    assert answer.status_code == 200, answer.text
    token = answer.json()["refresh_token"]

    new_secret = mint(TokenKind.CLIENT_SECRET)
    admin = store.admin()
    assert anyio.run(admin.rotate_secret, client.id, new_secret.digest, ELSEWHERE)

    old = refresh(http, client, token)
    assert refused_as_invalid_client(old.status_code, old.json())
    assert revoke(http, client, token) == 401

    rotated = RegisteredClient(client.id, new_secret.plaintext)
    new = refresh(http, rotated, token)  # the refused attempts changed nothing
    assert new.status_code == 200, new.text
    assert revoke(http, rotated, new.json()["refresh_token"]) == 200
    # And the old secret stays refused now that the new row is the cached one.
    again = refresh(http, client, new.json()["refresh_token"])
    assert refused_as_invalid_client(again.status_code, again.json())


def test_a_disabled_client_over_its_rate_limit_gets_invalid_client(tmp_path: Path) -> None:
    """The per-client limit is checked against the cached client; a 429 for a client disabled
    meanwhile would hide that it is refused: it gets `invalid_client`."""
    with running_app(tmp_path, rate_limit_client=1.0) as (http, store, _clock):
        register_user(store)
        client = register_client(store)
        pair = first_pair(http, client)
        assert refresh(http, client, pair["refresh_token"]).status_code == 200  # cached
        statuses = {revoke(http, client, "bat_rt_unknown") for _ in range(4)}
        assert 429 in statuses  # the limit is on
        assert anyio.run(store.admin().disable_client, client.id, ELSEWHERE)
        assert revoke(http, client, "bat_rt_unknown") == 401


def test_a_client_that_keeps_changing_gets_a_503_to_retry(
    http: TestClient,
    store: SQLStore,
    client: RegisteredClient,
    resource_server: RegisteredClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each store call finds the row changed again (an administrator editing the client in a
    loop): after three fresh reads the request gets 503 with Retry-After, nothing done."""
    pair = first_pair(http, client)

    async def always_changed(*_args: object) -> ClientChanged:
        return CLIENT_CHANGED

    monkeypatch.setattr(store, "find_token", always_changed)
    answer = http.post(
        "/introspect", data={"token": pair["access_token"]}, auth=resource_server.basic
    )
    assert answer.status_code == 503
    assert answer.json()["error"] == "temporarily_unavailable"
    assert answer.headers["retry-after"] == "2"
    assert answer.headers["cache-control"] == "no-store"


def test_a_cached_client_is_read_again_after_max_age(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings no store call confirms (an ID token's algorithm, the origins a browser app may
    call from) reach every process: a cached row serves `MAX_AGE` seconds, then is read again."""
    import time

    from baton.server.endpoints import clientauth
    from baton.store.base import Client

    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    cache = clientauth.ClientCache()
    client = Client("c", "C", None, True, False, ("https://app.example/cb",), "openid", 0)
    cache.remember(client)
    now[0] += cache.MAX_AGE
    assert cache.get("c") is client
    now[0] += 0.5
    assert cache.get("c") is None

"""Introspection (RFC 7662): who may look, and what `active` means at the moment of the call."""

from __future__ import annotations

from starlette.testclient import TestClient

from baton.core.clock import FakeClock
from baton.store.sql import SQLStore
from tests.support import ISSUER, RegisteredClient, first_pair, refresh, register_client


def test_an_active_access_token_is_described(
    http: TestClient, client: RegisteredClient, resource_server: RegisteredClient, clock: FakeClock
) -> None:
    pair = first_pair(http, client)
    response = http.post(
        "/introspect", data={"token": pair["access_token"]}, auth=resource_server.basic
    )
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["active"] is True
    assert body["client_id"] == client.id
    assert body["sub"] == body["username"] == "alice"
    assert body["scope"] == "read write"
    assert body["token_type"] == "Bearer"
    assert body["iat"] == clock.now()
    assert body["exp"] == clock.now() + 3600
    assert body["iss"] == ISSUER
    assert body["generation"] == 0
    assert body["grant_id"].startswith("grt_")
    assert "revocation_at" not in body


def test_a_refresh_token_is_described_with_its_own_expiry(
    http: TestClient, client: RegisteredClient, resource_server: RegisteredClient, clock: FakeClock
) -> None:
    pair = first_pair(http, client)
    body = http.post(
        "/introspect", data={"token": pair["refresh_token"]}, auth=resource_server.basic
    ).json()
    assert body["active"] is True
    assert body["token_type"] == "refresh_token"
    assert body["exp"] == clock.now() + 90 * 86400
    refresh(http, client, pair["refresh_token"])
    body = http.post(
        "/introspect", data={"token": pair["refresh_token"]}, auth=resource_server.basic
    ).json()
    assert body["revocation_at"] == clock.now() + 600


def test_a_client_sees_its_own_tokens_only(
    http: TestClient, client: RegisteredClient, store: SQLStore
) -> None:
    pair = first_pair(http, client)
    own = http.post("/introspect", data={"token": pair["access_token"]}, auth=client.basic)
    assert own.json()["active"] is True
    other = register_client(store)
    foreign = http.post("/introspect", data={"token": pair["access_token"]}, auth=other.basic)
    assert foreign.json() == {"active": False}


def test_a_wrong_hint_does_not_hide_the_token(
    http: TestClient, client: RegisteredClient, resource_server: RegisteredClient
) -> None:
    pair = first_pair(http, client)
    for token, hint in (
        (pair["access_token"], "refresh_token"),
        (pair["refresh_token"], "access_token"),
    ):
        body = http.post(
            "/introspect",
            data={"token": token, "token_type_hint": hint},
            auth=resource_server.basic,
        ).json()
        assert body["active"] is True


def test_introspection_needs_a_confidential_client(
    http: TestClient, client: RegisteredClient, store: SQLStore
) -> None:
    public = register_client(store, public=True)
    pair = first_pair(http, client)
    response = http.post(
        "/introspect", data={"token": pair["access_token"], "client_id": public.id}
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    response = http.post("/introspect", data={"token": pair["access_token"]})
    assert response.status_code == 401


def test_unknown_and_malformed_tokens_are_inactive(
    http: TestClient, resource_server: RegisteredClient
) -> None:
    for token in ("bat_at_" + "x" * 49, "nonsense", "bat_ac_" + "A" * 49):
        body = http.post("/introspect", data={"token": token}, auth=resource_server.basic).json()
        assert body == {"active": False}

"""Audience restriction at the token endpoint (RFC 8707 §2, RFC 9068 §3, RFC 9700 §2.3): a client
gets tokens only for the resources it is allowed and the user consented to; a token request or a
refresh may narrow the grant's resources, never widen them; introspection says `aud`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2
from starlette.testclient import TestClient

from baton.store.sql import SQLStore
from tests.audience import (
    API_A,
    API_B,
    API_C,
    client_credentials,
    consent_to_every_allowed_resource,
    register,
)
from tests.support import (
    ISSUER,
    REDIRECT_URI,
    RegisteredClient,
    authorize,
    introspect,
    refresh,
    register_user,
    running_app,
)


def redeem(
    http: TestClient,
    client: RegisteredClient,
    query: dict[str, list[str]],
    verifier: str | None,
    *resources: str,
) -> httpx2.Response:
    assert verifier is not None
    data = {
        "grant_type": "authorization_code",
        "code": query["code"][0],
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier,
        "resource": list(resources),
    }
    return http.post("/token", data=data, auth=client.basic)


def invalid_target(response: httpx2.Response) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_target"


def aud_of(http: TestClient, resource_server: RegisteredClient, response: httpx2.Response) -> Any:
    assert response.status_code == 200, response.text
    seen = introspect(http, resource_server, response.json()["access_token"])
    assert seen["active"] is True
    return seen.get("aud")


def test_client_credentials_only_for_the_resources_the_client_is_allowed(
    http: TestClient, store: SQLStore
) -> None:
    rs_a = register(store, resource_uri=API_A, name="api a")
    register(store, resource_uri=API_B, name="api b")
    client = register(store, allowed=[API_A])
    invalid_target(client_credentials(http, client, API_B))  # registered, not allowed
    invalid_target(client_credentials(http, client, API_A, API_B))
    invalid_target(client_credentials(http, register(store), API_A))  # allowed nothing
    assert aud_of(http, rs_a, client_credentials(http, client, API_A)) == API_A
    assert aud_of(http, rs_a, client_credentials(http, client)) == API_A  # none named: all
    both = register(store, allowed=[API_A, API_B])
    assert aud_of(http, rs_a, client_credentials(http, both)) == [API_A, API_B]
    assert aud_of(http, rs_a, client_credentials(http, both, API_B)) == API_B


def test_a_token_for_no_resource_has_the_default_audience(
    http: TestClient, store: SQLStore, database: Path | str
) -> None:
    rs = register(store, resource_uri=API_A)
    assert aud_of(http, rs, client_credentials(http, register(store))) == ISSUER
    with running_app(database, access_token_audience="https://everything.test") as (app, *_):
        assert aud_of(app, rs, client_credentials(app, register(store))) == (
            "https://everything.test"
        )


def test_code_redemption_narrows_the_consented_resources_never_more(
    http: TestClient, store: SQLStore
) -> None:
    register_user(store)
    rs = register(store, resource_uri=API_A, name="api a")
    register(store, resource_uri=API_B, name="api b")
    register(store, resource_uri=API_C, name="api c")
    client = register(store, allowed=[API_A, API_B])
    consent_to_every_allowed_resource(store, [API_A, API_B])
    query, verifier = authorize(http, client)
    invalid_target(redeem(http, client, query, verifier, API_C))
    # The refused request left the code unused: redeemed now, for fewer resources than granted.
    first = redeem(http, client, query, verifier, API_A)
    assert aud_of(http, rs, first) == API_A
    # A refresh narrows against the grant, not against the last token: API_B is the grant's.
    second = refresh(http, client, first.json()["refresh_token"], resource=API_B)
    assert aud_of(http, rs, second) == API_B
    third = refresh(http, client, second.json()["refresh_token"])
    assert aud_of(http, rs, third) == [API_A, API_B]  # none named: every resource of the grant
    invalid_target(refresh(http, client, third.json()["refresh_token"], resource=API_C))


def test_refresh_cannot_widen_the_grant(http: TestClient, store: SQLStore) -> None:
    register_user(store)
    rs = register(store, resource_uri=API_A, name="api a")
    register(store, resource_uri=API_B, name="api b")
    client = register(store, allowed=[API_A])
    consent_to_every_allowed_resource(store, [API_A])
    query, verifier = authorize(http, client)
    pair = redeem(http, client, query, verifier)
    token = pair.json()["refresh_token"]
    invalid_target(refresh(http, client, token, resource=API_B))
    invalid_target(refresh(http, client, token, resource="https://anything.test/"))
    assert aud_of(http, rs, pair) == API_A
    # Refused before anything changed: the refresh token still rotates.
    assert aud_of(http, rs, refresh(http, client, token, resource=API_A)) == API_A


def test_a_retry_in_the_leeway_replays_the_pair_as_it_was(
    http: TestClient, store: SQLStore
) -> None:
    register_user(store)
    rs = register(store, resource_uri=API_A, name="api a")
    register(store, resource_uri=API_B, name="api b")
    client = register(store, allowed=[API_A, API_B])
    consent_to_every_allowed_resource(store, [API_A, API_B])
    query, verifier = authorize(http, client)
    token = redeem(http, client, query, verifier).json()["refresh_token"]
    child = refresh(http, client, token, resource=API_A)
    again = refresh(http, client, token, resource=API_B)  # the response was lost: a retry
    assert again.json()["access_token"] == child.json()["access_token"]
    assert aud_of(http, rs, again) == API_A


def test_a_malformed_resource_is_invalid_target(http: TestClient, store: SQLStore) -> None:
    client = register(store, allowed=[])
    for bad in ("api#x", "/relative", "https://a.api.test/#frag"):
        invalid_target(client_credentials(http, client, bad))

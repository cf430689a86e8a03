"""Review #7: an RFC 7592 update holds in every server process from its commit: the store's
confirmation of the client (same row as the token's) compares what the update may change."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import anyio

from baton.server.app import create_app
from baton.store.admin import Actor
from tests.one_hop import OneHopTestClient
from tests.support import (
    ISSUER,
    RegisteredClient,
    first_pair,
    refresh,
    register_client,
    register_user,
    running_app,
)

NATIVE = {
    "redirect_uris": ["http://127.0.0.1/callback"],
    "token_endpoint_auth_method": "none",
    "grant_types": ["authorization_code", "refresh_token"],
}


def test_an_rfc7592_update_holds_at_once_in_another_process(tmp_path: Path) -> None:
    """Another server process on the database, its client cached, refuses the refresh_token
    grant from the commit of the PUT that dropped it (not after its cache's 30 s)."""
    with running_app(tmp_path, registration="open", dynamic_client_scopes=("read",)) as (
        http,
        store,
        clock,
    ):
        register_user(store)
        settings = http.app.state.baton.settings  # type: ignore[attr-defined]
        with OneHopTestClient(
            create_app(settings, store, clock), base_url=ISSUER, follow_redirects=False
        ) as second:
            body = http.post("/register", json=NATIVE).json()
            client = RegisteredClient(body["client_id"], None)
            pair = first_pair(http, client, scope="read")
            cached = refresh(second, client, pair["refresh_token"])  # it caches the client
            assert cached.status_code == 200
            path = body["registration_client_uri"].removeprefix(ISSUER)
            auth = {"Authorization": "Bearer " + body["registration_access_token"]}
            current = http.get(path, headers=auth).json()
            dropped = {**current, "grant_types": ["authorization_code"]}
            assert http.put(path, json=dropped, headers=auth).status_code == 200
            refused = refresh(second, client, cached.json()["refresh_token"])
            assert refused.status_code == 400, refused.text
            assert refused.json()["error"] == "unauthorized_client"


def test_a_narrowed_scope_holds_at_once_in_another_process(tmp_path: Path) -> None:
    """An operator narrowing a client's scope: another process that served the client before
    issues no token with the old scope from the commit on (the client_credentials grant reads
    the client afresh; a re-review suspected the client cache's 30 s)."""
    with running_app(tmp_path) as (http, store, clock):
        settings = http.app.state.baton.settings  # type: ignore[attr-defined]
        client = register_client(store, scope="read write")
        with OneHopTestClient(
            create_app(settings, store, clock), base_url=ISSUER, follow_redirects=False
        ) as second:
            data = {"grant_type": "client_credentials"}
            assert second.post("/token", data=data, auth=client.basic).status_code == 200
            stored = anyio.run(store.get_client, client.id)
            assert stored is not None
            narrowed = replace(stored, scope="read")
            changed = anyio.run(
                store.admin().update_registration, stored, narrowed, Actor("root", None, 1)
            )
            assert changed == {"scope": "read"}
            answer = second.post("/token", data=data, auth=client.basic)
            assert answer.status_code == 200, answer.text
            assert answer.json()["scope"] == "read"

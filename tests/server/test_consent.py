"""Consent that means something: a recorded decision of this user for this client, covering the
request's scope and resources, asked again of public clients, forgotten with a revoked grant."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import anyio
import pytest
from sqlalchemy import Connection, select
from starlette.testclient import TestClient

from baton.core.clock import FakeClock
from baton.core.vocabulary import RevocationCause
from baton.store.schema import authorization_codes
from baton.store.sql import SQLStore
from tests.support import (
    REDIRECT_URI,
    RegisteredClient,
    authorize,
    first_pair,
    hidden_fields,
    pkce_pair,
    refresh,
    register_client,
    register_user,
)

API = "https://api.example/"
BILLING = "https://billing.example/v1"
CLAIMED = "https://app.example/oauth2/callback"


def ask(
    client: RegisteredClient,
    *,
    redirect_uri: str = REDIRECT_URI,
    scope: str | None = None,
    resources: tuple[str, ...] = (),
) -> dict[str, str | list[str]]:
    """An authorization request as a second program holding only the client id would send it:
    its own PKCE pair, nothing else."""
    _, challenge = pkce_pair()
    params: dict[str, str | list[str]] = {
        "response_type": "code",
        "client_id": client.id,
        "redirect_uri": redirect_uri,
        "state": "s",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    if scope is not None:
        params["scope"] = scope
    if resources:
        params["resource"] = list(resources)
    return params


def is_consent_page(response: object) -> bool:
    status = getattr(response, "status_code", None)
    text = getattr(response, "text", "")
    return status == 200 and "Allow" in text and "Deny" in text


def code_in(response: object) -> str | None:
    headers = getattr(response, "headers", {})
    location = headers.get("location", "")
    found = parse_qs(urlsplit(location).query).get("code")
    return found[0] if found else None


# -- H1: a scope-less client ----------------------------------------------------------------------


def test_a_scopeless_client_gets_the_consent_page_not_a_code(
    http: TestClient, store: SQLStore
) -> None:
    """Issue 21 H1: a client registered with no scope got a code on the first visit of a user
    who never saw it (the empty scope is a subset of any consent, even none)."""
    register_user(store)
    scopeless = register_client(store, scope="")
    authorize(http, register_client(store), scope="read")  # signs alice in, for another client
    for scope in (None, ""):  # omitted, or sent empty (RFC 6749 §3.1: the same thing)
        response = http.get("/authorize", params=ask(scopeless, scope=scope))
        assert is_consent_page(response), response.headers.get("location")
        assert code_in(response) is None
        assert "no particular scope" in response.text
        assert "keep access while you are away" in response.text
        assert "up to 90 days unused, and up to 365 days in all" in response.text


def test_after_allowing_a_scopeless_client_the_decision_is_remembered(
    http: TestClient, store: SQLStore
) -> None:
    register_user(store)
    scopeless = register_client(store, scope="")
    query, _ = authorize(http, scopeless, scope=None)
    assert query["code"]
    again = http.get("/authorize", params=ask(scopeless))
    assert again.status_code == 302 and code_in(again)


def test_an_omitted_scope_is_the_clients_registered_scope(
    http: TestClient, client: RegisteredClient
) -> None:
    """RFC 6749 §3.3: the default scope is all the client registered, shown on the page."""
    authorize(http, client, scope="read")
    page = http.get("/authorize", params=ask(client))
    assert is_consent_page(page)
    assert "<code>read</code>" in page.text and "<code>write</code>" in page.text


# -- M5: public clients ---------------------------------------------------------------------------


def test_a_public_clients_remembered_consent_is_not_honoured(
    http: TestClient, store: SQLStore
) -> None:
    """Issue 21 M5: any program can send a public client's id with its own PKCE pair; the user
    is asked every time, not handed a code silently."""
    register_user(store)
    public = register_client(store, public=True)
    query, _ = authorize(http, public, scope="read")  # alice allowed it once
    assert query["code"]
    response = http.get("/authorize", params=ask(public, scope="read"))
    assert is_consent_page(response)
    assert code_in(response) is None


def test_an_opted_in_public_client_on_a_claimed_https_uri_is_remembered(
    http: TestClient, store: SQLStore
) -> None:
    register_user(store)
    public = register_client(
        store, public=True, remember_consent=True, redirect_uris=(REDIRECT_URI, CLAIMED)
    )
    authorize(http, public, scope="read")
    # The claimed https URI: only the app that claimed it receives the code.
    response = http.get("/authorize", params=ask(public, scope="read", redirect_uri=CLAIMED))
    assert response.status_code == 302 and code_in(response)
    assert response.headers["location"].startswith(CLAIMED + "?")
    # The loopback one (any local program can listen there): asked again, opted in or not.
    response = http.get("/authorize", params=ask(public, scope="read"))
    assert is_consent_page(response)


def test_a_confidential_clients_remembered_consent_is_honoured(
    http: TestClient, client: RegisteredClient
) -> None:
    authorize(http, client, scope="read")
    response = http.get("/authorize", params=ask(client, scope="read"))
    assert response.status_code == 302 and code_in(response)


# -- forgetting consent with a revoked grant --------------------------------------------------


def asks_again(http: TestClient, client: RegisteredClient) -> bool:
    return is_consent_page(http.get("/authorize", params=ask(client, scope="read write")))


def test_refresh_token_reuse_forgets_the_consent(
    http: TestClient, client: RegisteredClient, clock: FakeClock
) -> None:
    pair = first_pair(http, client)
    assert not asks_again(http, client)
    assert refresh(http, client, pair["refresh_token"]).status_code == 200
    clock.advance(3600)  # past the leeway: presenting the old token again is a reuse
    reused = refresh(http, client, pair["refresh_token"])
    assert reused.status_code == 400
    assert asks_again(http, client)


def test_a_replayed_code_forgets_the_consent(http: TestClient, client: RegisteredClient) -> None:
    query, verifier = authorize(http, client)
    data = {
        "grant_type": "authorization_code",
        "code": query["code"][0],
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier,
        **client.auth_params(),
    }
    assert http.post("/token", data=data).status_code == 200
    assert not asks_again(http, client)
    assert http.post("/token", data=data).status_code == 400  # replayed: the grant dies
    assert asks_again(http, client)


def test_an_operators_revocation_forgets_the_consent(
    http: TestClient, client: RegisteredClient, store: SQLStore, clock: FakeClock
) -> None:
    first_pair(http, client)
    assert not asks_again(http, client)
    (summary,) = anyio.run(store.list_grants)
    assert anyio.run(store.revoke_grant, summary.grant.id, clock.now(), RevocationCause.ADMIN)
    assert asks_again(http, client)


def test_the_clients_own_rfc7009_revocation_keeps_the_consent(
    http: TestClient, client: RegisteredClient
) -> None:
    """The client signing out is neither a sign of theft nor the user withdrawing consent."""
    pair = first_pair(http, client)
    revoked = http.post("/revoke", data={"token": pair["refresh_token"]}, auth=client.basic)
    assert revoked.status_code == 200
    assert not asks_again(http, client)


def test_revoking_one_users_grant_keeps_another_users_consent(
    http: TestClient, client: RegisteredClient, store: SQLStore, clock: FakeClock
) -> None:
    register_user(store, "bob")
    first_pair(http, client)  # alice
    (alices,) = anyio.run(store.list_grants)
    anyio.run(store.remember_consent, 2, client.id, frozenset({"read"}), (), clock.now())
    anyio.run(store.revoke_grant, alices.grant.id, clock.now(), RevocationCause.ADMIN)
    assert anyio.run(store.consent, 1, client.id) is None
    assert anyio.run(store.consent, 2, client.id) is not None


# -- M2: resources (RFC 8707) at /authorize -----------------------------------------------------


@pytest.fixture
def with_resources(store: SQLStore) -> RegisteredClient:
    register_user(store)
    register_client(store, resource_server=True, name="Orders API", resource_uri=API)
    return register_client(store, allowed_resources=(API, BILLING))


def stored_code_resources(store: SQLStore) -> list[list[str] | None]:
    """The resources saved with each authorization code, oldest first."""

    def work(conn: Connection) -> list[list[str] | None]:
        query = select(authorization_codes.c.resources).order_by(authorization_codes.c.created_at)
        return [None if r is None else json.loads(r) for (r,) in conn.execute(query)]

    return anyio.run(store.inspect, work)


@pytest.mark.parametrize(
    "resource",
    [
        "https://elsewhere.example/",  # not allowed for this client
        "https://api.example/#frag",  # a fragment (RFC 8707 §2)
        "/relative",  # not absolute
        API.rstrip("/"),  # exact match only
    ],
)
def test_a_resource_the_client_may_not_have_is_invalid_target(
    http: TestClient, with_resources: RegisteredClient, resource: str
) -> None:
    response = http.get("/authorize", params=ask(with_resources, resources=(API, resource)))
    assert response.status_code == 302
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI + "?")
    query = parse_qs(urlsplit(location).query)
    assert query["error"] == ["invalid_target"]
    assert query["state"] == ["s"]


def test_the_consent_page_names_the_resources_and_the_code_keeps_them(
    http: TestClient, with_resources: RegisteredClient, store: SQLStore
) -> None:
    authorize(http, register_client(store), scope="read")  # signs in
    page = http.get("/authorize", params=ask(with_resources, resources=(API,)))
    assert is_consent_page(page)
    assert "Orders API" in page.text and API in page.text
    assert BILLING not in page.text
    fields = hidden_fields(page.text)
    assert fields["resource"] == [API]
    allowed = http.post("/authorize", data={**fields, "decision": "allow"})
    assert allowed.status_code == 303 and code_in(allowed)
    assert stored_code_resources(store)[-1] == [API]


def test_no_resource_named_means_every_allowed_one(
    http: TestClient, with_resources: RegisteredClient, store: SQLStore
) -> None:
    query, _ = authorize(http, with_resources)
    assert query["code"]
    assert stored_code_resources(store)[-1] == sorted([API, BILLING])


def test_remembered_consent_must_cover_the_resources_too(
    http: TestClient, with_resources: RegisteredClient, store: SQLStore
) -> None:
    authorize(http, with_resources, scope="read", resources=(API,))
    same = http.get("/authorize", params=ask(with_resources, scope="read", resources=(API,)))
    assert same.status_code == 302 and code_in(same)
    other = http.get("/authorize", params=ask(with_resources, scope="read", resources=(BILLING,)))
    assert is_consent_page(other)  # same scope, a resource the user never allowed
    both = http.get("/authorize", params=ask(with_resources, scope="read"))  # every resource
    assert is_consent_page(both)
    assert BILLING in both.text and "Orders API" in both.text


def test_remembered_consent_is_the_last_decision_never_a_combination(
    http: TestClient, with_resources: RegisteredClient
) -> None:
    """The user allowed read at one API and write at another, on two pages: write at the first
    API is a combination they never saw, and they are asked."""
    authorize(http, with_resources, scope="read", resources=(API,))
    authorize(http, with_resources, scope="write", resources=(BILLING,))
    mixed = http.get("/authorize", params=ask(with_resources, scope="write", resources=(API,)))
    assert is_consent_page(mixed)
    last = http.get("/authorize", params=ask(with_resources, scope="write", resources=(BILLING,)))
    assert last.status_code == 302 and code_in(last)

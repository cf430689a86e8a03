"""Dynamic client registration (RFC 7591) and its management (RFC 7592) over HTTP: each policy
(off, open, initial access token), the registration access token, the metadata rules as a
client meets them, the grant types held at /token, the expiry of unused registrations, the rate
limit, the MCP SDK's own registration code, and a whole authorization with a registered public
client."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx2
import pytest
from mcp.client.auth.oauth2 import check_registration_usable
from mcp.client.auth.utils import create_client_registration_request, handle_registration_response
from mcp.shared.auth import OAuthClientMetadata, OAuthMetadata
from sqlalchemy import Connection, select, update
from starlette.testclient import TestClient

from baton.core.clock import FakeClock
from baton.server.endpoints.registration import EXPIRY_ACTOR, expire_unused
from baton.server.runtime.limits import Rate
from baton.store.admin import Actor
from baton.store.schema import audit_log, clients
from baton.store.sql import SQLStore
from tests.support import (
    REDIRECT_URI,
    RegisteredClient,
    authorization_request,
    authorize,
    hidden_fields,
    redeem,
    refresh,
    register_client,
    register_user,
    running_app,
    sign_in,
)

Running = tuple[TestClient, SQLStore, FakeClock]
INITIAL = "initial access token of at least 32 characters"
EXPIRY = 3 * 86_400
NATIVE: dict[str, Any] = {
    "redirect_uris": ["http://127.0.0.1/callback"],  # any port at /authorize (RFC 8252 §7.3)
    "application_type": "native",
    "token_endpoint_auth_method": "none",
    "grant_types": ["authorization_code", "refresh_token"],
    "client_name": "An MCP client",
    "scope": "read write admin",
}


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    folder = tmp_path_factory.mktemp("registration-open")
    with (
        running_app(
            folder,
            registration="open",
            dynamic_client_scopes=("read", "write"),
            registration_expiry=EXPIRY,
            rate_limit_address=0,
        ) as (http, store, clock),
        pytest.MonkeyPatch.context() as patch,
    ):
        # The registration limit (on whatever --rate-limit-address says) is the token app's
        # test: this app registers far more than its burst from the one test client (the IPv6
        # test's addresses keep the limit).
        buckets = http.app.state.baton.limits.buckets  # type: ignore[attr-defined]
        take = buckets.take

        async def unlimited(key: str, rate: Rate) -> float:
            return 0.0 if key == "register:testclient" else await take(key, rate)

        patch.setattr(buckets, "take", unlimited)
        register_user(store)
        register_client(store, resource_server=True, resource_uri="https://api.example/mcp")
        yield http, store, clock


@pytest.fixture
def http(running: Running) -> TestClient:
    running[0].cookies.clear()
    return running[0]


@pytest.fixture(scope="module")
def with_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    folder = tmp_path_factory.mktemp("registration-token")
    with running_app(
        folder,
        registration="token",
        registration_token=INITIAL,
        dynamic_client_scopes=("read", "write"),
    ) as (http, *_):
        yield http


def registered(http: TestClient, **headers: str) -> dict[str, Any]:
    answer = http.post("/register", json=NATIVE, headers=headers)
    assert answer.status_code == 201, answer.text
    assert answer.headers["cache-control"] == "no-store"
    body: dict[str, Any] = answer.json()
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def managed(body: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """The registration's RFC 7592 path and its bearer header."""
    uri = body["registration_client_uri"]
    assert uri.startswith("http://baton.test/register/")
    return uri.removeprefix("http://baton.test"), bearer(body["registration_access_token"])


def audit(store: SQLStore) -> list[dict[str, Any]]:
    def work(conn: Connection) -> list[dict[str, Any]]:
        return [dict(r) for r in conn.execute(select(audit_log)).mappings()]

    return anyio.run(store.inspect, work)


# -- the policies --------------------------------------------------------------------------------


def test_registration_off_is_a_route_that_is_not_there(tmp_path: Path) -> None:
    with running_app(tmp_path) as (http, _store, _clock):
        assert http.post("/register", json=NATIVE).status_code == 404
        assert http.get("/register/cl_x", headers=bearer("x")).status_code == 404
        assert http.put("/register/cl_x", json={}).status_code == 404
        assert http.delete("/register/cl_x").status_code == 404
        metadata = http.get("/.well-known/oauth-authorization-server").json()
        assert "registration_endpoint" not in metadata


def test_open_registration_answers_the_client_information(running: Running) -> None:
    http, store, _clock = running
    metadata = http.get("/.well-known/oauth-authorization-server").json()
    assert metadata["registration_endpoint"] == "http://baton.test/register"
    body = registered(http)
    assert body["client_id"].startswith("cl_")
    assert "client_secret" not in body and "client_secret_expires_at" not in body
    assert body["token_endpoint_auth_method"] == "none"
    assert body["grant_types"] == ["authorization_code", "refresh_token"]
    assert body["scope"] == "read write"  # narrowed: `admin` is not for such clients
    assert body["client_name"] == "An MCP client"
    assert body["client_id_issued_at"] == running[2].now()
    stored = anyio.run(store.get_client, body["client_id"])
    assert stored is not None
    assert stored.is_public and stored.require_pkce and stored.registered_via == "dynamic"
    assert stored.allowed_resources == ("https://api.example/mcp",)  # every resource server
    assert stored.grant_types == ("authorization_code", "refresh_token")


def test_a_confidential_client_gets_its_secret_once_and_uses_it(
    http: TestClient, with_token: TestClient
) -> None:
    machine = {
        "grant_types": ["client_credentials"],
        "token_endpoint_auth_method": "client_secret_post",
        "scope": "read",
    }
    # Open registration is anyone's: no tokens without a person's consent (review H1).
    refused = http.post("/register", json=machine)
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_client_metadata"
    # With the initial access token, the operator vouched for the client.
    http = with_token
    answer = http.post("/register", json=machine, headers=bearer(INITIAL))
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["client_secret"].startswith("bat_cs_") and body["client_secret_expires_at"] == 0
    assert body["response_types"] == [] and body["redirect_uris"] == []
    creds = {"client_id": body["client_id"], "client_secret": body["client_secret"]}
    token = http.post("/token", data={"grant_type": "client_credentials", **creds})
    assert token.status_code == 200, token.text
    assert token.json()["scope"] == "read" and "refresh_token" not in token.json()
    # Its registered grant types hold at /token (RFC 6749 §5.2 unauthorized_client).
    code = http.post(
        "/token", data={"grant_type": "authorization_code", "code": "x", **creds}
    ).json()
    assert code["error"] == "unauthorized_client"
    # RFC 7592 reads never show the secret again.
    path, auth = managed(body)
    assert "client_secret" not in http.get(path, headers=auth).json()


def test_the_initial_access_token_is_required_in_token_mode(with_token: TestClient) -> None:
    for headers in ({}, bearer("wrong"), bearer(INITIAL + "x"), {"Authorization": INITIAL}):
        answer = with_token.post("/register", json=NATIVE, headers=headers)
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"] == "invalid_token"
        assert answer.headers["www-authenticate"].startswith('Bearer realm="baton"')
    body = registered(with_token, **bearer(INITIAL))
    # The initial access token is not a registration access token.
    assert with_token.get(managed(body)[0], headers=bearer(INITIAL)).status_code == 401


def test_registrations_are_rate_limited_per_address(with_token: TestClient) -> None:
    answers = [
        with_token.post("/register", json=NATIVE, headers=bearer(INITIAL)).status_code
        for _ in range(21)
    ]
    assert 429 in answers and set(answers) == {201, 429}
    limited = with_token.post("/register", json=NATIVE, headers=bearer(INITIAL))
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0
    assert limited.json()["error"] == "too_many_requests"


# -- RFC 7592 ------------------------------------------------------------------------------------


def test_read_update_and_delete_with_the_registration_access_token(running: Running) -> None:
    http, store, _clock = running
    body = registered(http)
    path, auth = managed(body)
    read = http.get(path, headers=auth)
    assert read.status_code == 200 and read.json() == body
    # PUT replaces: what is left out takes its default (RFC 7592 §2.2).
    changed = {**read.json(), "client_name": "Renamed", "scope": "read"}
    del changed["grant_types"]
    updated = http.put(path, json=changed, headers=auth)
    assert updated.status_code == 200, updated.text
    assert updated.json()["client_name"] == "Renamed"
    assert updated.json()["grant_types"] == ["authorization_code"]
    assert http.get(path, headers=auth).json() == updated.json()
    client = anyio.run(store.get_client, body["client_id"])
    assert client is not None and client.name == "Renamed" and client.scope == "read"
    # client_id must be there and be this client's; a secret must be its own; the kind of
    # credential cannot change.
    for refused in (
        {k: v for k, v in changed.items() if k != "client_id"},
        {**changed, "client_id": "cl_other"},
        {**changed, "client_secret": "guess"},
        {**changed, "token_endpoint_auth_method": "client_secret_basic"},
    ):
        answer = http.put(path, json=refused, headers=auth)
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"] == "invalid_client_metadata"
    assert http.delete(path, headers=auth).status_code == 204
    assert http.get(path, headers=auth).status_code == 401
    assert http.delete(path, headers=auth).status_code == 401
    gone = anyio.run(store.get_client, body["client_id"])
    assert gone is not None and gone.deleted_at is not None  # a tombstone, as client delete
    # Audited, by the endpoint, never with the secret or the token.
    rows = [r for r in audit(store) if r["target_id"] == body["client_id"]]
    assert [r["action"] for r in rows] == [
        "client.register",
        "client.update",
        "client.disable",
        "client.delete",
    ]
    assert {r["actor"] for r in rows} == {"dynamic-registration"}
    assert not any(body["registration_access_token"] in (r["detail"] or "") for r in rows)


def test_a_wrong_token_and_an_unknown_client_get_the_same_answer(http: TestClient) -> None:
    body = registered(http)
    path, auth = managed(body)
    other = registered(http)
    answers = [
        http.get(path, headers=bearer(other["registration_access_token"])),
        http.get(path),
        http.get(path, headers={"Authorization": "Basic eDp5"}),
        http.get("/register/cl_unknown", headers=auth),
        http.put(path, json={**body, "client_name": "x"}, headers=bearer("bat_rg_guess")),
        http.delete(path, headers=bearer(body["registration_access_token"] + "x")),
    ]
    for answer in answers:
        assert answer.status_code == 401
        assert answer.json() == answers[0].json()
        assert answer.json()["error"] == "invalid_token"
    # An operator's client is not managed here, whatever token is presented.
    operators = register_client(anyio_store(http))
    assert http.get(f"/register/{operators.id}", headers=auth).json() == answers[0].json()
    assert http.get(path, headers=auth).status_code == 200  # still there


def anyio_store(http: TestClient) -> SQLStore:
    store: SQLStore = http.app.state.baton.store  # type: ignore[attr-defined]
    return store


# -- what a registration may hold ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "code"),
    [
        ({**NATIVE, "redirect_uris": ["javascript:alert(1)"]}, "invalid_redirect_uri"),
        ({**NATIVE, "redirect_uris": ["data:text/html,hi"]}, "invalid_redirect_uri"),
        ({**NATIVE, "redirect_uris": ["https://a.example/cb#x"]}, "invalid_redirect_uri"),
        ({**NATIVE, "application_type": "web"}, "invalid_redirect_uri"),  # loopback is native
        ({**NATIVE, "redirect_uris": ["http://app.example/cb"]}, "invalid_redirect_uri"),
        (
            {"redirect_uris": ["http://app.example/cb"], "application_type": "web"},
            "invalid_redirect_uri",
        ),
        ({"redirect_uris": ["https://localhost/cb"]}, "invalid_redirect_uri"),
        ({**NATIVE, "redirect_uris": []}, "invalid_redirect_uri"),
        ({**NATIVE, "logo_uri": "javascript:alert(1)"}, "invalid_client_metadata"),
        ({**NATIVE, "grant_types": ["client_credentials"]}, "invalid_client_metadata"),
        ({**NATIVE, "token_endpoint_auth_method": "private_key_jwt"}, "invalid_client_metadata"),
        ([NATIVE], "invalid_client_metadata"),
    ],
)
def test_a_refused_registration_says_why(http: TestClient, metadata: Any, code: str) -> None:
    answer = http.post("/register", json=metadata)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == code and answer.json()["error_description"]
    assert answer.headers["cache-control"] == "no-store"


def test_the_body_is_bounded_json(http: TestClient) -> None:
    form = http.post("/register", data={"redirect_uris": "http://127.0.0.1/cb"})
    assert form.status_code == 415
    broken = http.post(
        "/register", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert broken.status_code == 400 and broken.json()["error"] == "invalid_client_metadata"
    nan = http.post(
        "/register", content=b'{"x": NaN}', headers={"Content-Type": "application/json"}
    )
    assert nan.status_code == 400
    huge = {**NATIVE, "padding": "x" * 70_000}
    assert http.post("/register", json=huge).status_code == 413


# -- at /authorize and /token --------------------------------------------------------------------


def test_a_registered_public_client_authorizes_on_any_loopback_port_and_refreshes(
    http: TestClient,
) -> None:
    body = registered(http)
    client = RegisteredClient(body["client_id"], None)
    # Registered without a port; REDIRECT_URI has 9000 (RFC 8252 §7.3: any port).
    assert body["redirect_uris"] == ["http://127.0.0.1/callback"] != [REDIRECT_URI]
    query, verifier = authorize(http, client, scope="read write")
    first = redeem(http, client, query, verifier)
    assert first.status_code == 200, first.text
    pair = first.json()
    assert pair["scope"] == "read write"
    second = refresh(http, client, pair["refresh_token"])
    assert second.status_code == 200, second.text
    third = refresh(http, client, second.json()["refresh_token"])
    assert third.status_code == 200, third.text
    # Registered without refresh_token now: its refresh is refused (unauthorized_client).
    path, auth = managed(body)
    current = http.get(path, headers=auth).json()
    answer = http.put(path, json={**current, "grant_types": ["authorization_code"]}, headers=auth)
    assert answer.status_code == 200, answer.text
    refused = refresh(http, client, third.json()["refresh_token"])
    assert refused.status_code == 400 and refused.json()["error"] == "unauthorized_client"


def test_a_client_registered_without_refresh_token_gets_none(http: TestClient) -> None:
    answer = http.post("/register", json={**NATIVE, "grant_types": ["authorization_code"]})
    client = RegisteredClient(answer.json()["client_id"], None)
    query, verifier = authorize(http, client, scope="read")
    pair = redeem(http, client, query, verifier).json()
    assert "access_token" in pair and "refresh_token" not in pair


def test_unused_registrations_expire_and_used_ones_stay(running: Running) -> None:
    http, store, clock = running
    unused = registered(http)
    used = registered(http)
    authorize(http, RegisteredClient(used["client_id"], None), scope="read")  # a code: a use
    clock.advance(EXPIRY - 1)
    anyio.run(expire_unused, store, clock.now(), EXPIRY)
    assert read(http, unused) == 200  # not old enough yet
    clock.advance(2)
    assert anyio.run(expire_unused, store, clock.now(), EXPIRY) >= 1
    assert read(http, unused) == 401
    assert read(http, used) == 200
    deleted = [r for r in audit(store) if r["target_id"] == unused["client_id"]][-1]
    assert (deleted["action"], deleted["actor"]) == ("client.delete", EXPIRY_ACTOR)


def test_a_used_registration_outlives_its_dead_grants(http: TestClient, running: Running) -> None:
    """Review #2: the purge forgets a dead grant after the retention; the client it used is
    not "never used" then."""
    _, store, clock = running
    register_user(store, "carol")
    body = registered(http)
    client = RegisteredClient(body["client_id"], None)
    pair = first_pair_as(http, client, "carol")
    revoked = http.post("/revoke", data={"token": pair["refresh_token"], "client_id": client.id})
    assert revoked.status_code == 200
    retention = http.app.state.baton.settings.retention  # type: ignore[attr-defined]
    clock.advance(retention + EXPIRY + 10)
    while anyio.run(store.purge, clock.now(), retention) > 0:
        pass
    anyio.run(expire_unused, store, clock.now(), EXPIRY)
    assert read(http, body) == 200


def test_a_registration_is_not_expired_while_its_consent_page_is_read(
    http: TestClient, running: Running
) -> None:
    """Review #2: a person signed in and reads the consent page as the expiry runs; Allow still
    gives the code."""
    _, store, clock = running
    register_user(store, "dave")
    body = registered(http)
    clock.advance(EXPIRY - 5)
    client = RegisteredClient(body["client_id"], None)
    _verifier, params = authorization_request(client, scope="read")
    login = http.get("/authorize", params=params)
    page = http.get(sign_in(http, login.headers["location"], "dave").headers["location"])
    assert page.status_code == 200
    clock.advance(10)
    anyio.run(expire_unused, store, clock.now(), EXPIRY)
    assert read(http, body) == 200
    allowed = http.post("/authorize", data={**hidden_fields(page.text), "decision": "allow"})
    assert "code=" in allowed.headers["location"]


def first_pair_as(http: TestClient, client: RegisteredClient, username: str) -> dict[str, Any]:
    verifier, params = authorization_request(client, scope="read")
    login = http.get("/authorize", params=params)
    page = http.get(sign_in(http, login.headers["location"], username).headers["location"])
    answer = http.post("/authorize", data={**hidden_fields(page.text), "decision": "allow"})
    code = parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}
    pair = http.post("/token", data={**data, "code_verifier": verifier, "client_id": client.id})
    assert pair.status_code == 200, pair.text
    body: dict[str, Any] = pair.json()
    return body


def test_registrations_count_an_ipv6_network_whatever_the_address_limit(
    running: Running,
) -> None:
    """Review #4: one /64 is one caller (its addresses are its own to pick), and the limit holds
    with --rate-limit-address 0 (this app's)."""
    app = running[0].app

    async def register_from(addresses: list[str]) -> list[int]:
        codes = []
        for address in addresses:
            transport = httpx2.ASGITransport(app=app, client=(address, 1234))
            async with httpx2.AsyncClient(transport=transport, base_url="http://baton.test") as c:
                codes.append((await c.post("/register", json=NATIVE)).status_code)
        return codes

    one_network = [f"2001:db8:1:1::{i:x}" for i in range(21)]
    codes = anyio.run(register_from, one_network)
    assert codes[:20] == [201] * 20 and codes[20] == 429
    assert anyio.run(register_from, ["2001:db8:1:2::1"]) == [201]


def test_an_operator_edit_ends_the_rfc7592_management(http: TestClient, running: Running) -> None:
    """Review #3: the operator narrows a dynamic client; the client can no longer read its
    registration and PUT back what it had (its token is revoked: the same 401 as any other)."""
    _, store, clock = running
    body = registered(http)
    path, auth = managed(body)
    before = anyio.run(store.get_client, body["client_id"])
    assert before is not None and before.scope == "read write"
    narrowed = dataclasses.replace(before, scope="read", redirect_uris=("http://127.0.0.1/cb",))
    actor = Actor("operator", None, clock.now())
    anyio.run(store.admin().update_registration, before, narrowed, actor)
    assert http.get(path, headers=auth).status_code == 401
    put = http.put(path, json={**body, "client_id": body["client_id"]}, headers=auth)
    assert put.status_code == 401
    after = anyio.run(store.get_client, body["client_id"])
    assert after is not None
    assert (after.scope, after.redirect_uris) == ("read", ("http://127.0.0.1/cb",))


def test_the_rfc7592_read_says_what_the_client_is(http: TestClient, running: Running) -> None:
    """Review #3: the read answers the enforced columns, not the registration as sent."""
    _, store, _clock = running
    body = registered(http)
    path, auth = managed(body)

    def narrow(conn: Connection) -> None:
        row = clients.c.id == body["client_id"]
        conn.execute(update(clients).where(row).values(scope="read", name="Renamed"))

    anyio.run(store.runner.write, narrow)
    shown = http.get(path, headers=auth).json()
    assert (shown["scope"], shown["client_name"]) == ("read", "Renamed")


def read(http: TestClient, body: dict[str, Any]) -> int:
    path, auth = managed(body)
    return http.get(path, headers=auth).status_code


# -- an MCP client's own registration code -------------------------------------------------------


def test_the_mcp_sdk_registers_and_can_use_what_it_got(http: TestClient) -> None:
    metadata = OAuthMetadata.model_validate(
        http.get("/.well-known/oauth-authorization-server").json()
    )
    client_metadata = OAuthClientMetadata.model_validate(
        {
            "redirect_uris": ["http://127.0.0.1:33418/callback"],
            "client_name": "mcp sdk",
            "token_endpoint_auth_method": "none",
        }
    )
    request = create_client_registration_request(metadata, client_metadata, "http://baton.test")
    answer = http.post(
        str(request.url.path), content=request.content, headers=dict(request.headers)
    )
    response = httpx2.Response(answer.status_code, content=answer.content, request=request)
    info = anyio.run(handle_registration_response, response)
    check_registration_usable(info)
    assert info.client_id.startswith("cl_") and info.application_type == "native"
    assert info.grant_types == ["authorization_code", "refresh_token"]
    assert json.loads(answer.content)["scope"] == "read write"

"""CORS for browser apps (baton.server.runtime.cors), loopback redirects on any port (RFC 8252
§7.3) and private-use scheme redirects (§7.1), through the app: the short way on and off."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx2
import pytest
from sqlalchemy import update
from starlette.testclient import TestClient

from baton.core.clock import FakeClock
from baton.core.tokens import random_id
from baton.server.runtime.cors import OriginCache
from baton.store.base import Client
from baton.store.schema import clients
from baton.store.sql import SQLStore
from tests.support import (
    hidden_fields,
    pkce_pair,
    register_user,
    running_app,
    sign_in,
)

SPA = "https://spa.example"
SPA_REDIRECT = "https://spa.example/callback"
OTHER = "https://other.example"

App = tuple[TestClient, SQLStore, FakeClock]


@pytest.fixture(params=[True, False], ids=["fast-paths", "no-fast-paths"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[App]:
    with running_app(tmp_path, fast_paths=request.param) as running:
        register_user(running[1])
        yield running


def public_client(
    store: SQLStore,
    redirect_uris: tuple[str, ...],
    allowed_origins: tuple[str, ...] | None = None,
    disabled: bool = False,
) -> str:
    client = Client(
        id=random_id("cl_"),
        name="browser app",
        secret_digest=None,
        is_public=True,
        is_resource_server=False,
        redirect_uris=redirect_uris,
        scope="read write",
        created_at=0,
        disabled_at=1 if disabled else None,
        allowed_origins=allowed_origins,
    )
    anyio.run(store.create_client, client)
    return client.id


def code_flow(http: TestClient, client_id: str, redirect_uri: str) -> tuple[str, str]:
    """The browser's trip through /authorize, sign-in and consent: (code, verifier)."""
    location, verifier = start_flow(http, client_id, redirect_uri)
    assert location.startswith(redirect_uri + "?"), location
    query = parse_qs(urlsplit(location).query)
    return query["code"][0], verifier


def start_flow(http: TestClient, client_id: str, redirect_uri: str) -> tuple[str, str]:
    verifier, challenge = pkce_pair()
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": "read",
        "state": "s",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    response = http.get("/authorize", params=params)
    if response.status_code == 303 and response.headers["location"].startswith("/login"):
        response = sign_in(http, response.headers["location"])
        response = http.get(response.headers["location"])
    if response.status_code == 200 and "decision" in response.text:
        fields = hidden_fields(response.text)
        response = http.post("/authorize", data={**fields, "decision": "allow"})
    if response.status_code not in (302, 303):
        return f"page {response.status_code}: {response.text}", verifier
    return response.headers["location"], verifier


def token_request(
    http: TestClient, client_id: str, code: str, verifier: str, redirect_uri: str, **headers: str
) -> httpx2.Response:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": verifier,
        "client_id": client_id,
    }
    return http.post("/token", data=data, headers=headers)


def preflight(http: TestClient, path: str, origin: str, method: str = "POST") -> httpx2.Response:
    return http.request(
        "OPTIONS",
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "content-type",
        },
    )


def cors_headers(response: httpx2.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


# -- preflight -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/token", "/revoke"])
def test_a_preflight_from_a_registered_origin_is_allowed(app: App, path: str) -> None:
    http, store, _ = app
    public_client(store, (SPA_REDIRECT,))
    response = preflight(http, path, SPA)
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == SPA  # never `*`
    assert response.headers["access-control-allow-methods"] == "POST"
    assert response.headers["access-control-allow-headers"] == "authorization, content-type"
    assert int(response.headers["access-control-max-age"]) > 0
    assert "Origin" in response.headers["vary"]
    assert "access-control-allow-credentials" not in response.headers


def test_a_preflight_of_the_public_documents(app: App) -> None:
    http, store, _ = app
    public_client(store, (SPA_REDIRECT,))
    for path in ("/.well-known/oauth-authorization-server", "/jwks.json"):
        response = preflight(http, path, SPA, "GET")
        assert response.status_code == 204
        assert response.headers["access-control-allow-methods"] == "GET"


def test_the_public_documents_and_registration_answer_any_origin(tmp_path: Path) -> None:
    """A browser MCP client (MCP Inspector) reads the metadata and registers itself before any
    client holds its origin: those answer any origin, never with credentials; /token does not."""
    inspector = "http://localhost:6274"
    with running_app(tmp_path, registration="open") as (http, _store, _clock):
        for path, method in (
            ("/.well-known/oauth-authorization-server", "GET"),
            ("/jwks.json", "GET"),
            ("/register", "POST"),
        ):
            response = preflight(http, path, inspector, method)
            assert response.status_code == 204, path
            assert response.headers["access-control-allow-origin"] == inspector
            assert "access-control-allow-credentials" not in response.headers
        document = http.get("/.well-known/oauth-authorization-server", headers={"Origin": OTHER})
        assert document.headers["access-control-allow-origin"] == OTHER
        registered = http.post(
            "/register",
            json={
                "redirect_uris": [inspector + "/oauth/callback"],
                "token_endpoint_auth_method": "none",
            },
            headers={"Origin": inspector},
        )
        assert registered.status_code == 201, registered.text
        assert registered.headers["access-control-allow-origin"] == inspector
        # Its origin is now a client's (its http://localhost redirect URI): /token answers it,
        # on any port, as for a loopback IP literal; another origin still gets nothing.
        assert preflight(http, "/token", inspector).status_code == 204
        assert preflight(http, "/token", "http://localhost:5173").status_code == 204
        assert preflight(http, "/token", OTHER).status_code == 403


def test_a_preflight_from_an_unknown_origin_gets_no_cors_header(app: App) -> None:
    http, store, _ = app
    public_client(store, (SPA_REDIRECT,))
    public_client(store, (OTHER + "/cb",), disabled=True)  # a disabled client's origin neither
    for origin in (OTHER, "null", "http://spa.example", "https://spa.example:8443"):
        response = preflight(http, "/token", origin)
        assert response.status_code == 403
        assert cors_headers(response) == {}


def test_introspection_takes_no_cross_origin_call(app: App) -> None:
    """RFC 7662 is for resource servers: no browser calls it."""
    http, store, _ = app
    public_client(store, (SPA_REDIRECT,))
    response = preflight(http, "/introspect", SPA)
    assert response.status_code == 405
    assert cors_headers(response) == {}


def test_an_options_request_that_is_no_preflight_is_still_refused(app: App) -> None:
    http, store, _ = app
    public_client(store, (SPA_REDIRECT,))
    assert http.request("OPTIONS", "/token").status_code == 405
    assert http.request("OPTIONS", "/token", headers={"Origin": SPA}).status_code == 405


# -- actual requests -------------------------------------------------------------------------------


def test_the_token_answer_names_the_clients_origin(app: App) -> None:
    http, store, _ = app
    client_id = public_client(store, (SPA_REDIRECT,))
    code, verifier = code_flow(http, client_id, SPA_REDIRECT)
    response = token_request(http, client_id, code, verifier, SPA_REDIRECT, Origin=SPA)
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == SPA
    assert "Origin" in response.headers["vary"]
    assert "WWW-Authenticate" in response.headers["access-control-expose-headers"]
    assert "access-control-allow-credentials" not in response.headers

    refresh = http.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": response.json()["refresh_token"],
            "client_id": client_id,
        },
        headers={"Origin": SPA},
    )
    assert refresh.status_code == 200
    assert refresh.headers["access-control-allow-origin"] == SPA
    assert "access-control-allow-credentials" not in refresh.headers

    revoke = http.post(
        "/revoke",
        data={"token": refresh.json()["refresh_token"], "client_id": client_id},
        headers={"Origin": SPA},
    )
    assert revoke.status_code == 200
    assert revoke.headers["access-control-allow-origin"] == SPA


def test_an_origin_allowed_for_another_client_reads_nothing_of_this_one(app: App) -> None:
    http, store, _ = app
    client_id = public_client(store, (SPA_REDIRECT,))
    public_client(store, (OTHER + "/cb",))
    code, verifier = code_flow(http, client_id, SPA_REDIRECT)
    # The preflight passes (OTHER is some client's origin), the answer is not readable.
    assert preflight(http, "/token", OTHER).status_code == 204
    response = token_request(http, client_id, code, verifier, SPA_REDIRECT, Origin=OTHER)
    assert response.status_code == 200  # served: CORS is the browser's to enforce
    assert cors_headers(response) == {}
    assert "Origin" in response.headers["vary"]
    # nor its errors, once the client is authenticated
    again = token_request(http, client_id, code, verifier, SPA_REDIRECT, Origin=OTHER)
    assert again.json()["error"] == "invalid_grant"
    assert cors_headers(again) == {}
    mine = token_request(http, client_id, code, verifier, SPA_REDIRECT, Origin=SPA)
    assert mine.json()["error"] == "invalid_grant"
    assert mine.headers["access-control-allow-origin"] == SPA


def test_an_unknown_origin_gets_no_cors_header_even_on_errors(app: App) -> None:
    http, store, _ = app
    public_client(store, (SPA_REDIRECT,))
    response = http.post("/token", data={"grant_type": "password"}, headers={"Origin": OTHER})
    assert response.status_code in (400, 401)
    assert cors_headers(response) == {}


def test_an_error_before_authentication_is_readable_by_a_registered_origin(app: App) -> None:
    """Malformed or naming no known client: about no client, answered for any client's origin,
    so that the app can read why."""
    http, store, _ = app
    public_client(store, (SPA_REDIRECT,))
    response = http.post(
        "/token",
        data={"grant_type": "authorization_code", "client_id": "cl_nobody", "code": "x"},
        headers={"Origin": SPA},
    )
    assert response.json()["error"] == "invalid_client"
    assert response.headers["access-control-allow-origin"] == SPA


def test_a_request_without_origin_gets_no_cors_header(app: App) -> None:
    http, store, _ = app
    client_id = public_client(store, (SPA_REDIRECT,))
    code, verifier = code_flow(http, client_id, SPA_REDIRECT)
    response = token_request(http, client_id, code, verifier, SPA_REDIRECT)
    assert response.status_code == 200
    assert cors_headers(response) == {}
    assert "vary" not in response.headers  # the non-browser path: nothing added


def test_the_public_documents_answer_any_origin(app: App) -> None:
    http, store, _ = app
    public_client(store, (SPA_REDIRECT,))
    for path in ("/.well-known/oauth-authorization-server", "/jwks.json"):
        for origin in (SPA, OTHER):
            answer = http.get(path, headers={"Origin": origin})
            assert answer.headers["access-control-allow-origin"] == origin
            assert "access-control-allow-credentials" not in answer.headers
        # cacheable: a cache must keep one answer per Origin
        assert "Origin" in http.get(path).headers["vary"]


def test_explicit_allowed_origins_replace_the_redirect_uris(app: App) -> None:
    http, store, _ = app
    client_id = public_client(store, (SPA_REDIRECT,), allowed_origins=("https://app.example",))
    assert preflight(http, "/token", "https://app.example").status_code == 204
    assert preflight(http, "/token", SPA).status_code == 403
    code, verifier = code_flow(http, client_id, SPA_REDIRECT)
    response = token_request(
        http, client_id, code, verifier, SPA_REDIRECT, Origin="https://app.example"
    )
    assert response.headers["access-control-allow-origin"] == "https://app.example"


def test_a_new_client_is_allowed_at_once_and_a_removed_one_within_the_ttl(app: App) -> None:
    http, store, clock = app
    public_client(store, ("https://first.example/cb",))
    assert preflight(http, "/token", "https://first.example").status_code == 204
    public_client(store, (SPA_REDIRECT,))
    clock.advance(OriginCache.REFUSED_RETRY)
    assert preflight(http, "/token", SPA).status_code == 204

    # A client disabled is forgotten when the cache is next read.
    def disable(conn: Any) -> None:
        conn.execute(update(clients).values(disabled_at=1))

    anyio.run(store.runner.write, disable)
    clock.advance(OriginCache.TTL)
    assert preflight(http, "/token", SPA).status_code == 403


# -- loopback redirect URIs on any port ------------------------------------------------------------


def test_a_loopback_client_on_any_port_through_a_browser_page_on_another(app: App) -> None:
    """A native or dev app registered with http://127.0.0.1/callback: its listener picks a port,
    its page may be served from another loopback port (RFC 8252 §7.3)."""
    http, store, _ = app
    client_id = public_client(store, ("http://127.0.0.1/callback",))
    given = "http://127.0.0.1:51234/callback"
    code, verifier = code_flow(http, client_id, given)
    # The token request presents the URI as the authorization request gave it ...
    page = "http://127.0.0.1:5173"
    assert preflight(http, "/token", page).headers["access-control-allow-origin"] == page
    response = token_request(http, client_id, code, verifier, given, Origin=page)
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == page


def test_the_token_request_must_present_the_port_the_code_was_sent_to(app: App) -> None:
    http, store, _ = app
    client_id = public_client(store, ("http://127.0.0.1/callback",))
    code, verifier = code_flow(http, client_id, "http://127.0.0.1:51234/callback")
    for other in ("http://127.0.0.1/callback", "http://127.0.0.1:51235/callback"):
        response = token_request(http, client_id, code, verifier, other)
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    "given",
    [
        "http://127.0.0.1:51234/other",
        "http://127.0.0.1:51234/callback/",
        "http://127.0.0.1:51234/callback?x=1",
        "http://[::1]:51234/callback",
        "http://localhost:51234/callback",
        "https://127.0.0.1:51234/callback",
        "http://127.0.0.1:51234@evil.example/callback",
    ],
)
def test_a_loopback_redirect_differing_by_more_than_the_port_is_refused(
    app: App, given: str
) -> None:
    http, store, _ = app
    client_id = public_client(store, ("http://127.0.0.1/callback",))
    location, _ = start_flow(http, client_id, given)
    assert location.startswith("page 400"), location  # an error page, never a redirect
    assert "not registered" in location


def test_an_https_redirect_uri_gets_no_port_leeway(app: App) -> None:
    http, store, _ = app
    client_id = public_client(store, (SPA_REDIRECT,))
    location, _ = start_flow(http, client_id, "https://spa.example:8443/callback")
    assert location.startswith("page 400"), location


# -- private-use URI schemes -----------------------------------------------------------------------


def test_a_private_use_scheme_client_through_a_full_code_flow(app: App) -> None:
    http, store, _ = app
    redirect = "com.example.app:/oauth2redirect"
    client_id = public_client(store, (redirect,))
    code, verifier = code_flow(http, client_id, redirect)
    response = token_request(http, client_id, code, verifier, redirect)
    assert response.status_code == 200, response.text
    assert "access_token" in response.json()
    # exact matching only
    location, _ = start_flow(http, client_id, redirect + "/x")
    assert location.startswith("page 400")


def test_a_failed_read_of_the_origins_refuses_cors_and_nothing_else(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    http, store, _ = app
    client_id = public_client(store, (SPA_REDIRECT,))
    code, verifier = code_flow(http, client_id, SPA_REDIRECT)

    async def unavailable() -> list[Any]:
        raise ConnectionError("database away")

    monkeypatch.setattr(store, "origin_sources", unavailable)
    response = token_request(http, client_id, code, verifier, SPA_REDIRECT, Origin=SPA)
    assert response.status_code == 200  # the token answer itself is unaffected
    assert cors_headers(response) == {}
    assert preflight(http, "/token", SPA).status_code == 403


def test_the_pages_take_no_cross_origin_call(app: App) -> None:
    http, store, _ = app
    public_client(store, (SPA_REDIRECT,))
    for path in ("/login", "/authorize", "/"):
        assert cors_headers(http.get(path, headers={"Origin": SPA})) == {}
        assert preflight(http, path, SPA).status_code == 405

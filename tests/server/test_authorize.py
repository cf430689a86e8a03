"""The authorization endpoint, login, consent and logout, as a browser meets them."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from starlette.testclient import TestClient

from baton.store.sql import SQLStore
from tests.support import (
    ISSUER,
    REDIRECT_URI,
    RegisteredClient,
    authorize,
    hidden_inputs,
    pkce_pair,
    register_client,
    register_user,
    running_app,
    sign_in,
)


def params(client: RegisteredClient, **extra: str) -> dict[str, str]:
    _, challenge = pkce_pair()
    base = {
        "response_type": "code",
        "client_id": client.id,
        "redirect_uri": REDIRECT_URI,
        "scope": "read",
        "state": "s-1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    return {k: v for k, v in {**base, **extra}.items() if v != "<omit>"}


def redirected_error(http: TestClient, query: dict[str, str]) -> dict[str, list[str]]:
    response = http.get("/authorize", params=query)
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI + "?")
    return parse_qs(urlsplit(location).query)


def test_metadata_document(http: TestClient) -> None:
    meta = http.get("/.well-known/oauth-authorization-server").json()
    assert meta["issuer"] == ISSUER
    assert meta["token_endpoint"] == f"{ISSUER}/token"
    assert meta["authorization_endpoint"] == f"{ISSUER}/authorize"
    assert meta["revocation_endpoint"] == f"{ISSUER}/revoke"
    assert meta["introspection_endpoint"] == f"{ISSUER}/introspect"
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert set(meta["grant_types_supported"]) == {
        "authorization_code",
        "refresh_token",
        "client_credentials",
    }
    assert "client_secret_basic" in meta["token_endpoint_auth_methods_supported"]
    assert meta["refresh_token_rotation"] == {"retry_policy": "replay", "leeway_seconds": 600}


def test_login_consent_and_code(http: TestClient, client: RegisteredClient) -> None:
    query, _ = authorize(http, client, state="abc")
    assert query["state"] == ["abc"]
    assert query["iss"] == [ISSUER]
    assert query["code"][0].startswith("bat_ac_")


def test_consent_is_remembered_until_more_scope_is_asked(
    http: TestClient, client: RegisteredClient
) -> None:
    authorize(http, client, scope="read")
    response = http.get("/authorize", params=params(client, scope="read"))
    assert response.status_code == 302  # straight back to the client: no consent page
    assert "code=" in response.headers["location"]
    response = http.get("/authorize", params=params(client, scope="read write"))
    assert response.status_code == 200
    assert "write" in response.text and "Allow" in response.text


def test_deny_redirects_access_denied(http: TestClient, client: RegisteredClient) -> None:
    query, _ = authorize(http, client, decision="deny", state="q")
    assert query["error"] == ["access_denied"]
    assert query["state"] == ["q"]
    assert "code" not in query


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"client_id": "<omit>"}, "no client"),
        ({"client_id": "cl_unknown"}, "unknown client"),
        ({"redirect_uri": "https://evil.example/cb"}, "not registered"),
        ({"redirect_uri": REDIRECT_URI + "/"}, "not registered"),  # exact match only
    ],
)
def test_untrusted_redirects_are_shown_as_a_page(
    http: TestClient, client: RegisteredClient, change: dict[str, str], message: str
) -> None:
    response = http.get("/authorize", params=params(client, **change))
    assert response.status_code == 400
    assert "location" not in response.headers
    assert message in response.text


def test_repeated_parameters_are_shown_as_a_page(
    http: TestClient, client: RegisteredClient
) -> None:
    response = http.get(
        f"/authorize?client_id={client.id}&client_id={client.id}&response_type=code"
    )
    assert response.status_code == 400
    assert "repeated" in response.text


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"response_type": "<omit>"}, "unsupported_response_type"),
        ({"scope": "admin"}, "invalid_scope"),
        ({"scope": 'bad"scope'}, "invalid_scope"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge_method": "<omit>"}, "invalid_request"),
        ({"code_challenge": "short"}, "invalid_request"),
    ],
)
def test_request_errors_are_redirected_with_state(
    http: TestClient, client: RegisteredClient, change: dict[str, str], error: str
) -> None:
    query = redirected_error(http, params(client, **change))
    assert query["error"] == [error]
    assert query["state"] == ["s-1"]
    assert query["iss"] == [ISSUER]
    assert query["error_description"]


def test_public_clients_must_use_pkce(http: TestClient, store: SQLStore) -> None:
    public = register_client(store, public=True)
    query = redirected_error(
        http, params(public, code_challenge="<omit>", code_challenge_method="<omit>")
    )
    assert query["error"] == ["invalid_request"]
    assert "PKCE" in query["error_description"][0]


def test_a_single_registered_redirect_uri_may_be_omitted(
    http: TestClient, client: RegisteredClient
) -> None:
    response = http.get("/authorize", params=params(client, redirect_uri="<omit>"))
    assert response.status_code == 303  # on to the login page
    assert response.headers["location"].startswith("/login?next=")


def test_wrong_password_and_missing_csrf(http: TestClient, client: RegisteredClient) -> None:
    response = http.get("/authorize", params=params(client))
    login = response.headers["location"]
    wrong = sign_in(http, login, password="nope")
    assert wrong.status_code == 401
    assert "wrong password" in wrong.text
    unknown = sign_in(http, login, username="mallory")
    assert unknown.status_code == 401
    page = http.get(login)
    fields = hidden_inputs(page.text)
    fields["csrf"] = "forged"
    forged = http.post("/login", data={**fields, "username": "alice", "password": "x"})
    assert forged.status_code == 403


def test_login_never_redirects_off_site(http: TestClient, client: RegisteredClient) -> None:
    page = http.get("/login", params={"next": "https://evil.example/"})
    assert hidden_inputs(page.text)["next"] == "/"


def test_consent_form_requires_its_csrf_token(http: TestClient, client: RegisteredClient) -> None:
    authorize(http, client, scope="read")  # signs in
    page = http.get("/authorize", params=params(client, scope="read write"))
    fields = hidden_inputs(page.text)
    fields["csrf"] = "forged"
    response = http.post("/authorize", data={**fields, "decision": "allow"})
    assert response.status_code == 403
    assert "location" not in response.headers


def test_session_cookie_attributes(http: TestClient, client: RegisteredClient) -> None:
    response = http.get("/login")
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert "secure" not in cookie  # the issuer is http here; https issuers get Secure


def test_logout_ends_the_browser_session(http: TestClient, client: RegisteredClient) -> None:
    authorize(http, client, scope="read")
    page = http.get("/logout")
    assert "Sign out" in page.text
    forged = http.post("/logout", data={"csrf": "forged"})
    assert forged.status_code == 403
    response = http.post("/logout", data=hidden_inputs(page.text))
    assert response.status_code == 200
    assert "signed out" in response.text.lower()
    again = http.get("/authorize", params=params(client, scope="read"))
    assert again.headers["location"].startswith("/login")


# -- redirect URIs: one rule at registration and at /authorize (issue 21 L4) --------------------


@pytest.mark.parametrize(
    "stored",
    [
        "javascript:alert(document.cookie)//",
        "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        "http://localhost:9000/callback",
        "http://app.example/callback",
        "myapp:/callback",
    ],
)
@pytest.mark.parametrize("named", [True, False])
def test_a_redirect_uri_stored_before_the_rule_is_never_redirected_to(
    http: TestClient, store: SQLStore, stored: str, named: bool
) -> None:
    """A client registered before registration checked the scheme: /authorize shows the error
    page, with no Location, whether the request names the URI or leaves it implied."""
    legacy = register_client(store, redirect_uris=(stored,))
    response = http.get(
        "/authorize", params=params(legacy, redirect_uri=stored if named else "<omit>")
    )
    assert response.status_code == 400
    assert "location" not in response.headers
    assert "redirect URI is not allowed" in response.text


def test_the_three_kinds_of_redirect_uri_are_accepted(http: TestClient, store: SQLStore) -> None:
    for uri in ("https://app.example/cb", "http://[::1]:8123/cb", "com.example.app:/oauth2"):
        fine = register_client(store, redirect_uris=(uri,))
        response = http.get("/authorize", params=params(fine, redirect_uri=uri))
        assert response.status_code == 303  # on to sign-in
        assert response.headers["location"].startswith("/login?next=")


# -- PKCE for confidential clients too (OAuth 2.1) ----------------------------------------------


def test_a_confidential_client_must_use_pkce_unless_opted_out(
    http: TestClient, client: RegisteredClient, store: SQLStore
) -> None:
    no_pkce = {"code_challenge": "<omit>", "code_challenge_method": "<omit>"}
    query = redirected_error(http, params(client, **no_pkce))
    assert query["error"] == ["invalid_request"]
    assert "PKCE" in query["error_description"][0]
    opted_out = register_client(store, require_pkce=False)
    response = http.get("/authorize", params=params(opted_out, **no_pkce))
    assert response.status_code == 303  # on to sign-in: the operator chose this
    assert response.headers["location"].startswith("/login?next=")


def test_a_public_client_must_use_pkce_whatever_its_row_says(
    http: TestClient, store: SQLStore
) -> None:
    public = register_client(store, public=True, require_pkce=False)
    query = redirected_error(
        http, params(public, code_challenge="<omit>", code_challenge_method="<omit>")
    )
    assert query["error"] == ["invalid_request"]


# -- rate limit ---------------------------------------------------------------------------------


def test_authorize_is_rate_limited_per_address(tmp_path: Path) -> None:
    """Each GET and POST of /authorize takes from the address's bucket; once it is spent the
    browser gets a 429 page with Retry-After, not a redirect and not a JSON error."""
    with running_app(tmp_path, rate_limit_address=0.5) as (http, store, _clock):  # burst 1
        register_user(store)
        client = register_client(store)
        assert http.get("/authorize", params=params(client)).status_code == 303
        for response in (
            http.get("/authorize", params=params(client)),
            http.post("/authorize", data={"decision": "allow", **params(client)}),
        ):
            assert response.status_code == 429
            assert int(response.headers["retry-after"]) >= 1
            assert "location" not in response.headers
            assert response.headers["content-type"].startswith("text/html")
            assert "Too many requests" in response.text

"""The authorization code + PKCE flow through the login and consent pages with real client
libraries (Authlib, then requests-oauthlib) against a real `baton serve`, followed by rotation,
a retry inside the leeway, the old access token's death at the end of the leeway, and reuse
detection after it."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
import requests  # type: ignore[import-untyped,unused-ignore]
from authlib.common.security import generate_token
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from requests.auth import HTTPBasicAuth  # type: ignore[import-untyped,unused-ignore]
from requests_oauthlib import OAuth2Session as RequestsOAuthlibSession

from tests.e2e.conftest import (
    CLIENT_SCOPE,
    REDIRECT_URI,
    USERNAME,
    Server,
    ServerFactory,
    visit,
)

pytestmark = pytest.mark.e2e

LEEWAY = 2  # seconds: the one place these tests wait for real time


def authlib_session(server: Server, scope: str = CLIENT_SCOPE) -> Any:
    return OAuth2Session(
        client_id=server.client.client_id,
        client_secret=server.client.client_secret,
        scope=scope,
        redirect_uri=REDIRECT_URI,
        code_challenge_method="S256",
    )


def pair(token: dict[str, Any]) -> tuple[str, str]:
    return token["access_token"], token["refresh_token"]


def assert_fresh_pair(token: dict[str, Any]) -> None:
    assert token["access_token"].startswith("bat_at_")
    assert token["refresh_token"].startswith("bat_rt_")
    assert token["token_type"] == "Bearer"
    scope = token["scope"]  # requests-oauthlib hands the scope back as a list
    assert (" ".join(scope) if isinstance(scope, list) else scope) == CLIENT_SCOPE
    assert 3590 <= token["expires_in"] <= 3600
    assert isinstance(token["refresh_token_expires_in"], int)
    assert token["refresh_token_expires_in"] > 89 * 86400


def sleep_until(instant: int) -> None:
    """Until the server's clock (whole Unix seconds) reads `instant` or later."""
    while (left := instant - time.time()) > 0:
        time.sleep(left + 0.02)


def test_authorization_code_pkce_rotation_retry_and_reuse_with_authlib(
    baton_server: ServerFactory,
) -> None:
    server = baton_server(leeway=LEEWAY)
    metadata = httpx.get(server.url + "/.well-known/oauth-authorization-server").json()
    assert metadata["issuer"] == server.url
    assert metadata["token_endpoint"] == server.token_url
    assert metadata["authorization_endpoint"] == server.authorize_url
    assert metadata["code_challenge_methods_supported"] == ["S256"]

    oauth = authlib_session(server)
    verifier = generate_token(48)
    url, state = oauth.create_authorization_url(server.authorize_url, code_verifier=verifier)
    assert "code_challenge=" in url and "code_challenge_method=S256" in url

    with requests.Session() as browser:
        first_visit = visit(browser, server, url)
    assert first_visit.signed_in
    assert first_visit.consent_scopes == ("read", "write")
    assert first_visit.query["state"] == [state]
    assert first_visit.query["iss"] == [server.url]  # RFC 9207

    token0 = dict(
        oauth.fetch_token(
            server.token_url, authorization_response=first_visit.location, code_verifier=verifier
        )
    )
    assert_fresh_pair(token0)
    seen0 = server.introspect(token0["access_token"])
    assert seen0["active"] is True
    assert seen0["generation"] == 0
    assert seen0["sub"] == USERNAME
    assert seen0["client_id"] == server.client.client_id
    assert "revocation_at" not in seen0
    grant_id = seen0["grant_id"]

    # Rotation: every refresh gives a new pair, different from every earlier one.
    token1 = dict(oauth.refresh_token(server.token_url, refresh_token=token0["refresh_token"]))
    before = int(time.time())
    token2 = dict(oauth.refresh_token(server.token_url, refresh_token=token1["refresh_token"]))
    after = int(time.time())
    for token in (token1, token2):
        assert_fresh_pair(token)
    assert len({*pair(token0), *pair(token1), *pair(token2)}) == 6
    seen2 = server.introspect(token2["access_token"])
    assert (seen2["active"], seen2["grant_id"], seen2["generation"]) == (True, grant_id, 2)
    assert "revocation_at" not in seen2

    # A retry of an exchanged refresh token inside the leeway: the same pair, byte for byte.
    retried = dict(oauth.refresh_token(server.token_url, refresh_token=token1["refresh_token"]))
    assert pair(retried) == pair(token2)
    assert retried["scope"] == token2["scope"]
    assert "refresh_token_expires_in" in retried

    # The old access token still works inside the leeway, and says until when.
    seen1 = server.introspect(token1["access_token"])
    assert seen1["active"] is True
    assert seen1["generation"] == 1
    revocation_at = seen1["revocation_at"]
    # The leeway starts at the ceiling of the exchange's second: never less than LEEWAY.
    assert before + LEEWAY <= revocation_at <= after + 1 + LEEWAY
    assert revocation_at < seen1["exp"]  # it dies long before its own expiry
    seen1_refresh = server.introspect(token1["refresh_token"])
    assert seen1_refresh["active"] is True
    assert seen1_refresh["revocation_at"] == revocation_at

    # After the leeway: the old access token is dead, the current pair lives on.
    sleep_until(revocation_at)
    assert server.introspect(token1["access_token"]) == {"active": False}
    assert server.introspect(token2["access_token"])["active"] is True

    # Presenting the exchanged refresh token again is reuse: the whole family dies.
    with pytest.raises(OAuthError) as refused:
        oauth.refresh_token(server.token_url, refresh_token=token1["refresh_token"])
    assert refused.value.error == "invalid_grant"
    assert "reused" in refused.value.description
    for token in (token0, token1, token2):
        for kind in ("access_token", "refresh_token"):
            assert server.introspect(token[kind]) == {"active": False}, (token is token2, kind)

    # The current refresh token is refused too, and says why.
    response = httpx.post(
        server.token_url,
        data={"grant_type": "refresh_token", "refresh_token": token2["refresh_token"]},
        auth=server.client.basic,
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert "reuse" in response.json()["error_description"]

    assert server.sql("SELECT revoked_reason FROM grants WHERE id = ?", grant_id) == [("reuse",)]
    events = server.sql(
        "SELECT kind, client_id, subject, generation, source_address FROM security_events "
        "WHERE grant_id = ? ORDER BY id",
        grant_id,
    )
    # The retry inside the leeway is on record too (the console's timeline shows it).
    assert events == [
        ("leeway_retry", server.client.client_id, USERNAME, 1, "127.0.0.1"),
        ("refresh_token_reuse", server.client.client_id, USERNAME, 1, "127.0.0.1"),
    ]


def test_consent_is_remembered_until_more_scope_is_asked(baton_server: ServerFactory) -> None:
    server = baton_server()
    with requests.Session() as browser:

        def authorize(scope: str) -> Any:
            oauth = authlib_session(server, scope)
            verifier = generate_token(48)
            url, state = oauth.create_authorization_url(
                server.authorize_url, code_verifier=verifier
            )
            found = visit(browser, server, url)
            assert found.query["state"] == [state]
            token = oauth.fetch_token(
                server.token_url, authorization_response=found.location, code_verifier=verifier
            )
            assert token["scope"] == scope
            return found

        first = authorize("read")
        assert first.signed_in and first.consent_scopes == ("read",)

        again = authorize("read")  # signed in and consented: straight back to the client
        assert not again.signed_in and again.consent_scopes is None

        more = authorize("read write")  # more scope: asked again, for everything it asks
        assert not more.signed_in and more.consent_scopes == ("read", "write")

        for scope in ("read write", "write"):
            remembered = authorize(scope)
            assert remembered.consent_scopes is None, scope


def test_code_exchange_and_refresh_with_requests_oauthlib(
    baton_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # plain http on loopback
    server = baton_server()
    basic = HTTPBasicAuth(server.client.client_id, server.client.client_secret)
    oauth = RequestsOAuthlibSession(
        server.client.client_id, redirect_uri=REDIRECT_URI, scope=["read", "write"], pkce="S256"
    )
    url, state = oauth.authorization_url(server.authorize_url)
    with requests.Session() as browser:
        found = visit(browser, server, url)
    assert found.query["state"] == [state]

    token0 = dict(
        oauth.fetch_token(
            server.token_url,
            authorization_response=found.location,
            client_secret=server.client.client_secret,
        )
    )
    assert_fresh_pair(token0)
    token1 = dict(oauth.refresh_token(server.token_url, auth=basic))
    assert_fresh_pair(token1)
    assert len({*pair(token0), *pair(token1)}) == 4

    old = server.introspect(token0["access_token"])
    new = server.introspect(token1["access_token"])
    assert old["active"] is True and "revocation_at" in old  # default leeway: 600 s
    assert new["active"] is True and "revocation_at" not in new
    assert (old["grant_id"], old["generation"]) == (new["grant_id"], 0)
    assert new["generation"] == 1

    # requests-oauthlib's own retry of the old token: replayed, same pair.
    retried = dict(oauth.refresh_token(server.token_url, token0["refresh_token"], auth=basic))
    assert pair(retried) == pair(token1)

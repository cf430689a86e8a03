"""What an OpenID Connect relying party sees when the provider must refuse, end to end through a
real `baton serve` and its pages: `prompt=none` without a session, `offline_access` not consented,
a `nonce` missing where the client requires one, and `max_age` exceeded."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from tests.interop.conftest import (
    NEGATIVE_URI,
    NONCE_URI,
    REMEMBERING_URI,
    Browser,
    OidcServer,
)

pytestmark = pytest.mark.e2e

REDIRECT_URI = NEGATIVE_URI


@pytest.fixture(scope="module")
def server(shared_server: OidcServer) -> OidcServer:
    return shared_server


def authorization_url(server: OidcServer, client: str, scope: str, **extra: str) -> tuple[str, str]:
    """An authorization URL for `client` and its PKCE verifier."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    registered = server.client(client)
    query = {
        "response_type": "code",
        "client_id": registered.client_id,
        "redirect_uri": registered.redirect_uri,
        "scope": scope,
        "state": "st-" + secrets.token_hex(4),
        "code_challenge": challenge.decode(),
        "code_challenge_method": "S256",
        **extra,
    }
    return f"{server.url}/authorize?{urlencode(query)}", verifier


def redeem(server: OidcServer, client: str, code: str, verifier: str) -> dict[str, Any]:
    registered = server.client(client)
    response = httpx.post(
        server.url + "/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": registered.redirect_uri,
            "code_verifier": verifier,
        },
        auth=registered.basic,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_prompt_none_without_a_session_answers_login_required_at_the_redirect_uri(
    server: OidcServer,
) -> None:
    url, _ = authorization_url(server, "negative", "openid", prompt="none", nonce="n-1")
    response = httpx.get(url)  # a browser with no session cookie
    assert response.status_code in (302, 303), response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI + "?"), location
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert query["error"] == "login_required"  # OIDC Core §3.1.2.6
    assert query["state"] == parse_qs(urlsplit(url).query)["state"][0]
    assert query["iss"] == server.issuer  # RFC 9207
    assert "code" not in query


def test_no_refresh_token_without_offline_access(server: OidcServer) -> None:
    url, verifier = authorization_url(server, "negative", "openid profile", nonce="n-2")
    with Browser(server) as browser:
        visit = browser.follow(url, REDIRECT_URI)
    token = redeem(server, "negative", visit.query["code"], verifier)
    assert token["id_token"]
    assert "refresh_token" not in token  # OIDC Core §11: only offline_access earns one


def test_a_remembered_consent_without_offline_access_does_not_grant_it(
    server: OidcServer,
) -> None:
    with Browser(server) as browser:
        url, verifier = authorization_url(server, "remembering", "openid", nonce="n-3")
        first = browser.follow(url, REMEMBERING_URI)
        assert first.consent is not None
        assert "refresh_token" not in redeem(server, "remembering", first.query["code"], verifier)

        # The same client now asks for offline access: the remembered consent did not cover it,
        # so either the consent page asks again, or the grant holds no refresh token.
        url, verifier = authorization_url(
            server, "remembering", "openid offline_access", nonce="n-4"
        )
        again = browser.follow(url, REMEMBERING_URI)
        token = redeem(server, "remembering", again.query["code"], verifier)
        if again.consent is None:
            assert "refresh_token" not in token, "offline access without the user's consent"
        else:
            assert "offline_access" in again.consent
            assert token.get("refresh_token")


def test_a_client_that_requires_a_nonce_gets_an_error_without_one(server: OidcServer) -> None:
    url, _ = authorization_url(server, "nonce", "openid")
    with Browser(server) as browser:
        visit = browser.follow(url, NONCE_URI)
    assert visit.query["error"] == "invalid_request", visit.location
    assert "code" not in visit.query


def test_max_age_exceeded_forces_a_new_sign_in(server: OidcServer) -> None:
    with Browser(server) as browser:
        url, verifier = authorization_url(server, "negative", "openid", nonce="n-6")
        first = browser.follow(url, REDIRECT_URI)
        assert first.signed_in
        signed_in_at = unverified_claims(
            redeem(server, "negative", first.query["code"], verifier)["id_token"]
        )["auth_time"]
        # OIDC Core §3.1.2.1: re-authenticate when the elapsed time is greater than max_age.
        while time.time() < signed_in_at + 2:
            time.sleep(0.1)
        url, verifier = authorization_url(server, "negative", "openid", nonce="n-7", max_age="1")
        again = browser.follow(url, REDIRECT_URI)
        assert again.signed_in, "max_age exceeded: the login page must be shown again"
        token = redeem(server, "negative", again.query["code"], verifier)
    assert unverified_claims(token["id_token"])["auth_time"] >= signed_in_at + 2  # the new one


def unverified_claims(id_token: str) -> dict[str, Any]:
    """The payload only (the interop tests validate signatures; this reads auth_time)."""
    payload = id_token.split(".")[1]
    body: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return body

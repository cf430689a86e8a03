"""Authlib's OpenID Connect client against a real Baton, through the login and consent pages.

Authlib's `OAuth2Session` (requests) does the code flow with PKCE, and Authlib's OIDC core
(`CodeIDToken` over `authlib.jose.jwt` with the server's JWKS) validates every ID token itself:
signature, iss, aud, exp, iat, nonce, at_hash, auth_time.
"""

from __future__ import annotations

import warnings
from typing import Any

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session

from tests.interop.conftest import AUTHLIB_URI, EMAIL, OIDC_SCOPE, Browser, OidcServer

with warnings.catch_warnings():  # authlib.jose still ships, deprecated in favour of joserfc
    warnings.simplefilter("ignore")
    from authlib.jose import JsonWebKey, jwt
    from authlib.oidc.core import CodeIDToken
    from authlib.oidc.core.claims import InvalidClaimError  # the class Authlib raises

pytestmark = pytest.mark.e2e

REDIRECT_URI = AUTHLIB_URI


@pytest.fixture(scope="module")
def server(shared_server: OidcServer) -> OidcServer:
    return shared_server


def validated(server: OidcServer, client: str, token: dict[str, Any], nonce: str | None) -> Any:
    """The ID token of a token response, validated by Authlib as an RP does (OIDC Core
    §3.1.3.7): the JWKS from the discovery document's jwks_uri."""
    keys = JsonWebKey.import_key_set(server.jwks())
    client_id = server.client(client).client_id
    claims = jwt.decode(
        token["id_token"],
        keys,
        claims_cls=CodeIDToken,
        claims_options={"iss": {"essential": True, "value": server.issuer}},
        claims_params={
            "nonce": nonce,
            "client_id": client_id,
            "access_token": token["access_token"],
        },
    )
    claims.validate(leeway=5)
    return claims


@pytest.mark.parametrize(("client", "alg"), [("authlib", "RS256"), ("authlib-ES256", "ES256")])
def test_authlib_code_flow_id_token_userinfo_refresh_and_replay(
    server: OidcServer, client: str, alg: str
) -> None:
    metadata = server.discovery()
    assert alg in metadata["id_token_signing_alg_values_supported"]
    registered = server.client(client)
    oauth = OAuth2Session(
        client_id=registered.client_id,
        client_secret=registered.client_secret,
        scope=OIDC_SCOPE,
        redirect_uri=REDIRECT_URI,
        code_challenge_method="S256",
    )
    verifier = generate_token(48)
    nonce = generate_token(20)
    url, state = oauth.create_authorization_url(
        metadata["authorization_endpoint"], code_verifier=verifier, nonce=nonce, prompt="consent"
    )
    with Browser(server) as browser:
        visit = browser.follow(url, REDIRECT_URI)
    assert visit.query["state"] == state
    assert visit.query.get("iss") == server.issuer  # RFC 9207, checked by careful RPs
    token = oauth.fetch_token(
        metadata["token_endpoint"], authorization_response=visit.location, code_verifier=verifier
    )
    assert token.get("refresh_token"), "offline_access was consented: a refresh token is due"

    claims = validated(server, client, token, nonce)
    assert claims.header["alg"] == alg
    assert claims["aud"] in (registered.client_id, [registered.client_id])
    assert isinstance(claims["auth_time"], int)
    assert claims.get("at_hash"), "Baton's ID token carries at_hash (validated above)"

    # A wrong nonce is refused by Authlib: the nonce check above was real.
    with pytest.raises(InvalidClaimError):
        validated(server, client, token, "another nonce")

    # Userinfo, with the access token, for the same subject.
    userinfo = oauth.get(metadata["userinfo_endpoint"]).json()
    assert userinfo["sub"] == claims["sub"]

    # Refresh: a new ID token; same iss, sub, aud, auth_time and no nonce (OIDC Core §12.2).
    old_refresh = token["refresh_token"]
    refreshed = oauth.refresh_token(metadata["token_endpoint"], refresh_token=old_refresh)
    renewed = validated(server, client, refreshed, None)  # None: no nonce expected
    for name in ("iss", "sub", "aud", "auth_time"):
        assert renewed[name] == claims[name], name
    assert "nonce" not in renewed
    assert refreshed["id_token"] != token["id_token"]

    # The same refresh token again inside the leeway: the same ID token, byte for byte.
    replay = httpx.post(
        metadata["token_endpoint"],
        data={"grant_type": "refresh_token", "refresh_token": old_refresh},
        auth=registered.basic,
    )
    assert replay.status_code == 200, replay.text
    assert replay.json()["id_token"] == refreshed["id_token"]
    assert replay.json()["refresh_token"] == refreshed["refresh_token"]

    assert server.email_set is None, server.email_set
    assert userinfo["email"] == EMAIL

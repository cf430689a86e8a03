"""`requests-oauth2client` (PyPI, with jwskate) as a third relying party of a real Baton.

Chosen as the third RP library because it validates ID tokens entirely by itself (signature
against the JWKS it fetched through discovery, iss, aud, azp, exp, nonce, at_hash) and checks
the authorization response's `state` and `iss` (RFC 9207); it generates PKCE, state and nonce.
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import free_port
from tests.interop.conftest import (
    NATIVE_LOOPBACK_URI,
    NATIVE_SCHEME_URI,
    OIDC_SCOPE,
    REQUESTS_OAUTH2CLIENT_URI,
    USERNAME,
    Browser,
    OidcServer,
)
from tests.node import in_ci

try:
    from requests_oauth2client import AuthorizationResponse, BearerToken, IdToken, OAuth2Client
    from requests_oauth2client.exceptions import InvalidGrant
except ImportError as exc:  # a virtualenv made before the dev extra named it
    if in_ci():
        raise
    pytest.skip(
        f"requests-oauth2client is not installed ({exc}): pip install -e '.[dev]'",
        allow_module_level=True,
    )

pytestmark = pytest.mark.e2e

REDIRECT_URI = REQUESTS_OAUTH2CLIENT_URI


@pytest.fixture(scope="module")
def server(shared_server: OidcServer) -> OidcServer:
    return shared_server


def relying_party(server: OidcServer, name: str) -> OAuth2Client:
    registered = server.client(name)
    assert registered.client_secret is not None
    return OAuth2Client.from_discovery_endpoint(
        issuer=server.issuer,  # the discovery document's `issuer` must be this one
        client_id=registered.client_id,
        client_secret=registered.client_secret,
        redirect_uri=REDIRECT_URI,
        testing=True,  # http on loopback
    )


@pytest.mark.parametrize(
    ("name", "subject_type"),
    [("requests-oauth2client", "public"), ("requests-oauth2client-pairwise", "pairwise")],
)
def test_requests_oauth2client_code_flow_id_token_and_refresh(
    server: OidcServer, name: str, subject_type: str
) -> None:
    client = relying_party(server, name)
    assert client.authorization_server_jwks, "the JWKS from discovery's jwks_uri"
    request = client.authorization_request(scope=OIDC_SCOPE, prompt="consent")
    assert request.nonce and request.code_verifier and request.state
    with Browser(server) as browser:
        visit = browser.follow(str(request.uri), REDIRECT_URI)
    response = request.validate_callback(visit.location)  # state and iss (RFC 9207)

    # The code exchange; validate=True (the default) checks the ID token's signature, iss, aud,
    # azp, exp, nonce and at_hash, raising on any mismatch.
    token = client.authorization_code(response)
    id_token = token.id_token
    assert isinstance(id_token, IdToken)  # signed, not encrypted
    assert id_token.issuer == server.issuer
    assert id_token.nonce == request.nonce
    assert id_token.get_claim("at_hash")
    assert token.refresh_token, "offline_access was consented: a refresh token is due"

    userinfo = client.userinfo(token)
    assert userinfo["sub"] == id_token.subject
    if subject_type == "public":
        assert id_token.subject == USERNAME
    else:  # OIDC Core §8.1: not the user's own identifier, and not reversible by the RP
        assert id_token.subject is not None and id_token.subject != USERNAME
        assert len(id_token.subject) >= 32

    # The refresh's ID token, validated the same way (no nonce expected: OIDC Core §12.2).
    refreshed = client.refresh_token(token)
    no_nonce = AuthorizationResponse(
        code=response.code, redirect_uri=REDIRECT_URI, issuer=server.issuer
    )
    renewed = BearerToken(**refreshed.as_dict()).validate_id_token(client, no_nonce).id_token
    assert isinstance(renewed, IdToken)
    assert renewed.subject == id_token.subject
    assert renewed.get_claim("auth_time") == id_token.get_claim("auth_time")
    assert renewed.audiences == id_token.audiences
    assert renewed.get_claim("nonce") is None

    # The replayed refresh inside the leeway: the same ID token.
    replayed = client.refresh_token(str(token.refresh_token))
    assert str(replayed.id_token) == str(refreshed.id_token)

    # Revocation through the library (RFC 7009) ends the family: the next refresh is refused.
    client.revoke_refresh_token(str(refreshed.refresh_token))
    with pytest.raises(InvalidGrant):
        client.refresh_token(refreshed)


@pytest.mark.parametrize("kind", ["loopback-any-port", "private-use-scheme"])
def test_a_native_public_client_on_an_ephemeral_port_or_its_own_scheme(
    server: OidcServer, kind: str
) -> None:
    """A CLI or desktop app (public client, PKCE): its redirect URI is the registered loopback
    one on whatever port it got (RFC 8252 §7.3), or its private-use scheme (§7.1)."""
    if kind == "loopback-any-port":
        redirect_uri = NATIVE_LOOPBACK_URI.replace("127.0.0.1", f"127.0.0.1:{free_port()}")
    else:
        redirect_uri = NATIVE_SCHEME_URI
    client = OAuth2Client.from_discovery_endpoint(
        issuer=server.issuer,
        client_id=server.client("native").client_id,  # no secret: a public client
        redirect_uri=redirect_uri,
        testing=True,
    )
    request = client.authorization_request(scope="openid offline_access", prompt="consent")
    with Browser(server) as browser:
        visit = browser.follow(str(request.uri), redirect_uri)
    token = client.authorization_code(request.validate_callback(visit.location))
    assert isinstance(token.id_token, IdToken)  # validated: signature, iss, aud, nonce, at_hash
    assert token.refresh_token
    refreshed = client.refresh_token(token)
    assert refreshed.refresh_token and refreshed.refresh_token != token.refresh_token

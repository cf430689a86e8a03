"""panva's `openid-client` (node, npm, v6, unmodified) as the relying party of a real Baton.

The node script (openid_client_rp.mjs) discovers the provider, builds the authorization URL
(PKCE S256, nonce, state), and prints it; this test goes through the real login and consent
pages with it and hands the callback URL back. The script redeems the code (openid-client
validates the ID token's signature, iss, aud, exp, nonce; the script checks at_hash), reads
userinfo, refreshes, and replays that refresh inside the leeway; then the browser follows the
RP-Initiated Logout URL openid-client builds (id_token_hint, post_logout_redirect_uri, state).
Without node and npm the test is skipped, except in CI (CI=true), where it fails.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.interop.conftest import (
    EMAIL,
    OIDC_SCOPE,
    OPENID_CLIENT_SIGNED_OUT,
    OPENID_CLIENT_URI,
    Browser,
    OidcServer,
    Registered,
    install_openid_client,
)

pytestmark = pytest.mark.e2e

REDIRECT_URI = OPENID_CLIENT_URI


@pytest.fixture(scope="module")
def server(shared_server: OidcServer) -> OidcServer:
    return shared_server


@pytest.fixture(scope="module")
def script() -> Path:
    """The RP script beside openid-client (installed first: no server starts without node)."""
    return install_openid_client()


def run_relying_party(
    script: Path, server: OidcServer, browser: Browser, client: str, alg: str
) -> dict[str, Any]:
    registered = server.client(client)
    assert registered.client_secret is not None
    process = subprocess.Popen(
        [
            "node",
            str(script),
            server.issuer,
            registered.client_id,
            registered.client_secret,
            REDIRECT_URI,
            OIDC_SCOPE,
            alg,
            OPENID_CLIENT_SIGNED_OUT,
        ],
        cwd=script.parent,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None
    assert process.stderr is not None
    try:
        first = json.loads(process.stdout.readline() or "{}")
        if "authorization_url" not in first:
            rest = process.stdout.read()
            pytest.fail(f"openid-client could not start: {first} {rest} {process.stderr.read()}")
        visit = browser.follow(first["authorization_url"], REDIRECT_URI)
        assert visit.signed_in and visit.consent is not None
        assert "offline_access" in visit.consent  # the consent page names it (OIDC Core §11)
        process.stdin.write(visit.location + "\n")
        process.stdin.flush()
        outcome: dict[str, Any] = json.loads(process.stdout.readline() or "{}")
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert outcome.get("ok"), f"openid-client refused: {outcome}\n{process.stderr.read()}"
    return outcome


@pytest.mark.parametrize(
    ("client", "alg"), [("openid-client", "RS256"), ("openid-client-Ed25519", "Ed25519")]
)
def test_openid_client_code_flow_userinfo_refresh_and_replay(
    script: Path, server: OidcServer, client: str, alg: str
) -> None:
    registered = server.client(client)
    with Browser(server) as browser:
        outcome = run_relying_party(script, server, browser, client, alg)
        signed_out = after = None
        if outcome["end_session_url"] is not None:
            # RP-Initiated Logout with the URL openid-client built: the sign-out page, then back
            # to the registered post_logout_redirect_uri with the RP's state (§2, §3).
            signed_out = browser.follow(
                outcome["end_session_url"], OPENID_CLIENT_SIGNED_OUT, decision="yes"
            )
            # The session is over: prompt=none now answers login_required (OIDC Core §3.1.2.6).
            after = browser.follow(
                authorization_url(server, registered, prompt="none"), REDIRECT_URI
            )
    first, refreshed, replayed = outcome["first"], outcome["refreshed"], outcome["replayed"]
    # The client's registered algorithm (RS256 by default, Ed25519 chosen per client).
    header = json.loads(base64.urlsafe_b64decode(first["id_token"].split(".")[0] + "=="))
    assert header["alg"] == alg
    assert header["kid"] in {key["kid"] for key in server.jwks()["keys"]}

    # Discovery: what openid-client read, consistent with RFC 8414's document.
    metadata = outcome["metadata"]
    assert metadata["issuer"] == server.issuer
    assert metadata["userinfo_endpoint"].startswith(server.url)
    assert "RS256" in metadata["id_token_signing_alg_values_supported"]

    # The ID token openid-client validated (signature, iss, aud, exp, nonce).
    claims = first["claims"]
    assert claims["iss"] == server.issuer
    assert claims["aud"] in (registered.client_id, [registered.client_id])
    assert isinstance(claims["auth_time"], int)
    assert claims["sid"]
    assert claims["at_hash"] == first["at_hash"], "at_hash does not match the access token"
    assert first["refresh_token"], "offline_access was consented: a refresh token is due"
    assert set(first["scope"].split()) == set(OIDC_SCOPE.split())

    # Userinfo: the same subject (openid-client checks it against the ID token's sub).
    userinfo = outcome["userinfo"]
    assert userinfo["sub"] == claims["sub"]

    # A refresh across rotation: a new ID token, same iss, sub, aud, auth_time, no nonce (§12.2).
    renewed = refreshed["claims"]
    assert refreshed["id_token"] and refreshed["id_token"] != first["id_token"]
    assert refreshed["refresh_token"] != first["refresh_token"]
    for name in ("iss", "sub", "aud", "auth_time"):
        assert renewed[name] == claims[name], name
    assert "nonce" not in renewed
    assert renewed["at_hash"] == refreshed["at_hash"]

    # The same refresh replayed inside the leeway: the very same sealed pair and ID token.
    assert replayed["id_token"] == refreshed["id_token"]
    assert replayed["access_token"] == refreshed["access_token"]
    assert replayed["refresh_token"] == refreshed["refresh_token"]

    # The email set with `baton user set` (the `email` scope), last: it needs the CLI part.
    assert server.email_set is None, server.email_set
    assert userinfo["email"] == EMAIL

    assert outcome["end_session_url"] is not None, "no end_session_endpoint in discovery"
    assert signed_out is not None and signed_out.query.get("state") == outcome["logout_state"]
    assert after is not None
    assert after.query.get("error") == "login_required", after.location


def authorization_url(server: OidcServer, registered: Registered, **extra: str) -> str:
    query = {
        "response_type": "code",
        "client_id": registered.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid",
        "state": "after-logout",
        "nonce": "n",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_challenge_method": "S256",
        **extra,
    }
    return f"{server.url}/authorize?{urlencode(query)}"

"""The same SDK against an independent server that rotates refresh tokens: node-oidc-provider.

The provider (npm `oidc-provider@9`) is installed into a cache directory outside the repository
and runs on loopback with `rotateRefreshToken: true` and a static confidential client. Tokens are
obtained through its authorization code flow (PKCE, its development login and consent pages),
using the SDK's own flow helpers; then the SDK refreshes and calls the userinfo endpoint.
Without npm the test is skipped, except in CI (CI=true), where it fails.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest

from baton.client import (
    BearerAuth,
    FailureEvent,
    Hooks,
    MemoryStore,
    OAuthClient,
    Refresher,
    RotationEvent,
    authorization_url,
    code_from_callback,
    exchange_code,
    store_pair,
)
from tests.e2e.conftest import free_port
from tests.node import npm_peer

pytestmark = pytest.mark.e2e

HERE = Path(__file__).resolve().parent
CACHE = Path(
    os.environ.get(
        "BATON_TEST_NODE_CACHE", Path.home() / ".cache" / "baton-tests" / "oidc-provider9"
    )
)
CLIENT_ID = "baton-sdk-test"
CLIENT_SECRET = "a-long-enough-client-secret-for-the-provider-0123456789"
REDIRECT_URI = "http://127.0.0.1:9000/callback"


def install_provider() -> Path:
    return npm_peer(
        CACHE,
        "oidc-provider@9",
        HERE / "oidc_provider_server.mjs",
        what="node-oidc-provider",
        project="baton-test-oidc",
    )


@dataclass
class Provider:
    issuer: str
    process: subprocess.Popen[bytes]


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[Provider]:
    script = install_provider()
    port = free_port()
    log = tmp_path / "oidc-provider.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["node", str(script), str(port), CLIENT_ID, CLIENT_SECRET, REDIRECT_URI],
            cwd=CACHE,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    issuer = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail(f"oidc-provider exited:\n{log.read_text()}")
            try:
                if httpx.get(issuer + "/.well-known/openid-configuration").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"oidc-provider did not start:\n{log.read_text()}")
            time.sleep(0.1)
        yield Provider(issuer, process)
    finally:
        process.terminate()
        process.wait(timeout=10)


def sign_in_and_consent(browser: httpx.Client, url: str) -> str:
    """Follows the provider's development login and consent pages to the redirect back."""
    for _ in range(20):
        response = browser.get(url)
        while response.status_code in (302, 303):
            url = urljoin(url, response.headers["location"])
            if url.startswith(REDIRECT_URI):
                return url
            response = browser.get(url)
        assert response.status_code == 200, response.text
        action = re.search(r'<form[^>]*action="([^"]+)"', response.text)
        assert action is not None, response.text
        fields = dict(
            re.findall(
                r'<input[^>]*type="hidden"[^>]*name="([^"]+)"[^>]*value="([^"]*)"', response.text
            )
        )
        if 'name="login"' in response.text:
            fields.update({"login": "alice", "password": "any"})
        posted = browser.post(urljoin(url, action.group(1)), data=fields)
        assert posted.status_code in (302, 303), posted.text
        url = urljoin(url, posted.headers["location"])
        if url.startswith(REDIRECT_URI):
            return url
    raise AssertionError("the provider never redirected back")


def test_sdk_refreshes_against_node_oidc_provider(provider: Provider) -> None:
    metadata = httpx.get(provider.issuer + "/.well-known/openid-configuration").json()
    client = OAuthClient(metadata["token_endpoint"], CLIENT_ID, CLIENT_SECRET)
    request = authorization_url(
        metadata["authorization_endpoint"],
        CLIENT_ID,
        REDIRECT_URI,
        "openid",
        issuer=metadata["issuer"],
        extra={"prompt": "consent"},
    )
    with httpx.Client() as browser:
        callback = sign_in_and_consent(browser, request.url)
    first = exchange_code(client, request, code_from_callback(request, callback))
    assert first.refresh_token is not None

    store = MemoryStore()
    store_pair(store, first)
    rotations: list[RotationEvent] = []
    failures: list[FailureEvent] = []
    refresher = Refresher(
        client, store, hooks=Hooks(on_rotation=rotations.append, on_failure=failures.append)
    )
    assert refresher.retry_window() == refresher.unknown_leeway_window  # no Baton metadata here

    second = refresher.refresh(first)
    assert second.refresh_token not in (None, first.refresh_token)  # the provider rotated
    assert store.load() == second
    userinfo = metadata["userinfo_endpoint"]
    with httpx.Client(auth=BearerAuth(refresher)) as http:
        response = http.get(userinfo)
        assert response.status_code == 200, response.text
        assert response.json()["sub"] == "alice"
        # An access token the provider does not accept (as if a cache had kept a dead one): its
        # userinfo answers 401 invalid_token, and the SDK rotates again and retries once.
        store_pair(store, replace(second, access_token="not-a-valid-access-token"))
        response = http.get(userinfo)
    assert response.status_code == 200, response.text
    assert [r.status_code for r in response.history] == [401]
    third = store.load()
    assert third is not None and third.refresh_token not in (
        first.refresh_token,
        second.refresh_token,
    )
    assert len(rotations) == 2 and failures == []
    # The provider treats the rotated-out token as spent: the SDK never presents it again.
    stale = httpx.post(
        metadata["token_endpoint"],
        data={"grant_type": "refresh_token", "refresh_token": first.refresh_token},
        auth=(CLIENT_ID, CLIENT_SECRET),
    )
    assert stale.status_code == 400 and stale.json()["error"] == "invalid_grant"

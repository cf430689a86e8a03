"""A single-page app in Chromium does the OpenID Connect code flow with PKCE against a real
`baton serve`, calling the provider only with `fetch` (CORS), from another loopback origin.

The SPA (tests/browser/spa/spa.html, a static page) is served twice by the test: on the origin of
its registered redirect URI (http://127.0.0.1:PORT, whose origin the client is allowed by default)
and on http://localhost:OTHER, an origin the client is not allowed. From the first the whole flow
succeeds: discovery, /authorize (the test fills the login and consent pages), the code exchange
and a refresh, all through `fetch`. From the second the browser refuses the token response to
the page (a TypeError), although the server answers the same request from a non-browser client.
"""

from __future__ import annotations

import base64
import functools
import json
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from playwright.sync_api import Browser, Page
from playwright.sync_api import Error as PlaywrightError

from tests.interop.conftest import PASSWORD, USERNAME, ClientSpec, OidcServer, start_oidc_server

pytestmark = pytest.mark.e2e

SPA = Path(__file__).resolve().parent / "spa"


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def origins() -> Iterator[tuple[str, str]]:
    """The SPA's static files on two origins: (allowed, not allowed)."""
    handler = functools.partial(_Quiet, directory=str(SPA))
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), handler) for _ in range(2)]
    for http in servers:
        threading.Thread(target=http.serve_forever, daemon=True).start()
    try:
        yield (
            f"http://127.0.0.1:{servers[0].server_address[1]}",
            f"http://localhost:{servers[1].server_address[1]}",
        )
    finally:
        for http in servers:
            http.shutdown()
            http.server_close()


@pytest.fixture(scope="module")
def server(
    origins: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OidcServer]:
    allowed, _ = origins
    running = start_oidc_server(
        tmp_path_factory.mktemp("baton-spa"),
        [ClientSpec("spa", (allowed + "/spa.html",), scope="openid offline_access", public=True)],
    )
    try:
        yield running
    finally:
        running.stop()


def claims_of(id_token: str) -> dict[str, Any]:
    payload = id_token.split(".")[1]
    body: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return body


def open_spa(browser: Browser, origin: str, server: OidcServer) -> Page:
    page = browser.new_page()
    query = urlencode({"issuer": server.issuer, "client_id": server.client("spa").client_id})
    page.goto(f"{origin}/spa.html?{query}")
    return page


def test_spa_code_flow_with_pkce_and_refresh_through_cors(
    browser: Browser, server: OidcServer, origins: tuple[str, str]
) -> None:
    allowed, _ = origins
    client_id = server.client("spa").client_id
    page = open_spa(browser, allowed, server)
    try:
        page.click("#sign-in")
        try:
            page.wait_for_url(f"{server.url}/login**", timeout=10_000)
        except PlaywrightError:
            pytest.fail(f"the SPA did not reach the login page: {page.evaluate('window.spa')}")
        page.fill("#username", USERNAME)
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{server.url}/authorize**")
        page.click("button[value=allow]")
        page.wait_for_url(f"{allowed}/spa.html?**")
        page.wait_for_selector("body[data-done=yes]", timeout=10_000)
        results: dict[str, Any] = page.evaluate("window.spa.results")
        nonce = page.evaluate("window.spa.nonce")
    finally:
        page.close()

    assert "error" not in results, results
    token = results["token"]
    assert token.get("status") == 200, token
    body = token["body"]
    assert body["access_token"] and body["refresh_token"] and body["id_token"]
    claims = claims_of(body["id_token"])
    assert claims["aud"] in (client_id, [client_id])
    assert claims["nonce"] == nonce
    assert claims["iss"] == server.issuer

    refreshed = results["refreshed"]
    assert refreshed.get("status") == 200, refreshed
    assert refreshed["body"]["refresh_token"] != body["refresh_token"]
    assert claims_of(refreshed["body"]["id_token"])["sub"] == claims["sub"]


def test_an_origin_not_allowed_is_refused_by_the_browser(
    browser: Browser, server: OidcServer, origins: tuple[str, str]
) -> None:
    allowed, foreign = origins
    token_endpoint = server.url + "/token"
    fields = {"grant_type": "refresh_token", "refresh_token": "bat_rt_not-a-real-one"}
    page = open_spa(browser, foreign, server)
    try:
        answer = page.evaluate(
            "([url, fields]) => window.spa.tokenRequest(url, fields)", [token_endpoint, fields]
        )
    finally:
        page.close()
    assert answer.get("error", "").startswith("TypeError"), answer

    # The server itself answers the very same request from a non-browser client...
    direct = httpx.post(
        token_endpoint, data={"client_id": server.client("spa").client_id, **fields}
    )
    assert direct.status_code == 400 and direct.json()["error"] == "invalid_grant", direct.text
    # ...and answers the foreign origin's preflight without permission, the allowed one's with.
    preflight = {
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type",
    }
    refused = httpx.options(token_endpoint, headers={"origin": foreign, **preflight})
    assert "access-control-allow-origin" not in refused.headers
    granted = httpx.options(token_endpoint, headers={"origin": allowed, **preflight})
    assert granted.headers.get("access-control-allow-origin") == allowed, granted.headers
    assert "access-control-allow-credentials" not in granted.headers  # no credentials mode

"""Once in a real browser (Debian's Chromium through Playwright): an application's authorization
request, Baton's login page, "Sign in with Node", node-oidc-provider and back, the consent page,
and the code at the application's redirect URI, for the user the upstream account is linked to.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import anyio
import pytest
import uvicorn
from playwright.sync_api import Browser, Route, expect
from tests.browser.conftest import browser  # noqa: F401  (the fixture: Chromium, launched once)
from tests.support import (
    REDIRECT_URI,
    RegisteredClient,
    migrated_store,
    pkce_pair,
    register_client,
    register_user,
)
from tests.upstream.conftest import KEK, NodeUpstream, add_provider

from baton.config import Settings
from baton.core.user_claims import ClaimChanges
from baton.server.app import create_app
from baton.store.sql import SQLStore

pytestmark = pytest.mark.e2e


def off_the_loop(work: Callable[[], None]) -> None:
    """Runs `work` (which may `anyio.run`) on a thread of its own: Playwright's sync API holds
    an event loop on the test's thread."""
    failed: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if failed:
        raise failed[0]


@pytest.fixture
def served(tmp_path: Path, node_upstream: NodeUpstream) -> Iterator[tuple[str, SQLStore]]:
    """Baton under uvicorn on the port whose callback the node upstream has registered."""
    port = node_upstream.browser_port
    issuer = f"http://127.0.0.1:{port}"
    stores: list[SQLStore] = []
    off_the_loop(lambda: stores.append(migrated_store(tmp_path / "baton.db")))
    [store] = stores
    app = create_app(Settings(issuer=issuer, key_encryption_key=KEK), store)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "Baton did not start"
        time.sleep(0.01)
    try:
        yield issuer, store
    finally:
        server.should_exit = True
        thread.join(timeout=5)


def test_sign_in_with_the_upstream_in_a_browser(
    browser: Browser,  # noqa: F811
    served: tuple[str, SQLStore],
    node_upstream: NodeUpstream,
) -> None:
    issuer, store = served
    registered: list[RegisteredClient] = []

    def prepare() -> None:
        register_user(store, "alice")
        changes = ClaimChanges({"email": "alice@example.com"}, email_verified=True)
        anyio.run(store.set_user_claims, "alice", changes, 0)
        add_provider(store, "node", node_upstream.issuer, name="Node", link_by_email=True)
        registered.append(register_client(store, scope="openid read"))

    off_the_loop(prepare)
    [client] = registered
    node_upstream.account("up-alice-browser", email="alice@example.com", email_verified=True)
    _verifier, challenge = pkce_pair()
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client.id,
            "redirect_uri": REDIRECT_URI,
            "scope": "openid read",
            "state": "browser-state",
            "nonce": "browser-nonce",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    page = browser.new_page()
    landed: list[str] = []

    def application(route: Route) -> None:  # the application's redirect URI
        landed.append(route.request.url)
        route.fulfill(status=200, body="signed in", content_type="text/plain")

    page.route(f"{REDIRECT_URI}**", application)
    page.goto(f"{issuer}/authorize?{query}")
    assert "/login?next=" in page.url
    page.click("text=Sign in with Node")
    expect(page.locator("button[value=allow]")).to_be_visible()  # Baton's consent page
    assert page.url.startswith(f"{issuer}/authorize?")
    page.click("button[value=allow]")
    page.wait_for_url(f"{REDIRECT_URI}**")
    answer = parse_qs(urlsplit(landed[-1]).query)
    assert answer["state"] == ["browser-state"] and answer["code"]
    page.close()

"""Signing in with node-oidc-provider as the upstream, end to end on loopback: the login page
lists it, the browser goes there and back, Baton validates its ID token, links the account and
begins a session, and the authorization request goes on to an OpenID Connect code and tokens
for the linked user. Then the linking rules: no link and nothing allowed (refused), a user made
(`--create-users`), and a link by e-mail refused while the upstream has not verified it.
"""

from __future__ import annotations

import base64
import json
import re
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import anyio
import httpx
import pytest
from argon2 import PasswordHasher
from sqlalchemy import select
from tests.support import (
    ISSUER,
    REDIRECT_URI,
    hidden_fields,
    pkce_pair,
    register_client,
    register_user,
    sign_in,
)
from tests.upstream.conftest import Baton, NodeUpstream, add_provider

from baton.config import Settings
from baton.core.upstream import username_for
from baton.core.user_claims import ClaimChanges
from baton.store.schema import audit_log, upstream_links

pytestmark = pytest.mark.e2e
_ADMIN_HASH = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash("root password")


@pytest.fixture(autouse=True)
def _node_has_time(baton_app: Baton) -> None:
    """Baton waits for node-oidc-provider as long as the server does by default
    (`--upstream-timeout`). The conftest's half second is for the fake upstream's timeout
    tests; node is a real process on a machine the whole suite shares, and once took longer
    than that to answer a token request in CI."""
    upstreams = baton_app.http.app.state.upstreams  # type: ignore[attr-defined]
    upstreams.timeout = Settings.upstream_timeout


def sign_in_upstream(baton: Baton, node: NodeUpstream, login_url: str, name: str) -> Any:
    """From Baton's login page, "Sign in with NAME", through the upstream (a browser of its
    own, whose interaction signs the chosen account in at once), to Baton's answer."""
    login = baton.http.get(login_url)
    assert login.status_code == 200
    link = re.search(rf'<a class="upstream" href="([^"]+)">Sign in with {name}</a>', login.text)
    assert link is not None, login.text
    response = baton.http.get(unescape(link.group(1)))
    assert response.status_code == 303, response.text
    url = response.headers["location"]
    assert url.startswith(node.issuer)
    with httpx.Client(timeout=10) as upstream_browser:
        for _ in range(10):
            answer = upstream_browser.get(url)
            assert answer.status_code in (302, 303), answer.text
            url = urljoin(url, answer.headers["location"])
            if url.startswith(ISSUER):
                break
        else:
            pytest.fail("the upstream never sent the browser back")
    parts = urlsplit(url)
    return baton.http.get(f"{parts.path}?{parts.query}")


def id_token_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * 4))
    return claims


def link_of(baton: Baton, provider_id: str, subject: str) -> Any:
    query = select(upstream_links).where(
        (upstream_links.c.provider_id == provider_id) & (upstream_links.c.subject == subject)
    )
    return anyio.run(baton.store.inspect, lambda conn: conn.execute(query).mappings().first())


def test_sign_in_with_the_upstream_continues_to_tokens_for_the_linked_user(
    baton: Baton, node_upstream: NodeUpstream
) -> None:
    register_user(baton.store, "alice")
    changes = ClaimChanges({"email": "alice@example.com"}, email_verified=True)
    anyio.run(baton.store.set_user_claims, "alice", changes, baton.clock.now())
    add_provider(baton.store, "node", node_upstream.issuer, name="Node", link_by_email=True)
    node_upstream.account("up-alice", email="alice@example.com", email_verified=True)
    client = register_client(baton.store, scope="openid read")
    verifier, challenge = pkce_pair()
    request = {
        "response_type": "code",
        "client_id": client.id,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid read",
        "state": "s1",
        "nonce": "n1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    response = baton.http.get("/authorize", params=request)
    assert response.status_code == 303 and response.headers["location"].startswith("/login?")
    response = sign_in_upstream(baton, node_upstream, response.headers["location"], "Node")
    assert response.status_code == 303, response.text
    assert response.headers["location"].startswith("/authorize?")
    consent = baton.http.get(response.headers["location"])
    assert consent.status_code == 200, consent.text
    allow = {**hidden_fields(consent.text), "decision": "allow"}
    answer = baton.http.post("/authorize", data=allow)
    assert answer.status_code in (302, 303), answer.text
    query = parse_qs(urlsplit(answer.headers["location"]).query)
    tokens = baton.http.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": query["code"][0],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        },
        auth=client.basic,
    )
    assert tokens.status_code == 200, tokens.text
    claims = id_token_claims(tokens.json()["id_token"])
    userinfo = baton.http.get(
        "/userinfo", headers={"Authorization": f"Bearer {tokens.json()['access_token']}"}
    )
    assert userinfo.status_code == 200
    assert claims["sub"] == userinfo.json()["sub"] == "alice"  # the local user, not up-alice
    assert claims["nonce"] == "n1"
    assert claims["amr"] == ["pwd", "mfa"]  # how the upstream signed the user in
    link = link_of(baton, "node", "up-alice")
    assert link is not None and link["email"] == "alice@example.com"
    assert link["last_used_at"] == baton.clock.now()
    # The sign-in is in the audit log, without a token.
    rows = anyio.run(
        baton.store.inspect,
        lambda conn: list(
            conn.execute(select(audit_log).where(audit_log.c.action == "upstream.sign_in"))
            .mappings()
            .all()
        ),
    )
    assert [(r["actor"], r["target_id"]) for r in rows] == [("upstream:node", "alice")]
    assert json.loads(rows[0]["detail"]) == {
        "linked": "email",
        "provider": "node",
        "upstream_subject": "up-alice",
    }
    # The console shows the link on alice's page.
    anyio.run(lambda: baton.store.create_user("root", _ADMIN_HASH, 0, admin=True))
    baton.http.cookies.clear()
    assert sign_in(baton.http, "/login?next=/admin", "root", "root password").status_code == 303
    page = baton.http.get("/admin/users/claims", params={"username": "alice"})
    assert page.status_code == 200, page.text
    assert "up-alice" in page.text and "Node" in page.text


def test_no_link_and_nothing_allowed_is_refused(baton: Baton, node_upstream: NodeUpstream) -> None:
    add_provider(baton.store, "strict", node_upstream.issuer, name="Strict")
    node_upstream.account("up-nobody", email="nobody@example.com", email_verified=True)
    response = sign_in_upstream(baton, node_upstream, "/login", "Strict")
    assert response.status_code == 403
    assert "No account is linked to this Strict account." in response.text
    assert link_of(baton, "strict", "up-nobody") is None
    assert 'href="/logout"' not in baton.http.get("/").text  # not signed in


def test_create_users_makes_a_user_with_the_upstream_claims(
    baton: Baton, node_upstream: NodeUpstream
) -> None:
    add_provider(baton.store, "create", node_upstream.issuer, name="Create", create_users=True)
    node_upstream.account(
        "up-bob",
        email="bob@example.com",
        email_verified=True,
        name="Bob Upstream",
        preferred_username="bob",
    )
    response = sign_in_upstream(baton, node_upstream, "/login", "Create")
    assert response.status_code == 303, response.text
    assert 'href="/logout"' in baton.http.get("/").text  # signed in
    # Named after the upstream's `sub`, never its preferred_username.
    assert anyio.run(baton.store.get_user, "bob") is None
    bob = anyio.run(baton.store.get_user, username_for("create", "up-bob"))
    assert bob is not None
    assert (bob.email, bob.email_verified, bob.profile) == (
        "bob@example.com",
        True,
        {"name": "Bob Upstream"},
    )
    assert bob.password_hash == "!"  # baton.passwords.NO_PASSWORD: no password sign-in
    assert link_of(baton, "create", "up-bob")["user_id"] == bob.id


def test_link_by_email_needs_the_upstream_to_have_verified_it(
    baton: Baton, node_upstream: NodeUpstream
) -> None:
    register_user(baton.store, "carol")
    changes = ClaimChanges({"email": "carol@example.com"}, email_verified=True)
    anyio.run(baton.store.set_user_claims, "carol", changes, baton.clock.now())
    add_provider(baton.store, "verified", node_upstream.issuer, name="Mail", link_by_email=True)
    node_upstream.account("up-carol", email="carol@example.com", email_verified=False)
    response = sign_in_upstream(baton, node_upstream, "/login", "Mail")
    assert response.status_code == 403
    assert "No account is linked to this Mail account." in response.text
    assert link_of(baton, "verified", "up-carol") is None

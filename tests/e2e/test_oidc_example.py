"""examples/oidc_rp.py, docs/openid-connect.md's relying party with Authlib, against a real
`baton serve` with OpenID Connect on, through the real login and consent pages: discovery, the
code flow with PKCE and a nonce, the ID token validated, UserInfo, a refresh."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from types import ModuleType
from urllib.parse import parse_qs, urlsplit

import pytest
import requests  # type: ignore[import-untyped,unused-ignore]

from tests.e2e.conftest import REDIRECT_URI, USERNAME, ServerFactory, cli_in_process, visit

pytestmark = pytest.mark.e2e

KEK = "the e2e key-encryption key, 32+ characters long"


@pytest.fixture
def example() -> Iterator[ModuleType]:
    sys.modules.pop("examples.oidc_rp", None)
    yield importlib.import_module("examples.oidc_rp")
    sys.modules.pop("examples.oidc_rp", None)


def test_the_docs_relying_party(baton_server: ServerFactory, example: ModuleType) -> None:
    server = baton_server(key_encryption_key=KEK)
    # The docs' commands, in this process (a `baton` process spends a second on its imports).
    created = cli_in_process(
        "client",
        "create",
        "--db",
        str(server.db),
        "--name",
        "oidc rp",
        "--redirect-uri",
        REDIRECT_URI,
        "--scope",
        example.SCOPE,
        "--json",
    )
    client = json.loads(created)
    # docs/openid-connect.md's `baton user set`: what `profile` and `email` release.
    cli_in_process(
        "user",
        "set",
        "--db",
        str(server.db),
        USERNAME,
        "--email",
        "alice@example.com",
        "--email-verified",
        "--name",
        "Alice Liddell",
    )
    claims = {
        "sub": USERNAME,
        "preferred_username": USERNAME,
        "email": "alice@example.com",
        "email_verified": True,
        "name": "Alice Liddell",
    }
    rp = example.RelyingParty(
        server.url, client["client_id"], client["client_secret"], REDIRECT_URI
    )
    assert rp.config["userinfo_endpoint"] == server.url + "/userinfo"

    url = rp.authorization_url()
    query = parse_qs(urlsplit(url).query)
    assert query["nonce"] == [rp.nonce]
    assert query["code_challenge_method"] == ["S256"]
    assert query["scope"] == [example.SCOPE]
    with requests.Session() as browser:
        found = visit(browser, server, url)
    assert found.query["iss"] == [server.url]

    try:
        signed_in = rp.finish(found.location)
    except KeyError as missing:
        # The code was redeemed, but the token response carries no ID token: the server predates
        # ID tokens (issue 24 lands in parts). UserInfo works already.
        assert missing.args == ("id_token",)
        info = rp.session.get(rp.config["userinfo_endpoint"], timeout=10).json()
        assert claims.items() <= info.items()
        pytest.skip("this server issues no ID token yet")
    assert signed_in["sub"] == USERNAME
    assert signed_in["nonce"] == rp.nonce
    assert claims.items() <= rp.userinfo().items()
    refreshed = rp.refresh()
    assert refreshed["sub"] == USERNAME
    assert "nonce" not in refreshed or refreshed["nonce"] == rp.nonce

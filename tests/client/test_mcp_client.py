"""`baton.client.mcp.MCPAuth`: an MCP client of the `mcp` SDK with Baton's rotation guarantees.

One real Baton and one real MCP server (the SDK's `MCPServer`, streamable HTTP, its tokens
checked by Baton's introspection), both under uvicorn on loopback ports, are shared by the
module. The client is the SDK's own
`Client` over its streamable HTTP transport; the first authorization goes through Baton's real
login and consent pages, driven by the SDK's provider through the redirect handler. "Later" is a
client clock two minutes ahead (the stored access token has expired for it), not a sleep.
"""

from __future__ import annotations

import ast
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import anyio.to_thread
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

import baton.client
from baton.client import (
    ClientError,
    FileStore,
    Hooks,
    MemoryStore,
    OAuthClient,
    ReauthorizationRequired,
    RotationEvent,
    TokenPair,
    authorization_url,
    code_from_callback,
    exchange_code,
    store_pair,
)
from baton.client.mcp import MCPAuth
from baton.config import Settings
from baton.core.policy import Lifetimes, Policy
from baton.server.app import create_app
from tests.client.mcp_server import McpServer, serving
from tests.e2e.conftest import Credentials, free_port
from tests.support import (
    REDIRECT_URI,
    RegisteredClient,
    hidden_fields,
    migrated_store,
    register_client,
    register_user,
    sign_in,
)

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

LATER = 120.0  # the client's clock two minutes ahead: every (60 s) access token has expired


@dataclass
class Deployment:
    issuer: str
    database: Path
    resource_server: RegisteredClient
    mcp: McpServer
    client_id: str

    def introspect(self, token: str) -> dict[str, Any]:
        answer = httpx.post(
            self.issuer + "/introspect", data={"token": token}, auth=self.resource_server.basic
        )
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with closing(sqlite3.connect(f"file:{self.database}?mode=ro", uri=True)) as conn:
            return conn.execute(query, params).fetchall()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """Baton (`replay`, a 60 s access token) and the MCP server, each under uvicorn; the MCP
    server registered as a resource server (its URL the RFC 8707 resource), the MCP client as a
    public client that may ask for it."""
    database = tmp_path_factory.mktemp("baton") / "baton.db"
    baton_port, mcp_port = free_port(), free_port()
    issuer, mcp_url = f"http://127.0.0.1:{baton_port}", f"http://127.0.0.1:{mcp_port}/mcp"
    policy = Policy(Lifetimes(access_ttl=60))
    store = migrated_store(database, policy)
    register_user(store)
    api = register_client(store, resource_server=True, name="mcp server", resource_uri=mcp_url)
    app = register_client(store, public=True, name="mcp client", allowed_resources=(mcp_url,))
    assert api.secret is not None
    mcp = McpServer(issuer, Credentials(api.id, api.secret), mcp_port)
    with (
        serving(create_app(Settings(issuer=issuer, policy=policy), store), baton_port),
        serving(mcp.app, mcp_port),
    ):
        yield Deployment(issuer, database, api, mcp, app.id)


@dataclass
class Browser:
    """The person at the browser: signs in (once per test), allows, and is sent back to the
    client's redirect URI, which the callback handler reads."""

    deployment: Deployment
    opened: list[str] = field(default_factory=list)
    callbacks: list[str] = field(default_factory=list)

    async def redirect(self, url: str) -> None:
        self.opened.append(url)
        self.callbacks.append(await anyio.to_thread.run_sync(self.visit, url))

    def visit(self, url: str) -> str:
        with httpx2.Client(base_url=self.deployment.issuer) as http:
            response = http.get(url)
            if response.status_code == 303 and response.headers["location"].startswith("/login"):
                response = sign_in(http, response.headers["location"])
                assert response.status_code == 303, response.text
                response = http.get(response.headers["location"])
            assert response.status_code == 200, response.text  # the consent page
            fields = hidden_fields(response.text)
            response = http.post("/authorize", data={**fields, "decision": "allow"})
        assert response.status_code in (302, 303), response.text
        location: str = response.headers["location"]
        assert location.startswith(REDIRECT_URI + "?"), location
        return location

    async def callback(self) -> AuthorizationCodeResult:
        query = parse_qs(urlsplit(self.callbacks[-1]).query)
        return AuthorizationCodeResult(
            code=query["code"][0], state=query["state"][0], iss=query.get("iss", [None])[0]
        )


def metadata() -> OAuthClientMetadata:
    return OAuthClientMetadata(
        client_name="mcp test client",
        redirect_uris=[REDIRECT_URI],  # type: ignore[list-item]
        grant_types=["authorization_code", "refresh_token"],
        token_endpoint_auth_method="none",
        scope="read write",
    )


def registration(deployment: Deployment) -> OAuthClientInformationFull:
    return OAuthClientInformationFull(
        client_id=deployment.client_id,
        redirect_uris=[REDIRECT_URI],  # type: ignore[list-item]
        token_endpoint_auth_method="none",
    )


def mcp_auth(
    deployment: Deployment,
    store: Any,
    browser: Browser,
    *,
    ahead: float = 0.0,
    rotations: list[RotationEvent] | None = None,
    **options: Any,
) -> MCPAuth:
    clock: Callable[[], float] = lambda: time.time() + ahead  # noqa: E731
    return MCPAuth(
        deployment.mcp.url,
        metadata(),
        store,
        redirect_handler=browser.redirect,
        callback_handler=browser.callback,
        client_info=registration(deployment),
        issuer=deployment.issuer,
        clock=clock,
        hooks=Hooks(on_rotation=None if rotations is None else rotations.append),
        **options,
    )


async def whoami(url: str, auth: httpx2.Auth) -> str:
    """One MCP session: the SDK's client over its streamable HTTP transport, calling the tool."""
    async with (
        httpx2.AsyncClient(auth=auth, timeout=20) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        result = await client.call_tool("whoami", {})
    assert not result.is_error, result
    text: str = result.content[0].text  # type: ignore[union-attr]
    return text


def reuse_events(deployment: Deployment) -> int:
    rows = deployment.sql("SELECT count(*) FROM security_events WHERE kind LIKE '%reuse'")
    count: int = rows[0][0]
    return count


def exchanges(deployment: Deployment, pair: TokenPair) -> list[tuple[Any, ...]]:
    """The refresh tokens of `pair`'s grant: one row per exchange, plus the first."""
    grant_id = deployment.introspect(pair.access_token)["grant_id"]
    return deployment.sql("SELECT generation FROM refresh_tokens WHERE grant_id = ?", grant_id)


async def test_a_restarted_client_refreshes_the_stored_pair_instead_of_authorizing_again(
    deployment: Deployment, tmp_path: Path
) -> None:
    store = FileStore(tmp_path / "mcp" / "tokens.json")
    browser = Browser(deployment)
    first = mcp_auth(deployment, store, browser)
    assert await whoami(deployment.mcp.url, first) == f"alice via {deployment.client_id}"
    assert len(browser.opened) == 1  # the one interactive authorization, by the SDK's provider
    assert "resource=" in browser.opened[0]  # the SDK's RFC 8707 indicator, kept
    authorized = store.load()
    assert authorized is not None and authorized.refresh_token is not None

    # A new process, two minutes later: the stored access token has expired.
    before = len(deployment.mcp.verifier.seen)
    rotations: list[RotationEvent] = []
    restarted = mcp_auth(
        deployment, FileStore(store.path), browser, ahead=LATER, rotations=rotations
    )
    assert await whoami(deployment.mcp.url, restarted) == f"alice via {deployment.client_id}"
    assert len(browser.opened) == 1  # refreshed: the redirect handler was never called again
    assert len(rotations) == 1
    refreshed = store.load()
    assert refreshed is not None and refreshed.rotations == 1
    # The MCP server never saw the expired token again: every request carried the new one.
    assert set(deployment.mcp.verifier.seen[before:]) == {refreshed.access_token}
    assert len(exchanges(deployment, refreshed)) == 2
    assert reuse_events(deployment) == 0


async def test_the_sdk_alone_authorizes_again_after_a_restart(
    deployment: Deployment, tmp_path: Path
) -> None:
    """Why `MCPAuth` exists, and a tripwire on the SDK: after a restart, the unmodified
    `OAuthClientProvider` sends the stored access token whatever its age (it keeps no expiry
    across a restart) and answers the server's 401 with a whole new interactive authorization,
    although the stored refresh token is alive: where `MCPAuth` refreshes. If this starts failing,
    the SDK changed how it restarts: re-read baton.client.mcp's module docstring and docs/mcp.md's
    "MCP clients"."""
    store = MemoryStore()
    browser = Browser(deployment)
    assert await whoami(deployment.mcp.url, mcp_auth(deployment, store, browser)) != "nobody"
    pair = store.load()
    assert pair is not None

    @dataclass
    class Storage:
        tokens: OAuthToken | None
        client: OAuthClientInformationFull | None

        async def get_tokens(self) -> OAuthToken | None:
            return self.tokens

        async def set_tokens(self, tokens: OAuthToken) -> None:
            self.tokens = tokens

        async def get_client_info(self) -> OAuthClientInformationFull | None:
            return self.client

        async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
            self.client = client_info

    # What the SDK stored, read back after a restart; the access token one the server refuses,
    # as it refuses an expired one (the server's clock is real: this one never existed).
    now = time.time()
    stored = OAuthToken(
        access_token=pair.access_token,
        expires_in=None if pair.expires_at is None else max(0, int(pair.expires_at - now)),
        scope=pair.scope,
        refresh_token=pair.refresh_token,
    )
    stored.access_token = "an-access-token-that-has-expired"
    provider = OAuthClientProvider(
        deployment.mcp.url,
        metadata(),
        Storage(stored, registration(deployment)),
        redirect_handler=browser.redirect,
        callback_handler=browser.callback,
    )
    assert await whoami(deployment.mcp.url, provider) == f"alice via {deployment.client_id}"
    assert len(browser.opened) == 2  # a second sign-in, where a refresh would have done
    assert len(exchanges(deployment, pair)) == 1  # the live refresh token was never used


async def test_two_clients_sharing_a_store_refresh_once(
    deployment: Deployment, tmp_path: Path
) -> None:
    store = FileStore(tmp_path / "shared" / "tokens.json")
    browser = Browser(deployment)
    await whoami(deployment.mcp.url, mcp_auth(deployment, store, browser))
    rotations: list[RotationEvent] = []
    # Two processes' worth of clients (own auth, own refresher, own store object), one file.
    clients = [
        mcp_auth(deployment, FileStore(store.path), browser, ahead=LATER, rotations=rotations)
        for _ in range(2)
    ]
    answers: list[str] = []

    async def call(auth: MCPAuth) -> None:
        answers.append(await whoami(deployment.mcp.url, auth))

    async with anyio.create_task_group() as group:
        for auth in clients:
            group.start_soon(call, auth)
    assert answers == [f"alice via {deployment.client_id}"] * 2
    assert len(rotations) == 1  # one exchange: the other client used the pair the first stored
    assert len(browser.opened) == 1
    pair = store.load()
    assert pair is not None and pair.rotations == 1
    assert len(exchanges(deployment, pair)) == 2
    assert reuse_events(deployment) == 0


class LoseOneTokenResponse(httpx.HTTPTransport):
    """The network between the client and Baton: the first `POST /token` reaches the server,
    which rotates and answers; the answer is read here and the connection reset instead."""

    def __init__(self) -> None:
        super().__init__()
        self.lost: list[dict[str, Any]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.method == "POST" and request.url.path == "/token" and not self.lost:
            response.read()
            self.lost.append(response.json())
            response.close()
            raise httpx.RemoteProtocolError("connection reset by peer", request=request)
        return response


async def test_a_lost_token_response_is_recovered_inside_the_leeway(
    deployment: Deployment, tmp_path: Path
) -> None:
    store = FileStore(tmp_path / "lost" / "tokens.json")
    browser = Browser(deployment)
    await whoami(deployment.mcp.url, mcp_auth(deployment, store, browser))
    network = LoseOneTokenResponse()
    rotations: list[RotationEvent] = []
    later = mcp_auth(
        deployment,
        store,
        browser,
        ahead=LATER,
        rotations=rotations,
        http=httpx.Client(transport=network),
    )
    assert await whoami(deployment.mcp.url, later) == f"alice via {deployment.client_id}"
    assert len(network.lost) == 1 and "access_token" in network.lost[0]  # Baton did rotate
    (rotation,) = rotations
    assert rotation.attempts == 2  # the same refresh token, sent again inside the leeway
    pair = store.load()
    assert pair is not None
    # Baton's `replay` policy answered the retry with the very pair whose answer was lost.
    assert pair.access_token == network.lost[0]["access_token"]
    assert len(exchanges(deployment, pair)) == 2
    assert reuse_events(deployment) == 0
    assert len(browser.opened) == 1


async def test_without_handlers_a_missing_pair_is_reported_not_authorized(
    deployment: Deployment,
) -> None:
    auth = MCPAuth(
        deployment.mcp.url,
        metadata(),
        MemoryStore(),
        client_info=registration(deployment),
        issuer=deployment.issuer,
    )
    with pytest.raises(ReauthorizationRequired):
        async with httpx2.AsyncClient(auth=auth) as http:
            await http.post(deployment.mcp.url, json={})


async def test_a_revoked_grant_ends_in_one_new_authorization_and_no_reuse(
    deployment: Deployment,
) -> None:
    store = MemoryStore()
    browser = Browser(deployment)
    await whoami(deployment.mcp.url, mcp_auth(deployment, store, browser))
    revoked = store.load()
    assert revoked is not None and revoked.refresh_token is not None
    answer = httpx.post(
        deployment.issuer + "/revoke",
        data={"token": revoked.refresh_token, "client_id": deployment.client_id},
    )
    assert answer.status_code == 200, answer.text
    # Later: the refresh answers invalid_grant, the session ends (a tombstone), and the SDK's
    # provider, never shown the dead refresh token, authorizes once.
    later = mcp_auth(deployment, store, browser, ahead=LATER)
    assert await whoami(deployment.mcp.url, later) == f"alice via {deployment.client_id}"
    assert len(browser.opened) == 2
    fresh = store.load()
    assert fresh is not None and fresh.reauthorize is None and fresh.rotations == 0
    assert fresh.refresh_token != revoked.refresh_token
    assert reuse_events(deployment) == 0


async def test_a_server_asking_for_more_scope_gets_the_sdks_step_up_authorization(
    deployment: Deployment,
) -> None:
    # A pair of the `read` scope alone, for the MCP server (authorized with baton.client's flow).
    browser = Browser(deployment)
    request = authorization_url(
        deployment.issuer + "/authorize",
        deployment.client_id,
        REDIRECT_URI,
        "read",
        issuer=deployment.issuer,
        extra={"resource": deployment.mcp.url},
    )
    callback = await anyio.to_thread.run_sync(browser.visit, request.url)
    client = OAuthClient(deployment.issuer + "/token", deployment.client_id)
    narrow = await anyio.to_thread.run_sync(
        exchange_code, client, request, code_from_callback(request, callback)
    )
    assert narrow.scope == "read"
    store = MemoryStore()
    store_pair(store, narrow)
    # The server answers 403 insufficient_scope: the SDK's step up asks for `read write`.
    assert await whoami(deployment.mcp.url, mcp_auth(deployment, store, browser)) != "nobody"
    (opened,) = browser.opened
    assert set(parse_qs(urlsplit(opened).query)["scope"][0].split()) == {"read", "write"}
    wide = store.load()
    assert wide is not None and set((wide.scope or "").split()) == {"read", "write"}


# -- without servers --------------------------------------------------------------------------


def test_a_registration_the_sdk_made_is_kept_beside_a_file_store_private(tmp_path: Path) -> None:
    """A dynamic registration or a metadata-document client must outlive the process (the stored
    refresh token belongs to it) and may carry a client secret: 0600, beside the pair."""
    store = FileStore(tmp_path / "mcp" / "tokens.json")
    auth = MCPAuth("https://mcp.example/mcp", metadata(), store)
    info = OAuthClientInformationFull(
        client_id="dyn-1",
        client_secret="s3cret",
        token_endpoint_auth_method="client_secret_post",
        issuer="https://as.example/",
    )
    auth.client_record.save(info)
    kept = store.path.with_name("tokens.json.client")
    assert kept.stat().st_mode & 0o777 == 0o600
    again = MCPAuth("https://mcp.example/mcp", metadata(), FileStore(store.path))
    assert again.client_record.load() == info
    # The SDK renders a root issuer with a slash; RFC 8414 §3.3 compares the form Baton serves.
    assert again._issuer_of(info) == "https://as.example"


def test_a_refresh_token_goes_only_to_the_issuer_its_registration_is_bound_to() -> None:
    auth = MCPAuth(
        "https://mcp.example/mcp", metadata(), MemoryStore(), issuer="https://other.example"
    )
    bound = OAuthClientInformationFull(client_id="c", issuer="https://as.example")
    with pytest.raises(ClientError, match="bound to issuer"):
        auth._issuer_of(bound)
    unbound = MCPAuth("https://mcp.example/mcp", metadata(), MemoryStore())
    with pytest.raises(ClientError, match="pass MCPAuth"):
        unbound._issuer_of(OAuthClientInformationFull(client_id="c"))


def test_a_client_authentication_baton_cannot_apply_is_refused_before_any_refresh() -> None:
    info = OAuthClientInformationFull(
        client_id="c", token_endpoint_auth_method="private_key_jwt", issuer="https://as.example"
    )
    auth = MCPAuth("https://mcp.example/mcp", metadata(), MemoryStore(), client_info=info)
    with pytest.raises(ClientError, match="private_key_jwt"):
        auth.refresher()


def test_only_baton_client_mcp_imports_the_mcp_sdk() -> None:
    """`mcp` is an extra: `import baton.client` must work without it."""
    package = Path(baton.client.__file__).parent
    importers: set[str] = set()
    for module in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(module.read_text())):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(n == "mcp" or n.startswith(("mcp.", "baton.client.mcp")) for n in names):
                importers.add(module.name)
    assert importers == {"mcp.py"}

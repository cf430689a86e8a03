"""`baton.resource.mcp` with the real `mcp` SDK: examples/mcp_server.py (an `MCPServer` on
streamable HTTP, protected by `BatonTokenVerifier`) and Baton's real app, each under uvicorn in
this process, tokens issued by Baton's /token for the MCP server's URL, opaque and JWT.

The MCP client is the SDK's own (`mcp.client.Client` over `streamable_http_client`); refusals
are read from the raw HTTP answers."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
import uvicorn
from examples.mcp_server import build
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client

from baton.config import Settings
from baton.core.clock import SystemClock
from baton.core.policy import Policy
from baton.resource import ResourceMetadata, Verifier, VerifierUnavailable
from baton.resource.mcp import BatonTokenVerifier
from baton.server.app import create_app
from tests.audience import register
from tests.e2e.conftest import free_port
from tests.support import RegisteredClient, migrated_store

KEK = "correct horse battery staple, 32+ chars"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "test", "version": "0"},
    },
}
MCP_HEADERS = {"accept": "application/json, text/event-stream"}


class Served:
    """An ASGI app under uvicorn on a thread of this process (its lifespan included)."""

    def __init__(self, app: Any, port: int) -> None:
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=0.1,  # type: ignore[arg-type]  # seconds
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "did not start"
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        assert not self.thread.is_alive()


@dataclass
class Stack:
    token_format: str
    issuer: str
    baton_port: int
    directory: Path
    settings: Settings
    mcp_url: str
    other_url: str
    client: RegisteredClient
    tokens: BatonTokenVerifier
    http: httpx.Client = field(default_factory=httpx.Client)
    baton: Served = field(init=False)
    mcp: Served = field(init=False)

    def start_baton(self) -> None:
        store = migrated_store(self.directory / "baton.db", self.settings.policy)
        self.baton = Served(create_app(self.settings, store, SystemClock()), self.baton_port)

    def token(self, *resources: str) -> str:
        data = {"grant_type": "client_credentials", "resource": list(resources or [self.mcp_url])}
        answer = self.http.post(self.issuer + "/token", data=data, auth=self.client.basic)
        assert answer.status_code == 200, answer.text
        token: str = answer.json()["access_token"]
        return token

    def revoke(self, token: str) -> None:
        answer = self.http.post(
            self.issuer + "/revoke", data={"token": token}, auth=self.client.basic
        )
        assert answer.status_code == 200, answer.text

    def post(self, token: str | None = None, url: str | None = None) -> httpx.Response:
        headers = dict(MCP_HEADERS)
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        return self.http.post(url or self.mcp_url, json=INITIALIZE, headers=headers)


@pytest.fixture(scope="module", params=["opaque", "jwt"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    token_format = str(request.param)
    directory = tmp_path_factory.mktemp(f"mcp-{token_format}")
    baton_port, mcp_port = free_port(), free_port()
    issuer = f"http://127.0.0.1:{baton_port}"
    mcp_url = f"http://127.0.0.1:{mcp_port}/mcp"
    other_url = f"http://127.0.0.1:{mcp_port}/other"
    options: dict[str, Any] = (
        {"access_token_format": "jwt", "key_encryption_key": KEK} if token_format == "jwt" else {}
    )
    settings = Settings(issuer=issuer, policy=Policy(), **options)
    store = migrated_store(directory / "baton.db", settings.policy)
    rs = register(store, resource_uri=mcp_url)
    register(store, resource_uri=other_url)
    client = register(store, allowed=(mcp_url, other_url), scope="read")
    anyio.run(store.close)
    assert rs.secret is not None
    # A short max_disconnect: with Baton stopped, the feed is distrusted within 0.3 s.
    verifier = Verifier(issuer, rs.id, rs.secret, audience=mcp_url, max_disconnect=0.3)
    tokens = BatonTokenVerifier(verifier)
    running = Stack(
        token_format,
        issuer,
        baton_port,
        directory,
        settings,
        mcp_url,
        other_url,
        client,
        tokens,
    )
    running.start_baton()
    running.mcp = Served(build(tokens, ["read"]), mcp_port)
    assert verifier.feed is not None and verifier.feed.wait_synced(5), verifier.health()
    yield running
    running.http.close()
    running.mcp.stop()
    running.baton.stop()
    assert not tokens._started  # the MCP app's lifespan stopped the feed


async def tools_and_sum(url: str, token: str) -> tuple[list[str], Any, Any]:
    headers = {"authorization": f"Bearer {token}"}
    async with (
        httpx2.AsyncClient(headers=headers) as http,
        Client(streamable_http_client(url, http_client=http), cache=None) as client,
    ):
        listed = await client.list_tools()
        total = await client.call_tool("add", {"a": 2, "b": 3})
        who = await client.call_tool("whoami", {})
    return (
        sorted(tool.name for tool in listed.tools),
        total.structured_content,
        who.structured_content,
    )


def test_a_token_for_the_server_lists_and_calls_tools(stack: Stack) -> None:
    names, total, who = anyio.run(tools_and_sum, stack.mcp_url, stack.token())
    assert names == ["add", "whoami"]
    assert total == {"result": 5}
    assert who["client_id"] == stack.client.id and who["scopes"] == ["read"]


def test_access_token_keeps_no_plaintext_and_names_the_resource(stack: Stack) -> None:
    token = stack.token()
    access = anyio.run(stack.tokens.verify_token, token)
    assert access is not None
    assert access.resource == stack.mcp_url and access.client_id == stack.client.id
    assert access.scopes == ["read"] and access.expires_at and access.expires_at > time.time()
    assert token not in access.model_dump_json()
    assert access.claims is not None and access.claims["iss"] == stack.issuer


def test_without_a_token_401_names_the_resource_metadata(stack: Stack) -> None:
    answer = stack.post()
    assert answer.status_code == 401
    metadata_url = stack.mcp_url.replace("/mcp", "/.well-known/oauth-protected-resource/mcp")
    assert f'resource_metadata="{metadata_url}"' in answer.headers["www-authenticate"]


def test_a_token_for_another_resource_is_refused_401(stack: Stack) -> None:
    other = stack.token(stack.other_url)
    for _ in range(2):  # and again, from the verifier's memory
        answer = stack.post(other)
        assert answer.status_code == 401, answer.text
        challenge = answer.headers["www-authenticate"]
        assert 'error="invalid_token"' in challenge and "resource_metadata=" in challenge
    # A token naming both is for this server too (RFC 8707 allows several resources).
    assert stack.post(stack.token(stack.mcp_url, stack.other_url)).status_code == 200


def test_protected_resource_metadata(stack: Stack) -> None:
    base = stack.mcp_url.removesuffix("/mcp")
    suffixed = stack.http.get(base + "/.well-known/oauth-protected-resource/mcp")
    root = stack.http.get(base + "/.well-known/oauth-protected-resource")
    assert suffixed.status_code == root.status_code == 200
    assert (
        suffixed.json()
        == root.json()
        == {
            "resource": stack.mcp_url,
            "authorization_servers": [stack.issuer],
            "bearer_methods_supported": ["header"],
            "scopes_supported": ["read"],
            "resource_name": "Baton example MCP",
        }
    )
    assert suffixed.headers["access-control-allow-origin"] == "*"
    preflight = stack.http.options(base + "/.well-known/oauth-protected-resource/mcp")
    assert preflight.status_code == 204


def test_a_revoked_token_is_refused_within_the_feeds_latency(stack: Stack) -> None:
    token = stack.token()
    assert stack.post(token).status_code == 200  # verified, and now cached
    assert stack.tokens.verifier.feed_healthy()
    before = stack.tokens.verifier.introspections
    stack.revoke(token)
    revoked_at = time.monotonic()
    while (answer := stack.post(token)).status_code == 200:
        assert time.monotonic() - revoked_at < 2, "still accepted"
    assert (
        answer.status_code == 401 and 'error="invalid_token"' in answer.headers["www-authenticate"]
    )
    if stack.token_format == "opaque":  # the event, not an introspection, refused it
        assert stack.tokens.verifier.introspections == before


def test_baton_unreachable_is_503_with_retry_after_not_401(stack: Stack) -> None:
    cached = stack.token()
    assert stack.post(cached).status_code == 200
    fresh = stack.token()
    stack.baton.stop()
    try:
        if stack.token_format == "opaque":  # never seen: introspection is needed at once
            answer = stack.post(fresh)
            assert answer.status_code == 503, answer.text
        # A token verified before: accepted until the feed has been down max_disconnect, then
        # every token needs Baton, which is not there.
        started = time.monotonic()
        while (answer := stack.post(cached)).status_code == 200:
            assert time.monotonic() - started < 3, "still served from the cache"
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"] == "1"
        assert "www-authenticate" not in answer.headers
        assert answer.json()["error"] == "temporarily_unavailable"
        assert stack.post(fresh).status_code == 503
    finally:
        stack.start_baton()
    assert stack.post(fresh).status_code == 200  # Baton back: served again


def test_the_adapter_requires_the_servers_own_audience() -> None:
    issuer, mcp, other = "https://baton.example", "https://api.example/mcp", "https://other.example"

    def verifier(audience: Any) -> Verifier:
        return Verifier(issuer, "rs", "secret", audience=audience, feed=False)

    # Tokens issued for no resource carry the issuer as their audience: never for this server.
    with pytest.raises(ValueError, match="issued for it"):
        BatonTokenVerifier(verifier([mcp, issuer]), mcp)
    with pytest.raises(ValueError, match="audience must be this MCP server"):
        BatonTokenVerifier(verifier(other), mcp)
    with pytest.raises(ValueError, match="which of the verifier's audiences"):
        BatonTokenVerifier(verifier([mcp, other]))
    assert BatonTokenVerifier(verifier(mcp)).resource == mcp


def test_resource_metadata_paths() -> None:
    with_path = ResourceMetadata("https://api.example/mcp", ["https://baton.example"])
    assert with_path.url == "https://api.example/.well-known/oauth-protected-resource/mcp"
    assert with_path.paths == {
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
    }
    for root in ("https://api.example", "https://api.example/"):
        metadata = ResourceMetadata(root, ["https://baton.example"], serve_root=False)
        assert metadata.url == "https://api.example/.well-known/oauth-protected-resource"
        assert metadata.paths == {"/.well-known/oauth-protected-resource"}
    for bad in (
        "api.example/mcp",
        "https://api.example/mcp#x",
        "https://api.example/?q=1",
        "http://api.example/mcp",  # http: for loopback development only
        "http://127.0.0.1.example/mcp",
    ):
        with pytest.raises(ValueError):
            ResourceMetadata(bad, ["https://baton.example"])
    for loopback in ("http://127.0.0.1:9002/mcp", "http://localhost/mcp", "http://[::1]:8/mcp"):
        assert ResourceMetadata(loopback, ["https://baton.example"]).resource == loopback


def test_running_starts_and_stops_the_feed() -> None:
    # For an app whose lifespan the caller composes (the MCP app mounted in another one).
    verifier = Verifier("http://127.0.0.1:9", "rs", "secret", audience="http://127.0.0.1:9/mcp")
    tokens = BatonTokenVerifier(verifier)
    assert verifier.feed is not None

    async def main() -> None:
        async with tokens.running() as running:
            assert running is tokens
            assert verifier.feed is not None and verifier.feed._thread is not None
        assert verifier.feed._thread is None

    anyio.run(main)


def test_protect_answers_503_only_for_an_unreachable_baton() -> None:
    """The wrapper alone, around plain ASGI apps: an outage raised in a task group is still a
    503; an outage after the app began its answer, or any other failure, is not hidden."""
    verifier = Verifier("https://baton.example", "rs", "secret", audience="https://api.example/")
    tokens = BatonTokenVerifier(verifier)

    async def in_a_group(scope: Any, receive: Any, send: Any) -> None:
        raise ExceptionGroup("tasks", [VerifierUnavailable("introspection unreachable")])

    async def after_answering(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise VerifierUnavailable("late")

    async def broken(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("a bug")

    async def call(app: Any, path: str = "/") -> httpx.Response:
        transport = httpx.ASGITransport(app=tokens.protect(app, manage_feed=False))
        async with httpx.AsyncClient(transport=transport, base_url="https://api.example") as http:
            return await http.get(path)

    answer = anyio.run(call, in_a_group)
    assert (answer.status_code, answer.headers["retry-after"]) == (503, "1")
    with pytest.raises(VerifierUnavailable):
        anyio.run(call, after_answering)
    with pytest.raises(RuntimeError):
        anyio.run(call, broken)
    # The metadata is served before the app is reached.
    document = anyio.run(call, broken, "/.well-known/oauth-protected-resource")
    assert document.json()["resource"] == "https://api.example/"


def test_the_example_is_configured_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from examples import mcp_server

    monkeypatch.setenv("BATON_ISSUER", "https://baton.example")
    monkeypatch.setenv("BATON_RS_ID", "rs")
    monkeypatch.setenv("BATON_RS_SECRET", "secret")
    monkeypatch.delenv("BATON_AUDIENCE", raising=False)
    with pytest.raises(ValueError, match="BATON_AUDIENCE"):
        mcp_server.create_app()
    monkeypatch.setenv("BATON_AUDIENCE", "https://mcp.example/mcp")
    monkeypatch.setenv("MCP_REQUIRED_SCOPES", "read write")

    app = mcp_server.create_app()

    async def metadata() -> Any:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://mcp.example") as http:
            return (await http.get("/.well-known/oauth-protected-resource/mcp")).json()

    document = anyio.run(metadata)
    assert not app.tokens._started  # type: ignore[attr-defined]  # no feed for the metadata
    assert document["resource"] == "https://mcp.example/mcp"
    assert document["authorization_servers"] == ["https://baton.example"]
    assert document["scopes_supported"] == ["read", "write"]

    # The port it listens on: the URL's, or MCP_PORT (behind a proxy that terminates TLS).
    import uvicorn

    served: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.update(options))
    mcp_server.main()
    assert served == {"host": "mcp.example", "port": 443}
    monkeypatch.setenv("MCP_PORT", "9002")
    monkeypatch.setenv("MCP_HOST", "0.0.0.0")
    mcp_server.main()
    assert served == {"host": "0.0.0.0", "port": 9002}


# -- the adapter alone, on a fake introspection endpoint -------------------------------------------

MCP_URL, OTHER_URL, ISSUER = "https://mcp.example/mcp", "https://other.example/", "https://as.test"


def introspecting(*audiences: str | list[str], **options: Any) -> Verifier:
    """A verifier (no feed, opaque tokens only) whose introspection answers `bat_at_<scope>_aud<n>`
    as active, with the scope and the audience `audiences[n]`."""

    def introspect(request: httpx.Request) -> httpx.Response:
        token = request.content.decode().partition("token=")[2]
        scope, _, index = token.removeprefix("bat_at_").partition("_aud")
        now = int(time.time())
        body = {"active": True, "client_id": "app", "sub": "alice", "scope": scope}
        body |= {"exp": now + 600, "iat": now, "jti": token, "aud": audiences[int(index)]}
        return httpx.Response(200, json=body)

    transport = httpx.MockTransport(introspect)
    options.setdefault("audience", MCP_URL)
    return Verifier(
        ISSUER, "rs", "secret", algorithms=(), feed=False, async_transport=transport, **options
    )


def test_required_scopes_are_advertised_and_named_in_challenges() -> None:
    """`auth_settings(required_scopes)` is remembered: the default metadata lists them as
    `scopes_supported`, and the SDK's 401 and 403 challenges gain the `scope` attribute (RFC
    6750 §3; MCP authorization, scope challenge), which the SDK leaves out."""
    from mcp.server.mcpserver import MCPServer

    tokens = BatonTokenVerifier(introspecting(MCP_URL))
    server = MCPServer("t", token_verifier=tokens, auth=tokens.auth_settings(["read", "write"]))
    app = tokens.protect(server.streamable_http_app(), manage_feed=False)

    async def calls() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://mcp.example") as http:
            metadata = await http.get("/.well-known/oauth-protected-resource/mcp")
            anonymous = await http.post("/mcp", json=INITIALIZE, headers=MCP_HEADERS)
            headers = {**MCP_HEADERS, "authorization": "Bearer bat_at_read_aud0"}
            short = await http.post("/mcp", json=INITIALIZE, headers=headers)
            return [metadata, anonymous, short]

    metadata, anonymous, short = anyio.run(calls)
    assert metadata.json()["scopes_supported"] == ["read", "write"]
    assert anonymous.status_code == 401
    assert 'scope="read write"' in anonymous.headers["www-authenticate"]
    assert short.status_code == 403
    challenge = short.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge and 'scope="read write"' in challenge
    assert "resource_metadata=" in challenge
    assert int(short.headers["content-length"]) == len(short.content)


def test_a_token_for_another_of_the_verifiers_audiences_is_not_for_this_server() -> None:
    """The verifier accepts both audiences; the MCP server only tokens naming itself, whatever
    `AuthSettings.validate_token_resource` says (an `AuthSettings` built by hand defaults to
    not checking)."""
    tokens = BatonTokenVerifier(
        introspecting(OTHER_URL, [OTHER_URL, MCP_URL], audience=[MCP_URL, OTHER_URL]), MCP_URL
    )
    assert anyio.run(tokens.verify_token, "bat_at_read_aud0") is None
    both = anyio.run(tokens.verify_token, "bat_at_read_aud1")
    assert both is not None and both.resource == MCP_URL


def feed_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "baton-revocation-feed"]


def lifespan_app(startup: str) -> Any:
    """A plain ASGI app whose lifespan answers startup with `startup`, and 200 to requests."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": startup})
                    if startup == "lifespan.startup.failed":
                        return
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return app


async def run_lifespan(app: Any, *messages: str) -> None:
    queue: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    for message in messages:
        queue.put_nowait({"type": message})

    async def send(message: Any) -> None:
        pass

    await app({"type": "lifespan"}, queue.get, send)


async def request(app: Any) -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        pass

    await app({"type": "http", "path": "/mcp", "method": "POST", "headers": []}, receive, send)


def test_the_feed_runs_only_between_a_successful_startup_and_shutdown() -> None:
    before = len(feed_threads())
    verifier = Verifier("http://127.0.0.1:9", "rs", "secret", audience="http://127.0.0.1:9/mcp")
    tokens = BatonTokenVerifier(verifier)
    assert verifier.feed is not None
    try:
        # The app's startup fails: the server exits, and no feed thread is left behind.
        failing = tokens.protect(lifespan_app("lifespan.startup.failed"))
        asyncio.run(run_lifespan(failing, "lifespan.startup"))
        assert verifier.feed._thread is None and len(feed_threads()) == before

        app = tokens.protect(lifespan_app("lifespan.startup.complete"))

        async def served_then_late_request() -> None:
            await run_lifespan(app, "lifespan.startup", "lifespan.shutdown")
            await request(app)  # a late request, after the shutdown

        asyncio.run(served_then_late_request())
        assert verifier.feed._thread is None and len(feed_threads()) == before
        assert not tokens._started
    finally:
        verifier.stop()


def test_without_a_lifespan_the_first_request_starts_the_feed() -> None:
    verifier = Verifier("http://127.0.0.1:9", "rs", "secret", audience="http://127.0.0.1:9/mcp")
    tokens = BatonTokenVerifier(verifier)
    try:
        asyncio.run(request(tokens.protect(lifespan_app("lifespan.startup.complete"))))
        assert verifier.feed is not None and verifier.feed._thread is not None
    finally:
        verifier.stop()

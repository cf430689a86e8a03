"""What the MCP end-to-end tests share (issue 26): an MCP server built with the `mcp` SDK and
protected by Baton, a client ID metadata document served over https on loopback, the `mcp`
SDK's own OAuth client driven through Baton's real login and consent pages, and the TypeScript
SDK installed from npm.

- `serve_mcp`: a `baton serve` (the interop harness's, OpenID Connect on) seeded with the MCP
  server as a resource server, then `McpServer`: examples/mcp_server.py (the SDK's `MCPServer`,
  streamable HTTP, RFC 9728 metadata and `resource_metadata` in its 401 challenge) protected by
  `baton.resource.mcp.BatonTokenVerifier`, in a thread of the test process.
- `DocumentServer`: an https server on 127.0.0.1 with a certificate of a throwaway CA (the
  `baton serve` that fetches from it is given that CA with SSL_CERT_FILE), serving client ID
  metadata documents.
- `SdkClient`: one MCP client of the `mcp` SDK (unmodified): `OAuthClientProvider` whose
  `redirect_handler` takes Baton's pages with the interop `Browser` and whose `callback_handler`
  hands back the code, state and iss; it counts how often the SDK started an authorization.
- `install_mcp_sdk`: `@modelcontextprotocol/sdk` 1.x from npm into a cache directory.

Tokens never appear in what these record: only their SHA-256 prefixes (`digest`).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import ssl
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import httpx
import uvicorn

from baton.resource import Verifier, VerifierUnavailable
from tests.e2e.conftest import free_port
from tests.interop.conftest import (
    Browser,
    ClientSpec,
    OidcServer,
    Visit,
    start_oidc_server,
)
from tests.node import npm_peer

MCP_SCOPE = "mcp:tools"
RETRY_AFTER = str(VerifierUnavailable.retry_after)  # what the adapter's 503 says
PROTOCOL_VERSION = "2025-06-18"
UNUSED = ("http://127.0.0.1:9/unused",)  # a redirect URI for clients that never redirect


# -- the MCP server -------------------------------------------------------------------------------


# One person at one keyboard: the clients' authorizations go through the pages one at a time.
# Baton counts a sign-in attempt before checking its password (limits.login_attempt), so many
# sign-ins of one account at once look like guessing and get 429.
_PAGES = threading.Lock()


def authorize_in_browser(baton: OidcServer, url: str, redirect_uri: str) -> Visit:
    """Alice, in a fresh browser, signs in and allows at `url`; where Baton sent her back."""
    with _PAGES, Browser(baton) as browser:
        return browser.follow(url, redirect_uri)


def digest(token: bytes | str | None) -> str:
    """A token's SHA-256 prefix, to follow it through logs without writing it down."""
    if token is None:
        return "-"
    raw = token.encode() if isinstance(token, str) else token
    return hashlib.sha256(raw).hexdigest()[:12]


@dataclass
class McpServer:
    """examples/mcp_server.py (the `mcp` SDK's MCPServer, streamable HTTP, its `whoami` and `add`
    tools needing `mcp:tools`) protected by `baton.resource.mcp`, on 127.0.0.1 in a thread of
    this process. Its verifier trusts no cached answer once the feed is cut (`max_disconnect=0`),
    so a stopped Baton shows at once."""

    port: int
    issuer: str
    rs_id: str
    rs_secret: str
    verifier: Verifier | None = None
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None
    answers: list[tuple[str, int]] = field(default_factory=list)  # (token digest, status)
    log: list[str] = field(default_factory=list)  # time, token digest, method, status

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def build(self) -> Any:
        from examples.mcp_server import build

        from baton.resource.mcp import BatonTokenVerifier

        self.verifier = Verifier(
            self.issuer,
            self.rs_id,
            self.rs_secret,
            audience=self.url,
            algorithms=(),
            max_disconnect=0.0,
            http_timeout=2.0,
        )
        return self._recording(build(BatonTokenVerifier(self.verifier), [MCP_SCOPE]))

    def start(self) -> None:
        app = self.build()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="mcp-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the MCP server did not start")
            time.sleep(0.01)
        assert self.verifier is not None and self.verifier.feed is not None
        self.verifier.feed.wait_synced(5.0)  # started by the app's lifespan (`protect`)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _recording(self, app: Any) -> Any:
        """`app`, noting the status of every answer on the MCP endpoint and whether the
        request carried a bearer token."""
        answers, log = self.answers, self.log

        async def recorded(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http" or scope["path"] != "/mcp":
                await app(scope, receive, send)
                return
            token = next(
                (
                    v[7:]
                    for k, v in scope["headers"]
                    if k == b"authorization" and v[:7].lower() == b"bearer "
                ),
                None,
            )

            async def noting(message: Any) -> None:
                if message["type"] == "http.response.start":
                    answers.append((digest(token), message["status"]))
                    log.append(
                        f"{time.time():.3f} {digest(token)} {scope['method']} {message['status']}"
                    )
                await send(message)

            await app(scope, receive, noting)

        return recorded

    def post(self, token: str | None) -> httpx.Response:
        """A bare `initialize` with `token` (no SDK): what the MCP server answers to it."""
        headers = {"Accept": "application/json, text/event-stream"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "bare", "version": "0"},
            },
        }
        return httpx.post(self.url, json=body, headers=headers, timeout=5)


def serve_mcp(
    directory: Path,
    clients: Callable[[str], list[ClientSpec]],
    env: dict[str, str] | None = None,
    **options: object,
) -> tuple[OidcServer, McpServer]:
    """A `baton serve` whose database holds the MCP server as a resource server (`mcp-server`)
    and `clients(mcp_url)`, then the MCP server on the port its URI names. `env` is set for
    `baton serve` only; `options` are its flags."""
    port = free_port()
    mcp_url = f"http://127.0.0.1:{port}/mcp"
    specs = [
        ClientSpec(
            "mcp-server", UNUSED, scope="", flags=("--resource-server", "--resource-uri", mcp_url)
        ),
        *clients(mcp_url),
    ]
    baton = start_oidc_server(directory, specs, env, **options)
    rs = baton.client("mcp-server")
    assert rs.client_secret is not None
    mcp = McpServer(port, baton.issuer, rs.client_id, rs.client_secret)
    try:
        mcp.start()
    except BaseException:
        mcp.stop()
        baton.stop()
        raise
    return baton, mcp


# -- node: the TypeScript SDK --------------------------------------------------------------------

MCP_SDK_CACHE = Path(
    os.environ.get("BATON_TEST_MCP_SDK_CACHE", Path.home() / ".cache" / "baton-tests" / "mcp-sdk1")
)


def install_mcp_sdk() -> Path:
    """`@modelcontextprotocol/sdk` (current 1.x) from npm into a cache directory outside the
    repository, as conftest.install_openid_client does for openid-client; the script beside it.
    Skipped without node and npm, except in CI."""
    return npm_peer(
        MCP_SDK_CACHE,
        "@modelcontextprotocol/sdk@1",
        Path(__file__).resolve().parent / "mcp_typescript_client.mjs",
        what="@modelcontextprotocol/sdk (node)",
        project="baton-test-mcp",
    )


# -- a client ID metadata document on loopback, over https --------------------------------------


def throwaway_ca(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a certificate it signed for localhost and 127.0.0.1: (ca.pem, cert.pem, key.pem)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "baton mcp tests CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    paths = (directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@dataclass
class DocumentServer:
    """https://localhost:PORT/...: the client ID metadata documents put in `documents` (path:
    JSON), each fetch counted."""

    directory: Path
    port: int = field(default_factory=free_port)
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)
    fetches: list[str] = field(default_factory=list)
    _httpd: ThreadingHTTPServer | None = None

    def __post_init__(self) -> None:
        self.ca, self.cert, self.key = throwaway_ca(self.directory)

    def url(self, path: str) -> str:
        return f"https://localhost:{self.port}{path}"

    def start(self) -> None:
        documents, fetches = self.documents, self.fetches

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fetches.append(self.path)
                document = documents.get(self.path)
                body = json.dumps(document).encode() if document is not None else b"{}"
                self.send_response(200 if document is not None else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "max-age=60")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        threading.Thread(target=self._httpd.serve_forever, name="documents", daemon=True).start()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()


# -- the mcp SDK's client ----------------------------------------------------------------------


class MemoryStorage:
    """The SDK's `TokenStorage` in memory; every token set kept, in order."""

    def __init__(self, client_info: Any = None) -> None:
        self.client_info = client_info
        self.tokens: Any = None
        self.history: list[Any] = []
        self.log: list[str] = []  # when each token set arrived, its access token's digest

    async def get_tokens(self) -> Any:
        return self.tokens

    async def set_tokens(self, tokens: Any) -> None:
        self.tokens = tokens
        self.history.append(tokens)
        self.log.append(
            f"{time.time():.3f} {digest(tokens.access_token)} expires_in={tokens.expires_in}"
        )

    async def get_client_info(self) -> Any:
        return self.client_info

    async def set_client_info(self, client_info: Any) -> None:
        self.client_info = client_info


@dataclass
class SdkClient:
    """One MCP client of the `mcp` SDK against `mcp_url`, authorizing through Baton's pages."""

    baton: OidcServer
    mcp_url: str
    redirect_uri: str
    storage: MemoryStorage
    client_metadata_url: str | None = None
    client_name: str = "mcp-sdk-e2e"
    authorizations: int = 0  # how often the SDK called the redirect handler
    visits: list[Any] = field(default_factory=list)
    consent_pages: list[str] = field(default_factory=list)
    provider: Any = None

    def __post_init__(self) -> None:
        from mcp.client.auth import OAuthClientProvider
        from mcp.shared.auth import OAuthClientMetadata

        metadata = OAuthClientMetadata(
            client_name=self.client_name,
            redirect_uris=[self.redirect_uri],  # type: ignore[list-item]
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        )
        self.provider = OAuthClientProvider(
            server_url=self.mcp_url,
            client_metadata=metadata,
            storage=self.storage,
            redirect_handler=self._redirect,
            callback_handler=self._callback,
            client_metadata_url=self.client_metadata_url,
        )
        self._pending: Any = None

    async def _redirect(self, authorization_url: str) -> None:
        self.authorizations += 1
        self.storage.log.append(f"{time.time():.3f} authorization {self.authorizations}")

        visit = await anyio.to_thread.run_sync(
            authorize_in_browser, self.baton, authorization_url, self.redirect_uri
        )
        self.visits.append(visit)
        if visit.consent is not None:
            self.consent_pages.append(visit.consent)
        self._pending = visit

    async def _callback(self) -> Any:
        from mcp.shared.auth import AuthorizationCodeResult

        query = self._pending.query
        assert "code" in query, f"no code in the redirect: {query}"
        return AuthorizationCodeResult(
            code=query["code"], state=query.get("state"), iss=query.get("iss")
        )

    async def session(self, work: Callable[[Any], Awaitable[Any]]) -> Any:
        """Connects (streamable HTTP, this client's OAuth), initializes, runs `work(session)`."""
        import httpx2
        from mcp.client.session import ClientSession
        from mcp.client.streamable_http import streamable_http_client

        async with (
            httpx2.AsyncClient(auth=self.provider, timeout=httpx2.Timeout(10.0)) as http,
            streamable_http_client(self.mcp_url, http_client=http) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            return await work(session)

    async def refresh_now(self) -> None:
        """One request to the MCP server through the SDK's provider (an httpx2 `Auth`), which
        refreshes first if its access token expired; the answer (400: no session) is not read."""
        import httpx2

        async with httpx2.AsyncClient(auth=self.provider, timeout=httpx2.Timeout(10.0)) as http:
            await http.get(self.mcp_url, headers={"Accept": "text/event-stream"})

    async def whoami(self) -> dict[str, Any]:
        async def call(session: Any) -> dict[str, Any]:
            result = await session.call_tool("whoami", {})
            assert not result.is_error, result
            structured: dict[str, Any] = result.structured_content
            inner: dict[str, Any] = structured.get("result", structured)
            return inner

        answer: dict[str, Any] = await self.session(call)
        return answer

    @property
    def access_token(self) -> str:
        return str(self.storage.tokens.access_token)

    @property
    def refresh_token(self) -> str:
        return str(self.storage.tokens.refresh_token)

    @property
    def client_id(self) -> str:
        return str(self.storage.client_info.client_id)

"""An MCP server built with the `mcp` SDK (streamable HTTP), protected by a token verifier that
asks Baton's introspection endpoint; `serving` runs it (or Baton) under uvicorn in a thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx
import uvicorn
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from starlette.types import ASGIApp

from tests.e2e.conftest import Credentials


@dataclass
class IntrospectingVerifier:
    """The SDK's `TokenVerifier`: a token is valid while Baton's RFC 7662 introspection says it
    is active and issued for this server (`aud`). `seen` records every token presented."""

    issuer: str
    resource_server: Credentials
    resource: str
    seen: list[str] = field(default_factory=list)
    http: httpx.AsyncClient | None = None  # made on the server's event loop, kept for its life

    async def verify_token(self, token: str) -> AccessToken | None:
        self.seen.append(token)
        if self.http is None:
            self.http = httpx.AsyncClient(timeout=10)
        answer = await self.http.post(
            self.issuer + "/introspect", data={"token": token}, auth=self.resource_server.basic
        )
        body = answer.json()
        if answer.status_code != 200 or not body.get("active"):
            return None
        audience = body.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if audience is not None and self.resource not in audiences:
            return None
        return AccessToken(
            token=token,
            client_id=body["client_id"],
            scopes=str(body.get("scope", "")).split(),
            expires_at=body.get("exp"),
            resource=self.resource,
            subject=body.get("sub"),
        )


class McpServer:
    """`http://127.0.0.1:PORT/mcp` with one tool, `whoami`, answering the token's subject; a
    token needs the scopes `read` and `write` (a 403 `insufficient_scope` otherwise)."""

    def __init__(self, issuer: str, resource_server: Credentials, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/mcp"
        self.verifier = IntrospectingVerifier(issuer, resource_server, self.url)
        server = MCPServer(
            "baton-mcp-test",
            token_verifier=self.verifier,
            # Validated from strings: the model keeps a path-less issuer without a trailing slash
            # (RFC 8414 §3.3 compares issuers as strings), which AnyHttpUrl(issuer) would add.
            auth=AuthSettings.model_validate(
                {
                    "issuer_url": issuer,
                    "resource_server_url": self.url,
                    "validate_token_resource": True,
                    "required_scopes": ["read", "write"],
                }
            ),
        )

        @server.tool()
        def whoami() -> str:
            """The name of the person whose token called this tool."""
            token = get_access_token()
            return "nobody" if token is None else f"{token.subject} via {token.client_id}"

        self.app = server.streamable_http_app(json_response=True)


@contextmanager
def serving(app: ASGIApp, port: int) -> Iterator[None]:
    """`app` under uvicorn on 127.0.0.1:port, in a thread of this process, while in the block."""
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    config.timeout_graceful_shutdown = 0
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), f"{app!r} did not start"
        time.sleep(0.01)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)

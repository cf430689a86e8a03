"""An MCP server (the `mcp` SDK, streamable HTTP) whose tools need a Baton access token.

Needs `pip install "baton-oauth[mcp]"` (the SDK brings uvicorn). Register the server as a
resource server whose resource URI is its MCP endpoint's URL, then run it with those credentials:

    baton client create --name notes-mcp --resource-server \\
        --resource-uri http://127.0.0.1:9002/mcp --json
    BATON_ISSUER=http://127.0.0.1:8000 BATON_RS_ID=... BATON_RS_SECRET=... \\
        BATON_AUDIENCE=http://127.0.0.1:9002/mcp python examples/mcp_server.py

`BATON_AUDIENCE` is the server's URL: the address, port and path it listens on come from it
(bind another address with `MCP_HOST`, e.g. 0.0.0.0, and another port with `MCP_PORT`, e.g.
behind a proxy that terminates TLS for an https URL), tokens must name it as their
`aud` (RFC 8707), and its RFC 9728 metadata is served at
`/.well-known/oauth-protected-resource/mcp` (and `/.well-known/oauth-protected-resource`).
`MCP_REQUIRED_SCOPES` (space-separated, default none) are the scopes every request needs.
An MCP client (the SDK's `OAuthClientProvider`, MCP Inspector...) given the URL discovers Baton
from the 401 challenge, authorizes, and calls the tools. While Baton cannot be reached, the
server answers 503 with `Retry-After` instead of asking the client to authorize again.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.mcpserver import MCPServer
from starlette.types import ASGIApp

from baton.resource.mcp import BatonTokenVerifier


def build(tokens: BatonTokenVerifier, required_scopes: list[str] | None = None) -> ASGIApp:
    """The MCP server at `tokens.resource` (its path is the MCP endpoint), protected."""
    server = MCPServer(
        "baton-example",
        token_verifier=tokens,
        auth=tokens.auth_settings(required_scopes),
    )

    @server.tool()
    def whoami() -> dict[str, object]:
        """Who the access token says is calling: client, user and scopes."""
        token = get_access_token()
        assert token is not None  # every request carries a verified token
        return {"client_id": token.client_id, "subject": token.subject, "scopes": token.scopes}

    @server.tool()
    def add(a: int, b: int) -> int:
        """Adds two numbers."""
        return a + b

    url = urlsplit(tokens.resource)
    app = server.streamable_http_app(
        streamable_http_path=url.path or "/",
        host=url.hostname or "127.0.0.1",  # the SDK's DNS-rebinding protection for loopback
    )
    return tokens.protect(
        app,
        tokens.metadata(scopes_supported=required_scopes, resource_name="Baton example MCP"),
    )


def create_app() -> ASGIApp:
    """From the environment: `BATON_ISSUER`, `BATON_RS_ID`, `BATON_RS_SECRET`,
    `BATON_AUDIENCE` (this server's URL), `MCP_REQUIRED_SCOPES`."""
    scopes = os.environ.get("MCP_REQUIRED_SCOPES", "").split() or None
    return build(BatonTokenVerifier.from_env(), scopes)


def main() -> None:
    import uvicorn

    url = urlsplit(os.environ["BATON_AUDIENCE"])
    port = int(os.environ.get("MCP_PORT") or url.port or (443 if url.scheme == "https" else 80))
    host = os.environ.get("MCP_HOST", url.hostname or "127.0.0.1")
    uvicorn.run(create_app(), host=host, port=port)


if __name__ == "__main__":
    main()

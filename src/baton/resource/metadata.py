"""RFC 9728 OAuth 2.0 Protected Resource Metadata, for any resource server.

    metadata = ResourceMetadata("https://notes.example/mcp", ["https://baton.example"],
                                scopes_supported=["read"], resource_name="Notes")
    app.add_middleware(BatonMiddleware, verifier=verifier, resource_metadata=metadata)

The document tells a client which authorization server issues tokens for this resource; the
`resource_metadata` parameter of every 401 challenge points at it (RFC 9728 §5.1), which is how
an MCP client discovers Baton. `BatonMiddleware` serves it when given one; any other framework
answers `metadata.response_parts()` at each of `metadata.paths` and passes `metadata.url` to
`AuthError.response_parts(realm, resource_metadata=...)` (`flask_protect`/`django_protect` take
it as `resource_metadata=`).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:  # plain ASGI at run time: the base install has no Starlette
    from starlette.types import Receive, Scope, Send

WELL_KNOWN = "/.well-known/oauth-protected-resource"  # RFC 9728 §3 (IANA well-known URI)


@dataclass(frozen=True, slots=True)
class ResourceMetadata:
    """What a protected resource says about itself (RFC 9728 §2).

    `resource` is the resource identifier: the URL clients use for this API (for an MCP
    server, the MCP endpoint's URL, e.g. `https://notes.example/mcp`), and the `aud` its tokens
    carry. `authorization_servers` are the issuers of those tokens (Baton's issuer URL).
    `extra` adds other RFC 9728 §2 members (`resource_policy_uri`, `jwks_uri`...).

    `serve_root`: for a resource with a path, also answer at the host's root well-known URL
    (`/.well-known/oauth-protected-resource`), which MCP clients try when the path-suffixed one
    fails (MCP authorization, "Protected Resource Metadata Discovery Requirements"). Leave it
    on unless the host serves several resources."""

    resource: str
    authorization_servers: Collection[str]
    scopes_supported: Collection[str] | None = None
    resource_name: str | None = None
    resource_documentation: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    serve_root: bool = True

    # -- where ---------------------------------------------------------------------------------
    # Computed once (a middleware tests `paths` on every request, and names `url` in every
    # challenge).

    # The metadata's path. RFC 9728 §3.1: "the well-known URI path suffix ... is inserted
    # between the host component and the path"; "any terminating slash (/) following the host
    # component MUST be removed" first (https://x/ and https://x share the root URL).
    path: str = field(init=False, repr=False, compare=False)
    # The metadata's URL: what a 401 challenge names as `resource_metadata`.
    url: str = field(init=False, repr=False, compare=False)
    # Every path the document is served at: `path`, and the root form (`serve_root`).
    paths: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # RFC 9728 §1.2: the resource identifier is a URL "using the https scheme that has no
        # fragment component" (http is allowed here for loopback development only). A query is
        # allowed by the RFC but not supported here: the well-known URL would carry it.
        parts = urlsplit(self.resource)
        if parts.scheme not in ("https", "http") or not parts.netloc:
            raise ValueError(f"resource must be an absolute https URL: {self.resource!r}")
        if parts.scheme == "http" and not _loopback(parts.hostname):
            raise ValueError(
                f"resource must be an https URL (http only for a loopback host): {self.resource!r}"
            )
        if parts.fragment or "#" in self.resource or parts.query:
            raise ValueError("resource must have no query or fragment (RFC 9728 §1.2)")
        if isinstance(self.authorization_servers, str) or not self.authorization_servers:
            raise ValueError("authorization_servers: a list of issuer URLs, at least one")
        if isinstance(self.scopes_supported, str):
            raise ValueError("scopes_supported: a list of scopes")
        path = WELL_KNOWN + ("" if parts.path == "/" else parts.path)
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "url", f"{parts.scheme}://{parts.netloc}{path}")
        object.__setattr__(
            self, "paths", frozenset({path, WELL_KNOWN} if self.serve_root else {path})
        )

    # -- what ----------------------------------------------------------------------------------

    def document(self) -> dict[str, Any]:
        """The JSON document (RFC 9728 §2)."""
        body: dict[str, Any] = {
            "resource": self.resource,
            "authorization_servers": list(self.authorization_servers),
            # RFC 9728 §2: the ways a token may be presented (RFC 6750 §2.1, the header only:
            # neither a form body nor a query string carries one here).
            "bearer_methods_supported": ["header"],
        }
        if self.scopes_supported is not None:
            body["scopes_supported"] = list(self.scopes_supported)
        if self.resource_name is not None:
            body["resource_name"] = self.resource_name
        if self.resource_documentation is not None:
            body["resource_documentation"] = self.resource_documentation
        for name, value in self.extra.items():
            body.setdefault(name, value)
        return body

    def response_parts(self, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
        """Status, headers and body of the answer to `method` at one of `paths`, for any
        framework. Public and readable from any origin (browser-based MCP clients fetch it
        cross-origin): CORS allows every origin, without credentials."""
        cors = {
            "access-control-allow-origin": "*",
            "access-control-allow-methods": "GET, OPTIONS",
            "access-control-allow-headers": "*",
        }
        if method == "OPTIONS":  # a CORS preflight
            return 204, {**cors, "access-control-max-age": "86400"}, b""
        if method not in ("GET", "HEAD"):
            return 405, {"allow": "GET, HEAD, OPTIONS", **cors}, b""
        # HEAD gets the same headers and body: servers send no body to a HEAD request.
        body = json.dumps(self.document()).encode()
        headers = {"content-type": "application/json", "cache-control": "max-age=300", **cors}
        return 200, headers, body

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answers an ASGI HTTP request for the document (one whose path is in `paths`)."""
        status, headers, body = self.response_parts(scope.get("method", "GET"))
        await send_response(send, status, headers, body)


def _loopback(host: str | None) -> bool:
    """`localhost` or a loopback address (127.0.0.0/8, ::1): this machine only."""
    if host is None:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def send_response(send: Send, status: int, headers: Mapping[str, str], body: bytes) -> None:
    """A whole ASGI HTTP response."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(k.encode(), v.encode()) for k, v in headers.items()]
            + [(b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})

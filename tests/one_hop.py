"""Starlette's TestClient with one thread hop per request instead of about eight.

Starlette's transport streams every response: it creates events and a memory stream, starts the
app and then reads each body chunk, each step a separate call into the event loop's thread
through the blocking portal. On a small virtual machine every such hop is a thread wake-up of a
few hundred microseconds, so a request the app answers in half a millisecond took 2-3 ms, and the
in-process suites spent most of their time waiting on locks. Here the whole exchange (request
body in, status, headers and the complete body out) is one portal call.

A response that never ends, the revocation feed's event stream, cannot be collected whole: the
paths in `STREAMED` and WebSocket upgrades keep Starlette's own transport.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import anyio
import httpx2
from starlette.testclient import TestClient

STREAMED = frozenset({"/revocations/stream"})

_DEFAULT_PORTS = {"http": 80, "https": 443}
_Headers = list[tuple[bytes, bytes]]


class OneHopTestClient(TestClient):
    """A `TestClient` (used as a context manager) whose plain HTTP requests cross threads once."""

    __test__ = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._transport = _OneHopTransport(self._transport)


class _OneHopTransport(httpx2.BaseTransport):
    def __init__(self, streaming: Any) -> None:
        self._streaming = streaming  # starlette.testclient._TestClientTransport

    def close(self) -> None:
        self._streaming.close()

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        url = request.url
        if url.scheme not in ("http", "https") or url.path in STREAMED:
            response: httpx2.Response = self._streaming.handle_request(request)
            return response
        inner = self._streaming
        headers = [] if "host" in request.headers else [(b"host", url.netloc)]
        headers += [(k.lower().encode(), v.encode()) for k, v in request.headers.multi_items()]
        scope = {
            "type": "http",
            "http_version": "1.1",
            "method": request.method,
            "path": unquote(url.path),
            "raw_path": url.raw_path.split(b"?", 1)[0],
            "root_path": inner.root_path,
            "scheme": url.scheme,
            "query_string": url.query,
            "headers": headers,
            "client": inner.client,
            "server": [url.raw_host.decode("ascii"), url.port or _DEFAULT_PORTS[url.scheme]],
            "extensions": {"http.response.debug": {}},
            "state": inner.app_state.copy(),
        }
        body = request.read()
        with inner.portal_factory() as portal:
            status, response_headers, content, debug = portal.call(
                _exchange, inner.app, scope, body, inner.raise_server_exceptions
            )
        response = httpx2.Response(
            status, headers=response_headers, stream=httpx2.ByteStream(content), request=request
        )
        if debug is not None:
            response.extensions["http.response.debug"] = debug
        return response


async def _exchange(
    app: Any, scope: dict[str, Any], body: bytes, raise_server_exceptions: bool
) -> tuple[int, _Headers, bytes, dict[str, Any] | None]:
    """Runs the app for one request, inside the event loop, and returns the whole response."""
    request_sent = False
    complete = anyio.Event()
    status: int | None = None
    headers: _Headers = []
    chunks: list[bytes] = []
    debug: dict[str, Any] | None = None

    async def receive() -> dict[str, Any]:
        nonlocal request_sent
        if not request_sent:
            request_sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await complete.wait()  # as a client that stays connected until the response ends
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, headers, debug
        if message["type"] == "http.response.start":
            status = message["status"]
            headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                complete.set()
        elif message["type"] == "http.response.debug":
            debug = message["info"]

    try:
        await app(scope, receive, send)
    except Exception:
        if raise_server_exceptions:
            raise
        if status is None:
            return 500, [], b"", None
    finally:
        complete.set()
    if status is None:
        raise AssertionError("TestClient did not receive any response.")
    return status, headers, b"".join(chunks), debug

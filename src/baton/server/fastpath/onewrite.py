"""One write per response: uvicorn's status line and headers go out with the body.

uvicorn writes a response's head as soon as the app sends `http.response.start` and its body in
a second write. With Nagle off, that is two segments and two wake-ups of the client for a token
response of a few hundred bytes, and under load the `send` calls were a large share of the event
loop's time (docs/performance.md). Here a response's head is held until the body's
first write, or until the end of the current turn of the event loop (a streamed response, a
`HEAD`, or a 204 without a body write), so order and timing of what reaches the client are
unchanged, only the number of segments.

`baton serve` runs `Protocol` below as uvicorn's `http=` (a class is what uvicorn's `http`
setting takes besides a name): uvicorn's httptools protocol, handed the connection's transport
wrapped in `CoalescingTransport`. No private name and no patch: it relies on uvicorn's protocol
writing every response through the transport it was given, which
tests/server/test_onewrite.py checks on a real server and fails on, naming uvicorn's version,
when a uvicorn release changes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CoalescingTransport:
    """Wraps an asyncio transport: a write that starts a response is joined to the next one."""

    # uvicorn asks `is_closing` after every response: bound once per connection rather than
    # looked up through `__getattr__` each time. The transport's other methods go through it.
    __slots__ = ("_held", "_transport", "is_closing")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held: bytes | None = None
        self.is_closing: Callable[[], bool] = transport.is_closing

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + bytes(data))
        elif bytes(data[:5]) == b"HTTP/":  # a status line: the head of a response
            self._held = bytes(data)
            asyncio.get_running_loop().call_soon(self.flush)
        else:
            self._transport.write(data)

    def flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class Protocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing each response at once, with Nagle's algorithm off.

    asyncio turns Nagle off only for sockets created with `IPPROTO_TCP`; a listening socket made
    without it (as uvicorn's own `--workers` makes one) would leave a response written in two
    parts waiting for the client's delayed ACK on every request of a kept-open connection.
    `baton serve`'s listening sockets are made with it; this covers any other.
    """

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # One wrapper for the connection's life: the protocol hands it to each request's cycle,
        # and its own writes (a 400 for a malformed request) keep their order with the rest.
        super().connection_made(CoalescingTransport(transport))  # type: ignore[arg-type]

"""One write per response: uvicorn's status line and headers go out with the body.

uvicorn writes a response's head as soon as the app sends `http.response.start` and its body in
a second write. With Nagle off, that is two segments and two wake-ups of the client for a token
response of a few hundred bytes; profiled under load, those two `send` calls were half of the
event loop's time on the introspection endpoint. Here a response's head is held until the body's
first write, or until the end of the current turn of the event loop (a streamed response, a
`HEAD`, or a 204 without a body write), so order and timing of what reaches the client are
unchanged, only the number of segments.

Installed by `baton serve` (see `baton.server.runtime.asgi`) into uvicorn's httptools protocol,
which
`baton serve` runs as `Protocol` below; tests check that responses still arrive whole and in
order, and that a changed uvicorn is noticed.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

from uvicorn.protocols.http import httptools_impl


class CoalescingTransport:
    """Wraps an asyncio transport: a write that starts a response is joined to the next one."""

    __slots__ = ("_held", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held: bytes | None = None

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


class Protocol(httptools_impl.HttpToolsProtocol):
    """uvicorn's httptools protocol, with Nagle's algorithm off on every connection.

    asyncio turns it off only for sockets created with `IPPROTO_TCP`, and the listening socket
    uvicorn makes for `--workers N` is not: a response written in two parts then waited for the
    client's delayed ACK, about 40 ms per request on a kept-open connection.
    """

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)


class _Cycle(httptools_impl.RequestResponseCycle):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.transport = CoalescingTransport(self.transport)  # type: ignore[assignment]


def install() -> None:
    """Makes uvicorn's httptools protocol write each response at once (idempotent)."""
    if not hasattr(httptools_impl, "RequestResponseCycle") or not isinstance(
        httptools_impl.RequestResponseCycle, type
    ):
        raise RuntimeError(
            "uvicorn's httptools protocol changed: baton.server.fastpath.onewrite needs care"
        )
    httptools_impl.RequestResponseCycle = _Cycle  # type: ignore[misc]

"""One write per response (`baton.server.fastpath.onewrite`): joined, never reordered or held.

The real-server tests are also the guard on uvicorn: `onewrite.Protocol` relies on uvicorn's
httptools protocol writing every response through the transport handed to `connection_made`;
when a uvicorn release stops doing so, they fail naming uvicorn's version."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from baton.server.fastpath import onewrite
from baton.server.fastpath.onewrite import CoalescingTransport


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def test_head_and_body_go_out_in_one_write() -> None:
    async def run() -> list[bytes]:
        fake = FakeTransport()
        transport = CoalescingTransport(fake)  # type: ignore[arg-type]
        transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        transport.write(b"{}")
        await asyncio.sleep(0)
        return fake.writes

    assert asyncio.run(run()) == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]


def test_a_head_without_a_body_write_goes_out_at_the_end_of_the_turn() -> None:
    async def run() -> tuple[list[bytes], list[bytes]]:
        fake = FakeTransport()
        transport = CoalescingTransport(fake)  # type: ignore[arg-type]
        transport.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        before = list(fake.writes)
        await asyncio.sleep(0)  # the next turn of the loop
        return before, fake.writes

    before, after = asyncio.run(run())
    assert before == []
    assert after == [b"HTTP/1.1 204 No Content\r\n\r\n"]


def test_close_sends_what_is_held_first_and_other_calls_pass_through() -> None:
    async def run() -> FakeTransport:
        fake = FakeTransport()
        transport = CoalescingTransport(fake)  # type: ignore[arg-type]
        transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
        transport.close()
        assert transport.is_closing()
        return fake

    fake = asyncio.run(run())
    assert fake.writes == [b"HTTP/1.1 200 OK\r\n\r\n"] and fake.closed


async def _json(_request: Request) -> Response:
    return JSONResponse({"ok": True})


async def _empty(_request: Request) -> Response:
    return Response(status_code=204)


async def _stream(_request: Request) -> Response:
    async def events() -> AsyncIterator[bytes]:
        yield b"data: first\n\n"
        await asyncio.sleep(0.3)
        yield b"data: second\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


class RecordingTransport:
    """Between uvicorn's protocol and the real transport: what reaches the socket, write by
    write."""

    def __init__(self, transport: asyncio.Transport, writes: list[bytes]) -> None:
        self._transport = transport
        self.writes = writes

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> object:
        return getattr(self._transport, name)


WRITES: list[bytes] = []


class RecordingProtocol(onewrite.Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(RecordingTransport(transport, WRITES))  # type: ignore[arg-type]


@pytest.fixture
def server() -> Iterator[int]:
    """A real uvicorn server running the protocol as `baton serve` gives it (`http=`)."""
    WRITES.clear()
    app = Starlette(
        routes=[
            Route("/json", _json, methods=["GET", "HEAD"]),
            Route("/stream", _stream),
            Route("/empty", _empty),
        ]
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, http=RecordingProtocol, log_level="warning", lifespan="off")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not instance.started:
        time.sleep(0.01)
    yield port
    instance.should_exit = True
    thread.join(5)


def _exchange(port: int, request: bytes, until: bytes, times: int = 1) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=3) as conn:
        conn.sendall(request)
        received = b""
        while received.count(until) < times:
            chunk = conn.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


def test_a_real_server_answers_whole_responses_in_order(server: int) -> None:
    two = b"GET /json HTTP/1.1\r\nhost: x\r\n\r\n" * 2  # pipelined
    received = _exchange(server, two, b'{"ok":true}', times=2)
    first, _, second = received.partition(b'{"ok":true}')
    assert first.startswith(b"HTTP/1.1 200 OK\r\n") and b"content-length: 11" in first
    assert second.startswith(b"HTTP/1.1 200 OK\r\n") and second.endswith(b'{"ok":true}')

    head = _exchange(server, b"HEAD /json HTTP/1.1\r\nhost: x\r\n\r\n", b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and head.endswith(b"\r\n\r\n")


def test_each_response_reaches_the_socket_in_one_write(server: int) -> None:
    """The guard on uvicorn: its protocol writes a response's head and body through the transport
    `onewrite.Protocol` wraps, head first, in separate writes that the wrapper joins."""
    requests = [
        (b"GET /json HTTP/1.1\r\nhost: x\r\n\r\n", b'{"ok":true}'),
        (b"HEAD /json HTTP/1.1\r\nhost: x\r\n\r\n", b"\r\n\r\n"),
        (b"GET /empty HTTP/1.1\r\nhost: x\r\n\r\n", b"\r\n\r\n"),
        (b"GET /missing HTTP/1.1\r\nhost: x\r\n\r\n", b"Not Found"),
    ]
    for request, until in requests:
        WRITES.clear()
        received = _exchange(server, request, until)
        deadline = time.monotonic() + 2
        while b"".join(WRITES) != received and time.monotonic() < deadline:
            time.sleep(0.01)
        assert b"".join(WRITES) == received
        assert len(WRITES) == 1, (
            f"uvicorn {uvicorn.__version__}: {request.split(b' HTTP')[0].decode()} went out in "
            f"{len(WRITES)} writes, not one; baton.server.fastpath.onewrite no longer joins them "
            "(does uvicorn's httptools protocol still write through the transport it is given, "
            "the head in a write of its own starting with b'HTTP/'?)"
        )


def test_a_streamed_response_is_not_held_back(server: int) -> None:
    started = time.perf_counter()
    first = _exchange(server, b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\n", b"data: first")
    assert b"text/event-stream" in first and b"data: first" in first
    assert b"data: second" not in first  # arrived before the stream's second event
    assert time.perf_counter() - started < 0.25


def test_the_protocol_turns_nagle_off_on_every_connection() -> None:
    """`--workers N` listens on a socket made without IPPROTO_TCP, where asyncio leaves Nagle on;
    the protocol turns it off itself."""

    class Transport:
        def __init__(self, sock: socket.socket) -> None:
            self.sock = sock

        def get_extra_info(self, name: str, default: object = None) -> object:
            return self.sock if name == "socket" else default

    listener = socket.socket(socket.AF_INET)  # as uvicorn binds for several workers
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    client = socket.create_connection(listener.getsockname())
    accepted, _ = listener.accept()
    try:
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
        protocol = object.__new__(onewrite.Protocol)
        # The parent's part wants a whole uvicorn server around it: not what is tested here.
        with contextlib.suppress(Exception):
            protocol.connection_made(Transport(accepted))  # type: ignore[arg-type]
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        for s in (client, accepted, listener):
            s.close()

"""A loopback TCP proxy that can lose a token response after the server has answered it."""

from __future__ import annotations

import asyncio
import re
import threading
from concurrent.futures import Future


class DropProxy:
    """Forwards 127.0.0.1:port to an upstream port. While `armed` > 0, the next `POST /token`
    reaches the server, the server's whole response is read (and kept in `dropped`), and then the
    client's connection is closed (`mode="close"`) or left silent (`mode="stall"`) instead of
    receiving it: the server rotated, the client saw nothing."""

    def __init__(self, upstream_port: int, mode: str = "close") -> None:
        self.upstream_port = upstream_port
        self.mode = mode
        self.armed = 0
        self.dropped: list[bytes] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> DropProxy:
        self._thread.start()
        future: Future[asyncio.Server] = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0), self._loop
        )
        self._server = future.result(timeout=10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            current = asyncio.current_task()
            tasks = [task for task in asyncio.all_tasks() if task is not current]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        upstream_r, upstream_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        dropping = asyncio.Event()

        async def to_server() -> None:
            while data := await client_r.read(65536):
                if self.armed > 0 and data.startswith(b"POST /token"):
                    self.armed -= 1
                    dropping.set()
                upstream_w.write(data)
                await upstream_w.drain()
            upstream_w.close()

        async def to_client() -> None:
            buffer = b""
            while data := await upstream_r.read(65536):
                if not dropping.is_set():
                    client_w.write(data)
                    await client_w.drain()
                    continue
                buffer += data
                if _complete(buffer):
                    self.dropped.append(buffer)
                    if self.mode == "stall":
                        await asyncio.sleep(3600)
                    client_w.transport.abort()  # a reset: no response ever arrives
                    upstream_w.close()
                    return
            client_w.close()

        tasks = [asyncio.ensure_future(to_server()), asyncio.ensure_future(to_client())]
        try:
            await asyncio.wait(tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            client_w.close()
            upstream_w.close()


def _complete(response: bytes) -> bool:
    head, separator, body = response.partition(b"\r\n\r\n")
    if not separator:
        return False
    match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    return match is not None and len(body) >= int(match.group(1))


def body_of(response: bytes) -> bytes:
    return response.partition(b"\r\n\r\n")[2]

"""The revocation feed consumer: keeps a `RevocationIndex` up to date from the authorization
server's `GET /revocations` (bootstrap page) and `GET /revocations/stream` (Server-Sent Events).

It runs as an asyncio task, either on a loop of your own (`await consumer.run()`) or, by default,
on a daemon thread with its own loop (`start()`), which serves sync (Flask, Django) and async
(Starlette, FastAPI) applications alike. After any failure it reconnects with a capped
exponential backoff and resumes from its watermark (`Last-Event-ID`), so nothing is missed.

Health: the feed is *healthy* once bootstrapped and while connected (a byte, a keep-alive
included, within `read_timeout`), or disconnected for less than `max_disconnect`. A verifier
whose feed is unhealthy fails closed: it asks introspection on every request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from baton.resource.index import RevocationEvent, RevocationIndex
from baton.wire import FeedPage

log = logging.getLogger("baton.resource.consumer")


class FeedError(Exception):
    """The feed answered something the consumer cannot use (status, malformed event)."""


@dataclass(frozen=True, slots=True)
class SSEMessage:
    event: str
    data: str
    id: str | None


class SSEParser:
    """The Server-Sent Events line protocol (HTML Living Standard §9.2.6), one line at a time."""

    def __init__(self) -> None:
        self._data: list[str] = []
        self._event = ""
        self.last_id: str | None = None

    def feed(self, line: str) -> SSEMessage | None:
        if line == "":
            if not self._data:
                self._event = ""
                return None
            message = SSEMessage(self._event or "message", "\n".join(self._data), self.last_id)
            self._data, self._event = [], ""
            return message
        if line.startswith(":"):
            return None  # a comment: `: keep-alive`
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self.last_id = value
        return None  # `retry` and unknown fields are ignored


class FeedConsumer:
    def __init__(
        self,
        feed_url: str,
        auth: tuple[str, str],
        index: RevocationIndex,
        *,
        max_disconnect: float = 10.0,
        read_timeout: float = 20.0,
        page_limit: int = 500,
        min_backoff: float = 0.05,
        max_backoff: float = 2.0,
        prune_interval: float = 30.0,
        stable_after: float = 1.0,
        transport: httpx.AsyncBaseTransport | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.feed_url = feed_url.rstrip("/")
        self.auth = auth
        self.index = index
        self.max_disconnect = max_disconnect
        self.read_timeout = read_timeout
        self.page_limit = page_limit
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.prune_interval = prune_interval
        self.stable_after = stable_after
        self._transport = transport
        self._monotonic = monotonic
        self._wall = wall_clock
        self.watermark = 0
        self.synced = False
        self.connected = False
        self.connections = 0
        self.events = 0
        self.last_error: str | None = None
        self._last_byte = monotonic()
        self._connected_at = monotonic()
        self._outage_since: float | None = monotonic()
        self._progress = False
        self._synced_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._response: httpx.Response | None = None

    # -- health ------------------------------------------------------------------------------

    def _outage_start(self) -> float | None:
        """Since when the feed cannot be trusted, or None while it can."""
        now = self._monotonic()
        if self.connected and now - self._last_byte < self.read_timeout:
            stable = now - self._connected_at >= self.stable_after
            if self._outage_since is None or stable:
                return None
        return self._outage_since if self._outage_since is not None else self._last_byte

    def healthy(self) -> bool:
        if not self.synced:
            return False
        start = self._outage_start()
        return start is None or self._monotonic() - start < self.max_disconnect

    def disconnected_for(self) -> float | None:
        """Seconds since the feed was last known in sync, or None while it is."""
        start = self._outage_start()
        return None if start is None else round(self._monotonic() - start, 3)

    def health(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy(),
            "synced": self.synced,
            "connected": self.connected,
            "disconnected_for": self.disconnected_for(),
            "max_disconnect": self.max_disconnect,
            "watermark": self.watermark,
            "events": self.events,
            "connections": self.connections,
            "index_entries": len(self.index),
            "last_error": self.last_error,
        }

    def wait_synced(self, timeout: float) -> bool:
        return self._synced_event.wait(timeout)

    # -- the loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Consumes the feed until cancelled."""
        timeout = httpx.Timeout(5.0, read=self.read_timeout)
        async with httpx.AsyncClient(
            auth=self.auth, timeout=timeout, transport=self._transport
        ) as client:
            pruner = asyncio.create_task(self._prune_forever())
            backoff = self.min_backoff
            try:
                while True:
                    try:
                        if not self.synced:
                            await self._bootstrap(client)
                        await self._stream(client)
                        self.last_error = "the stream was closed by the server"
                    except (
                        httpx.HTTPError,
                        httpx.StreamError,
                        FeedError,
                        ValueError,
                        RecursionError,  # a deeply nested page: retried, not the thread's end
                    ) as exc:
                        self.last_error = f"{type(exc).__name__}: {exc}"
                    if self._mark_disconnected():
                        backoff = self.min_backoff  # it had worked: retry quickly
                    log.warning("revocation feed disconnected: %s", self.last_error)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self.max_backoff)
            finally:
                self._mark_disconnected()
                pruner.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pruner

    def _mark_disconnected(self) -> bool:
        """Records the end of a connection; True if it had been working (stayed up for
        `stable_after` or delivered events). A connection that fails at once, again and again
        (e.g. on an event it cannot read) does not end the outage: the feed turns unhealthy."""
        worked = False
        if self.connected:
            self.connected = False
            worked = self._progress or self._last_byte - self._connected_at >= self.stable_after
            if worked:
                self._outage_since = None
        if self._outage_since is None:
            # Nothing was heard after the last byte: count the outage from there.
            self._outage_since = self._last_byte
        return worked

    async def _prune_forever(self) -> None:
        while True:
            await asyncio.sleep(self.prune_interval)
            self.index.prune(self._wall())

    async def _bootstrap(self, client: httpx.AsyncClient) -> None:
        """Pages through `GET /revocations?since=` until the backlog is read."""
        while True:
            response = await client.get(
                self.feed_url, params={"since": self.watermark, "limit": self.page_limit}
            )
            if response.status_code != 200:
                raise FeedError(f"GET /revocations answered {response.status_code}")
            body: FeedPage = response.json()  # what the server sends; checked here
            events = body.get("events")
            watermark = body.get("watermark")
            if not isinstance(events, list) or not isinstance(watermark, int):
                raise FeedError("GET /revocations: malformed page")
            for item in events:
                self._apply(item)
            moved = watermark > self.watermark
            self.watermark = max(self.watermark, watermark)
            if len(events) < self.page_limit or not moved:
                break
        self.synced = True
        self._last_byte = self._monotonic()
        self._outage_since = None
        self._synced_event.set()

    async def _stream(self, client: httpx.AsyncClient) -> None:
        headers = {
            "accept": "text/event-stream",
            "cache-control": "no-cache",
            "last-event-id": str(self.watermark),
        }
        async with client.stream(
            "GET", self.feed_url + "/stream", params={"since": self.watermark}, headers=headers
        ) as response:
            if response.status_code != 200:
                raise FeedError(f"GET /revocations/stream answered {response.status_code}")
            self._response = response
            self.connections += 1
            self._last_byte = self._connected_at = self._monotonic()
            self._progress = False
            self.connected = True
            parser = SSEParser()
            try:
                async for line in response.aiter_lines():
                    self._last_byte = self._monotonic()
                    message = parser.feed(line)
                    if message is None or message.event != "revocation":
                        continue
                    try:
                        data = json.loads(message.data)
                    except json.JSONDecodeError as exc:
                        raise FeedError(f"malformed event data: {exc}") from exc
                    self._apply(data)
                    self._progress = True
                    if message.id is not None and message.id.isdigit():
                        self.watermark = max(self.watermark, int(message.id))
            finally:
                self._response = None

    def _apply(self, data: Any) -> None:
        if not isinstance(data, dict):
            raise FeedError("an event is not a JSON object")
        try:
            event = RevocationEvent.from_json(data)
        except ValueError as exc:
            # Failing is safer than skipping: an event we cannot read may be a revocation. The
            # consumer reconnects, the feed turns unhealthy, and the verifier fails closed.
            raise FeedError(f"malformed event {data.get('id')!r}: {exc}") from exc
        self.index.apply(event)
        self.events += 1

    # -- on a thread of its own --------------------------------------------------------------

    def start(self) -> None:
        """Runs the consumer on a daemon thread with its own event loop (idempotent)."""
        if self._thread is not None:
            return
        ready = threading.Event()

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._task = loop.create_task(self.run())
            ready.set()
            try:
                loop.run_until_complete(self._task)
            except asyncio.CancelledError:
                pass
            finally:
                loop.close()

        self._thread = threading.Thread(target=main, name="baton-revocation-feed", daemon=True)
        self._thread.start()
        ready.wait(5)

    def stop(self, timeout: float = 5.0) -> None:
        thread, loop, task = self._thread, self._loop, self._task
        if thread is None or loop is None or task is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop may already be closed
            loop.call_soon_threadsafe(task.cancel)
        thread.join(timeout)
        self._thread = self._loop = self._task = None

    def drop_connection(self) -> None:
        """Closes the current stream (tests, operations): the consumer reconnects and resumes."""
        loop, response = self._loop, self._response
        if loop is not None and response is not None:
            asyncio.run_coroutine_threadsafe(response.aclose(), loop)

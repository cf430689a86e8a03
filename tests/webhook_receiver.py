"""A webhook receiver on loopback for the tests: a real HTTP server that can fail on purpose."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from baton.core.clock import Clock, FakeClock
from baton.webhooks import verify

SECRET = "webhook-signing-secret-for-tests"


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 that answers 500 to its first `fail_first` requests."""

    fail_first: int = 0
    received: list[Received] = field(default_factory=list)
    answered: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""
    clock: Clock = field(default_factory=FakeClock)  # the senders' clock signs the time

    def events(self) -> list[dict[str, Any]]:
        """Every delivery received, each checked with `baton.webhooks.verify`."""
        now = self.clock.now()
        return [verify(SECRET, r.headers, r.body, now=now) for r in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with state.lock:
                state.answered += 1
                failing = state.answered <= state.fail_first
                if not failing:
                    state.received.append(Received(dict(self.headers.items()), body))
            self.send_response(500 if failing else 204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/baton"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()

"""Review fix: `BatonMiddleware` stops the verifier at lifespan shutdown off the event loop.
`Verifier.stop()` joins the feed and the token-use reporter and makes the reporter's final
flush (issue 28): seconds during which a server on that loop would answer nothing."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from baton.resource import BatonMiddleware
from tests.resource.conftest import VerifierFactory


async def lifespan_app(scope: Scope, receive: Receive, send: Send) -> None:
    """An app with nothing but a lifespan (what Starlette does with no handlers)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def test_the_shutdown_stops_the_verifier_without_blocking_the_event_loop(
    make_verifier: VerifierFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    verifier = make_verifier(start=False)
    real_stop = verifier.stop
    seen: dict[str, Any] = {}

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop_thread = threading.get_ident()

        def stop() -> None:
            # The loop answers while the verifier stops: a callback scheduled on it runs.
            answered = threading.Event()
            loop.call_soon_threadsafe(answered.set)
            seen["loop answered"] = answered.wait(2)
            seen["on the loop thread"] = threading.get_ident() == loop_thread
            real_stop()

        monkeypatch.setattr(verifier, "stop", stop)
        messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

        async def receive() -> Message:
            return next(messages)

        sent: list[str] = []

        async def send(message: Message) -> None:
            sent.append(message["type"])

        middleware = BatonMiddleware(lifespan_app, verifier)
        await middleware({"type": "lifespan"}, receive, send)
        assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]

    asyncio.run(main())
    assert seen == {"loop answered": True, "on the loop thread": False}
    assert verifier.feed is not None and verifier.feed._thread is None  # really stopped

"""What the observability middleware adds to one request, in microseconds.

Drives a trivial ASGI app directly (no HTTP, no server) a number of times, bare and wrapped:
`Observe` with the access log off (metrics and request id only), and with the access log on
(JSON through the standard `logging` handler `baton serve` installs, written to /dev/null).
For comparison, the plain-text access log that `Observe` replaced.

    .venv/bin/python bench/observe_overhead.py [--requests 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.routing import Route

from baton.logs import formatter
from baton.server.observability.metrics import Metrics
from baton.server.observability.middleware import Observe

ASGI = Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]
ROUTE = Route("/token", lambda request: None, methods=["POST"])


async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
    scope["route"] = ROUTE  # as Starlette's router does
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


class PlainAccessLog:
    """The access log `Observe` replaced: one %-formatted line per request."""

    def __init__(self, inner: ASGI) -> None:
        self.inner = inner
        self.log = logging.getLogger("baton.access")

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.inner(scope, receive, send_wrapper)
        finally:
            client = scope.get("client")
            self.log.info(
                '%s "%s %s" %d %.1fms',
                client[0] if client else "-",
                scope["method"],
                scope["path"],
                status,
                (time.perf_counter() - started) * 1000,
            )


async def per_request(target: ASGI, requests: int) -> float:
    headers = [(b"host", b"baton"), (b"content-type", b"application/x-www-form-urlencoded")]

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    best = float("inf")
    for _round in range(5):
        started = time.perf_counter()
        for _ in range(requests // 5):
            scope = {
                "type": "http",
                "method": "POST",
                "path": "/token",
                "headers": headers,
                "client": ("127.0.0.1", 5000),
            }
            await target(scope, receive, send)
        best = min(best, (time.perf_counter() - started) / (requests // 5))
    return best * 1e6


async def main(requests: int) -> None:
    devnull = open(os.devnull, "w")  # noqa: SIM115
    handler = logging.StreamHandler(devnull)
    handler.setFormatter(formatter("json"))
    access = logging.getLogger("baton.access")
    access.addHandler(handler)
    access.propagate = False

    bare = await per_request(app, requests)
    access.setLevel(logging.WARNING)
    quiet = await per_request(Observe(app, Metrics()), requests)
    access.setLevel(logging.INFO)
    logged = await per_request(Observe(app, Metrics()), requests)
    plain_handler = logging.StreamHandler(devnull)
    plain_handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(process)d %(name)s %(message)s")
    )
    access.removeHandler(handler)
    access.addHandler(plain_handler)
    old = await per_request(PlainAccessLog(app), requests)

    print(f"bare app:                              {bare:6.2f} us/request")
    print(f"Observe, access log off (metrics, id): {quiet - bare:6.2f} us added")
    print(f"Observe, JSON access log on:           {logged - bare:6.2f} us added")
    print(f"old plain-text AccessLog, for scale:   {old - bare:6.2f} us added")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200_000)
    asyncio.run(main(parser.parse_args().requests))

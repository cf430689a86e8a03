"""The in-process refresh rate with tracing off or on: what `--tracing` costs a rotation.

    PYTHONPATH=src .venv/bin/python bench/tracing_overhead.py off|on [--seconds 4]

The app on a SQLite file in /dev/shm (no disk in the figure) is driven directly over ASGI (no
HTTP, no server), one rotation after another on one chain. `on` keeps every span and hands it
through the batch processor to an exporter that drops it (the export's network is not measured).
Prints refreshes per second and CPU microseconds per refresh (the process's, threads included).
Run `off` and `on` alternately, several rounds, and compare medians; for "tracing off costs
nothing", run `off` alternately with PYTHONPATH pointing at a tree without tracing. The figures
are in docs/tracing.md ("Cost").
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.support

from tests.support import first_pair, register_client, register_user, running_app

Headers = list[tuple[bytes, bytes]]


async def post_token(app: Any, headers: Headers, body: bytes) -> tuple[int, bytes]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/token",
        "raw_path": b"/token",
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 5000),
        "server": ("baton.test", 80),
        "state": {},
    }
    received = False
    status = 0
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal received
        if received:
            await asyncio.sleep(3600)
        received = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


def install_tracing() -> None:
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    from baton.server.observability import tracing

    class Dropped(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracing.install(Dropped())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("mode", choices=["off", "on"])
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    settings: dict[str, Any] = {"rate_limit_address": 1e9, "rate_limit_client": 1e9}
    if args.mode == "on":
        install_tracing()
        settings["tracing"] = True
    with (
        tempfile.TemporaryDirectory(dir="/dev/shm") as where,
        running_app(Path(where), **settings) as (http, store, _clock),
    ):
        register_user(store)
        client = register_client(store)
        token: str = first_pair(http, client)["refresh_token"]
        basic = base64.b64encode(f"{client.id}:{client.secret}".encode())
        headers: Headers = [
            (b"host", b"baton.test"),
            (b"content-type", b"application/x-www-form-urlencoded"),
            (b"authorization", b"Basic " + basic),
        ]

        async def rotate() -> None:
            nonlocal token
            body = f"grant_type=refresh_token&refresh_token={token}".encode()
            status, answer = await post_token(http.app, headers, body)
            assert status == 200, answer
            token = json.loads(answer)["refresh_token"]

        async def measure() -> tuple[int, float, float]:
            warm = time.perf_counter() + 0.5
            while time.perf_counter() < warm:
                await rotate()
            done = 0
            cpu, started = time.process_time(), time.perf_counter()
            while time.perf_counter() < started + args.seconds:
                await rotate()
                done += 1
            return done, time.perf_counter() - started, time.process_time() - cpu

        done, elapsed, cpu = asyncio.run(measure())
    print(f"{args.mode}: {done / elapsed:.0f} refreshes/s, {cpu / done * 1e6:.0f} us CPU each")
    return 0


if __name__ == "__main__":
    sys.exit(main())

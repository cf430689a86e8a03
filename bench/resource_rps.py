"""Requests per second of the example API (examples/api.py) with baton.resource's middleware on
its cached path, against the same API with no authentication, in one run.

    PYTHONPATH=. .venv/bin/python bench/resource_rps.py [--format opaque|jwt] \\
        [--concurrency 32] [--duration 10] [--json]

It starts its own `baton serve` (a fresh SQLite database), then two uvicorn processes of the
example API: `create_app` (every request's bearer token verified: after the first request the
answer comes from the verifier's cache and the revocation index, no introspection) and
`create_noauth_app` (the same routes, no middleware). Each is loaded in turn with `GET /hello`
over keep-alive HTTP/1.1 connections by a small asyncio client (raw sockets, so the generator
costs less than the server it measures), after a warm-up; every answer must be 200. The API,
Baton and the load generator share the machine, so the figures compare, they do not size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from tests.e2e.conftest import BATON, run_cli, seed_database, start_server
from tests.resource.e2e.support import Grants, start_api


async def _connection(
    port: int, request: bytes, stop_at: float, counts: list[int], errors: list[str]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < stop_at:
            writer.write(request)
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            if not status_line.startswith(b"HTTP/1.1 200"):
                errors.append(status_line.decode().strip())
            counts[0] += 1
    finally:
        writer.close()


async def load(port: int, token: str | None, concurrency: int, duration: float) -> dict[str, Any]:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    request = f"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n".encode()
    counts, errors = [0], list[str]()
    started = time.perf_counter()
    await asyncio.gather(
        *(
            _connection(port, request, started + duration, counts, errors)
            for _ in range(concurrency)
        )
    )
    elapsed = time.perf_counter() - started
    return {
        "requests": counts[0],
        "seconds": round(elapsed, 2),
        "rps": round(counts[0] / elapsed),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
    }


def main() -> int:
    # JWT signing keys are sealed at rest under this key (inherited by every baton process).
    os.environ.setdefault("BATON_KEY_ENCRYPTION_KEY", secrets.token_urlsafe(32))
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--format", default="opaque", choices=["opaque", "jwt"])
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    options = {}
    if args.format == "jwt":
        usage = subprocess.run([*BATON, "serve", "--help"], capture_output=True, text=True)
        if "--access-token-format" not in usage.stdout:
            print("baton serve has no --access-token-format", file=sys.stderr)
            return 2
        options["access_token_format"] = "jwt"
    results: dict[str, Any] = {"format": args.format, "concurrency": args.concurrency}
    with tempfile.TemporaryDirectory(prefix="baton-rps-") as tmp:
        root = Path(tmp)
        db = root / "seed" / "baton.db"
        db.parent.mkdir()
        run_cli("db", "upgrade", "--db", str(db))
        server = start_server(seed_database(db), root / "server", options)
        apis = []
        try:
            protected = start_api(server, root / "auth")
            apis.append(protected)
            open_api = start_api(None, root / "noauth", factory="examples.api:create_noauth_app")
            apis.append(open_api)
            flows = Grants(server)
            token = flows.pair()["access_token"]
            flows.close()
            health_before = httpx.get(protected.url + "/health").json()
            for name, api, bearer in (
                ("no_auth", open_api, None),
                ("middleware_cached", protected, token),
            ):
                port = int(api.url.rsplit(":", 1)[1])
                asyncio.run(load(port, bearer, args.concurrency, args.warmup))
                results[name] = asyncio.run(load(port, bearer, args.concurrency, args.duration))
            health = httpx.get(protected.url + "/health").json()
            results["introspections_during_run"] = (
                health["introspections"] - health_before["introspections"]
            )
            results["verifier_mode"] = health["mode"]
        finally:
            for api in apis:
                api.stop()
            server.stop()
    results["ratio"] = round(results["middleware_cached"]["rps"] / results["no_auth"]["rps"], 3)
    if args.json:
        print(json.dumps(results))
    else:
        for name in ("no_auth", "middleware_cached"):
            figures = results[name]
            print(
                f"{name:18} {figures['rps']:6} req/s  ({figures['requests']} requests in "
                f"{figures['seconds']} s, {figures['errors']} errors)"
            )
        print(
            f"ratio {results['ratio']}  format={args.format}  concurrency={args.concurrency}  "
            f"introspections during the run: {results['introspections_during_run']}  "
            f"verifier mode: {results['verifier_mode']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Revocation propagation to a resource server: from the moment an access token dies at Baton
to the first request the example API (examples/api.py, baton.resource's middleware) refuses.

    PYTHONPATH=. .venv/bin/python bench/resource_latency.py --trials 200 [--json]

It starts its own `baton serve` (a fresh SQLite database, --leeway 1) and the example API under
uvicorn, on loopback, once per token format (opaque, and JWT when this `baton serve` has
`--access-token-format`), and runs three scenarios:

- revoke: `POST /revoke` of the grant's refresh token; the token dies when that answer arrives.
- reuse: an exchanged refresh token presented after its leeway; the grant (and the new access
  token) dies when the `invalid_grant` answer arrives.
- leeway: a refresh token exchanged; its companion access token dies at the event's
  `effective_at` (announced at exchange time, whole seconds). One trial per second, so this one
  runs `--leeway-trials` trials (default 200, about a second each).

Each trial then calls the API back to back with the dead token; the delay is from the death to
the arrival of the first 401. It includes one API round trip (about a millisecond), so it is an
upper bound of the propagation itself. The pages and the grants are not timed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from tests.e2e.conftest import BATON, Seed, Server, run_cli, seed_database, start_server
from tests.resource.e2e.support import ExampleApi, Grants, start_api


def summary(delays_ms: list[float]) -> dict[str, float]:
    ordered = sorted(delays_ms)
    cuts = statistics.quantiles(ordered, n=100, method="inclusive") if len(ordered) > 1 else []
    return {
        "trials": len(ordered),
        "p50_ms": round(statistics.median(ordered), 2),
        "p99_ms": round(cuts[98], 2) if cuts else round(ordered[0], 2),
        "max_ms": round(ordered[-1], 2),
    }


def poll_until_refused(http: httpx.Client, url: str, token: str, timeout: float = 10.0) -> float:
    """perf_counter() when the first refusal arrived."""
    headers = {"authorization": f"Bearer {token}"}
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        status = http.get(url, headers=headers).status_code
        if status == 401:
            return time.perf_counter()
        if status != 200:
            raise RuntimeError(f"unexpected status {status}")
    raise RuntimeError("the token was never refused")


def accepted(http: httpx.Client, url: str, token: str) -> None:
    response = http.get(url, headers={"authorization": f"Bearer {token}"})
    if response.status_code != 200:
        raise RuntimeError(f"a live token was refused: {response.status_code} {response.text}")


def revoke_trials(flows: Grants, http: httpx.Client, url: str, n: int) -> list[float]:
    delays = []
    for _ in range(n):
        pair = flows.pair()
        accepted(http, url, pair["access_token"])  # now cached at the API
        flows.revoke(pair["refresh_token"])
        dead = time.perf_counter()
        delays.append((poll_until_refused(http, url, pair["access_token"]) - dead) * 1000)
    return delays


def reuse_trials(
    flows: Grants, http: httpx.Client, url: str, n: int, batch: int = 50
) -> list[float]:
    delays: list[float] = []
    while len(delays) < n:
        rotated = []
        for _ in range(min(batch, n - len(delays))):
            pair0 = flows.pair()
            pair1 = flows.refresh(pair0["refresh_token"]).json()
            accepted(http, url, pair1["access_token"])
            rotated.append((pair0, pair1))
        time.sleep(2.1)  # every leeway (1 s, whole seconds) has ended
        for pair0, pair1 in rotated:
            accepted(http, url, pair1["access_token"])
            response = flows.refresh(pair0["refresh_token"])
            dead = time.perf_counter()
            if response.status_code != 400:
                raise RuntimeError(f"reuse was not detected: {response.text}")
            delays.append((poll_until_refused(http, url, pair1["access_token"]) - dead) * 1000)
    return delays


def leeway_trials(
    server: Server, flows: Grants, http: httpx.Client, url: str, n: int
) -> list[float]:
    delays = []
    with httpx.Client(auth=server.resource_server.basic) as feed:
        watermark = feed.get(server.url + "/revocations").json()["watermark"]
        for _ in range(n):
            pair0 = flows.pair()
            accepted(http, url, pair0["access_token"])
            flows.refresh(pair0["refresh_token"])
            digest = hashlib.sha256(pair0["access_token"].encode()).hexdigest()
            effective_at = None
            while effective_at is None:
                page = feed.get(server.url + "/revocations", params={"since": watermark}).json()
                for event in page["events"]:
                    if event.get("token_digest") == digest:
                        effective_at = float(event["effective_at"])
                watermark = page["watermark"]
            # Sleep to just before the death, then call back to back.
            time.sleep(max(0.0, effective_at - time.time() - 0.05))
            headers = {"authorization": f"Bearer {pair0['access_token']}"}
            while True:
                status = http.get(url, headers=headers).status_code
                if status == 401:
                    refused = time.time()
                    break
            delays.append((refused - effective_at) * 1000)
    return delays


def jwt_supported() -> bool:
    usage = subprocess.run([*BATON, "serve", "--help"], capture_output=True, text=True, check=False)
    return "--access-token-format" in usage.stdout


def main() -> int:
    # JWT signing keys are sealed at rest under this key (inherited by every baton process).
    os.environ.setdefault("BATON_KEY_ENCRYPTION_KEY", secrets.token_urlsafe(32))
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--leeway-trials", type=int, default=200)
    parser.add_argument("--formats", default="opaque,jwt")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="baton-latency-") as tmp:
        root = Path(tmp)
        db = root / "seed" / "baton.db"
        db.parent.mkdir()
        run_cli("db", "upgrade", "--db", str(db))
        seed: Seed = seed_database(db)
        for token_format in args.formats.split(","):
            options = {"leeway": "1"}
            if token_format == "jwt":
                if not jwt_supported():
                    results[token_format] = "skipped: baton serve has no --access-token-format"
                    continue
                options["access_token_format"] = "jwt"
            server = start_server(seed, root / token_format, options)
            api: ExampleApi | None = None
            try:
                api = start_api(server, root / token_format)
                flows = Grants(server)
                url = api.url + "/hello"
                with httpx.Client() as http:
                    results[token_format] = {
                        "revoke": summary(revoke_trials(flows, http, url, args.trials)),
                        "reuse": summary(reuse_trials(flows, http, url, args.trials)),
                        "leeway": summary(
                            leeway_trials(server, flows, http, url, args.leeway_trials)
                        ),
                    }
                flows.close()
            finally:
                if api is not None:
                    api.stop()
                server.stop()
    if args.json:
        print(json.dumps(results))
    else:
        for token_format, scenarios_result in results.items():
            if isinstance(scenarios_result, str):
                print(f"{token_format}: {scenarios_result}")
                continue
            for name, figures in scenarios_result.items():
                print(
                    f"{token_format:6} {name:6} trials={figures['trials']:4} "
                    f"p50={figures['p50_ms']:7.2f} ms  p99={figures['p99_ms']:7.2f} ms  "
                    f"max={figures['max_ms']:7.2f} ms"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())

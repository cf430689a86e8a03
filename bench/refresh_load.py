"""Refresh-exchange load against a running `baton serve`.

    python bench/refresh_load.py --url http://127.0.0.1:8000 --db baton.db --concurrency 16

What it measures: refresh_token exchanges (rule 2, a real rotation each time: one transaction
that marks the presented token exchanged, seals the child pair under the `replay` policy and
inserts the child pair), authenticated with client_secret_basic by a confidential client, at a
fixed number of requests in flight. Every exchange presents a distinct, never-exchanged refresh
token, so no request is a retry (which would be a cheaper replay): each worker owns a set of
grants and always presents the refresh token it received last for the grant. Every response
must be 200 with a pair that differs from every pair seen before; anything else is an error.

How it seeds: directly through `baton.store.sql.SQLStore` on the server's own database (so run
it on the same host, with `--db` naming the same file), not through /authorize. It registers a
client and a user, then for each grant saves an authorization code and redeems it with
`SQLStore.redeem_code`, the very transaction the token endpoint runs for an authorization code
exchange, so the grants and first pairs are exactly what the server would have written. The
browser flow would cost a sign-in (an argon2 verification, about 0.1 s, on purpose) and four
round trips per grant, would load the server while seeding, and would measure nothing the
benchmark is about. The seeding is not timed.

The load generator is one Python process (asyncio + httpx, one keep-alive connection per
worker); on a small machine it competes with the server for CPU, so the figure is a floor.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import anyio
import httpx
from peers.baton_peer import register_client_and_user

from baton.core.pairs import MintedPair
from baton.core.rules import CodeRedemption
from baton.core.tokens import TokenKind, mint
from baton.store.base import Issued, NewCode
from baton.store.sql import SQLStore


@dataclass(frozen=True)
class Seeded:
    client_id: str
    client_secret: str
    refresh_tokens: list[str]


async def seed(db: str, grants: int) -> Seeded:
    store = SQLStore.open(db)
    try:
        if not await store.schema_is_current():
            sys.exit(f"error: {db} is not migrated: run `baton db upgrade --db {db}` first")
        now = int(time.time())
        client, secret, user = await register_client_and_user(
            store, "refresh-load bench", "read write", now
        )
        tokens: list[str] = []
        for _ in range(grants):
            code = mint(TokenKind.CODE)
            await store.save_code(
                NewCode(code.digest, client.id, user.id, None, "read write", None, now, now + 60)
            )
            result = await store.redeem_code(
                code.digest, CodeRedemption(client.id, None, None), MintedPair.new(), now, None
            )
            assert isinstance(result, Issued) and result.pair.refresh_token is not None
            tokens.append(result.pair.refresh_token)
        return Seeded(client.id, secret, tokens)
    finally:
        await store.close()


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)  # seconds, successful exchanges only
    errors: Counter[str] = field(default_factory=Counter)
    seen: set[str] = field(default_factory=set)  # every token received: all must be new

    @property
    def total(self) -> int:
        return len(self.latencies) + sum(self.errors.values())


async def worker(
    http: httpx.AsyncClient,
    url: str,
    tokens: list[str],
    stop_at: float,
    budget: list[int],
    measured: Tally,
    warmup_until: float,
    warmup: Tally,
) -> None:
    """Refreshes its grants round-robin, each time with the refresh token it received last."""
    index = 0
    while tokens and time.perf_counter() < stop_at and budget[0] > 0:
        budget[0] -= 1
        slot = index % len(tokens)
        index += 1
        presented = tokens[slot]
        started = time.perf_counter()
        tally = warmup if started < warmup_until else measured
        try:
            response = await http.post(
                url, data={"grant_type": "refresh_token", "refresh_token": presented}
            )
        except httpx.HTTPError as exc:
            tally.errors[f"transport: {type(exc).__name__}"] += 1
            continue
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            try:
                reason = response.json().get("error_description", response.text[:80])
            except ValueError:
                reason = response.text[:80]
            tally.errors[f"{response.status_code}: {reason}"] += 1
            tokens.pop(slot)  # that grant is no use any more
            continue
        body = response.json()
        access, refresh = body.get("access_token"), body.get("refresh_token")
        if (
            not isinstance(access, str)
            or not isinstance(refresh, str)
            or refresh == presented
            or access in tally.seen
            or refresh in tally.seen
            or "refresh_token_expires_in" not in body
        ):
            tally.errors["200 without a new pair"] += 1
            tokens.pop(slot)
            continue
        tally.seen.update((access, refresh))
        tally.latencies.append(elapsed)
        tokens[slot] = refresh


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def run(args: argparse.Namespace) -> int:
    grants = args.grants or args.concurrency * 4
    print(f"seeding {grants} grants in {args.db} ...", file=sys.stderr)
    seeded = await seed(args.db, grants)
    shares = [seeded.refresh_tokens[i :: args.concurrency] for i in range(args.concurrency)]

    limits = httpx.Limits(max_connections=args.concurrency)
    async with httpx.AsyncClient(
        auth=(seeded.client_id, seeded.client_secret), limits=limits, timeout=60
    ) as http:
        metadata = await http.get(args.url.rstrip("/") + "/.well-known/oauth-authorization-server")
        metadata.raise_for_status()
        token_url = metadata.json()["token_endpoint"]
        measured, warmup = Tally(), Tally()
        warmup.seen = measured.seen  # one set: every token ever received must be new
        start = time.perf_counter()
        if args.count is None:
            warmup_until = start + args.warmup
            stop_at = warmup_until + args.duration
            budget = [sys.maxsize]
        else:  # a fixed count is measured whole
            warmup_until, stop_at, budget = start, float("inf"), [args.count]
        await asyncio.gather(
            *(
                worker(http, token_url, share, stop_at, budget, measured, warmup_until, warmup)
                for share in shares
            )
        )
        wall = time.perf_counter() - warmup_until

    ok = len(measured.latencies)
    errors = measured.errors + warmup.errors
    report = {
        "url": token_url,
        "concurrency": args.concurrency,
        "exchanges": ok,
        "seconds": round(wall, 3),
        "exchanges_per_second": round(ok / wall, 1) if wall > 0 else 0.0,
        "latency_ms": {
            "p50": round(percentile(measured.latencies, 0.50) * 1000, 2),
            "p90": round(percentile(measured.latencies, 0.90) * 1000, 2),
            "p99": round(percentile(measured.latencies, 0.99) * 1000, 2),
            "max": round(max(measured.latencies) * 1000, 2),
            "mean": round(statistics.fmean(measured.latencies) * 1000, 2),
        }
        if measured.latencies
        else None,
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "warmup_exchanges": len(warmup.latencies),
    }
    if args.json:
        print(json.dumps(report))
    else:
        latency = report["latency_ms"] or {}
        print(
            f"{ok} refresh exchanges in {wall:.2f}s at concurrency {args.concurrency}: "
            f"{report['exchanges_per_second']} exchanges/s\n"
            f"latency ms: p50 {latency.get('p50')}  p90 {latency.get('p90')}  "
            f"p99 {latency.get('p99')}  max {latency.get('max')}\n"
            f"errors: {report['errors']} {dict(errors) if errors else ''}"
        )
    return 1 if errors or ok == 0 else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the server's base URL")
    parser.add_argument(
        "--db",
        default=os.environ.get("BATON_DB", "sqlite:///baton.db"),
        help="the server's database (to seed grants into) [env: BATON_DB]",
    )
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--count", type=int, help="stop after this many exchanges instead")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds first")
    parser.add_argument("--grants", type=int, help="grants to seed [default: 4 x concurrency]")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    sys.exit(anyio.run(run, args))


if __name__ == "__main__":
    main()

"""CPU per refresh and per revocation of the store on PostgreSQL, in-process, at a concurrency.

    .venv/bin/python bench/pg_store_cpu.py [--url postgresql://postgres@127.0.0.1:5432/postgres]
                                           [--kind refresh|revoke|roundtrip] [--concurrency 16]
                                           [--requests 1800] [--no-fast-paths] [--no-wake]

No HTTP and no proxy (`pg_roundtrips.py` counts round trips through one, whose own CPU it
cannot leave out): `--concurrency` tasks drive `SQLStore.exchange` (each rotating a chain of its
own) or `SQLStore.revoke_token` (each a grant of its own) on a database of its own, and it prints
the requests per second, this process's CPU per request (Python, SQLAlchemy, asyncpg, the kernel's
side of the sockets) and the PostgreSQL backends'. `--no-wake` leaves the feed's NOTIFYs out, to
see what they cost. `--kind roundtrip`: one pooled point query per request, on the native paths'
pool, which is what a statement fewer per request could save at most. Run two trees alternately
(`PYTHONPATH=<tree>/src`) to compare commits.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pg_roundtrips import NOW, backend_cpu, exchange_ask, setup  # bench/ is not a package

from baton.core.policy import Policy
from baton.core.tokens import digest
from baton.store.base import Issued
from baton.store.engines import PoolSettings, open_runner
from baton.store.migrate import upgrade
from baton.store.sql import SQLStore

POINT_QUERY = "SELECT id, secret_digest FROM clients WHERE id = $1"


async def measure(
    url: str, kind: str, concurrency: int, requests: int, fast: bool, wake: bool
) -> str:
    store = SQLStore(open_runner(url, PoolSettings(size=10), fast_paths=fast), Policy())
    if not wake:
        store.runner._notifier.wake = lambda: None  # type: ignore[attr-defined]
    try:
        per_task = max(1, requests // concurrency)
        grants = concurrency * (per_task if kind == "revoke" else 1) + concurrency
        client, pairs = await setup(store, grants)
        warm, measured = pairs[:concurrency], pairs[concurrency:]

        async def rotate(token: str, count: int) -> None:
            for _ in range(count):
                result = await store.exchange(exchange_ask(token, client, NOW + 1))
                assert isinstance(result, Issued), result
                assert result.pair.refresh_token is not None
                token = result.pair.refresh_token

        async def revoke(tokens: list[str]) -> None:
            for token in tokens:
                assert await store.revoke_token(client, digest(token), True, NOW + 1) == "grant"

        async def round_trips(count: int) -> None:
            # One round trip as the native paths make it: a pooled connection, one prepared
            # point query (the client's row by its key). What a statement fewer would save.
            for _ in range(count):
                async with store.runner.native() as conn:  # type: ignore[attr-defined]
                    assert await conn.fetchrow(POINT_QUERY, client.id) is not None

        if kind == "refresh":
            await asyncio.gather(*(rotate(refresh, 2) for refresh, _ in warm))
        elif kind == "roundtrip":
            await asyncio.gather(*(round_trips(2) for _ in warm))
        else:
            await asyncio.gather(*(revoke([refresh]) for refresh, _ in warm))
        pids = await store.inspect(
            lambda conn: [
                row[0]
                for row in conn.execute(
                    text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
                )
            ]
        )
        started, cpu, backends = time.perf_counter(), time.process_time(), backend_cpu(pids)
        if kind == "refresh":
            await asyncio.gather(*(rotate(refresh, per_task) for refresh, _ in measured))
        elif kind == "roundtrip":
            await asyncio.gather(*(round_trips(per_task) for _ in measured))
        else:
            tokens = [refresh for refresh, _ in measured]
            await asyncio.gather(*(revoke(tokens[i::concurrency]) for i in range(concurrency)))
        done = per_task * concurrency
        elapsed = time.perf_counter() - started
        own = 1e6 * (time.process_time() - cpu) / done
        database = 1e6 * (backend_cpu(pids) - backends) / done
        return (
            f"{done} {kind} {done / elapsed:,.0f}/s  CPU {own:.0f} us + PostgreSQL"
            f" {database:.0f} us per request"
        )
    finally:
        await store.close()


async def run(args: argparse.Namespace) -> str:
    """On a fresh database of its own (created, migrated, dropped)."""
    base = make_url(args.url)
    admin = base.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"baton_store_cpu_{time.monotonic_ns()}"
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = base.set(database=name).render_as_string(hide_password=False)
    try:
        runner = open_runner(url)
        try:
            await upgrade(runner)
        finally:
            await runner.close()
        return await measure(
            url,
            args.kind,
            args.concurrency,
            args.requests,
            not args.no_fast_paths,
            not args.no_wake,
        )
    finally:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--kind", choices=["refresh", "revoke", "roundtrip"], default="refresh")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--requests", type=int, default=1800)
    parser.add_argument("--no-fast-paths", action="store_true")
    parser.add_argument("--no-wake", action="store_true", help="no NOTIFY of the feed")
    print(asyncio.run(run(parser.parse_args())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""How long the admin console's queries take on a large database.

Seeds N grants (each with a few rotated pairs and their access tokens) straight into a fresh
SQLite file, then times the queries behind each console page: the first and a deep page of
grants (newest first, by status, by client), a grant's family with its timeline and SVG, and
the security events page. Prints the median of several runs of each, in milliseconds.

    .venv/bin/python bench/console_queries.py --grants 20000
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from sqlalchemy import Connection, insert

from baton.core import timeline
from baton.core.policy import Policy, RetryPolicy
from baton.server.admin.timeline_svg import render
from baton.store import migrate
from baton.store.admin import GrantQuery
from baton.store.schema import access_tokens, clients, grants, refresh_tokens, users
from baton.store.sql import SQLStore

NOW = 1_800_000_000


def seed(conn: Connection, n_grants: int, pairs: int) -> None:
    conn.execute(
        insert(clients),
        [
            {
                "id": f"cl_{c}",
                "name": f"client {c}",
                "is_public": False,
                "is_resource_server": False,
                "redirect_uris": "[]",
                "scope": "read",
                "created_at": 0,
            }
            for c in range(20)
        ],
    )
    conn.execute(
        insert(users),
        [{"username": f"user{u}", "password_hash": "x", "created_at": 0} for u in range(1000)],
    )
    g_rows, r_rows, a_rows = [], [], []
    rid = 0
    for g in range(n_grants):
        created = NOW - (n_grants - g) * 30
        g_rows.append(
            {
                "id": f"grt_{g:08d}",
                "client_id": f"cl_{g % 20}",
                "user_id": g % 1000 + 1,
                "scope": "read",
                "created_at": created,
                "expires_at": created + 365 * 86400,
                "revoked_at": created + 100 if g % 7 == 0 else None,
                "revoked_reason": "reuse" if g % 7 == 0 else None,
            }
        )
        for gen in range(pairs):
            rid += 1
            issued = created + gen * 1200
            last = gen == pairs - 1
            r_rows.append(
                {
                    "id": rid,
                    "digest": rid.to_bytes(32, "big"),
                    "grant_id": f"grt_{g:08d}",
                    "parent_id": rid - 1 if gen else None,
                    "generation": gen,
                    "issued_at": issued,
                    "expires_at": issued + 90 * 86400,
                    "exchanged_at": None if last else issued + 1200,
                    "retire_at": None if last else issued + 1800,
                }
            )
            a_rows.append(
                {
                    "digest": (10**12 + rid).to_bytes(32, "big"),
                    "grant_id": f"grt_{g:08d}",
                    "refresh_token_id": rid,
                    "generation": gen,
                    "scope": "read",
                    "issued_at": issued,
                    "expires_at": issued + 3600,
                }
            )
    conn.execute(insert(grants), g_rows)
    conn.execute(insert(refresh_tokens), r_rows)
    conn.execute(insert(access_tokens), a_rows)


async def timed(work: Callable[[], Awaitable[Any]], runs: int = 15) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        await work()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


async def main(n_grants: int, pairs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLStore.open(f"sqlite:///{Path(tmp) / 'bench.db'}")
        await migrate.upgrade(store.runner)
        await store.runner.write(lambda conn: seed(conn, n_grants, pairs))
        admin = store.admin()
        page = await admin.grants(GrantQuery(), NOW)
        deep = page.next
        for _ in range(20):  # 20 pages in
            assert deep is not None
            deep = (await admin.grants(GrantQuery(after=deep), NOW)).next

        async def family_and_svg() -> None:
            family = await admin.family(f"grt_{n_grants // 2:08d}")
            assert family is not None
            drawn = timeline.build(
                family.grant,
                family.refresh,
                family.access,
                family.events,
                now=NOW,
                policy=Policy(retry=RetryPolicy.REPLAY),
            )
            render(drawn)

        cases: dict[str, Callable[[], Awaitable[Any]]] = {
            "grants, first page": lambda: admin.grants(GrantQuery(), NOW),
            "grants, page 21": lambda: admin.grants(GrantQuery(after=deep), NOW),
            "grants, active": lambda: admin.grants(GrantQuery(status="active"), NOW),
            "grants, revoked": lambda: admin.grants(GrantQuery(status="revoked"), NOW),
            "grants, one client": lambda: admin.grants(GrantQuery(client_id="cl_3"), NOW),
            "grants, one user": lambda: admin.grants(GrantQuery(username="user42"), NOW),
            "family + timeline + SVG": family_and_svg,
            "security events": lambda: admin.security_events(),
            "clients": lambda: admin.clients(),
        }
        print(f"{n_grants} grants x {pairs} pairs on SQLite; median of 15 runs")
        for name, work in cases.items():
            print(f"  {name:<26} {await timed(work):7.2f} ms")
        await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grants", type=int, default=20_000)
    parser.add_argument("--pairs", type=int, default=4)
    args = parser.parse_args()
    anyio.run(main, args.grants, args.pairs)

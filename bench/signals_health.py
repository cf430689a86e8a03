"""What reading the integration signals costs (issue 28): `client_health` (the console, the admin
API, `baton report enforcement --all`) and `client_series` (the per-client `/metrics` series).

    .venv/bin/python bench/signals_health.py [--rows 100000] [--clients 50] [--grants 20000]
                                             [--db sqlite|postgresql://...]

Writes `--rows` signal counts as the server's flushes would (`SQLStore.record_signals`) over the
last 24 hours, the worst case for the store: every one a report-only refusal (`would_refuse`, the
only kind kept per grant) of one of `--grants` grants, spread over `--clients` clients, then
times one `client_health(None, 24 h)` and one `client_series(top 20)`. The store folds the counts
per client, kind, reason, source, grant and hour, so what is read grows with clients x grants x
hours, not with flushes. In-process, no HTTP.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import anyio

from baton.core.policy import Policy
from baton.store import migrate
from baton.store.base import SignalCount
from baton.store.engines import PoolSettings
from baton.store.sql import SQLStore

NOW = 1_700_000_000
DAY = 86_400
BATCH = 50_000


def seed(store: SQLStore, rows: int, clients: int, grants: int) -> None:
    batch: list[SignalCount] = []
    for i in range(rows):
        at = NOW - (i * 7919) % DAY
        batch.append(
            SignalCount(
                client_id=f"cl_{i % clients}",
                kind="would_refuse",
                reason="leeway",
                source="resource",
                grant_id=f"grt_{i % grants:016d}",
                first_at=at,
                last_at=at,
                count=3,
                delays={100 + i % 30: 2, 130 + i % 7: 1},
            )
        )
        if len(batch) == BATCH:
            anyio.run(store.record_signals, batch)
            batch = []
    if batch:
        anyio.run(store.record_signals, batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--grants", type=int, default=20_000)
    parser.add_argument("--db", default="sqlite", help="sqlite (a temporary file) or a URL")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="baton-signals-") as folder:
        db = f"sqlite:///{Path(folder) / 'signals.db'}" if args.db == "sqlite" else args.db
        # No pool: each step runs on an event loop of its own (`anyio.run`).
        store = SQLStore.open(db, Policy(), PoolSettings(size=0))
        anyio.run(migrate.upgrade, store.runner)
        try:
            started = time.perf_counter()
            seed(store, args.rows, args.clients, args.grants)
            written = time.perf_counter() - started
            started = time.perf_counter()
            healths = anyio.run(store.client_health, None, NOW - DAY, NOW)
            health = time.perf_counter() - started
            started = time.perf_counter()
            anyio.run(store.client_series, NOW - DAY, NOW, 20)
            series = time.perf_counter() - started
        finally:
            anyio.run(store.close)
    print(
        f"rows={args.rows} clients={len(healths)} write={written:.2f}s "
        f"client_health(all, 24h)={health:.2f}s client_series(top 20)={series:.2f}s"
    )


if __name__ == "__main__":
    main()

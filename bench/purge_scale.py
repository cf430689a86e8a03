"""One purge batch of dead grants as the database grows, on SQLite and PostgreSQL.

    .venv/bin/python bench/purge_scale.py [--sizes 200000,1000000] [--targets sqlite,postgresql]
                                          [--dead 50] [--rounds 3]
                                          [--url postgresql://postgres@127.0.0.1:5432/postgres]

For each size, on a fresh SQLite file and a fresh PostgreSQL database, the grants are added as
`bench/scaling.py` adds them (one made through the store, the rest filler shaped as the store
writes them, with digests and grant ids at random places in the indexes). At each size,
`--rounds` times: `--dead` grants, each with its refresh and access token, are made dead for
longer than the retention, and one `SQLStore.purge` batch (the one that deletes them, the
foreign keys' checks of each deleted row included) is timed. Prints the median per size. A
purge that looks up what it deletes by index takes the same time at every size; one that scans
a table per deleted row grows with the table (before migration 0012: about 9 s a batch at a
million grants on PostgreSQL, 6 to 7 s on SQLite, where the write lock is held all that time).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pg_roundtrips import NOW, migrated_with_one_grant  # bench/ is not a package
from scaling import Database, PostgresDatabase, SQLiteDatabase

from baton.core.policy import Policy
from baton.store.engines import PoolSettings, open_runner
from baton.store.sql import SQLStore

RETENTION = 0  # dead grants go at once: `NOW` is past the life of everything made dead


KILL = (
    "UPDATE grants SET expires_at = 0 WHERE id IN"
    " (SELECT id FROM grants WHERE expires_at > 0 ORDER BY id LIMIT {dead})"
)


async def purge_once(url: str) -> tuple[int, float]:
    store = SQLStore(open_runner(url, PoolSettings(size=2)), Policy())
    try:
        await store.counts()  # connected, and the writer's connection too: not timed
        await store.purge(0, RETENTION, 500)  # deletes nothing: nothing is dead at 0
        started = time.perf_counter()
        changed = await store.purge(NOW + 10, RETENTION, 500)
        return changed, time.perf_counter() - started
    finally:
        await store.close()


def measure(database: Database, size: int, dead: int, rounds: int) -> str:
    """On a fresh `database` grown to `size` (the purge leaves fewer grants than the filler's
    counter, so each size has a database of its own)."""
    asyncio.run(migrated_with_one_grant(database.url))
    database.grow(size, database.template())
    database.after_seed()
    times = []
    for _ in range(rounds):
        database.sql(KILL.format(dead=dead))
        changed, seconds = asyncio.run(purge_once(database.url))
        assert changed >= 3 * dead, f"the batch deleted {changed} rows"
        times.append(seconds)
    line = (
        f"{database.kind:<10} {size:>10,} grants: a batch of {dead} dead grants"
        f" in {statistics.median(times) * 1000:,.0f} ms (median of {rounds})"
    )
    print(line, flush=True)
    return line


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="200000,1000000")
    parser.add_argument("--targets", default="sqlite,postgresql")
    parser.add_argument("--dead", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    sizes = sorted(int(size) for size in args.sizes.split(","))
    targets = args.targets.split(",")
    with tempfile.TemporaryDirectory(prefix="baton-purge-", dir="/var/tmp") as work:
        for size in sizes:
            if "sqlite" in targets:
                path = Path(work) / f"baton-{size}.db"
                measure(SQLiteDatabase(path), size, args.dead, args.rounds)
                for leftover in Path(work).glob(f"baton-{size}.db*"):
                    leftover.unlink()
            if "postgresql" in targets:
                database = PostgresDatabase(args.url, f"baton_purge_{time.monotonic_ns()}")
                try:
                    measure(database, size, args.dead, args.rounds)
                finally:
                    database.drop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Where a PostgreSQL-backed server's time goes while a load runs: wait events and thread CPU.

    .venv/bin/python bench/pg_waits.py --pid SUPERVISOR_PID [--seconds 8]
                                       [--url postgresql://postgres@127.0.0.1:5432/postgres]
                                       [--database baton_rounds]

Run it beside a load (e.g. `bench/rounds.py --db postgresql://... --rounds 1 --duration 20`,
whose server's supervisor is the `baton.server.runtime.workers` process, on the database
`baton_rounds`). For `--seconds` it samples, every 10 ms, what each client backend of the
server's database is doing (`pg_stat_activity`): on CPU, or waiting, and on what (`ClientRead`:
a backend waiting for Baton's next statement; `WALWrite`, `WALSync`: the commit's flush; `Lock`:
a row). It prints the share of samples per state, and the CPU each thread of the server's
processes used over the same seconds (from /proc: the event loop against the helper threads).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import time
from pathlib import Path

import asyncpg

TICK = os.sysconf("SC_CLK_TCK")


def tree(pid: int) -> list[int]:
    """`pid` and its descendants."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children[parent].append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def thread_cpu(pids: list[int]) -> dict[str, float]:
    """CPU seconds by thread name (`comm`), summed over the processes."""
    seconds: dict[str, float] = collections.defaultdict(float)
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                name = (task / "comm").read_text().strip()
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            seconds[name] += (int(fields[11]) + int(fields[12])) / TICK
    return seconds


async def waits(url: str, database: str, seconds: float) -> collections.Counter[str]:
    conn = await asyncpg.connect(url)
    samples: collections.Counter[str] = collections.Counter()
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for row in await conn.fetch(
                "SELECT state, wait_event_type, wait_event FROM pg_stat_activity"
                " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
                " AND datname = $1",
                database,
            ):
                if row["state"] == "active" and row["wait_event"] is None:
                    samples["active (on CPU)"] += 1
                elif row["state"] == "active":
                    samples[f"active, waiting: {row['wait_event_type']}/{row['wait_event']}"] += 1
                else:
                    samples[f"{row['state']}: {row['wait_event'] or '-'}"] += 1
            await asyncio.sleep(0.01)
    finally:
        await conn.close()
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pid", type=int, required=True, help="the server's supervisor")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--database", default="baton_rounds", help="the server's database")
    args = parser.parse_args()
    pids = tree(args.pid)
    before = thread_cpu(pids)
    samples = asyncio.run(waits(args.url, args.database, args.seconds))
    after = thread_cpu(pids)
    total = sum(samples.values()) or 1
    print("PostgreSQL client backends, share of samples:")
    for state, count in samples.most_common():
        print(f"  {100 * count / total:5.1f}%  {state}")
    print(f"Server threads, CPU seconds over {args.seconds:.0f} s (processes: {len(pids)}):")
    used = {name: after[name] - before.get(name, 0.0) for name in after}
    for name, seconds in sorted(used.items(), key=lambda item: -item[1]):
        if seconds > 0:
            print(f"  {seconds:6.2f}  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

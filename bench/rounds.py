"""Baton alone under wrk, round after round, with optional idle gaps between rounds.

    .venv/bin/python bench/rounds.py [--rounds 3] [--gap 70] [--grants 60000] [--mode refresh]
                                     [--no-fast-paths] [--db postgresql://postgres@127.0.0.1/postgres]

Prints each round's exchanges per second, p50/p99, and per request the CPU time of the server's
process tree (user + system) and what it read from the disk (not the page cache), both from
/proc. With `--gap`, the server idles that many seconds before each round after the first: how
the decline after idle was found (bench/README.md). `make bench` is the comparison with the
peers; this is for looking at Baton alone. `--no-fast-paths` serves with every short cut of
`Settings.fast_paths` off (`baton serve --no-fast-paths`), for the side-by-side runs of
docs/performance.md: run it alternately with and without the flag. `--db` serves from a fresh
database on that PostgreSQL server (the URL is the server's admin database, as `make bench`
takes it) rather than SQLite, and adds the CPU time of the PostgreSQL backends serving it per
request (the server must run on this machine for that figure).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compare  # bench/ is not a package: found through the path set above


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=["refresh", "introspect", "revoke"], default="refresh")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per round")
    parser.add_argument("--gap", type=float, default=0.0, help="idle seconds before rounds 2..n")
    parser.add_argument("--grants", type=int, default=60_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--baton-args", default="", help="more `baton serve` options")
    parser.add_argument(
        "--no-fast-paths",
        dest="fast_paths",
        action="store_false",
        help="serve with the fast paths off (baton serve --no-fast-paths)",
    )
    parser.add_argument(
        "--db", help="a PostgreSQL server's admin URL: serve from a fresh database on it"
    )
    parser.add_argument(
        "--pg-setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="with --db: a setting of the fresh database (ALTER DATABASE ... SET), e.g. "
        "commit_delay=100; only that database's sessions see it",
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="baton-rounds-"))
    wrk = compare.ensure_wrk()
    name = "baton_rounds"
    if args.db:
        target = compare.all_targets(args.workers)["baton-postgresql"]
        url = compare.create_database(args.db, name)
        for setting in args.pg_setting:
            key, value = setting.split("=", 1)
            alter = f'ALTER DATABASE "{name}" SET {key} = {value}'
            subprocess.run(["psql", args.db, "-qc", alter], check=True)
    else:
        target = compare.all_targets(args.workers)["baton-sqlite"]
        url = f"sqlite:///{work / 'baton.db'}"
    target.extra_args = args.baton_args.split() + ([] if args.fast_paths else ["--no-fast-paths"])
    compare.start_baton(target, url, args.grants, work)
    assert target.process is not None and target.seeded is not None
    try:
        compare.wait_for_port(target.port, target.process)
        workload = compare.Workload(args.mode, args.concurrency)
        target.introspect_pool = [a for a, _ in target.seeded.take(1000)]
        warm = compare.Workload("refresh", args.concurrency)
        compare.run_wrk(wrk, target, warm, compare.tokens_for(target, warm, 0), 2, work, 0, None)
        for number in range(1, args.rounds + 1):
            if number > 1 and args.gap:
                time.sleep(args.gap)
            compare.settle(0.5)
            # A revocation spends its token: a round's share of the seeded grants.
            revocations = args.grants // (args.rounds + 1) if args.mode == "revoke" else 0
            tokens = compare.tokens_for(target, workload, revocations)
            before = compare.tree_cpu_seconds(target.process.pid)
            backends = backend_pids(url, name) if args.db else []
            backend_before = pids_cpu_seconds(backends)
            read_before = tree_disk_reads(target.process.pid)
            duration = args.duration
            result = compare.run_wrk(wrk, target, workload, tokens, duration, work, number, None)
            cpu = compare.tree_cpu_seconds(target.process.pid) - before
            # Backends that the pools opened during the round are missed: measure after a warm
            # round (the pools are full by then).
            after = pids_cpu_seconds(backends)
            # (A backend that exited during the round, an overflow connection closed, is left
            # out: its last figure is gone with it.)
            backend = sum(after[pid] - backend_before[pid] for pid in after)
            read = tree_disk_reads(target.process.pid) - read_before
            print(
                f"round {number}: {result.per_second:7.0f}/s  p50 {result.p50_ms:.1f} ms"
                f"  p99 {result.p99_ms:.1f} ms  errors {result.errors}"
                f"  CPU {cpu / max(result.ok, 1) * 1e6:.0f} us/request"
                f"  disk reads {read / max(result.ok, 1) / 1024:.2f} KB/request"
                + (
                    f"  PostgreSQL CPU {backend / max(result.ok, 1) * 1e6:.0f} us/request"
                    if args.db
                    else ""
                ),
                flush=True,
            )
    finally:
        compare.stop(target.process)
        if args.db:
            compare.drop_database(args.db, name)
    return 0


def backend_pids(url: str, name: str) -> list[int]:
    """The PostgreSQL backends connected to database `name` now."""
    query = f"SELECT pid FROM pg_stat_activity WHERE datname = '{name}'"
    out = subprocess.run(
        ["psql", url, "-tAc", query], capture_output=True, text=True, check=True
    ).stdout
    return [int(line) for line in out.split()]


def pids_cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds of each of the processes `pids` still running."""
    seconds: dict[int, float] = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seconds[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return seconds


def tree_disk_reads(session: int) -> int:
    """Bytes the session's processes had read from storage (`read_bytes` of /proc/<pid>/io)."""
    total = 0
    for pid, _ in compare.session_processes(session):
        try:
            with open(f"/proc/{pid}/io", "rb") as io:
                for line in io:
                    if line.startswith(b"read_bytes:"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total


if __name__ == "__main__":
    raise SystemExit(main())

"""Resident memory of `baton serve --workers 2`, idle and under load: `python bench/memory.py`.

For each database (a fresh SQLite file; a fresh PostgreSQL database when one answers at
`--postgres`), seeds grants as `bench/compare.py` does, starts `baton serve --workers 2` in a
session of its own, and reports:

- idle: the resident set (VmRSS) of every process of the session (the supervisor, each worker,
  any helper process) and their sum, a few seconds after the workers listen;
- under load: wrk at concurrency 16 on refresh, introspection and revocation (`--duration`
  seconds each, `bench/wrk/workload.lua`), the sum over the session sampled ten times a second
  from /proc, its peak, and each process's own peak; beside them each process's VmHWM, the peak
  the kernel saw (between two samples too), whose sum bounds the peak sum from above.

The figures go to stdout as a table (and to `--json FILE`). The issue's target: the peak sum at
most 200 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from compare import (  # noqa: E402  (bench/ is not a package)
    DEFAULT_POSTGRES,
    Target,
    Workload,
    all_targets,
    create_database,
    drop_database,
    ensure_wrk,
    postgres_available,
    run_wrk,
    session_processes,
    start_baton,
    stop,
    tokens_for,
    wait_for_port,
)

MB = 1024 * 1024
TARGET_MB = 200


def process_rss(pid: str) -> int:
    """VmRSS of one process, in bytes (0 when it has gone)."""
    return rss_parts(pid).get("VmRSS", 0)


PARTS = (b"VmRSS", b"VmHWM", b"RssAnon", b"RssFile", b"RssShmem")
PARTS_SHOWN = ("RssAnon", "RssFile", "RssShmem")


def rss_parts(pid: str) -> dict[str, int]:
    """VmRSS of one process and its parts, in bytes: RssAnon (the heap: Python's objects,
    malloc's arenas), RssFile (mapped files: shared libraries, SQLite's mmap of the database and
    of its WAL index, the `-shm` file), RssShmem (shared memory: anonymous shared mappings, and
    files on a tmpfs, a database there included); and VmHWM, the largest VmRSS the process had."""
    found: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                key = line.split(b":", 1)[0]
                if key in PARTS:
                    found[key.decode()] = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return found


def process_name(pid: str) -> str:
    """What a process runs: the last words of its command line."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    words = [w.decode(errors="replace") for w in raw.split(b"\0") if w]
    for marker in ("serve", "-m", "-c"):
        if marker in words:
            index = words.index(marker)
            return " ".join(words[index : index + 2])[:60]
    return " ".join(Path(w).name if i == 0 else w for i, w in enumerate(words))[:60]


def database_files(db: str) -> tuple[str, ...]:
    """The files of a SQLite database URL (the database, its `-wal` and `-shm`), as the kernel
    names them in /proc/PID/smaps; none for PostgreSQL."""
    prefix = "sqlite:///"
    if not db.startswith(prefix):
        return ()
    path = os.path.realpath(db[len(prefix) :].split("?", 1)[0])
    return (path, f"{path}-wal", f"{path}-shm")


HEX = re.compile(rb"[0-9a-f]+")


def mapped_files_rss(smaps: Iterable[bytes], files: Iterable[str]) -> int:
    """Resident bytes, in the lines of a /proc/PID/smaps, of the mappings of `files`."""
    wanted = {os.fsencode(name) for name in files}
    total, counting = 0, False
    for line in smaps:
        fields = line.split(maxsplit=5)
        start, _, end = fields[0].partition(b"-") if fields else (b"", b"", b"")
        if len(fields) >= 5 and HEX.fullmatch(start) and HEX.fullmatch(end):
            # A mapping's header: "start-end perms offset dev inode [path]".
            counting = len(fields) == 6 and fields[5].rstrip(b"\n") in wanted
        elif counting and line.startswith(b"Rss:"):
            total += int(fields[1]) * 1024
    return total


def mapped_database(pid: str, db: str) -> int:
    """Resident bytes of a process's mappings of the database's own files (SQLite's mmap of the
    database and of its WAL index, `-shm`): counted in VmRSS (RssFile) though the kernel can
    drop them any time. Other `.db` files (prometheus_client's multiprocess metrics) are not."""
    files = database_files(db)
    if not files:
        return 0
    try:
        with open(f"/proc/{pid}/smaps", "rb") as smaps:
            return mapped_files_rss(smaps, files)
    except (OSError, ValueError, IndexError):
        return 0


def proportional(pid: str) -> int:
    """Pss of one process, in bytes: its resident pages, each shared page divided among the
    processes that map it (the shared libraries, the database's mapped pages); summed over the
    tree, memory counted once."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as rollup:
            for line in rollup:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def snapshot(session: int) -> dict[str, int]:
    """pid -> resident bytes, for every process of a session."""
    return {pid: process_rss(pid) for pid, _ in session_processes(session)}


@dataclass
class Sampler:
    """The session's RSS sum and each process's, sampled ten times a second; the peaks kept."""

    session: int
    peak_total: int = 0
    peaks: dict[str, int] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    parts_at_peak: dict[str, dict[str, int]] = field(default_factory=dict)
    running: bool = True

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while self.running:
            sizes = snapshot(self.session)
            if sum(sizes.values()) > self.peak_total:
                self.peak_total = sum(sizes.values())
                self.parts_at_peak = {pid: rss_parts(pid) for pid in sizes}
            for pid, size in sizes.items():
                self.peaks[pid] = max(self.peaks.get(pid, 0), size)
                if pid not in self.names:
                    self.names[pid] = process_name(pid)
            time.sleep(0.1)

    def close(self) -> None:
        self.running = False
        self.thread.join()


def wait_for_workers(session: int, count: int, timeout: float = 60) -> None:
    """Until the session holds the supervisor and `count` workers (and their RSS settles)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(snapshot(session)) >= count + 1:
            break
        time.sleep(0.1)
    time.sleep(2.0)  # the workers' start-up (imports, the app, the pool) finishes


def measure(target: Target, db: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    wrk = ensure_wrk()
    plan = [Workload("refresh", 16), Workload("introspect", 16), Workload("revoke", 16)]
    revocations = int(args.duration * 8000)
    grants = 2 * 16 * 2 + args.introspect_pool + revocations
    start_baton(target, db, grants, work)
    assert target.process is not None and target.seeded is not None
    wait_for_port(target.port, target.process)
    session = target.process.pid
    wait_for_workers(session, target.workers)
    idle = snapshot(session)
    idle_named = {f"{pid} {process_name(pid)}": size for pid, size in idle.items()}
    # VmHWM before the load: a peak of the start-up (imports, the first connections) is not one
    # of the load.
    idle_hwm = {f"{pid} {process_name(pid)}": rss_parts(pid).get("VmHWM", 0) for pid in idle}
    target.introspect_pool = [a for a, _ in target.seeded.take(args.introspect_pool)]
    sampler = Sampler(session)
    loads: dict[str, float] = {}
    try:
        for workload in plan:
            result = run_wrk(
                wrk, target, workload, tokens_for(target, workload, revocations), args.duration,
                work, 1, None,
            )  # fmt: skip
            loads[workload.name] = round(result.per_second)
            if result.errors:
                failed = f"{result.errors} errors ({result.sample})"
                print(f"  {workload.name}: {failed}", file=sys.stderr)
    finally:
        sampler.close()
    after = snapshot(session)
    mapped = {f"{pid} {process_name(pid)}": mapped_database(pid, db) for pid in after}
    # Each process's own peak as the kernel kept it: the samples may fall between two spikes.
    hwm = {
        f"{pid} {sampler.names.get(pid) or process_name(pid)}": rss_parts(pid).get("VmHWM", 0)
        for pid in after
    }
    pss = sum(proportional(pid) for pid in after)
    stop(target.process)
    return {
        "idle": idle_named,
        "idle_total": sum(idle.values()),
        "peak_total": sampler.peak_total,
        "peaks": {f"{pid} {sampler.names.get(pid, '?')}": p for pid, p in sampler.peaks.items()},
        "parts_at_peak": {
            f"{pid} {sampler.names.get(pid, '?')}": parts
            for pid, parts in sampler.parts_at_peak.items()
        },
        "after_total": sum(after.values()),
        "hwm_idle": idle_hwm,
        "hwm": hwm,
        "hwm_total": sum(hwm.values()),
        "database_mapped_after": mapped,
        "pss_total_after": pss,
        "per_second": loads,
    }


def report(name: str, figures: dict[str, Any]) -> None:
    print(f"\n## {name}")
    print(
        f"{'process':<48} {'idle MB':>8} {'peak MB':>8} {'HWM MB':>13}"
        "   at the peak: anon / file / shmem MB"
    )
    peaks, hwm, hwm_idle = figures["peaks"], figures["hwm"], figures["hwm_idle"]
    for process in {**figures["idle"], **peaks, **hwm}:
        idle = figures["idle"].get(process)
        parts = figures["parts_at_peak"].get(process, {})
        split = " / ".join(f"{parts.get(k, 0) / MB:.1f}" for k in PARTS_SHOWN)
        shown = "-" if idle is None else f"{idle / MB:.1f}"
        high = "-" if process not in hwm else f"{hwm[process] / MB:.1f}"
        if process in hwm_idle:
            high = f"{hwm_idle[process] / MB:.1f} > {high}"
        print(f"{process:<48} {shown:>8} {peaks.get(process, 0) / MB:8.1f} {high:>13}   {split}")
    verdict = "pass" if figures["peak_total"] <= TARGET_MB * MB else "FAIL"
    print(
        f"{'total':<48} {figures['idle_total'] / MB:8.1f} {figures['peak_total'] / MB:8.1f}"
        f" {figures['hwm_total'] / MB:13.1f}   (target <= {TARGET_MB} MB at peak: {verdict}; "
        f"after the load {figures['after_total'] / MB:.1f} MB)"
    )
    print(
        "HWM: each process's VmHWM, its peak as the kernel saw it (its start-up included), "
        "before > after the load; their sum bounds the peak of the sum from above"
    )
    mapped = sum(figures["database_mapped_after"].values())
    print(
        "of which the database's files mapped (SQLite mmap, -shm) after the load: "
        f"{mapped / MB:.1f} MB"
    )
    pss = figures["pss_total_after"] / MB
    print(f"Pss of the tree after the load (shared pages counted once): {pss:.1f} MB")
    print("load: " + ", ".join(f"{k} {v}/s" for k, v in figures["per_second"].items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per workload")
    parser.add_argument("--introspect-pool", type=int, default=1000)
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("baton_args", nargs="*", help="more `baton serve` options (after --)")
    args = parser.parse_args()
    targets = all_targets(2)
    chosen = args.databases.split(",")
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="baton-memory-") as tmp:
        work = Path(tmp)
        for database in chosen:
            target = targets[f"baton-{database}"]
            target.extra_args = list(args.baton_args)
            if database == "postgresql":
                if not postgres_available(args.postgres):
                    print(f"skipping PostgreSQL: unreachable at {args.postgres}", file=sys.stderr)
                    continue
                name = f"bench_memory_{os.getpid()}"
                db = create_database(args.postgres, name)
                try:
                    out[database] = measure(target, db, args, work)
                finally:
                    stop(target.process)
                    drop_database(args.postgres, name)
            else:
                try:
                    out[database] = measure(target, f"sqlite:///{work / 'memory.db'}", args, work)
                finally:
                    stop(target.process)
            report(f"baton serve --workers 2, {database}", out[database])
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()

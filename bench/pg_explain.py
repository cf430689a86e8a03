"""Where PostgreSQL's time goes in one refresh: each native statement's plan, measured as it runs.

    .venv/bin/python bench/pg_explain.py [--url postgresql://postgres@127.0.0.1:5432/postgres]
                                         [--grants 1000000] [--requests 400] [--real 600]

On a database of its own (created, migrated, dropped): `--real` grants made through the store,
filler grants added with bulk SQL up to `--grants` (`scaling.PostgresDatabase.grow`, so the
indexes have the depth and the random key order of a server that grew them), then `--requests`
rotations, one at a time, through `SQLStore.exchange` on the native paths
(`baton.store.sql.native`). Every statement the database runs for them is executed once, for
real, and explained as it runs: PostgreSQL's `auto_explain` (loaded for the database's sessions
only, at `log_level = notice`) sends each plan with its actual times, buffers and WAL to the
connection that ran it, and asyncpg hands it over as a notice. No statement is run twice and
nothing is rolled back, so no index or heap page holds more than a server's would.

The rotations run twice, on grants of their own: plain, for the backends' CPU per rotation (from
/proc), then explained. Prints, per statement and per plan node (a CTE's UPDATE or INSERT, a
lookup), the median time of the node (inclusive of its children), the buffers it touched and
dirtied, and the WAL it wrote; then the backends' CPU beside the executors' run, which leaves
what no plan shows (the executor's start, the foreign keys' checks at its end, parse and bind,
the protocol, the commit and its WAL flush). Then the plan cache of the native connections
(`pg_prepared_statements`): whether each statement is planned at every execution (custom plans)
or once (a generic plan). `auto_explain`'s timing adds its own cost to each node: read the
times as shares.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pg_roundtrips import (  # bench/ is not a package
    NOW,
    backend_cpu,
    exchange_ask,
    migrated_with_one_grant,
    setup,
)
from scaling import PostgresDatabase
from sqlalchemy import text

from baton.core.policy import Policy
from baton.store.base import Issued
from baton.store.engines import PoolSettings, open_runner
from baton.store.sql import SQLStore
from baton.store.sql.native import Native

# `auto_explain` for every session of the measured database (a superuser's settings).
AUTO_EXPLAIN = {
    "session_preload_libraries": "auto_explain",
    "auto_explain.log_min_duration": "0",
    "auto_explain.log_analyze": "on",
    "auto_explain.log_buffers": "on",
    "auto_explain.log_wal": "on",
    "auto_explain.log_timing": "on",
    "auto_explain.log_format": "json",
    "auto_explain.log_level": "notice",
}


@dataclass
class NodeFigures:
    """One plan node's figures over the rotations, in the plan's order."""

    label: str
    depth: int
    ms: list[float] = field(default_factory=list)
    hit: list[int] = field(default_factory=list)
    read: list[int] = field(default_factory=list)
    dirtied: list[int] = field(default_factory=list)
    wal_records: list[int] = field(default_factory=list)
    wal_fpi: list[int] = field(default_factory=list)
    wal_bytes: list[int] = field(default_factory=list)


def label(node: dict[str, Any]) -> str:
    """A plan node in a few words: its type, its table or index, and its CTE."""
    kind = node.get("Node Type", "?")
    if node.get("Operation"):
        kind = f"{node['Operation']}"
    parts = [kind]
    if node.get("Relation Name"):
        parts.append(node["Relation Name"])
    if node.get("Index Name"):
        parts.append(f"via {node['Index Name']}")
    if node.get("Subplan Name"):
        parts.append(f"[{node['Subplan Name']}]")
    return " ".join(parts)


def walk(node: dict[str, Any], depth: int = 0) -> list[tuple[int, dict[str, Any]]]:
    """Every node of a plan with its depth, depth first."""
    found = [(depth, node)]
    for child in node.get("Plans", []):
        found += walk(child, depth + 1)
    return found


class Plans:
    """The plans auto_explain sent over `rotations` rotations, grouped by statement and node;
    a statement is named by `names` (name: its text, as `Native` runs it), or by its first
    words."""

    def __init__(self, names: dict[str, str]) -> None:
        self.names = {" ".join(sql.split()): name for name, sql in names.items()}
        self.reset()

    def reset(self) -> None:
        self.rotations = 0
        self.by_statement: dict[str, list[NodeFigures]] = {}
        self.count: dict[str, int] = defaultdict(int)
        self.executor_ms: dict[str, list[float]] = defaultdict(list)

    def name_of(self, query: str) -> str:
        query = " ".join(query.split())
        return self.names.get(query, query[:60])

    def executors_us(self) -> float:
        """The executors' run per rotation, every statement's median times its runs."""
        return sum(
            statistics.median(ms) * 1000 * self.count[name] / max(self.rotations, 1)
            for name, ms in self.executor_ms.items()
            if ms
        )

    def add(self, message: str) -> None:
        start = message.find("{")
        if start < 0:
            return
        explained = json.loads(message[start:])
        name = self.name_of(explained["Query Text"])
        nodes = walk(explained["Plan"])
        known = self.by_statement.setdefault(
            name, [NodeFigures(label(node), depth) for depth, node in nodes]
        )
        if len(known) != len(nodes):
            return  # another plan shape for the same statement: not averaged together
        self.count[name] += 1
        self.executor_ms[name].append(float(explained["Plan"].get("Actual Total Time", 0.0)))
        for figures, (_, node) in zip(known, nodes, strict=True):
            loops = int(node.get("Actual Loops", 1)) or 1
            figures.ms.append(float(node.get("Actual Total Time", 0.0)) * loops)
            figures.hit.append(int(node.get("Shared Hit Blocks", 0)))
            figures.read.append(int(node.get("Shared Read Blocks", 0)))
            figures.dirtied.append(int(node.get("Shared Dirtied Blocks", 0)))
            figures.wal_records.append(int(node.get("WAL Records", 0)))
            figures.wal_fpi.append(int(node.get("WAL FPI", 0)))
            figures.wal_bytes.append(int(node.get("WAL Bytes", 0)))

    def report(self) -> list[str]:
        rotations = self.rotations
        lines = []
        for name, nodes in self.by_statement.items():
            runs = self.count[name]
            executor = statistics.median(self.executor_ms[name]) * 1000 if runs else 0.0
            lines.append(
                f"\n{name}: {runs} runs ({runs / max(rotations, 1):.2f} per rotation),"
                f" executor {executor:.0f} us (median)"
            )
            lines.append(
                f"  {'node':<66} {'us':>6} {'hit':>5} {'read':>5} {'dirty':>5}"
                f" {'WAL rec':>7} {'FPI':>4} {'WAL B':>6}"
            )
            for figures in nodes:
                if not figures.ms:
                    continue
                text_label = ("  " * figures.depth + figures.label)[:66]
                lines.append(
                    f"  {text_label:<66} {statistics.median(figures.ms) * 1000:6.0f}"
                    f" {statistics.median(figures.hit):5.0f}"
                    f" {statistics.median(figures.read):5.0f}"
                    f" {statistics.median(figures.dirtied):5.0f}"
                    f" {statistics.median(figures.wal_records):7.0f}"
                    f" {statistics.mean(figures.wal_fpi):4.1f}"
                    f" {statistics.median(figures.wal_bytes):6.0f}"
                )
        return lines


async def rotations(url: str, real: int, requests: int) -> tuple[Plans, float, list[str]]:
    """`requests` rotations, one at a time, with their plans; the backends' CPU per rotation;
    and the plan cache of the native connections."""
    store = SQLStore(open_runner(url, PoolSettings(size=2)), Policy())
    native = store._native  # the statements' texts, to name the plans by
    assert native is not None, "the native paths are off"
    plans = Plans(
        {name: getattr(native, f"_{name}").sql for name in ("refresh", "rotate", "client")}
    )
    original = Native._run

    def listener(_connection: object, message: Any) -> None:
        plans.add(str(message.message))

    async def run(conn: Any, statement: Any, *args: Any) -> Any:
        # A pooled connection drops its listeners when given back: one per statement. The
        # notice is handed to the listener (call_soon) as it arrives, before the result.
        conn.add_log_listener(listener)
        try:
            return await original(conn, statement, *args)
        finally:
            conn.remove_log_listener(listener)

    Native._run = staticmethod(run)  # type: ignore[method-assign]
    try:
        client, pairs = await setup(store, real)
        tokens = [refresh for refresh, _ in pairs]
        # Warm: the connections made, the statements prepared, the caches filled.
        for token in tokens[: min(len(tokens) // 4, 50)]:
            assert isinstance(await store.exchange(exchange_ask(token, client, NOW + 1)), Issued)
        plans.reset()
        pids = await store.inspect(
            lambda conn: [
                row[0]
                for row in conn.execute(
                    text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
                )
            ]
        )
        measured = tokens[min(len(tokens) // 4, 50) :][:requests]
        before = backend_cpu(pids)
        for token in measured:
            assert isinstance(await store.exchange(exchange_ask(token, client, NOW + 1)), Issued)
        await asyncio.sleep(0.2)  # the last notices delivered
        cpu_us = 1e6 * (backend_cpu(pids) - before) / max(len(measured), 1)
        async with store.runner.native() as conn:  # type: ignore[attr-defined]
            cache = [
                f"  {plans.name_of(r['statement'])[:50]:<50}"
                f" generic {r['generic_plans']}, custom {r['custom_plans']}"
                for r in await conn.fetch(
                    "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements"
                    " WHERE statement NOT LIKE '%pg_prepared_statements%'"
                )
            ]
        plans.rotations = len(measured)
        return plans, cpu_us, cache
    finally:
        Native._run = staticmethod(original)  # type: ignore[method-assign]
        await store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--grants", type=int, default=1_000_000, help="live grants in all")
    parser.add_argument("--requests", type=int, default=400, help="rotations measured")
    parser.add_argument("--real", type=int, default=600, help="grants made through the store")
    args = parser.parse_args(argv)
    name = f"baton_explain_{time.monotonic_ns()}"
    database = PostgresDatabase(args.url, name)
    try:
        asyncio.run(migrated_with_one_grant(database.url))
        started = time.monotonic()
        database.grow(args.grants, database.template())
        database.after_seed()
        print(f"{args.grants:,} grants in {time.monotonic() - started:.0f} s", flush=True)
        # The backends' CPU without auto_explain first, then with it (its own cost shows).
        _, plain_us, _ = asyncio.run(rotations(database.url, args.real, args.requests))
        for key, value in AUTO_EXPLAIN.items():
            database.sql(f'ALTER DATABASE "{name}" SET {key} = {value!r}')
        plans, cpu_us, cache = asyncio.run(rotations(database.url, args.real, args.requests))
        executors = plans.executors_us()
        print("\n".join(plans.report()))
        print(
            f"\nper rotation, one at a time: the backends' CPU {plain_us:.0f} us"
            f" ({cpu_us:.0f} us with auto_explain), of which the executors' run {executors:.0f} us"
            " (timed by auto_explain); the rest is the executors' start and end (the foreign"
            " keys' checks run at the end), parse and bind, the protocol, the transaction and"
            " its commit"
        )
        print("\nplan cache of the native connections:\n" + "\n".join(cache))
    finally:
        database.drop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

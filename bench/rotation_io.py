"""What a rotation costs the SQLite store, in-process: write and read calls and CPU per rotation.

    .venv/bin/python bench/rotation_io.py [--grants 100000] [--rotations 8000] [--chains 8]
                                          [--drop-index NAME ...] [--no-fast-paths]

Seeds a fresh database as `make bench` does (`peers/baton_peer.py`), then rotates `--chains`
refresh-token chains side by side through `SQLStore.exchange`, so the runner commits them in
batches as it does under load, and prints per rotation the write and read system calls of this
process (`syscw` and `syscr` of /proc/self/io: SQLite writes a WAL frame in two calls, and reads
a page back in one) and its CPU time. The call counts hardly move between runs, unlike
throughput on a shared machine: they compare two commits, or a schema with and without an index
(`--drop-index`, dropped after seeding), where a wrk run could not tell 10% from noise. No HTTP,
one process: `rounds.py` and `make bench` measure the server. `--no-fast-paths` runs the
prepared statements through SQLAlchemy's ordinary execution (`Settings.fast_paths` off), for
the side-by-side of docs/performance.md.
"""

from __future__ import annotations

import argparse
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers.baton_peer import seed  # bench/ is not a package: found through the path set above

from baton.core.pairs import MintedPair
from baton.core.policy import Policy
from baton.core.seal import sealer
from baton.core.tokens import digest
from baton.store.base import ExchangeAsk, Issued
from baton.store.engines import open_runner
from baton.store.sql import SQLStore


def io_calls() -> tuple[int, int]:
    """(write calls, read calls) this process has made."""
    fields = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return int(fields["syscw"]), int(fields["syscr"])


def ask(token: str, client_id: str, now: int) -> ExchangeAsk:
    token_digest = digest(token)
    seal_payload = sealer(token, token_digest)
    return ExchangeAsk(
        digest=token_digest,
        client_id=client_id,
        scope=None,
        now=now,
        source_address=None,
        child=MintedPair.new(),
        seal=seal_payload,
    )


async def rotate(
    db: str, client_id: str, chains: list[str], per_chain: int, fast_paths: bool
) -> None:
    store = SQLStore(open_runner(db, fast_paths=fast_paths), Policy())
    now = int(time.time())

    async def chain(token: str) -> None:
        for _ in range(per_chain):
            result = await store.exchange(ask(token, client_id, now))
            if not isinstance(result, Issued) or result.pair.refresh_token is None:
                raise RuntimeError(f"a rotation failed: {result!r}")
            token = result.pair.refresh_token

    try:
        async with anyio.create_task_group() as tasks:
            for token in chains:
                tasks.start_soon(chain, token)
    finally:
        await store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--grants", type=int, default=100_000, help="grants seeded [100000]")
    parser.add_argument("--rotations", type=int, default=8000, help="rotations measured [8000]")
    parser.add_argument("--chains", type=int, default=8, help="chains rotated at once [8]")
    parser.add_argument("--drop-index", action="append", default=[], metavar="NAME")
    parser.add_argument(
        "--no-fast-paths",
        dest="fast_paths",
        action="store_false",
        help="prepared statements through SQLAlchemy's ordinary execution",
    )
    args = parser.parse_args()

    path = Path(tempfile.mkdtemp(prefix="baton-rotation-io-")) / "baton.db"
    db = f"sqlite:///{path}"
    baton = str(Path(sys.executable).with_name("baton"))
    subprocess.run([baton, "db", "upgrade", "--db", db], check=True, capture_output=True)
    seeded = anyio.run(seed, db, max(args.grants, args.chains))
    if args.drop_index:
        with sqlite3.connect(path) as conn:
            for name in args.drop_index:
                conn.execute(f'DROP INDEX "{name}"')
    chains = [refresh for _, refresh in seeded.pairs[: args.chains]]
    per_chain = args.rotations // args.chains

    writes, reads = io_calls()
    cpu = time.process_time()
    anyio.run(rotate, db, seeded.client_id, chains, per_chain, args.fast_paths)
    cpu = time.process_time() - cpu
    writes, reads = (now - before for now, before in zip(io_calls(), (writes, reads), strict=True))
    done = per_chain * args.chains
    print(
        f"{done} rotations, {args.chains} chains, {args.grants} grants"
        + (f", without {', '.join(args.drop_index)}" if args.drop_index else "")
        + ("" if args.fast_paths else ", fast paths off")
        + f": {writes / done:.2f} write calls, {reads / done:.2f} read calls,"
        f" {cpu / done * 1e6:.0f} us CPU per rotation"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

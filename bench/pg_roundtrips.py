"""Round trips and CPU per request of the store on PostgreSQL, native paths on and off.

    .venv/bin/python bench/pg_roundtrips.py [--url postgresql://postgres@127.0.0.1:5432/postgres]
                                            [--requests 300] [--rounds 5]

Runs the store in-process (no HTTP) on a database of its own, through a small TCP proxy that
counts the protocol messages the driver sends: every simple `Query` and every `Sync` (the end
of an extended-protocol exchange) is one wait for the server's ReadyForQuery, one round trip.
For each kind of request (refresh: a rotation; revoke: RFC 7009 of a refresh token, its grant;
introspect: an access token's facts) it alternates three variants (`VARIANTS`: fast paths off;
on but without the native paths of `baton.store.sql.native`; on), `--rounds` times each, and
prints the medians per request of: round trips on the request's path, the feed's NOTIFYs (sent
after the commit on another connection, at most one at a time per process),
this process's CPU time (Python, SQLAlchemy, asyncpg) and the CPU time of the PostgreSQL
backends serving it (from /proc: the server must run on this machine for that column).
Noise moves CPU figures a little; the round trips not at all.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import make_url

from baton.core.pairs import MintedPair
from baton.core.policy import Policy
from baton.core.rules import CodeRedemption
from baton.core.seal import seal
from baton.core.tokens import TokenKind, digest, mint, random_id
from baton.store.base import Client, ExchangeAsk, Issued, NewCode
from baton.store.engines import PoolSettings, open_runner
from baton.store.migrate import upgrade
from baton.store.sql import SQLStore

NOW = 1_700_000_000
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Counts:
    """Frontend messages seen by the proxy, by type byte."""

    by_type: dict[int, int] = field(default_factory=dict)
    notifies: int = 0  # the feed's wake-ups: a round trip of their own, off the request's path

    def round_trips(self) -> int:
        return self.by_type.get(ord("Q"), 0) + self.by_type.get(ord("S"), 0) - self.notifies

    def reset(self) -> None:
        self.by_type.clear()
        self.notifies = 0


class Proxy:
    """Forwards TCP to PostgreSQL, counting the client's messages after its startup packet."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.counts = Counts()
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(self.host, self.port)

        async def pump_back() -> None:
            while data := await upstream_reader.read(65536):
                writer.write(data)
                await writer.drain()
            writer.close()

        back = asyncio.create_task(pump_back())
        notifies: dict[bytes, bool] = {}  # prepared statement: whether it is a NOTIFY
        try:
            # The startup packet (and an SSLRequest before it): a length, no type byte.
            while True:
                (length,) = struct.unpack("!I", await reader.readexactly(4))
                body = await reader.readexactly(length - 4)
                upstream_writer.write(struct.pack("!I", length) + body)
                code = struct.unpack("!I", body[:4])[0]
                if code not in (80877103, 80877104):  # SSLRequest, GSSENCRequest
                    break
            while True:
                kind = await reader.readexactly(1)
                (length,) = struct.unpack("!I", await reader.readexactly(4))
                body = await reader.readexactly(length - 4)
                self.counts.by_type[kind[0]] = self.counts.by_type.get(kind[0], 0) + 1
                if kind == b"P":  # Parse: statement name, SQL
                    statement, sql = body.split(b"\0", 2)[:2]
                    notifies[statement] = sql.startswith(b"NOTIFY")
                elif kind == b"B":  # Bind: portal name, statement name
                    statement = body.split(b"\0", 2)[1]
                    self.counts.notifies += notifies.get(statement, False)
                elif kind == b"Q":
                    self.counts.notifies += body.startswith(b"NOTIFY")
                upstream_writer.write(kind + struct.pack("!I", length) + body)
                await upstream_writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            upstream_writer.close()
            back.cancel()


def backend_cpu(pids: list[int]) -> float:
    """CPU seconds (user + system) the processes `pids` have used, from /proc."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICK


async def setup(store: SQLStore, grants: int) -> tuple[Client, list[tuple[str, str]]]:
    user = await store.create_user(f"u{secrets.token_hex(4)}", "x", 0)
    secret = mint(TokenKind.CLIENT_SECRET)
    client = Client(
        id=random_id("cl_"),
        name="bench",
        secret_digest=secret.digest,
        is_public=False,
        is_resource_server=True,
        redirect_uris=("http://127.0.0.1/cb",),
        scope="read",
        created_at=0,
    )
    await store.create_client(client)
    stored = await store.get_client(client.id)
    assert stored is not None
    pairs = []
    for _ in range(grants):
        code = mint(TokenKind.CODE)
        await store.save_code(
            NewCode(code.digest, client.id, user.id, None, "read", None, NOW, NOW + 60)
        )
        result = await store.redeem_code(
            code.digest, CodeRedemption(client.id, None, None), MintedPair.new(), NOW, None
        )
        assert isinstance(result, Issued) and result.pair.refresh_token is not None
        pairs.append((result.pair.refresh_token, result.pair.access_token))
    return stored, pairs


async def migrated_with_one_grant(url: str) -> None:
    """`url` migrated, with one grant made through the store: the filler grants of
    `scaling.py`'s `grow` repeat its values (`pg_explain.py`, `purge_scale.py`)."""
    runner = open_runner(url)
    try:
        await upgrade(runner)
    finally:
        await runner.close()
    store = SQLStore(open_runner(url, PoolSettings(size=2)), Policy())
    try:
        await setup(store, 1)
    finally:
        await store.close()


def exchange_ask(token: str, client: Client, now: int) -> ExchangeAsk:
    token_digest = digest(token)
    return ExchangeAsk(
        digest=token_digest,
        client_id=client.id,
        scope=None,
        now=now,
        source_address=None,
        child=MintedPair.new(),
        seal=lambda payload: seal(token, token_digest, payload),
        client=client,
    )


# The variants compared: fast paths off (the general transactions through SQLAlchemy's
# `Connection.execute`), fast paths on without the native paths (the general transactions with
# `Prepared` statements, as before them), and fast paths on (the native paths).
VARIANTS = ("off", "prepared", "native")


async def measure(
    url: str, proxy: Proxy, variant: str, kind: str, requests: int
) -> tuple[float, float, float, float]:
    """(round trips, NOTIFYs, client CPU ms, backend CPU ms) per request."""
    runner = open_runner(url, PoolSettings(size=4), fast_paths=variant != "off")
    store = SQLStore(runner, Policy())
    if variant == "prepared":
        store._native = None
    try:
        client, pairs = await setup(store, requests)
        one: Callable[[int], Awaitable[object]]
        if kind == "refresh":

            async def one(i: int) -> object:
                return await store.exchange(exchange_ask(pairs[i][0], client, NOW + 1))
        elif kind == "revoke":

            async def one(i: int) -> object:
                return await store.revoke_token(client, digest(pairs[i][0]), True, NOW + 1)
        else:

            async def one(i: int) -> object:
                return await store.find_token(client, digest(pairs[i][1]), False, NOW + 1)

        # Warm: every pooled connection opened and its statements prepared.
        await asyncio.gather(*(one(i) for i in range(min(8, requests))))
        pids = await store.inspect(
            lambda conn: [
                row[0]
                for row in conn.execute(
                    text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
                )
            ]
        )
        proxy.counts.reset()
        cpu, backends = time.process_time(), backend_cpu(pids)
        for i in range(8, requests):
            await one(i)
        done = requests - 8
        client_cpu = (time.process_time() - cpu) / done * 1000
        backend = (backend_cpu(pids) - backends) / done * 1000
        counts = proxy.counts
        return (
            counts.round_trips() / done,
            counts.notifies / done,
            client_cpu,
            backend,
        )
    finally:
        await store.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--kinds", default="refresh,revoke,introspect")
    args = parser.parse_args()

    admin = make_url(args.url).set(drivername="postgresql")
    name = f"baton_roundtrips_{os.getpid()}"
    plain = admin.render_as_string(hide_password=False)
    conn = await asyncpg.connect(plain)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    proxy = Proxy(admin.host or "127.0.0.1", admin.port or 5432)
    port = await proxy.start()
    url = admin.set(database=name, host="127.0.0.1", port=port).update_query_dict(
        {"ssl": "disable"}
    )
    direct = admin.set(database=name)
    try:
        migrating = SQLStore.open(direct.render_as_string(hide_password=False))
        await migrating.upgrade_schema()
        await migrating.close()
        target = url.render_as_string(hide_password=False)
        print(
            f"{'request':<11} {'paths':<8} {'round trips':>11} {'NOTIFYs':>10} "
            f"{'client CPU ms':>13} {'backend CPU ms':>14}"
        )
        for kind in args.kinds.split(","):
            figures: dict[str, list[tuple[float, float, float, float]]] = {
                variant: [] for variant in VARIANTS
            }
            for _ in range(args.rounds):
                for variant in VARIANTS:
                    figures[variant].append(
                        await measure(target, proxy, variant, kind, args.requests)
                    )
            for variant in VARIANTS:
                rows = figures[variant]
                medians = [statistics.median(r[i] for r in rows) for i in range(4)]
                print(
                    f"{kind:<11} {variant:<8} {medians[0]:>11.2f} "
                    f"{medians[1]:>10.2f} {medians[2]:>13.3f} {medians[3]:>14.3f}"
                )
    finally:
        conn = await asyncpg.connect(plain)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main())

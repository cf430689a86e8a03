"""A rolling upgrade from the previous release on one PostgreSQL database, as an operator runs it.

The previous release (0.1.0, `RELEASE`) is taken from git history (`git archive`) and run from
that source with this virtualenv's packages. It migrates a fresh database and serves; its own
CLI creates the user and the clients. Then this tree's `baton db upgrade --check` and `baton db
upgrade` run while it serves, this tree's server starts beside it, and refresh chains (grants
made by either server) go through both, alternately and sometimes the same refresh to both at
once, before, during and after the migration; then the old server stops and the new one carries
on. Every refresh answers 200, each refresh token has exactly one successor (no grant forked,
no reuse detected, a retry at the other server gets the same pair), and a token issued by
either server is active at the other.

Both servers issue JWT access tokens under one key-encryption key, so the new server's signing
keys (ID token keys made at start) are in the table the old one reads and signs from.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import httpx
import pytest
import requests  # type: ignore[import-untyped,unused-ignore]

import baton
from baton.core.vocabulary import REUSE_EVENT_KINDS
from baton.store.engines import normalize_url
from tests.databases import admin_url, drop_database, plain_url, unavailable
from tests.e2e.conftest import (
    _SERVERS,
    PASSWORD,
    REDIRECT_URI,
    USERNAME,
    Credentials,
    Server,
    first_pair,
    free_port,
    postgres_rows,
)

pytestmark = pytest.mark.e2e

# 0.1.0: "main before issue 23" (CHANGELOG.md; untagged). `__version__` was already "0.1.0" in
# the first commit, so the release is the last commit before issue 23's restructuring, the one
# `make bench --baseline` compares against (docs/performance.md).
RELEASE = "511c02088ca016bbe2228d458497ec0c6000be7a"
ROOT = Path(__file__).resolve().parents[2]
SOURCE = Path(baton.__file__).resolve().parents[1]  # this tree's `src`
KEK = "rolling-upgrade-key-encryption-key-0123456789"
SCOPE = "openid offline_access read write"
OPTIONS = {
    "access_token_format": "jwt",
    "key_encryption_key": KEK,
    "key_reload_interval": "1",  # the old server sees the new one's keys within the test
    "leeway": "60",
    "retry_policy": "replay",
    "rate_limit_login": "0",
    "rate_limit_address": "0",
    "rate_limit_client": "0",
    "log_level": "warning",
}
OLD_GRANTS = 6  # refresh chains whose grant the old server made
NEW_GRANTS = 3  # and the new one
PACE = 50  # refreshes a second per chain, at most
PHASE_TIMEOUT = 120.0  # only a broken phase waits it out


def _release_source(directory: Path) -> Path:
    """The release's `src`, exported from git history, to run with this virtualenv's packages
    (each at or above the release's lower bounds) and PyJWT, which the release signed with."""
    if importlib.util.find_spec("jwt") is None:
        message = "Baton 0.1.0 needs PyJWT, which the dev extra installs (make install)"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    found = subprocess.run(
        ["git", "-C", str(ROOT), "cat-file", "-e", f"{RELEASE}^{{commit}}"],
        capture_output=True,
        check=False,
    )
    if found.returncode != 0:
        message = f"commit {RELEASE[:7]} (release 0.1.0) is not in this clone's history"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message + " (a shallow clone?)")
    directory.mkdir(parents=True)
    archive = subprocess.Popen(
        ["git", "-C", str(ROOT), "archive", RELEASE, "src"], stdout=subprocess.PIPE
    )
    subprocess.run(["tar", "-x", "-C", str(directory)], stdin=archive.stdout, check=True)
    assert archive.wait() == 0
    return directory / "src"


class Release:
    """One version of Baton: its CLI and server, run from `source` as their own processes."""

    def __init__(self, name: str, source: Path, work: Path) -> None:
        self.name = name
        self.env = {**os.environ, "PYTHONPATH": str(source)}
        self.work = work  # the working directory: nothing in it shadows `source`

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "baton.cli", *args]

    def cli(self, *args: str, stdin: str | None = None, status: int = 0) -> str:
        result = subprocess.run(
            self.command(*args),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=self.work,
            env=self.env,
        )
        if result.returncode != status:
            pytest.fail(
                f"{self.name}: baton {' '.join(args)} exited {result.returncode}:\n{result.stderr}"
            )
        return result.stdout

    def serve(self, db: str, client: Credentials, resource_server: Credentials) -> Server:
        for _attempt in range(3):
            port = free_port()
            args = ["serve", "--host", "127.0.0.1", "--port", str(port), "--db", db]
            for name, value in OPTIONS.items():
                args += [f"--{name.replace('_', '-')}", value]
            log = self.work / f"serve-{self.name}-{port}.log"
            with log.open("wb") as out:
                process = subprocess.Popen(
                    self.command(*args),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=self.work,
                    env=self.env,
                )
            server = Server(f"http://127.0.0.1:{port}", db, client, resource_server, process, log)
            if _ready(server):
                return server
            if "address already in use" not in server.stderr().lower():
                break
        pytest.fail(f"{self.name}: baton serve exited {process.returncode}:\n{server.stderr()}")


def _ready(server: Server) -> bool:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        try:
            if httpx.get(server.url + "/.well-known/oauth-authorization-server").status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    pytest.fail(f"baton serve did not answer within 60 s:\n{server.stderr()}")


def _empty_database() -> str:
    """A new PostgreSQL database, never migrated: the old release migrates it."""
    name = f"baton_upgrade_{os.getpid()}_{secrets.token_hex(3)}"

    async def create() -> None:
        conn = await asyncpg.connect(plain_url(admin_url()), timeout=5)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    try:
        anyio.run(create)
    except (OSError, asyncpg.PostgresError) as exc:
        unavailable(str(exc) or type(exc).__name__)
    return normalize_url(admin_url()).set(database=name).render_as_string(hide_password=False)


@pytest.fixture
def database() -> Iterator[str]:
    url = _empty_database()
    try:
        yield url
    finally:
        drop_database(url)


# -- refresh chains ---------------------------------------------------------------------------


@dataclass
class Chain:
    """One grant's line of rotations: the refresh token to exchange next, and every pair the
    servers returned, with the name of the server that returned it first."""

    grant_id: str
    refresh_token: str
    offset: int  # where in the alternation between the servers the chain starts
    pairs: list[tuple[str, str, str]] = field(default_factory=list)  # (server, access, refresh)


@dataclass
class Traffic:
    """What the drivers saw: each refresh's start and end (monotonic), and anything not a 200 or
    not the one successor."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    refreshes: list[tuple[float, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    replays_of_new_seals: int = (
        0  # the same refresh at both: new answered with an ID token, old without
    )

    def record(self, started: float) -> None:
        with self.lock:
            self.refreshes.append((started, time.monotonic()))

    def error(self, message: str) -> None:
        with self.lock:
            self.errors.append(message)

    def during(self, start: float, end: float) -> int:
        """How many refreshes were in flight at some moment between `start` and `end`."""
        with self.lock:
            return sum(1 for begun, ended in self.refreshes if begun < end and ended > start)


def _refresh(http: httpx.Client | None, server: Server, token: str) -> httpx.Response:
    if http is None:  # a connection of its own, for a request sent beside another
        with httpx.Client(timeout=30) as own:
            return _refresh(own, server, token)
    return http.post(
        server.token_url,
        data={"grant_type": "refresh_token", "refresh_token": token},
        auth=server.client.basic,
    )


def _step(
    http: httpx.Client, servers: list[tuple[str, Server]], chain: Chain, traffic: Traffic, n: int
) -> None:
    """One rotation of `chain`: at one server, or (every third step with two servers) the same
    refresh at both at once, which must answer the same pair (the retry policy `replay`)."""
    started = time.monotonic()
    token = chain.refresh_token
    if len(servers) > 1 and n % 3 == 0:
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda named: _refresh(None, named[1], token), servers))
        named = [(name, answer) for (name, _), answer in zip(servers, answers, strict=True)]
    else:
        name, server = servers[(n + chain.offset) % len(servers)]
        named = [(name, _refresh(http, server, token))]
    traffic.record(started)
    for name, answer in named:
        if answer.status_code != 200:
            traffic.error(f"{name}: {answer.status_code} {answer.text}")
            return
    bodies = [answer.json() for _, answer in named]
    if len({(b["access_token"], b["refresh_token"]) for b in bodies}) != 1:
        traffic.error(f"one refresh, {len(bodies)} different successors from {servers}")
        return
    if len(bodies) > 1 and ["id_token" in b for b in bodies] == [False, True]:
        with traffic.lock:
            traffic.replays_of_new_seals += 1
    chain.pairs.append((named[0][0], bodies[0]["access_token"], bodies[0]["refresh_token"]))
    chain.refresh_token = bodies[0]["refresh_token"]


@dataclass
class Drive:
    """Refresh chains driven through `servers` on threads until `stop()`."""

    servers: list[tuple[str, Server]]
    chains: list[Chain]
    traffic: Traffic
    halt: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Drive:
        for chain in self.chains:
            thread = threading.Thread(target=self._run, args=(chain,), daemon=True)
            thread.start()
            self.threads.append(thread)
        return self

    def _run(self, chain: Chain) -> None:
        with httpx.Client(timeout=30) as http:
            n = 0
            while not self.halt.is_set():
                try:
                    _step(http, self.servers, chain, self.traffic, n)
                except httpx.TransportError as exc:
                    self.traffic.error(f"{type(exc).__name__}: {exc}")
                    return
                n += 1
                # At most PACE a second per chain, so that on a small machine the migration and
                # the new server's start get their share of the cores.
                self.halt.wait(1 / PACE)

    def stop(self) -> None:
        self.halt.set()
        for thread in self.threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in self.threads)

    def advance(self, rotations: int) -> None:
        """Returns once every chain has rotated `rotations` more times (or something failed)."""
        wanted = [len(chain.pairs) + rotations for chain in self.chains]
        deadline = time.monotonic() + PHASE_TIMEOUT
        while any(len(c.pairs) < n for c, n in zip(self.chains, wanted, strict=True)):
            if self.traffic.errors or not any(t.is_alive() for t in self.threads):
                return
            assert time.monotonic() < deadline, f"the chains did not move in {PHASE_TIMEOUT} s"
            time.sleep(0.02)


def drive(
    servers: list[tuple[str, Server]], chains: list[Chain], traffic: Traffic, rotations: int
) -> None:
    """`rotations` more rotations of every chain through `servers`, all chains at once."""
    running = Drive(servers, chains, traffic).start()
    try:
        running.advance(rotations)
    finally:
        running.stop()


def _grant_of(server: Server, access_token: str) -> str:
    grant: str = server.introspect(access_token)["grant_id"]
    return grant


def _header(token: str) -> dict[str, Any]:
    head = token.split(".")[0]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    return decoded


def _new_chains(server: Server, name: str, count: int) -> list[Chain]:
    chains = []
    with requests.Session() as browser:  # signed in once, then straight to the consent
        for i in range(count):
            pair = first_pair(server, SCOPE, browser)
            chain = Chain(_grant_of(server, pair["access_token"]), pair["refresh_token"], i)
            chain.pairs.append((name, pair["access_token"], pair["refresh_token"]))
            chains.append(chain)
    return chains


# -- the upgrade ------------------------------------------------------------------------------


def test_rolling_upgrade_from_the_previous_release(
    database: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    started: list[Server] = []
    request.node.stash[_SERVERS] = started  # their logs join a failure's report
    old = Release("0.1.0", _release_source(tmp_path / "release"), tmp_path)
    new = Release("new", SOURCE, tmp_path)
    try:
        _upgrade(database, old, new, started)
    finally:
        for server in started:
            server.stop()


def _upgrade(db: str, old: Release, new: Release, started: list[Server]) -> None:
    # The previous release installs: its migrations, its user, its clients.
    old.cli("db", "upgrade", "--db", db)
    ((revision,),) = _rows(db, "SELECT version_num FROM alembic_version")
    assert revision == "0006"  # the release's head: it is the release that migrated
    old.cli(
        "user",
        "create",
        "--db",
        db,
        "--username",
        USERNAME,
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    app = json.loads(
        old.cli(
            "client",
            "create",
            "--db",
            db,
            "--name",
            "app",
            "--json",
            "--redirect-uri",
            REDIRECT_URI,
            "--scope",
            SCOPE,
        )
    )
    api = json.loads(
        old.cli("client", "create", "--db", db, "--name", "api", "--json", "--resource-server")
    )
    client = Credentials(app["client_id"], app["client_secret"])
    resource_server = Credentials(api["client_id"], api["client_secret"])

    before = old.serve(db, client, resource_server)
    started.append(before)
    # It is the release: no /readyz then (it came with issue 27).
    assert httpx.get(before.url + "/readyz").status_code == 404
    chains = _new_chains(before, "old", OLD_GRANTS)
    traffic = Traffic()
    drive([("old", before)], chains, traffic, 3)

    # The new release migrates while the old one serves.
    running = Drive([("old", before)], chains, traffic).start()
    plan = json.loads(new.cli("db", "upgrade", "--check", "--json", "--db", db, status=1))
    assert plan["current"] == "0006"
    assert [step["revision"] for step in plan["pending"]] == [
        "0007",
        "0008",
        "0009",
        "0010",
        "0011",
        "0012",
    ]
    upgrade_start = time.monotonic()
    new.cli("db", "upgrade", "--db", db)
    upgrade_end = time.monotonic()
    running.advance(2)  # the old release on the new schema
    after = new.serve(db, client, resource_server)  # beside the old one, the old one serving
    started.append(after)
    running.stop()
    assert traffic.during(upgrade_start, upgrade_end) > 0, "no refresh met the migration"
    assert httpx.get(after.url + "/readyz").status_code == 200

    # Both serve: grants made by either, each refresh at one or the other, or at both at once.
    chains += _new_chains(after, "new", NEW_GRANTS)
    both = [("old", before), ("new", after)]
    drive(both, chains, traffic, 9)  # a third of them at both at once
    assert not traffic.errors, traffic.errors[:10]
    # A token either server issued is active at both: each chain's latest access token from
    # each server (a rotated one lives on through the leeway), and its one refresh token.
    for chain in chains:
        latest = {name: access for name, access, _ in chain.pairs}
        assert set(latest) == {"old", "new"}, chain.grant_id
        for token in [*latest.values(), chain.pairs[-1][2]]:
            for server in (before, after):
                seen = server.introspect(token)
                assert seen["active"] is True, (server.url, seen)
                assert seen["grant_id"] == chain.grant_id
    # The old server replayed pairs the new one had sealed with an ID token (it answers the
    # pair without it), as well as the reverse.
    assert traffic.replays_of_new_seals > 0
    # The old server signs access tokens with an access token key, never one the new server
    # made for ID tokens alone (which 0.1.0 cannot tell from the others).
    access_kids = {r[0] for r in _rows(db, "SELECT kid FROM signing_keys WHERE purpose IS NULL")}
    for chain in chains:
        for name, access, _ in chain.pairs:
            assert _header(access)["kid"] in access_kids, (name, _header(access))

    # The old one stops; the new one carries on with every chain.
    before.stop()
    drive([("new", after)], chains, traffic, 3)
    assert not traffic.errors, traffic.errors[:10]
    for chain in chains:
        assert after.introspect(chain.pairs[-1][1])["active"] is True

    # Exactly one successor per refresh: a grant's refresh tokens are its first and one per
    # rotation, no grant was revoked, no reuse was seen.
    assert all(len(chain.pairs) > 3 + 2 + 9 + 3 for chain in chains[:OLD_GRANTS])
    for chain in chains:
        ((count,),) = _rows(
            db, "SELECT count(*) FROM refresh_tokens WHERE grant_id = ?", chain.grant_id
        )
        assert count == len(chain.pairs), (chain.grant_id, count, len(chain.pairs))
    assert _rows(db, "SELECT id, revoked_reason FROM grants WHERE revoked_at IS NOT NULL") == []
    kinds = sorted(str(kind) for kind in REUSE_EVENT_KINDS)
    reuse = _rows(db, "SELECT kind, grant_id FROM security_events WHERE kind = ANY(?)", kinds)
    assert reuse == []


def _rows(db: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    return postgres_rows(db, query, *params)

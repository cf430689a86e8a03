"""Soak test: a real `baton serve` on loopback under mixed traffic from many clients at once, with
a model of what every token must be; afterwards every token is compared with the model, through
introspection and in the database.

    .venv/bin/python bench/soak.py [--duration 180] [--workers 16] [--db URL] [--json]

Set-up through the real command line: `baton db upgrade`, users (`baton user create
--password-stdin`), confidential clients and a resource server (`baton client create --json`);
then `baton serve --leeway 5 --access-ttl 20` (short, so that leeways end and access tokens
expire during the run) on a free port of 127.0.0.1, rate limits off (they would answer 429 to a
load that is the point here). SQLite in a temporary directory by default; `--db
postgresql://...` uses that database (already reachable; it is migrated, and only this run's
clients are compared).

Each worker is one browser (one user, signed in once through the login page, consent given
once) and one client; it owns the grants it creates, so its model of them is exact, and runs
these actions at random: a new grant (authorization code flow through /authorize, the consent
form and /token), a refresh of the newest token (a rotation), three concurrent refreshes of it
(one rotation, the same pair to all three), a retry of an exchanged token inside its leeway (the
same pair again, `replay`), a replay after the leeway (reuse: the grant dies), a replayed code
(the grant dies), revocations of refresh and access tokens, a refresh with another client's
credentials (refused, nothing changes), and introspections checked against the model.

Time is the server's wall clock in whole seconds: an event happened at some second between the
request's start and its answer, so the model keeps each instant as a window [lo, hi]. Actions
whose outcome depends on an instant inside such a window (a retry exactly at the end of a
leeway) are not chosen; an introspection that lands in one accepts either answer and is counted
as indeterminate, not as a match.

At the end: every token ever issued is introspected by the resource server and compared with the
model, once at once and once after every leeway and access token lifetime has run out (when no
answer can be indeterminate); then the server is stopped and the database compared row by row
(by token digest): every token the model knows is there, with its grant and generation, the
refresh tokens exchanged exactly when the model says, the access tokens revoked exactly when the
model says, the grants revoked with the model's reason, and no grant or token the model does not
know of.

Figures: requests, answers by kind, 5xx (must be 0), transport errors, mismatches (must be 0),
indeterminate checks. Exit status 1 if any 5xx, transport error or mismatch.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import math
import os
import random
import re
import secrets
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

BATON = [sys.executable, "-m", "baton.cli"]
REDIRECT_URI = "http://127.0.0.1:9000/callback"
SCOPE = "read write"
PASSWORD = "soak password, not a secret"
MAX_DURATION = 240  # traffic; with set-up and the two sweeps the run stays under 10 minutes

REFRESH_REVOKED = "refresh token was revoked"
REFRESH_REUSED = (
    "refresh token was reused after its leeway: the grant has been revoked (reuse detected)"
)
REFRESH_AFTER_REUSE = "refresh token was revoked: its grant was revoked after reuse was detected"
CODE_REUSED = "authorization code was already used: the grant it produced has been revoked"
# Another client's token is answered exactly as an unknown one (no oracle).
OTHER_CLIENT = "unknown refresh token"


# -- the model ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    client_id: str
    secret: str

    @property
    def basic(self) -> tuple[str, str]:
        return (self.client_id, self.secret)


Window = tuple[int, int]  # the server's second, somewhere in [lo, hi]


def window(started: float, finished: float) -> Window:
    return (math.floor(started), math.floor(finished))


@dataclass
class Grant:
    client: Credentials
    user: str
    code: str
    id: str = ""
    revoked: str | None = None  # the reason: "revoked", "reuse" or "code_reuse"
    refresh: list[Refresh] = field(default_factory=list)
    access: list[Access] = field(default_factory=list)


@dataclass(frozen=True)
class Pair:
    access_token: str
    refresh_token: str


@dataclass
class Refresh:
    token: str
    grant: Grant
    generation: int
    exchanged: Window | None = None
    child: Pair | None = None


@dataclass
class Access:
    token: str
    grant: Grant
    generation: int
    companion: Refresh
    expires: Window
    revoked: bool = False


ACTIVE, INACTIVE, EITHER = "active", "inactive", "either"


@dataclass
class Figures:
    requests: int = 0
    answers: Counter[str] = field(default_factory=Counter)  # "action status [error]"
    server_errors: int = 0
    transport_errors: Counter[str] = field(default_factory=Counter)
    mismatches: list[str] = field(default_factory=list)
    checks: Counter[str] = field(default_factory=Counter)  # matched / indeterminate

    def mismatch(self, text: str) -> None:
        self.mismatches.append(text)


class Model:
    def __init__(self, leeway: int, access_ttl: int) -> None:
        self.leeway = leeway
        self.access_ttl = access_ttl
        self.grants: list[Grant] = []

    def retire(self, refresh: Refresh) -> Window | None:
        if refresh.exchanged is None:
            return None
        # The server starts a leeway at the ceiling of the exchange's second.
        return (refresh.exchanged[0] + self.leeway, refresh.exchanged[1] + 1 + self.leeway)

    @staticmethod
    def before(now: Window, instant: Window) -> str:
        """Whether `now` is surely before `instant` (ACTIVE), surely at or after it (INACTIVE)."""
        if now[1] < instant[0]:
            return ACTIVE
        if now[0] >= instant[1]:
            return INACTIVE
        return EITHER

    def refresh_state(self, refresh: Refresh, now: Window) -> str:
        if refresh.grant.revoked is not None:
            return INACTIVE
        retire = self.retire(refresh)
        return ACTIVE if retire is None else self.before(now, retire)

    def access_state(self, access: Access, now: Window) -> str:
        if access.revoked or access.grant.revoked is not None:
            return INACTIVE
        states = [self.before(now, access.expires)]
        retire = self.retire(access.companion)
        if retire is not None:
            states.append(self.before(now, retire))
        if INACTIVE in states:
            return INACTIVE
        return EITHER if EITHER in states else ACTIVE


# -- the traffic ----------------------------------------------------------------------------------


def hidden_inputs(html: str) -> dict[str, str]:
    found = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html)
    return {name: unescape(value) for name, value in found}


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


class Worker:
    def __init__(
        self,
        number: int,
        url: str,
        client: Credentials,
        other: Credentials,
        resource_server: Credentials,
        user: str,
        model: Model,
        figures: Figures,
        rng: random.Random,
    ) -> None:
        self.number = number
        self.url = url
        self.client = client
        self.other = other
        self.resource_server = resource_server
        self.user = user
        self.model = model
        self.figures = figures
        self.rng = rng
        self.grants: list[Grant] = []
        self.http = httpx.AsyncClient(base_url=url, timeout=30.0, follow_redirects=False)
        self.browser = httpx.AsyncClient(base_url=url, timeout=30.0, follow_redirects=False)

    async def close(self) -> None:
        await self.http.aclose()
        await self.browser.aclose()

    # -- HTTP with accounting ------------------------------------------------------------------

    async def send(
        self, action: str, client: httpx.AsyncClient, method: str, path: str, **kwargs: Any
    ) -> tuple[httpx.Response | None, Window]:
        started = time.time()
        self.figures.requests += 1
        try:
            response = await client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            self.figures.transport_errors[f"{action}: {type(exc).__name__}"] += 1
            return None, window(started, time.time())
        now = window(started, time.time())
        kind = f"{action} {response.status_code}"
        if response.status_code >= 400 and "json" in response.headers.get("content-type", ""):
            kind += f" {response.json().get('error')}"
        self.figures.answers[kind] += 1
        if response.status_code >= 500:
            self.figures.server_errors += 1
            self.figures.mismatch(f"{action}: {response.status_code} {response.text[:200]}")
        return response, now

    def expect(self, what: str, condition: bool, detail: str) -> bool:
        if not condition:
            self.figures.mismatch(f"worker {self.number}, {what}: {detail}")
        return condition

    # -- actions ---------------------------------------------------------------------------------

    async def new_grant(self) -> None:
        verifier, challenge = pkce_pair()
        query = {
            "response_type": "code",
            "client_id": self.client.client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": SCOPE,
            "state": secrets.token_hex(4),
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        response, _ = await self.send("authorize", self.browser, "GET", "/authorize", params=query)
        if response is None:
            return
        if response.status_code == 303 and response.headers["location"].startswith("/login"):
            page, _ = await self.send(
                "login page", self.browser, "GET", response.headers["location"]
            )
            if page is None:
                return
            form = {**hidden_inputs(page.text), "username": self.user, "password": PASSWORD}
            response, _ = await self.send("login", self.browser, "POST", "/login", data=form)
            if response is None or not self.expect(
                "login", response.status_code == 303, response.text[:200]
            ):
                return
            response, _ = await self.send(
                "authorize", self.browser, "GET", response.headers["location"]
            )
            if response is None:
                return
        if response.status_code == 200:  # the consent page, once per user and client
            form = {**hidden_inputs(response.text), "decision": "allow"}
            response, _ = await self.send("consent", self.browser, "POST", "/authorize", data=form)
            if response is None:
                return
        if not self.expect("authorize", response.status_code in (302, 303), response.text[:200]):
            return
        location = response.headers["location"]
        found = parse_qs(urlsplit(location).query)
        if not self.expect(
            "authorize", "code" in found and found["state"] == [query["state"]], location
        ):
            return
        code = found["code"][0]
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        }
        response, now = await self.send(
            "code", self.http, "POST", "/token", data=data, auth=self.client.basic
        )
        if response is None or not self.expect(
            "code exchange", response.status_code == 200, response.text[:200]
        ):
            return
        grant = Grant(self.client, self.user, code)
        self.record_pair(grant, response.json(), 0, now)
        seen, _ = await self.introspect(grant.access[0].token)
        if seen is not None and self.expect(
            "first introspection", seen.get("active") is True, str(seen)
        ):
            grant.id = seen["grant_id"]
        self.grants.append(grant)
        self.model.grants.append(grant)

    def record_pair(self, grant: Grant, body: dict[str, Any], generation: int, now: Window) -> Pair:
        ttl = self.model.access_ttl
        refresh = Refresh(body["refresh_token"], grant, generation)
        # Lifetimes start at the ceiling of the issuing second.
        access = Access(
            body["access_token"], grant, generation, refresh, (now[0] + ttl, now[1] + 1 + ttl)
        )
        grant.refresh.append(refresh)
        grant.access.append(access)
        self.expect(
            "token response",
            body.get("scope") == SCOPE and body.get("token_type") == "Bearer",
            str(body.keys()),
        )
        return Pair(access.token, refresh.token)

    def live_grants(self) -> list[Grant]:
        return [g for g in self.grants if g.revoked is None and g.id]

    def refused(self, what: str, response: httpx.Response, description: str) -> None:
        body = response.json() if "json" in response.headers.get("content-type", "") else {}
        self.expect(
            what,
            response.status_code == 400 and body.get("error_description") == description,
            f"expected invalid_grant '{description}', got {response.status_code} "
            f"{response.text[:200]}",
        )

    async def refresh(self, refresh: Refresh, *, concurrent: int = 1) -> None:
        grant = refresh.grant
        data = {"grant_type": "refresh_token", "refresh_token": refresh.token}
        state_before = self.model.refresh_state(refresh, window(time.time(), time.time()))
        answers = await asyncio.gather(
            *[
                self.send("refresh", self.http, "POST", "/token", data=data, auth=self.client.basic)
                for _ in range(concurrent)
            ]
        )
        now = (min(w[0] for _, w in answers), max(w[1] for _, w in answers))
        responses = [r for r, _ in answers if r is not None]
        if not responses:
            return
        if grant.revoked is not None:
            expected = REFRESH_AFTER_REUSE if grant.revoked == "reuse" else REFRESH_REVOKED
            for response in responses:
                self.refused("refresh of a revoked grant", response, expected)
            return
        if refresh.exchanged is None:
            bodies = [r.json() for r in responses if r.status_code == 200]
            if not self.expect(
                "rotation", len(bodies) == len(responses), f"{[r.text[:120] for r in responses]}"
            ):
                return
            first = bodies[0]
            same = all(
                (b["access_token"], b["refresh_token"])
                == (first["access_token"], first["refresh_token"])
                for b in bodies
            )
            self.expect(
                "concurrent refreshes converge on one successor",
                same,
                f"{len(bodies)} answers differ",
            )
            refresh.exchanged = now
            refresh.child = self.record_pair(grant, first, refresh.generation + 1, now)
            return
        # An exchanged token again: a retry inside the leeway, or reuse after it.
        for response in responses:
            if response.status_code == 200:
                body = response.json()
                child = refresh.child
                assert child is not None
                if self.expect(
                    "retry inside the leeway",
                    state_before != INACTIVE,
                    f"replayed after the leeway ({now})",
                ):
                    self.expect(
                        "replay returns the same pair",
                        (body["access_token"], body["refresh_token"])
                        == (child.access_token, child.refresh_token),
                        "a different pair",
                    )
            else:
                self.refused(
                    "replay after the leeway",
                    response,
                    REFRESH_REUSED if grant.revoked is None else REFRESH_AFTER_REUSE,
                )
                self.expect(
                    "reuse only after the leeway",
                    state_before != ACTIVE,
                    f"reuse inside the leeway ({now})",
                )
                if grant.revoked is None:
                    grant.revoked = "reuse"

    async def refresh_with_another_client(self, refresh: Refresh) -> None:
        data = {"grant_type": "refresh_token", "refresh_token": refresh.token}
        response, _ = await self.send(
            "refresh by another client",
            self.http,
            "POST",
            "/token",
            data=data,
            auth=self.other.basic,
        )
        if response is not None:
            self.refused("refresh by another client", response, OTHER_CLIENT)

    async def replay_code(self, grant: Grant) -> None:
        data = {
            "grant_type": "authorization_code",
            "code": grant.code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": "x" * 43,
        }
        response, _ = await self.send(
            "code replay", self.http, "POST", "/token", data=data, auth=self.client.basic
        )
        if response is None:
            return
        self.refused("code replay", response, CODE_REUSED)
        if grant.revoked is None:
            grant.revoked = "code_reuse"

    async def revoke_refresh(self, refresh: Refresh) -> None:
        state = self.model.refresh_state(refresh, window(time.time(), time.time() + 1))
        if state == EITHER:
            return  # the leeway ends about now: whether this revokes the grant is a coin toss
        response, _ = await self.send(
            "revoke refresh",
            self.http,
            "POST",
            "/revoke",
            data={"token": refresh.token},
            auth=self.client.basic,
        )
        if response is None or not self.expect(
            "revoke", response.status_code == 200, response.text[:200]
        ):
            return
        if state == ACTIVE and refresh.grant.revoked is None:
            refresh.grant.revoked = "revoked"

    async def revoke_access(self, access: Access) -> None:
        data = {"token": access.token, "token_type_hint": "refresh_token"}  # a wrong hint
        response, _ = await self.send(
            "revoke access", self.http, "POST", "/revoke", data=data, auth=self.client.basic
        )
        if response is not None and self.expect(
            "revoke", response.status_code == 200, response.text[:200]
        ):
            access.revoked = True

    async def introspect(self, token: str) -> tuple[dict[str, Any] | None, Window]:
        response, now = await self.send(
            "introspect",
            self.http,
            "POST",
            "/introspect",
            data={"token": token},
            auth=self.resource_server.basic,
        )
        if response is None or not self.expect(
            "introspect", response.status_code == 200, response.text[:200]
        ):
            return None, now
        body: dict[str, Any] = response.json()
        return body, now

    async def check(self, token: Refresh | Access) -> None:
        seen, now = await self.introspect(token.token)
        if seen is not None:
            compare(self.model, self.figures, token, seen, now)

    # -- the loop --------------------------------------------------------------------------------

    def pick_refresh(self, where: str) -> Refresh | None:
        now = window(time.time(), time.time() + 1)
        candidates: list[Refresh] = []
        for grant in self.grants:
            for refresh in grant.refresh:
                retire = self.model.retire(refresh)
                fits = {
                    "newest": refresh is grant.refresh[-1] and grant.revoked is None,
                    # Surely inside the leeway, or surely after it (see the module docstring).
                    "in leeway": retire is not None and now[1] + 1 < retire[0],
                    "after leeway": retire is not None and now[0] > retire[1] + 1,
                    "any": True,
                }
                if fits[where]:
                    candidates.append(refresh)
        return self.rng.choice(candidates[-50:]) if candidates else None

    async def step(self) -> None:
        if len(self.live_grants()) < 2 or self.rng.random() < 0.04:
            await self.new_grant()
            return
        roll = self.rng.random()
        if roll < 0.30:
            target = self.pick_refresh("newest")
            if target is not None:
                await self.refresh(target)
        elif roll < 0.38:
            target = self.pick_refresh("newest")
            if target is not None:
                await self.refresh(target, concurrent=3)
        elif roll < 0.50:
            target = self.pick_refresh("in leeway")
            if target is not None:
                await self.refresh(target)
        elif roll < 0.53:
            target = self.pick_refresh("after leeway")
            if target is not None:
                await self.refresh(target)
        elif roll < 0.55:
            await self.replay_code(self.rng.choice(self.grants))
        elif roll < 0.58:
            target = self.pick_refresh("any")
            if target is not None:
                await self.revoke_refresh(target)
        elif roll < 0.63:
            grant = self.rng.choice(self.grants)
            await self.revoke_access(self.rng.choice(grant.access))
        elif roll < 0.66:
            target = self.pick_refresh("any")
            if target is not None:
                await self.refresh_with_another_client(target)
        else:
            grant = self.rng.choice(self.grants[-20:])
            recent: list[Refresh | Access] = [*grant.refresh[-3:]]
            recent += grant.access[-3:]
            await self.check(self.rng.choice(recent))
            return

    async def run(self, until: float) -> None:
        while time.time() < until:
            await self.step()


def compare(
    model: Model, figures: Figures, token: Refresh | Access, seen: dict[str, Any], now: Window
) -> None:
    is_access = isinstance(token, Access)
    expected = (
        model.access_state(token, now)
        if isinstance(token, Access)
        else model.refresh_state(token, now)
    )
    kind = "access" if is_access else "refresh"
    if expected == EITHER:
        figures.checks["indeterminate"] += 1
        return
    figures.checks["matched"] += 1
    grant = token.grant
    if expected == INACTIVE:
        if seen != {"active": False}:
            figures.checks["matched"] -= 1
            figures.mismatch(
                f"{kind} token gen {token.generation} of grant {grant.id}: expected inactive "
                f"at {now}, got {seen}"
            )
        return
    want = {
        "active": True,
        "grant_id": grant.id,
        "generation": token.generation,
        "client_id": grant.client.client_id,
        "token_type": "Bearer" if is_access else "refresh_token",
        "scope": SCOPE,
        "sub": grant.user,
    }
    got = {k: seen.get(k) for k in want}
    if got != want:
        figures.checks["matched"] -= 1
        figures.mismatch(
            f"{kind} token gen {token.generation} of grant {grant.id}: expected {want} at "
            f"{now}, got {seen}"
        )


# -- set-up, the server, the final comparison ----------------------------------------------------


def cli(*args: str, stdin: str | None = None) -> str:
    """`baton ARGS` in this process (a `baton` process spends a second on its imports first), on
    a thread of its own: the commands run their own event loop, and the soak's is running."""
    from click.testing import CliRunner

    from baton.cli import main

    with ThreadPoolExecutor(1) as thread:
        result = thread.submit(CliRunner().invoke, main, list(args), input=stdin).result()
    if result.exit_code != 0:
        raise SystemExit(f"baton {' '.join(args)} failed:\n{result.output}{result.exception!r}")
    return result.stdout


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def create_client(db: str, name: str, *extra: str) -> Credentials:
    payload = json.loads(cli("client", "create", "--db", db, "--name", name, "--json", *extra))
    return Credentials(payload["client_id"], payload["client_secret"])


def start_server(
    db: str, port: int, leeway: int, access_ttl: int, log: Path, server_workers: int
) -> subprocess.Popen[bytes]:
    args = [
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--db",
        db,
        "--leeway",
        str(leeway),
        "--access-ttl",
        str(access_ttl),
        "--workers",
        str(server_workers),
        "--log-level",
        "warning",
    ]
    help_text = cli("serve", "--help")
    for option in ("--rate-limit-address", "--rate-limit-client", "--rate-limit-login"):
        if option in help_text:
            args += [option, "0"]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*BATON, *args], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"baton serve exited {process.returncode}:\n{log.read_text()}")
        try:
            if (
                httpx.get(
                    f"http://127.0.0.1:{port}/.well-known/oauth-authorization-server"
                ).status_code
                == 200
            ):
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    raise SystemExit(f"baton serve did not answer within 30 s:\n{log.read_text()}")


async def ensure_database(db: str) -> None:
    """A PostgreSQL URL's database, created on its server if it does not exist yet (as the
    README's `--db postgresql://.../baton_soak` expects on a fresh machine)."""
    import asyncpg

    from baton.store.engines import normalize_url

    url = normalize_url(db).set(drivername="postgresql")
    name = url.database
    conn = await asyncpg.connect(url.set(database="postgres").render_as_string(False))
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            quoted = '"' + str(name).replace('"', '""') + '"'
            await conn.execute(f"CREATE DATABASE {quoted}")
    finally:
        await conn.close()


async def database_rows(db: str, query: str) -> list[tuple[Any, ...]]:
    if db.startswith("postgresql"):
        import asyncpg

        from baton.store.engines import normalize_url

        async def fetch() -> list[tuple[Any, ...]]:
            url = normalize_url(db).set(drivername="postgresql").render_as_string(False)
            conn = await asyncpg.connect(url)
            try:
                return [tuple(row) for row in await conn.fetch(query)]
            finally:
                await conn.close()

        return await fetch()
    path = db.removeprefix("sqlite:///")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows: list[tuple[Any, ...]] = conn.execute(query).fetchall()
        return rows
    finally:
        conn.close()


async def compare_database(
    db: str, model: Model, clients: list[Credentials], figures: Figures
) -> dict[str, int]:
    ids = ", ".join(f"'{c.client_id}'" for c in clients)  # ids are base62: safe to inline
    grants = {
        row[0]: row
        for row in await database_rows(
            db, f"SELECT id, revoked_at, revoked_reason FROM grants WHERE client_id IN ({ids})"
        )
    }
    refresh_rows = {
        bytes(r[0]): r
        for r in await database_rows(
            db,
            "SELECT r.digest, r.grant_id, r.generation, r.exchanged_at FROM refresh_tokens r "
            f"JOIN grants g ON g.id = r.grant_id WHERE g.client_id IN ({ids})",
        )
    }
    access_rows = {
        bytes(r[0]): r
        for r in await database_rows(
            db,
            "SELECT a.digest, a.grant_id, a.generation, a.revoked_at FROM access_tokens a "
            f"JOIN grants g ON g.id = a.grant_id WHERE g.client_id IN ({ids})",
        )
    }
    known = [g for g in model.grants if g.id]
    if len(grants) != len(known):
        figures.mismatch(f"database: {len(grants)} grants, the model knows {len(known)}")
    for grant in known:
        row = grants.get(grant.id)
        if row is None:
            figures.mismatch(f"database: grant {grant.id} missing")
            continue
        if (row[1] is not None, row[2]) != (grant.revoked is not None, grant.revoked):
            figures.mismatch(
                f"database: grant {grant.id} revoked {row[1]} ({row[2]}), model {grant.revoked}"
            )
        for refresh in grant.refresh:
            r = refresh_rows.pop(hashlib.sha256(refresh.token.encode()).digest(), None)
            if r is None:
                figures.mismatch(
                    f"database: refresh token gen {refresh.generation} of {grant.id} missing"
                )
                continue
            exchanged_ok = (
                (r[3] is None)
                if refresh.exchanged is None
                else (r[3] is not None and refresh.exchanged[0] <= r[3] <= refresh.exchanged[1])
            )
            if (r[1], r[2]) != (grant.id, refresh.generation) or not exchanged_ok:
                figures.mismatch(
                    f"database: refresh token row {r[1:]} vs model {grant.id}, "
                    f"gen {refresh.generation}, exchanged {refresh.exchanged}"
                )
        for access in grant.access:
            a = access_rows.pop(hashlib.sha256(access.token.encode()).digest(), None)
            if a is None:
                figures.mismatch(
                    f"database: access token gen {access.generation} of {grant.id} missing"
                )
                continue
            if (a[1], a[2], a[3] is not None) != (grant.id, access.generation, access.revoked):
                figures.mismatch(
                    f"database: access token row {a[1:]} vs model {grant.id}, "
                    f"gen {access.generation}, revoked {access.revoked}"
                )
    unknown_grants = {r[1] for r in [*refresh_rows.values(), *access_rows.values()]} - {
        g.id for g in known
    }
    if refresh_rows or access_rows:
        figures.mismatch(
            f"database: {len(refresh_rows)} refresh and {len(access_rows)} access tokens the "
            f"model never saw (grants {sorted(unknown_grants)[:5]})"
        )
    return {
        "grants": len(grants),
        "refresh_tokens": len(refresh_rows) + sum(len(g.refresh) for g in known),
        "access_tokens": len(access_rows) + sum(len(g.access) for g in known),
    }


async def sweep(workers: list[Worker], model: Model, figures: Figures, label: str) -> int:
    """Introspects every token ever issued, compared with the model; returns how many."""
    tokens: list[Refresh | Access] = [*(r for g in model.grants for r in g.refresh)]
    tokens += [a for g in model.grants for a in g.access]
    queue: asyncio.Queue[Refresh | Access] = asyncio.Queue()
    for token in tokens:
        queue.put_nowait(token)

    async def drain(worker: Worker) -> None:
        while not queue.empty():
            await worker.check(queue.get_nowait())

    before = Counter(figures.checks)
    await asyncio.gather(*(drain(w) for w in workers))
    after = figures.checks - before
    print(
        f"{label}: {len(tokens)} tokens introspected, {after['matched']} matched, "
        f"{after['indeterminate']} indeterminate",
        flush=True,
    )
    return len(tokens)


async def soak(args: argparse.Namespace) -> int:
    directory = Path(tempfile.mkdtemp(prefix="baton-soak-"))
    db = args.db or f"sqlite:///{directory / 'baton.db'}"
    started = time.time()
    if db.startswith("postgresql"):
        await ensure_database(db)
    cli("db", "upgrade", "--db", db)
    tag = secrets.token_hex(3)
    users = [f"soak-{tag}-{i}" for i in range(args.users)]
    for user in users:
        cli(
            "user",
            "create",
            "--db",
            db,
            "--username",
            user,
            "--password-stdin",
            stdin=PASSWORD + "\n",
        )
    clients = [
        create_client(db, f"soak app {i}", "--redirect-uri", REDIRECT_URI, "--scope", SCOPE)
        for i in range(args.clients)
    ]
    resource_server = create_client(db, "soak api", "--resource-server")
    port = free_port()
    log = directory / "serve.log"
    server = start_server(db, port, args.leeway, args.access_ttl, log, args.server_workers)
    url = f"http://127.0.0.1:{port}"
    model = Model(args.leeway, args.access_ttl)
    figures = Figures()
    rng = random.Random(args.seed)
    workers = [
        Worker(
            i,
            url,
            clients[i % len(clients)],
            clients[(i + 1) % len(clients)],
            resource_server,
            users[i % len(users)],
            model,
            figures,
            random.Random(rng.random()),
        )
        for i in range(args.workers)
    ]
    print(
        f"baton serve on {url} ({db}), leeway {args.leeway} s, access tokens "
        f"{args.access_ttl} s; {args.workers} workers for {args.duration} s",
        flush=True,
    )
    try:
        traffic_started = time.time()
        await asyncio.gather(*(w.run(traffic_started + args.duration) for w in workers))
        traffic_seconds = time.time() - traffic_started
        traffic_requests = figures.requests
        swept = await sweep(workers, model, figures, "sweep at the end of the traffic")
        quiet_at = time.time() + max(args.leeway, args.access_ttl) + 2
        await asyncio.sleep(max(0.0, quiet_at - time.time()))
        await sweep(workers, model, figures, "sweep once every leeway and access token has run out")
    finally:
        for worker in workers:
            await worker.close()
        server.terminate()
        server.wait(timeout=30)
    rows = await compare_database(db, model, [*clients, resource_server], figures)
    result = {
        "duration_s": round(traffic_seconds, 1),
        "requests": figures.requests,
        "traffic_requests": traffic_requests,
        "requests_per_s": round(traffic_requests / traffic_seconds, 1),
        "grants": len(model.grants),
        "grants_revoked": dict(Counter(g.revoked or "live" for g in model.grants)),
        "tokens_tracked": swept,
        "database_rows": rows,
        "answers": dict(sorted(figures.answers.items())),
        "server_errors_5xx": figures.server_errors,
        "transport_errors": dict(figures.transport_errors),
        "checks": dict(figures.checks),
        "mismatches": len(figures.mismatches),
        "total_s": round(time.time() - started, 1),
    }
    ok = not figures.mismatches and figures.server_errors == 0 and not figures.transport_errors
    if args.json:
        print(json.dumps({**result, "ok": ok, "mismatch_details": figures.mismatches[:20]}))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
        for text in figures.mismatches[:20]:
            print("MISMATCH", text)
        print("OK" if ok else "FAILED")
    if not ok:
        print(f"server log: {log}", file=sys.stderr)
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Soak a real baton serve on loopback against a model."
    )
    parser.add_argument(
        "--duration", type=float, default=180.0, help=f"seconds of traffic (at most {MAX_DURATION})"
    )
    parser.add_argument("--workers", type=int, default=16, help="concurrent browsers/clients")
    parser.add_argument("--clients", type=int, default=4, help="registered confidential clients")
    parser.add_argument("--users", type=int, default=4, help="registered users")
    parser.add_argument("--leeway", type=int, default=5)
    parser.add_argument("--access-ttl", type=int, default=20)
    parser.add_argument("--server-workers", type=int, default=1, help="baton serve --workers")
    parser.add_argument("--db", default=None, help="database URL (default: a fresh SQLite file)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    if not 0 < args.duration <= MAX_DURATION:
        parser.error(f"--duration must be in (0, {MAX_DURATION}]")
    if args.clients < 2:
        parser.error("--clients must be at least 2 (one client presents another's tokens)")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return asyncio.run(soak(args))


if __name__ == "__main__":
    sys.exit(main())

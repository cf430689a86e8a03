"""Real `baton serve` processes for end-to-end tests.

A database is prepared once per session with the real command line (`baton db upgrade`,
`baton user create --password-stdin`, `baton client create --json`, the latter twice: a
confidential client and a resource server), run in this process (`cli_in_process`: a `baton`
process would first spend a second of CPU on its imports); every server then runs on its own
copy of that database, on a free port of 127.0.0.1, and is killed at teardown. When a test
fails, the stderr of each server it started (Baton's request log included) is attached to the
failure report.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import secrets
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import anyio
import asyncpg
import httpx
import pytest
import requests  # type: ignore[import-untyped,unused-ignore]

from baton.core.tokens import digest
from baton.store.engines import normalize_url
from tests.databases import create_database, drop_database

USERNAME = "alice"
PASSWORD = "correct horse battery staple"
REDIRECT_URI = "http://127.0.0.1:9000/callback"
CLIENT_SCOPE = "read write"
# How long a `baton serve` may take to answer: a second or two, but much longer on a machine
# busy with other work (a CI runner shared with other jobs); only a failing start waits it out.
START_TIMEOUT = 60.0

BATON = [sys.executable, "-m", "baton.cli"]


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Runs `baton ARGS...` as its own process; fails the test if it exits non-zero."""
    result = subprocess.run(
        [*BATON, *args], input=stdin, capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        pytest.fail(f"baton {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return result


@dataclass(frozen=True)
class Credentials:
    client_id: str
    client_secret: str

    @property
    def basic(self) -> tuple[str, str]:
        return (self.client_id, self.client_secret)


@dataclass(frozen=True)
class Seed:
    """A migrated database with one user, one confidential client and one resource server.

    `db` is a SQLite file (each server gets its own copy) or a PostgreSQL URL (shared)."""

    db: Path | str
    client: Credentials
    resource_server: Credentials


def cli_in_process(*args: str, stdin: str | None = None) -> str:
    """Runs `baton ARGS...` in this process (Click's runner: the very commands, options and
    exit status of the command line, without a second of imports in a new process); its stdout.
    Fails the test if it exits non-zero."""
    from click.testing import CliRunner

    from baton.cli import main

    result = CliRunner().invoke(main, list(args), input=stdin)
    if result.exit_code != 0:
        pytest.fail(f"baton {' '.join(args)} exited {result.exit_code}:\n{result.output}")
    return result.stdout


def _create_client(db: Path | str, name: str, *extra: str) -> Credentials:
    out = cli_in_process("client", "create", "--db", str(db), "--name", name, "--json", *extra)
    payload = json.loads(out)  # --json: exactly one JSON object on stdout
    return Credentials(payload["client_id"], payload["client_secret"])


@pytest.fixture(scope="session")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Seed:
    db = tmp_path_factory.mktemp("seed") / "baton.db"
    cli_in_process("db", "upgrade", "--db", str(db))
    return seed_database(db)


@pytest.fixture(scope="session")
def postgres_seed() -> Iterator[Seed]:
    """The seed on a PostgreSQL database of its own, shared by every server started on it.

    Not the session's `postgres_database`: the tests on that one empty its tables before they
    start, which would take the seed's user and clients away from a server test run after them
    (or leave a user `alice` behind for the seed to trip over)."""
    url = create_database()
    try:
        yield seed_database(url)
    finally:
        drop_database(url)


def seed_database(db: Path | str) -> Seed:
    cli_in_process(
        "user",
        "create",
        "--db",
        str(db),
        "--username",
        USERNAME,
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    client = _create_client(db, "e2e app", "--redirect-uri", REDIRECT_URI, "--scope", CLIENT_SCOPE)
    resource_server = _create_client(db, "e2e api", "--resource-server")
    return Seed(db, client, resource_server)


def spawn_uvicorn(
    app: list[str], port: int, env: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    """An ASGI app (`["module:app"]`, or `["--factory", "module:create"]`) under uvicorn on
    127.0.0.1:port, its output in `log`."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                *app,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            cwd=Path(__file__).resolve().parents[2],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    """A running `baton serve` and what a test needs to talk to it."""

    url: str
    db: Path | str
    client: Credentials
    resource_server: Credentials
    process: subprocess.Popen[bytes]
    stderr_path: Path
    options: dict[str, str] = field(default_factory=dict)

    @property
    def token_url(self) -> str:
        return self.url + "/token"

    @property
    def authorize_url(self) -> str:
        return self.url + "/authorize"

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def log_lines(self) -> list[dict[str, Any]]:
        """The JSON log lines of the server (the lines `baton serve` itself prints are not)."""
        lines = self.stderr().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def introspect(self, token: str) -> dict[str, Any]:
        """RFC 7662 introspection as the resource server (which may see any token)."""
        response = httpx.post(
            self.url + "/introspect", data={"token": token}, auth=self.resource_server.basic
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        """A read of the server's database (SQLite in WAL mode allows it while serving).

        Placeholders are `?`, whichever the database."""
        if isinstance(self.db, str):
            return postgres_rows(self.db, query, *params)
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30)
        try:
            rows: list[tuple[Any, ...]] = conn.execute(query, params).fetchall()
            return rows
        finally:
            conn.close()

    def unstored(self, tokens: Iterable[str]) -> list[str]:
        """The tokens among `tokens` whose digest is in neither token table: one query, where a
        query per token took seconds for the few thousand a load test receives."""
        stored = {
            bytes(row[0])
            for row in self.sql(
                "SELECT digest FROM access_tokens UNION ALL SELECT digest FROM refresh_tokens"
            )
        }
        return [t for t in tokens if digest(t) not in stored]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        from tests.secrets_scan import find_secrets

        leaked = find_secrets(self.stderr())
        assert not leaked, f"baton serve logged secrets: {leaked}"


def postgres_rows(url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    parts = query.split("?")
    numbered = parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], start=1))

    async def fetch() -> list[tuple[Any, ...]]:
        conn = await asyncpg.connect(
            normalize_url(url).set(drivername="postgresql").render_as_string(False)
        )
        try:
            return [tuple(row) for row in await conn.fetch(numbered, *params)]
        finally:
            await conn.close()

    return anyio.run(fetch)


def _copy_db(source: Path, target: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        src = source.with_name(source.name + suffix)
        if src.exists():
            shutil.copyfile(src, target.with_name(target.name + suffix))


def _wait_until_ready(server: Server) -> bool:
    """True once the metadata answers; False if the process died (e.g. the port was taken)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        try:
            response = httpx.get(server.url + "/.well-known/oauth-authorization-server")
            if response.status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    server.stop()
    pytest.fail(f"baton serve did not answer within {START_TIMEOUT}s:\n{server.stderr()}")


def start_server(seed: Seed, directory: Path, options: dict[str, str]) -> Server:
    directory.mkdir(parents=True, exist_ok=True)
    db: Path | str = seed.db
    if isinstance(seed.db, Path):
        db = directory / "baton.db"
        if db != seed.db:
            _copy_db(seed.db, db)
    else:  # PostgreSQL: the servers of a test share a session key, beside their directories
        options = {"session_key_file": str(directory.parent / "session.key"), **options}
    for _attempt in range(3):
        port = free_port()
        args = ["serve", "--host", "127.0.0.1", "--port", str(port), "--db", str(db)]
        for name, value in options.items():
            args += [f"--{name.replace('_', '-')}", value]
        stderr_path = directory / f"serve-{port}.log"
        with stderr_path.open("wb") as log:
            process = subprocess.Popen(
                [*BATON, *args], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        server = Server(
            f"http://127.0.0.1:{port}",
            db,
            seed.client,
            seed.resource_server,
            process,
            stderr_path,
            options,
        )
        if _wait_until_ready(server):
            return server
        if "address already in use" not in server.stderr().lower():
            break
    pytest.fail(f"baton serve exited {server.process.returncode}:\n{server.stderr()}")


ServerFactory = Callable[..., Server]
_SERVERS = pytest.StashKey[list[Server]]()


@pytest.fixture
def baton_server(
    seed: Seed, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[ServerFactory]:
    """A factory: `baton_server(leeway=2, retry_policy="strict")` starts a server whose
    options are passed as `--leeway 2 --retry-policy strict`."""
    yield from _server_factory(seed, tmp_path, request)


@pytest.fixture
def postgres_server(
    postgres_seed: Seed, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[ServerFactory]:
    """Like `baton_server`, every server on the one PostgreSQL database of the session."""
    yield from _server_factory(postgres_seed, tmp_path, request)


def _server_factory(
    seed: Seed, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[ServerFactory]:
    started: list[Server] = []
    request.node.stash[_SERVERS] = started
    numbers = itertools.count()  # a directory each, even for servers started from threads

    def factory(**options: object) -> Server:
        # The tests sign in many times a second from one address: no sign-in rate limit.
        options.setdefault("rate_limit_login", 0)
        server = start_server(
            seed,
            tmp_path / f"server{next(numbers)}",
            {name: str(value) for name, value in options.items()},
        )
        started.append(server)
        return server

    try:
        yield factory
    finally:
        for server in started:
            server.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        for server in item.stash.get(_SERVERS, []):
            report.sections.append((f"baton serve {server.url} (stderr)", server.stderr()))
    return report


# -- a browser, for the login and consent pages ---------------------------------------------------


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hidden: dict[str, str] = {}
        self.codes: list[str] = []
        self._in_code = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "input" and attributes.get("type") == "hidden":
            # HTMLParser unescapes attribute values (what html.unescape would do), so a
            # `next` URL with `&amp;` comes back with `&`, exactly as the browser would post it.
            self.hidden[attributes.get("name") or ""] = attributes.get("value") or ""
        self._in_code = tag == "code"

    def handle_endtag(self, tag: str) -> None:
        if tag == "code":
            self._in_code = False

    def handle_data(self, data: str) -> None:
        if self._in_code:
            self.codes.append(data)  # character references already converted


def parse_form(page: str) -> _FormParser:
    parser = _FormParser()
    parser.feed(page)
    parser.close()
    return parser


@dataclass(frozen=True)
class Visit:
    """How a browser went through /authorize: the final redirect to the client and the pages."""

    location: str
    signed_in: bool  # the login page was shown and posted
    consent_scopes: tuple[str, ...] | None  # the scopes on the consent page, None if not shown

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.location).query)


def visit(
    browser: requests.Session,
    server: Server,
    authorization_url: str,
    *,
    decision: str = "allow",
    username: str = USERNAME,
    password: str = PASSWORD,
) -> Visit:
    """Follows an authorization URL as a person in a browser would, up to (and not into) the
    redirect back to the client."""
    response = browser.get(authorization_url, allow_redirects=False)
    signed_in = False
    if response.status_code == 303 and response.headers["location"].startswith("/login"):
        page = browser.get(server.url + response.headers["location"], allow_redirects=False)
        assert page.status_code == 200, page.text
        fields = parse_form(page.text).hidden
        assert set(fields) == {"csrf", "next"}, fields
        assert fields["next"].startswith("/authorize?"), fields
        response = browser.post(
            server.url + "/login",
            data={**fields, "username": username, "password": password},
            allow_redirects=False,
        )
        assert response.status_code == 303, response.text
        assert response.headers["location"] == fields["next"]
        response = browser.get(server.url + response.headers["location"], allow_redirects=False)
        signed_in = True
    consent_scopes: tuple[str, ...] | None = None
    if response.status_code == 200:
        assert "Allow" in response.text and "Deny" in response.text, response.text
        form = parse_form(response.text)
        consent_scopes = tuple(form.codes)
        assert "csrf" in form.hidden, form.hidden
        response = browser.post(
            server.url + "/authorize",
            data={**form.hidden, "decision": decision},
            allow_redirects=False,
        )
    assert response.status_code in (302, 303), (response.status_code, response.text)
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI + "?"), location
    return Visit(location, signed_in, consent_scopes)


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


def first_pair(
    server: Server, scope: str = CLIENT_SCOPE, browser: requests.Session | None = None
) -> dict[str, Any]:
    """Signs in, allows, and redeems the code: the grant's first pair (generation 0); in a new
    browser, or in `browser` (signed in already after its first use: the hash costs time)."""
    verifier, challenge = pkce_pair()
    query = urlencode(
        {
            "response_type": "code",
            "client_id": server.client.client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": scope,
            "state": "s1",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    if browser is None:
        with requests.Session() as fresh:
            found = visit(fresh, server, f"{server.authorize_url}?{query}")
    else:
        found = visit(browser, server, f"{server.authorize_url}?{query}")
    assert found.query["state"] == ["s1"]
    response = httpx.post(
        server.token_url,
        data={
            "grant_type": "authorization_code",
            "code": found.query["code"][0],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        },
        auth=server.client.basic,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body

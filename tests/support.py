"""Shared test support: a migrated store, a server under a fake clock, and a browser-like flow
through login and consent that yields a first token pair."""

from __future__ import annotations

import base64
import functools
import hashlib
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx2
from argon2 import PasswordHasher
from starlette.testclient import TestClient

from baton.config import Settings
from baton.core.clock import FakeClock
from baton.core.policy import Lifetimes, Policy, RetryPolicy
from baton.core.tokens import TokenKind, mint, random_id
from baton.server.app import create_app
from baton.store import migrate
from baton.store.base import Client
from baton.store.engines import PoolSettings
from baton.store.sql import SQLStore
from tests.one_hop import OneHopTestClient

ISSUER = "http://baton.test"
REDIRECT_URI = "http://127.0.0.1:9000/callback"
PASSWORD = "correct horse battery staple"
# Argon2id as in production, with the cheapest parameters: a hash carries its parameters, so
# `baton.passwords.verify_password` checks it by the real code path in about a millisecond
# instead of the ~0.1 s the production parameters cost every sign-in of every test (hundreds).
# tests/test_cli.py checks what `baton user create` stores with the production parameters.
_PASSWORD_HASH = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)


def migrated_store(where: Path | str, policy: Policy | None = None) -> SQLStore:
    """A store on a SQLite file (a path: migrated here) or a PostgreSQL URL (already migrated)."""
    if isinstance(where, str):
        # No pool: the tests drive the store from several event loops (anyio.run, the test
        # client's portal), and a pooled asyncpg connection belongs to the loop that made it.
        return SQLStore.open(where, policy or Policy(), PoolSettings(size=0))
    if not where.exists():
        # A copy of a file migrated once per test process: the migrations cost each of the
        # hundreds of SQLite tests ~0.15 s, a copy ~0.01 s (tests/store checks the migrations).
        shutil.copyfile(_migrated_template(), where)
        where.chmod(0o600)
        return SQLStore.open(f"sqlite:///{where}", policy or Policy())
    store = SQLStore.open(f"sqlite:///{where}", policy or Policy())
    anyio.run(migrate.upgrade, store.runner)
    return store


@functools.cache
def _migrated_template() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="baton-template-"))
    path = folder / "migrated.db"
    store = SQLStore.open(f"sqlite:///{path}", Policy())
    anyio.run(migrate.upgrade, store.runner)
    anyio.run(store.close)
    return path


@dataclass
class RegisteredClient:
    id: str
    secret: str | None

    @property
    def basic(self) -> tuple[str, str]:
        assert self.secret is not None
        return (self.id, self.secret)

    def auth_params(self) -> dict[str, str]:
        """client_secret_post parameters (or just client_id for a public client)."""
        params = {"client_id": self.id}
        if self.secret is not None:
            params["client_secret"] = self.secret
        return params


def register_client(
    store: SQLStore,
    *,
    public: bool = False,
    resource_server: bool = False,
    scope: str = "read write",
    redirect_uris: tuple[str, ...] = (REDIRECT_URI,),
    name: str = "test client",
    require_pkce: bool = True,
    remember_consent: bool = False,
    resource_uri: str | None = None,
    allowed_resources: tuple[str, ...] = (),
) -> RegisteredClient:
    secret = None if public else mint(TokenKind.CLIENT_SECRET)
    client = Client(
        id=random_id("cl_"),
        name=name,
        secret_digest=secret.digest if secret else None,
        is_public=public,
        is_resource_server=resource_server,
        redirect_uris=redirect_uris,
        scope=scope,
        created_at=0,
        resource_uri=resource_uri,
        allowed_resources=allowed_resources,
        remember_consent=remember_consent,
        require_pkce=require_pkce,
    )
    anyio.run(store.create_client, client)
    return RegisteredClient(client.id, secret.plaintext if secret else None)


def register_user(store: SQLStore, username: str = "alice") -> None:
    anyio.run(lambda: store.create_user(username, _PASSWORD_HASH, 0))


@contextmanager
def running_app(
    database: Path | str,
    *,
    clock: FakeClock | None = None,
    retry: RetryPolicy = RetryPolicy.REPLAY,
    lifetimes: Lifetimes | None = None,
    **settings: Any,
) -> Iterator[tuple[TestClient, SQLStore, FakeClock]]:
    """The app under a fake clock, on SQLite in the directory `database` or on a PostgreSQL URL.

    Keyword arguments beyond these are `baton.config.Settings` fields."""
    clock = clock or FakeClock()
    policy = Policy(lifetimes or Lifetimes(), retry)
    where = database if isinstance(database, str) else database / "baton.db"
    store = migrated_store(where, policy)
    settings.setdefault("issuer", ISSUER)
    app = create_app(Settings(policy=policy, **settings), store, clock)
    with OneHopTestClient(app, base_url=settings["issuer"], follow_redirects=False) as client:
        yield client, store, clock


def client_credentials_token(http: TestClient, client: RegisteredClient, scope: str) -> str:
    """An access token of a client_credentials grant of `client` for `scope` (an admin API
    caller's token)."""
    answer = http.post(
        "/token", data={"grant_type": "client_credentials", "scope": scope}, auth=client.basic
    )
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    return token


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


def hidden_inputs(html: str) -> dict[str, str]:
    found = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html)
    return {name: unescape(value) for name, value in found}


def hidden_fields(html: str) -> dict[str, list[str]]:
    """Every hidden field, a repeated one (RFC 8707 `resource`) with each of its values."""
    fields: dict[str, list[str]] = {}
    for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html):
        fields.setdefault(name, []).append(unescape(value))
    return fields


def sign_in(
    http: TestClient | httpx2.Client,
    login_location: str,
    username: str = "alice",
    password: str = PASSWORD,
) -> httpx2.Response:
    page = http.get(login_location)
    fields = hidden_inputs(page.text)
    return http.post("/login", data={**fields, "username": username, "password": password})


def authorization_request(
    client: RegisteredClient,
    *,
    scope: str | None = "read write",
    state: str | None = "xyz",
    pkce: bool = True,
) -> tuple[str, dict[str, str | list[str]]]:
    """The query of an authorization request to REDIRECT_URI, and its PKCE verifier."""
    verifier, challenge = pkce_pair()
    params: dict[str, str | list[str]] = {
        "response_type": "code",
        "client_id": client.id,
        "redirect_uri": REDIRECT_URI,
    }
    if state is not None:
        params["state"] = state
    if scope is not None:
        params["scope"] = scope
    if pkce:
        params |= {"code_challenge": challenge, "code_challenge_method": "S256"}
    return verifier, params


def authorize(
    http: TestClient | httpx2.Client,
    client: RegisteredClient,
    *,
    scope: str | None = "read write",
    state: str = "xyz",
    pkce: bool = True,
    decision: str = "allow",
    resources: tuple[str, ...] = (),
) -> tuple[dict[str, list[str]], str | None]:
    """Drive /authorize through login and consent as a browser would.

    Returns the query of the final redirect to the client and the PKCE verifier.
    """
    verifier, params = authorization_request(client, scope=scope, state=state, pkce=pkce)
    if resources:
        params["resource"] = list(resources)
    response = http.get("/authorize", params=params)
    if response.status_code == 303 and response.headers["location"].startswith("/login"):
        response = sign_in(http, response.headers["location"])
        assert response.status_code == 303, response.text
        response = http.get(response.headers["location"])
    if response.status_code == 200:  # the consent page
        fields = hidden_fields(response.text)
        response = http.post("/authorize", data={**fields, "decision": decision})
    assert response.status_code in (302, 303), response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI), location
    return parse_qs(urlsplit(location).query), verifier if pkce else None


def redeem(
    http: TestClient, client: RegisteredClient, query: dict[str, list[str]], verifier: str | None
) -> httpx2.Response:
    """The token request that redeems the code of `authorize`'s `query` (client_secret_post, or
    client_id alone for a public client)."""
    data = {
        "grant_type": "authorization_code",
        "code": query["code"][0],
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier,
        **client.auth_params(),
    }
    return http.post("/token", data=data)


def first_pair(
    http: TestClient, client: RegisteredClient, scope: str | None = "read write"
) -> dict[str, Any]:
    query, verifier = authorize(http, client, scope=scope)
    response = redeem(http, client, query, verifier)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def refresh(
    http: TestClient, client: RegisteredClient, refresh_token: str, **extra: str
) -> httpx2.Response:
    """A refresh with client_secret_basic (or client_id alone for a public client)."""
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token, **extra}
    if client.secret is None:
        return http.post("/token", data={**data, "client_id": client.id})
    return http.post("/token", data=data, auth=client.basic)


def introspect(http: TestClient, resource_server: RegisteredClient, token: str) -> dict[str, Any]:
    response = http.post("/introspect", data={"token": token}, auth=resource_server.basic)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def serve_until_ready(args: Sequence[str], env: Mapping[str, str], timeout: float = 20) -> str:
    """`python -m baton.cli serve ARGS` under `env` (the whole environment): what it writes to
    stderr until its "Baton serving" line (or it exits, or `timeout`); then it is stopped."""
    process = subprocess.Popen(
        [sys.executable, "-m", "baton.cli", "serve", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(env),
    )
    try:
        assert process.stderr is not None
        lines: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("Baton serving"):
                break
        return "".join(lines)
    finally:
        process.terminate()
        process.wait(timeout=10)

"""Fixtures of the upstream sign-in tests: Baton under a fake clock set to the real time (the
upstreams sign with the real time), node-oidc-provider as a real upstream on loopback (one
process per module), and a small fake upstream of our own (discovery, JWKS, token endpoint) that
misbehaves on demand.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx
import pytest
import uvicorn
from joserfc import jws
from joserfc.jwk import ECKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from tests.client.test_oidc_provider import CACHE, install_provider
from tests.e2e.conftest import free_port
from tests.support import ISSUER, running_app

from baton.core.clock import FakeClock
from baton.core.jwa import registry
from baton.core.keys import key_encryption_key
from baton.core.upstream import DEFAULT_SCOPE, UpstreamProvider, seal_secret
from baton.server.endpoints.upstream import Upstreams
from baton.store.sql import SQLStore

HERE = Path(__file__).resolve().parent
KEK = "upstream-tests-key-encryption-key-0123456789"
CLIENT_ID = "baton-upstream"
CLIENT_SECRET = "the-upstream-client-secret-0123456789-abcdefgh"
# The provider ids whose callbacks the node upstream has registered.
NODE_PROVIDERS = ("node", "strict", "create", "verified")
TIMEOUT = 0.5  # seconds Baton waits for an upstream in these tests


def callback(base: str, provider_id: str) -> str:
    return f"{base}/login/upstream/{provider_id}/callback"


def add_provider(
    store: SQLStore,
    provider_id: str,
    issuer: str,
    *,
    name: str = "Example",
    link_by_email: bool = False,
    create_users: bool = False,
    secret: str | None = CLIENT_SECRET,
) -> None:
    sealed = seal_secret(key_encryption_key(KEK), provider_id, secret) if secret else None
    provider = UpstreamProvider(
        provider_id,
        name,
        issuer,
        CLIENT_ID,
        sealed,
        DEFAULT_SCOPE,
        link_by_email,
        create_users,
        0,
    )
    anyio.run(store.add_upstream, provider)


@dataclass
class Baton:
    http: TestClient
    store: SQLStore
    clock: FakeClock


@pytest.fixture(scope="module")
def baton_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Baton]:
    """Baton with OpenID Connect on, one per module (its start makes signing keys), and a
    short timeout for every call to an upstream."""
    clock = FakeClock(int(time.time()))
    where = tmp_path_factory.mktemp("baton")
    with running_app(where, clock=clock, key_encryption_key=KEK) as (http, store, clock):
        http.app.state.upstreams = Upstreams(timeout=TIMEOUT)  # type: ignore[attr-defined]
        yield Baton(http, store, clock)


@pytest.fixture
def baton(baton_app: Baton) -> Baton:
    """The module's Baton seen by a new browser (no cookies), its clock at the real time, which
    the upstreams sign with. Tests name their providers and users apart."""
    baton_app.http.cookies.clear()
    baton_app.clock._now = int(time.time())  # a test may have moved it on
    return baton_app


# -- node-oidc-provider -------------------------------------------------------------------------


@dataclass
class NodeUpstream:
    issuer: str
    browser_port: int  # the port a real Baton server may take: its callback is registered

    def account(self, sub: str, **claims: Any) -> None:
        """The account the next sign-in at the upstream signs in as."""
        response = httpx.post(f"{self.issuer}/test/account", json={"sub": sub, **claims})
        assert response.status_code == 204, response.text


@pytest.fixture(scope="module")
def node_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeUpstream]:
    install_provider()  # the npm install into ~/.cache/baton-tests, as tests/client does
    script = CACHE / "upstream_provider.mjs"  # ESM resolves packages next to the script
    shutil.copyfile(HERE / "upstream_provider.mjs", script)
    port, browser_port = free_port(), free_port()
    redirects = [callback(ISSUER, name) for name in NODE_PROVIDERS]
    redirects.append(callback(f"http://127.0.0.1:{browser_port}", "node"))
    log = tmp_path_factory.mktemp("node") / "upstream.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["node", str(script), str(port), CLIENT_ID, CLIENT_SECRET, *redirects],
            cwd=CACHE,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    issuer = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail(f"oidc-provider exited:\n{log.read_text()}")
            try:
                if httpx.get(issuer + "/.well-known/openid-configuration").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"oidc-provider did not start:\n{log.read_text()}")
            time.sleep(0.05)
        yield NodeUpstream(issuer, browser_port)
    finally:
        process.terminate()
        process.wait(timeout=10)


# -- a fake upstream that misbehaves on demand ---------------------------------------------------


@dataclass
class FakeUpstream:
    """Discovery, JWKS and a token endpoint. A test tells it the `nonce` and PKCE challenge of
    the sign-in under way (`expect`), and how to go wrong."""

    issuer: str
    key: ECKey = field(default_factory=lambda: ECKey.generate_key("P-256", private=True))
    other_key: ECKey = field(default_factory=lambda: ECKey.generate_key("P-256", private=True))
    nonce: str = ""
    challenge: str = ""
    claims: dict[str, Any] = field(default_factory=dict)  # overrides of the ID token's claims
    sign_with_other_key: bool = False
    hang: float = 0.0
    kid: str = "fake-key-1"
    raw_token: str | None = None  # answered as the ID token, as it is
    exchanged: int = 0
    jwks_reads: int = 0
    redeemed: set[str] = field(default_factory=set)  # challenges whose code was used

    def reset(self) -> None:
        self.nonce = self.challenge = ""
        self.claims = {}
        self.sign_with_other_key = False
        self.hang = 0.0
        self.raw_token = None
        self.exchanged = self.jwks_reads = 0
        self.redeemed = set()

    def rotate(self) -> None:
        """A new signing key under a new `kid`, the old one no longer published."""
        self.key = ECKey.generate_key("P-256", private=True)
        self.kid = f"fake-key-{secrets.token_hex(4)}"

    def expect(self, authorization_url: str) -> dict[str, str]:
        query = {k: v[0] for k, v in parse_qs(urlsplit(authorization_url).query).items()}
        self.nonce, self.challenge = query["nonce"], query["code_challenge"]
        return query

    def id_token(self) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": "fake-subject-1",
            "aud": CLIENT_ID,
            "exp": now + 300,
            "iat": now,
            "nonce": self.nonce,
            "email": "alice@example.com",
            "email_verified": True,
        } | self.claims
        key = self.other_key if self.sign_with_other_key else self.key
        header = {"alg": "ES256", "kid": self.kid}
        payload = json.dumps({k: v for k, v in claims.items() if v is not None})
        return jws.serialize_compact(header, payload, key, registry=registry("ES256"))

    def app(self) -> Starlette:
        async def discovery(_request: Request) -> Response:
            return JSONResponse(
                {
                    "issuer": self.issuer,
                    "authorization_endpoint": f"{self.issuer}/authorize",
                    "token_endpoint": f"{self.issuer}/token",
                    "jwks_uri": f"{self.issuer}/jwks",
                    "id_token_signing_alg_values_supported": ["ES256"],
                    "code_challenge_methods_supported": ["S256"],
                }
            )

        async def jwks(_request: Request) -> Response:
            self.jwks_reads += 1
            public = self.key.as_dict(private=False) | {"kid": self.kid, "use": "sig"}
            return JSONResponse({"keys": [public]})

        async def token(request: Request) -> Response:
            if self.hang:
                await anyio.sleep(self.hang)
            form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
            expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
            verifier = str(form.get("code_verifier") or "")
            digest = hashlib.sha256(verifier.encode()).digest()
            challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            if request.headers.get("authorization") != expected:
                return JSONResponse({"error": "invalid_client"}, 401)
            if form.get("code") != "fake-code" or challenge != self.challenge:
                return JSONResponse({"error": "invalid_grant"}, 400)
            if challenge in self.redeemed:  # RFC 6749 §4.1.2: a code is used once
                return JSONResponse({"error": "invalid_grant"}, 400)
            self.redeemed.add(challenge)
            self.exchanged += 1
            return JSONResponse(
                {
                    "access_token": "at",
                    "token_type": "Bearer",
                    "id_token": self.raw_token or self.id_token(),
                }
            )

        async def drip(_request: Request) -> Response:
            """A JSON document one byte every 0.2 s: 4 s in all, each byte in time."""

            async def body() -> AsyncIterator[bytes]:
                for _ in range(20):
                    await anyio.sleep(0.2)
                    yield b" "
                yield b"{}"

            return StreamingResponse(body(), media_type="application/json")

        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", discovery),
                Route("/jwks", jwks),
                Route("/token", token, methods=["POST"]),
                Route("/drip", drip),
            ]
        )


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeUpstream]:
    port = free_port()
    fake = FakeUpstream(f"http://127.0.0.1:{port}")
    config = uvicorn.Config(fake.app(), host="127.0.0.1", port=port, log_level="warning")
    config.timeout_graceful_shutdown = 0
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the fake upstream did not start"
        time.sleep(0.01)
    try:
        yield fake
    finally:
        server.should_exit = True
        thread.join(timeout=5)


@pytest.fixture
def fake_upstream(fake_server: FakeUpstream) -> FakeUpstream:
    fake_server.reset()
    return fake_server

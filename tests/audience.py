"""Test support for RFC 8707 audiences: registered resource servers, clients allowed some of
them, the user's consent to them, and a `Verifier` that reaches the in-process app."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import anyio
import httpx
import httpx2
from starlette.testclient import TestClient

from baton.core.clock import FakeClock
from baton.core.tokens import TokenKind, mint, random_id
from baton.resource import Verifier
from baton.store.base import Client, NewCode
from baton.store.sql import SQLStore
from tests.support import ISSUER, REDIRECT_URI, RegisteredClient

API_A = "https://a.api.test"
API_B = "https://b.api.test"
API_C = "https://c.api.test"


def register(
    store: SQLStore,
    *,
    resource_uri: str | None = None,
    allowed: Iterable[str] = (),
    scope: str = "read write",
    name: str = "test client",
) -> RegisteredClient:
    """A confidential client; with `resource_uri`, a resource server identified by it."""
    secret = mint(TokenKind.CLIENT_SECRET)
    client = Client(
        id=random_id("cl_"),
        name=name,
        secret_digest=secret.digest,
        is_public=False,
        is_resource_server=resource_uri is not None,
        redirect_uris=(REDIRECT_URI,),
        scope=scope,
        created_at=0,
        resource_uri=resource_uri,
        allowed_resources=tuple(allowed),
    )
    anyio.run(store.create_client, client)
    return RegisteredClient(client.id, secret.plaintext)


def client_credentials(
    http: TestClient, client: RegisteredClient, *resources: str
) -> httpx2.Response:
    """client_credentials, naming each of `resources` (RFC 8707: the parameter may repeat)."""
    data = {"grant_type": "client_credentials", "resource": list(resources)}
    return http.post("/token", data=data, auth=client.basic)


def consent_to_every_allowed_resource(store: SQLStore, allowed: Iterable[str]) -> None:
    """Codes issued from now on carry `allowed`: what `/authorize` records when the request names
    no `resource` and the user consents (none named = every resource the client is allowed).
    Codes that already name resources keep them."""
    resources = tuple(allowed)
    save = store.save_code

    async def save_code(code: NewCode) -> None:
        await save(code if code.resources else dataclasses.replace(code, resources=resources))

    store.save_code = save_code  # type: ignore[method-assign]


def in_process_verifier(
    http: TestClient, clock: FakeClock, resource_server: RegisteredClient, audience: Any
) -> Verifier:
    """A `Verifier` whose introspections and JWKS fetches are answered by the app under test
    (no feed: every token is introspected, JWTs checked locally as well)."""

    def forward(request: httpx.Request) -> httpx.Response:
        answer = http.request(
            request.method,
            request.url.path,
            content=request.content,
            headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
        )
        return httpx.Response(
            answer.status_code,
            headers={"content-type": answer.headers.get("content-type", "application/json")},
            content=answer.content,
        )

    assert resource_server.secret is not None
    return Verifier(
        ISSUER,
        resource_server.id,
        resource_server.secret,
        audience=audience,
        feed=False,
        transport=httpx.MockTransport(forward),
        clock=lambda: float(clock.now()),
    )

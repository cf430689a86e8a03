"""Relying parties for the logout tests: an OpenID Connect app on a key-encryption key, clients
with logout settings, sign-ins whose grants know their session, and the ID tokens and logout
tokens checked against the server's published keys."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import anyio
from joserfc import jws
from joserfc.jwk import KeySet
from sqlalchemy import Connection, select, update
from starlette.testclient import TestClient

from baton.core.clock import FakeClock
from baton.core.jwa import registry
from baton.core.keys import generate, key_encryption_key
from baton.core.tokens import TokenKind, mint, random_id
from baton.server.runtime.context import Baton
from baton.store.base import Client
from baton.store.schema import grants, sessions, webhook_outbox
from baton.store.sql import SQLStore
from tests.support import ISSUER, REDIRECT_URI, RegisteredClient, authorize, running_app

KEK = "a key-encryption key of the logout tests, 32+ characters"
AFTER_LOGOUT = "https://rp.example/signed-out"
BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"


@contextmanager
def oidc_app(
    database: Path | str, clock: FakeClock | None = None, **settings: Any
) -> Iterator[tuple[TestClient, SQLStore, FakeClock]]:
    """The app with OpenID Connect on (a key-encryption key) and an RS256 key to sign with."""
    with running_app(database, clock=clock, key_encryption_key=KEK, **settings) as running:
        http, store, clock = running
        app: Baton = http.app.state.baton  # type: ignore[attr-defined]
        now = clock.now()
        if app.keys.key_for("RS256", now) is None:
            key = generate("RS256", now - 1, now - 1, key_encryption_key(KEK))
            anyio.run(store.add_signing_key, key, None)
            anyio.run(app.keys.reload, now)
        yield running


def register_rp(
    store: SQLStore,
    *,
    backchannel_uri: str | None = None,
    session_required: bool = False,
    post_logout: tuple[str, ...] = (AFTER_LOGOUT,),
    name: str = "relying party",
) -> RegisteredClient:
    secret = mint(TokenKind.CLIENT_SECRET)
    client = Client(
        id=random_id("cl_"),
        name=name,
        secret_digest=secret.digest,
        is_public=False,
        is_resource_server=False,
        redirect_uris=(REDIRECT_URI,),
        scope="openid offline_access read",
        created_at=0,
        post_logout_redirect_uris=post_logout,
        backchannel_logout_uri=backchannel_uri,
        backchannel_logout_session_required=session_required,
    )
    anyio.run(store.create_client, client)
    return RegisteredClient(client.id, secret.plaintext)


def sign_in_to(
    http: TestClient, store: SQLStore, client: RegisteredClient, scope: str
) -> dict[str, Any]:
    """The code flow through the login and consent pages; the token response, with `grant_id`
    and the session's `sid`.

    The grant's `sid` is the browser session's (the authorization request's part of the issue
    writes both); where they are not written yet, this test support writes them, as they would
    be, so that the logout's part is tested on its own."""
    query, verifier = authorize(http, client, scope=scope)
    data = {
        "grant_type": "authorization_code",
        "code": query["code"][0],
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier,
    }
    response = http.post("/token", data=data, auth=client.basic)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    introspected = http.post("/introspect", data={"token": body["access_token"]}, auth=client.basic)
    grant_id = introspected.json()["grant_id"]

    def bind(conn: Connection) -> str:
        live = conn.execute(
            select(sessions.c.digest, sessions.c.sid)
            .where(sessions.c.ended_at.is_(None))
            .order_by(sessions.c.created_at.desc())
        ).first()
        assert live is not None
        sid = live.sid
        if sid is None:
            sid = secrets.token_urlsafe(16)
            conn.execute(update(sessions).where(sessions.c.digest == live.digest).values(sid=sid))
        conn.execute(
            update(grants).where(grants.c.id == grant_id, grants.c.sid.is_(None)).values(sid=sid)
        )
        found = conn.execute(select(grants.c.sid).where(grants.c.id == grant_id)).scalar()
        assert isinstance(found, str)
        return found

    body["grant_id"] = grant_id
    body["sid"] = anyio.run(store.runner.write, bind)
    return body


def id_token(http: TestClient, client: RegisteredClient, signed_in: dict[str, Any]) -> str:
    """The ID token of the sign-in: the token response's, or (where ID tokens are not issued
    yet) one signed as the ID token's part signs them."""
    if isinstance(signed_in.get("id_token"), str):
        return str(signed_in["id_token"])
    app: Baton = http.app.state.baton  # type: ignore[attr-defined]
    now = app.clock.now()
    key = app.keys.key_for("RS256", now)
    assert key is not None
    claims = {
        "iss": ISSUER,
        "sub": "alice",
        "aud": client.id,
        "iat": now,
        "exp": now + 300,
        "sid": signed_in["sid"],
    }
    header = {"alg": key.alg, "kid": key.kid}
    body = json.dumps(claims).encode()
    return jws.serialize_compact(header, body, key.jose_key, registry=registry(key.alg))


def outbox_rows(store: SQLStore) -> list[Any]:
    def work(conn: Connection) -> list[Any]:
        return list(conn.execute(select(webhook_outbox).order_by(webhook_outbox.c.id)).all())

    return anyio.run(store.inspect, work)


def logouts(store: SQLStore) -> list[Any]:
    """The outbox's back-channel logout rows."""
    return [row for row in outbox_rows(store) if row.destination is not None]


def logout_token_of(body: bytes) -> str:
    """Back-Channel Logout §2.5: the POST's form body holds exactly `logout_token`."""
    form = parse_qs(body.decode())
    assert list(form) == ["logout_token"] and len(form["logout_token"]) == 1
    return form["logout_token"][0]


def verified_logout_token(http: TestClient, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) of a logout token whose signature verifies against the server's JWKS."""
    keys = KeySet.import_key_set(http.get("/jwks.json").json())
    header = jws.extract_compact(token.encode()).headers()
    verified = jws.deserialize_compact(token, keys, registry=registry(header["alg"]))
    return header, json.loads(verified.payload)


def wait_for(condition: Any, seconds: float) -> float:
    """Polls `condition` until it holds or `seconds` pass; how long it took (monotonic)."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > seconds:
            raise AssertionError(f"not within {seconds} s")
        time.sleep(0.01)
    return time.monotonic() - started

"""Two key rotations at once (two `POST /keys/rotate`, or the API and `baton keys rotate`) never
leave a token signed by a key that leaves the JWKS before the token expires: each rotation reads
the keys and inserts its own in one transaction serialized with the other, never retires a key
newer than its own, and the server signs with a key that outlasts what it signs.

In-process under a fake clock, on SQLite and on PostgreSQL (skipped with a reason when it is
down)."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import httpx

from baton.core.keys import StoredKey, generate, key_encryption_key
from baton.server.runtime.context import Baton
from baton.store.admin import Actor
from tests.databases import empty_tables
from tests.support import register_client, running_app

KEK = "k" * 40
API = "/admin/api/v1"
SCOPES = "admin:keys:read admin:keys:write"


def _two_rotations(app: Any, bearer: dict[str, str], body: dict[str, Any]) -> list[int]:
    statuses: list[int] = []

    async def both() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://baton.test") as c:

            async def one() -> None:
                answer = await c.post(f"{API}/keys/rotate", json=body, headers=bearer)
                statuses.append(answer.status_code)

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(one)
                tasks.start_soon(one)

    anyio.run(both)
    return statuses


def _jwt_kid(token: str) -> str:
    header = token.split(".")[0]
    kid: str = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]
    return kid


def _every_token_verifies_until_it_expires(where: Path | str) -> None:
    with running_app(
        where, key_encryption_key=KEK, access_token_format="jwt", signing_alg="ES256"
    ) as (http, store, clock):
        admin = register_client(store, scope=f"{SCOPES} read", name="key admin")
        data = {"grant_type": "client_credentials", "scope": SCOPES}
        token = http.post("/token", data=data, auth=admin.basic).json()["access_token"]
        bearer = {"Authorization": f"Bearer {token}"}
        assert _two_rotations(http.app, bearer, {"publish_ahead": 600}) == [200, 200]
        # Past the new keys' activation, at any moment until the old ones retire.
        for advance in (600, 1800, 3000):
            clock.advance(advance - (clock.now() - 1_700_000_000))
            app: Baton = http.app.state.baton  # type: ignore[attr-defined]
            anyio.run(app.keys.reload, clock.now())
            data = {"grant_type": "client_credentials", "scope": "read"}
            answer = http.post("/token", data=data, auth=admin.basic).json()
            kid, expires = _jwt_kid(answer["access_token"]), clock.now() + answer["expires_in"]
            published = http.get("/jwks.json").json()["keys"]
            assert kid in {k["kid"] for k in published}
            at_expiry = [k for k in anyio.run(store.signing_keys) if k.kid == kid]
            assert at_expiry[0].published(expires - 1), (advance, at_expiry)


def test_two_rotations_at_once_strand_no_token_on_sqlite(tmp_path: Path) -> None:
    _every_token_verifies_until_it_expires(tmp_path)


def test_two_rotations_at_once_strand_no_token_on_postgresql(postgres_database: str) -> None:
    empty_tables(postgres_database)
    _every_token_verifies_until_it_expires(postgres_database)


def _second_rotation_plans_from_the_first(where: Path | str) -> None:
    """The store's rotation: the second of two racing transactions reads the first's key."""
    with running_app(where, key_encryption_key=KEK) as (_http, store, clock):
        kek = key_encryption_key(KEK)
        seen: list[set[str]] = []
        first_inside = threading.Event()

        def window(keys: Sequence[StoredKey]) -> tuple[int, int | None]:
            seen.append({k.kid for k in keys})
            if len(seen) == 1:
                first_inside.set()
                time.sleep(0.3)  # the other rotation starts while this one holds its read
            return clock.now(), clock.now() + 3600

        made = [generate("ES256", clock.now(), clock.now(), kek) for _ in range(2)]
        actor = Actor("client:racer", None, clock.now())

        async def both() -> None:
            async def second() -> None:
                await anyio.to_thread.run_sync(first_inside.wait)
                await store.admin().add_signing_key_audited(made[1], window, actor)

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(store.admin().add_signing_key_audited, made[0], window, actor)
                tasks.start_soon(second)

        anyio.run(both)
        assert len(seen) == 2 and made[0].kid in seen[1], seen
        keys = {k.kid: k for k in anyio.run(store.signing_keys)}
        assert keys[made[0].kid].retires_at is not None
        assert keys[made[1].kid].retires_at is None


def test_racing_rotations_are_serialized_on_sqlite(tmp_path: Path) -> None:
    _second_rotation_plans_from_the_first(tmp_path)


def test_racing_rotations_are_serialized_on_postgresql(postgres_database: str) -> None:
    empty_tables(postgres_database)
    _second_rotation_plans_from_the_first(postgres_database)


def test_a_rotation_never_retires_a_newer_key(tmp_path: Path) -> None:
    """A CLI run whose clock is behind the server's (or that planned before another rotation
    committed) replaces only the keys older than its own."""
    with running_app(tmp_path, key_encryption_key=KEK) as (_http, store, clock):
        kek = key_encryption_key(KEK)
        now = clock.now()
        newer = generate("ES256", now + 100, now + 100, kek)
        actor = Actor("client:racer", None, now)
        anyio.run(store.admin().add_signing_key_audited, newer, lambda _: (now + 100, None), actor)
        late = generate("ES256", now, now, kek)
        anyio.run(store.admin().add_signing_key_audited, late, lambda _: (now, now + 60), actor)
        keys = {k.kid: k for k in anyio.run(store.signing_keys)}
        assert keys[newer.kid].retires_at is None

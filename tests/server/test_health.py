"""The health probes: `/healthz` (the process is up) and `/readyz` (database reachable, schema
current, a signing key loaded for JWTs), with no session, no rate limit and no access-log line."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from baton.config import Settings
from baton.server.app import create_app
from baton.store.sql import SQLStore
from tests.one_hop import OneHopTestClient
from tests.server.test_observe import json_lines, parsed
from tests.support import ISSUER, running_app


def test_healthz_says_the_process_is_up_and_nothing_is_kept(tmp_path: Path) -> None:
    with running_app(tmp_path) as (http, _store, _clock):
        response = http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["cache-control"] == "no-store"
    assert "set-cookie" not in response.headers  # no session for a probe


def test_readyz_is_ready_on_a_migrated_database(tmp_path: Path) -> None:
    with running_app(tmp_path) as (http, _store, _clock):
        response = http.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "migrations": "ok"}}
    assert response.headers["cache-control"] == "no-store"


def test_readyz_checks_the_signing_key_when_access_tokens_are_jwts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kek = "k" * 32
    with running_app(tmp_path, access_token_format="jwt", key_encryption_key=kek) as (
        http,
        _store,
        _clock,
    ):
        assert http.get("/readyz").json()["checks"]["signing_key"] == "ok"
        keys = http.app.state.baton.keys  # type: ignore[attr-defined]
        monkeypatch.setattr(keys, "key_at", lambda now: None)
        response = http.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["signing_key"] == "none loaded"


def test_readyz_names_a_pending_migration(tmp_path: Path) -> None:
    # A database nobody migrated: the process is alive, but must get no traffic yet.
    store = SQLStore.open(str(tmp_path / "empty.db"))
    app = create_app(Settings(issuer=ISSUER), store)
    http = OneHopTestClient(app, base_url=ISSUER)  # no lifespan: its key load needs the schema
    assert http.get("/healthz").status_code == 200
    response = http.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {
        "status": "not_ready",
        "checks": {"database": "ok", "migrations": "pending: run `baton db upgrade`"},
    }


def test_readyz_says_the_database_is_unreachable_and_healthz_does_not_care(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_app(tmp_path) as (http, store, _clock):

        async def away() -> str | None:
            raise OperationalError("SELECT 1", {}, ConnectionRefusedError("refused"))

        monkeypatch.setattr(store, "schema_problem", away)
        ready = http.get("/readyz")
        alive = http.get("/healthz")
    assert ready.status_code == 503
    assert ready.json() == {"status": "not_ready", "checks": {"database": "unreachable"}}
    assert alive.status_code == 200


def test_probes_are_never_rate_limited_nor_logged_but_other_requests_are(tmp_path: Path) -> None:
    with running_app(tmp_path, rate_limit_address=1) as (http, _store, _clock), json_lines() as out:
        statuses = [http.get(path).status_code for path in ["/healthz", "/readyz"] * 10]
        http.get("/openapi.json")
    assert statuses == [200] * 20
    logged = [line["path"] for line in parsed(out) if line["logger"] == "baton.access"]
    assert logged == ["/openapi.json"]

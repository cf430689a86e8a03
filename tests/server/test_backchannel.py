"""Back-Channel Logout 1.0 through the outbox: a relying party on loopback is told within a
second of a reuse detection, by a logout token that verifies against /jwks.json; a failed
delivery is retried; an administrator's revocation tells it too; plain OAuth grants and clients
without a back-channel URI cost nothing."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy import Connection, update

from baton.core.vocabulary import RevocationCause
from baton.store.admin import Actor
from baton.store.schema import grants
from baton.store.sql import outbox
from tests.server.logout_support import (
    BACKCHANNEL_EVENT,
    logout_token_of,
    logouts,
    oidc_app,
    register_rp,
    sign_in_to,
    verified_logout_token,
    wait_for,
)
from tests.support import (
    ISSUER,
    RegisteredClient,
    first_pair,
    refresh,
    register_client,
    register_user,
)
from tests.webhook_receiver import Receiver, receiver

__all__ = ["receiver"]  # a fixture


def test_a_relying_party_gets_a_valid_logout_token_within_a_second_of_a_reuse(
    database: Path | str, receiver: Receiver
) -> None:
    # No webhook is configured: the delivery loop runs for back-channel logouts all the same.
    # Its poll is slow here: the token must come from the wake-up of the reuse's commit.
    with oidc_app(database, webhook_poll_interval=5) as (http, store, clock):
        register_user(store)
        rp = register_rp(store, backchannel_uri=receiver.url)
        grant = sign_in_to(http, store, rp, "openid offline_access read")
        assert refresh(http, rp, grant["refresh_token"]).status_code == 200
        clock.advance(601)  # past the leeway
        started = time.monotonic()
        reused = refresh(http, rp, grant["refresh_token"])
        assert reused.status_code == 400 and "reuse" in reused.json()["error_description"]
        wait_for(lambda: len(receiver.received) == 1, 1.0)
        assert time.monotonic() - started < 1.0  # from the reuse's request to the token's arrival

        (received,) = receiver.received
        assert received.headers["Content-Type"] == "application/x-www-form-urlencoded"
        token = logout_token_of(received.body)
        header, claims = verified_logout_token(http, token)
        now = clock.now()
        # Back-Channel Logout 1.0 §2.4.
        assert header["typ"] == "logout+jwt" and header["alg"] == "RS256"
        assert claims["iss"] == ISSUER and claims["aud"] == rp.id
        assert claims["sub"] == "alice" and claims["sid"] == grant["sid"]
        assert claims["events"] == {BACKCHANNEL_EVENT: {}}
        assert claims["iat"] == now and 0 < claims["exp"] - now <= 120
        assert isinstance(claims["jti"], str) and len(claims["jti"]) >= 16
        assert "nonce" not in claims
        wait_for(lambda: logouts(store)[0].delivered_at is not None, 2.0)
        # The row holds the claims to sign, never the signed token.
        (row,) = logouts(store)
        assert token not in row.payload and json.loads(row.payload)["jti"] == claims["jti"]


def test_a_failed_delivery_is_retried_with_the_same_jti(
    database: Path | str, receiver: Receiver
) -> None:
    receiver.fail_first = 1
    with oidc_app(database, webhook_backoff_base=1) as (http, store, clock):
        register_user(store)
        rp = register_rp(store, backchannel_uri=receiver.url)
        grant = sign_in_to(http, store, rp, "openid offline_access read")
        assert refresh(http, rp, grant["refresh_token"]).status_code == 200
        clock.advance(601)
        assert refresh(http, rp, grant["refresh_token"]).status_code == 400
        wait_for(lambda: logouts(store)[0].last_error == "HTTP 500", 2.0)
        (row,) = logouts(store)
        assert row.delivered_at is None and row.attempts == 1
        clock.advance(2)  # past its backoff
        wait_for(lambda: len(receiver.received) == 1, 2.0)
        wait_for(lambda: logouts(store)[0].delivered_at is not None, 2.0)
        assert receiver.answered == 2 and logouts(store)[0].attempts == 2
        _header, claims = verified_logout_token(http, logout_token_of(receiver.received[0].body))
        assert claims["jti"] == json.loads(row.payload)["jti"]


@pytest.mark.parametrize("path", ["cli", "console"])
def test_an_administrators_revocation_tells_the_relying_party(
    database: Path | str, receiver: Receiver, path: str
) -> None:
    with oidc_app(database) as (http, store, clock):
        register_user(store)
        rp = register_rp(store, backchannel_uri=receiver.url)
        grant = sign_in_to(http, store, rp, "openid read")
        if path == "cli":  # `baton grants revoke`
            revoked = anyio.run(
                store.revoke_grant, grant["grant_id"], clock.now(), RevocationCause.ADMIN
            )
        else:
            actor = Actor("root", None, clock.now())
            revoked = anyio.run(store.admin().revoke_grant, grant["grant_id"], actor)
        assert revoked
        wait_for(lambda: len(receiver.received) == 1, 2.0)
        _header, claims = verified_logout_token(http, logout_token_of(receiver.received[0].body))
        assert claims["aud"] == rp.id and claims["sid"] == grant["sid"]
        assert claims["sub"] == "alice"


def test_plain_oauth_grants_and_clients_without_a_uri_send_nothing_and_read_nothing_more(
    database: Path | str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reuse path's cost: a plain OAuth grant never looks for a back-channel URI; an
    OpenID Connect grant looks once (`outbox.logouts_for`: one read of its client)."""
    looked: list[str] = []
    original = outbox.logouts_for

    def counting(conn: Connection, sessions: Any, now: int) -> list[str]:
        wanted = list(sessions)
        looked.extend(client_id for client_id, _subject, _sid in wanted)
        return original(conn, wanted, now)

    monkeypatch.setattr(outbox, "logouts_for", counting)
    with oidc_app(database) as (http, store, clock):
        register_user(store)
        plain = register_client(store, scope="read")  # no openid, no back-channel URI
        rp = register_rp(store)  # OpenID Connect, no back-channel URI
        told = register_rp(store, backchannel_uri=receiver.url, name="told")

        def reuse(client: RegisteredClient, scope: str) -> None:
            if "openid" in scope:
                grant = sign_in_to(http, store, client, scope)
            else:
                grant = first_pair(http, client, scope)
            assert refresh(http, client, grant["refresh_token"]).status_code == 200
            clock.advance(601)
            assert refresh(http, client, grant["refresh_token"]).status_code == 400

        reuse(plain, "read")
        assert looked == []
        reuse(rp, "openid offline_access read")
        reuse(told, "openid offline_access read")
        assert looked == [rp.id, told.id]
        assert [row.destination for row in logouts(store)] == [receiver.url]


def test_a_client_that_requires_sid_gets_no_token_without_one(
    database: Path | str, receiver: Receiver
) -> None:
    with oidc_app(database) as (http, store, clock):
        register_user(store)
        rp = register_rp(store, backchannel_uri=receiver.url, session_required=True)
        grant = sign_in_to(http, store, rp, "openid read")

        def forget_sid(conn: Connection) -> None:
            conn.execute(update(grants).values(sid=None))

        anyio.run(store.runner.write, forget_sid)
        anyio.run(store.revoke_grant, grant["grant_id"], clock.now(), RevocationCause.ADMIN)
        assert logouts(store) == []

"""The store writes the members of `baton.core.vocabulary`; the database holds their plain strings.

A `StrEnum` member is a `str`, but it reaches the database by three roads: a `Prepared`
statement bound on the driver's cursor (fast paths on), the same statement through
`Connection.execute` (fast paths off), and ordinary Core statements (an `executemany`, a typed
`literal`). Each revocation cause, security event kind, feed entry kind and webhook event type
is written here through the store's own transactions, on both databases, both ways, then read
back with raw SQL: the rows hold the values themselves (never `RevocationCause.REUSE`), as
plain `str`, equal to the members; and the webhook payloads say the same words.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy import Connection, text

from baton.core.pairs import MintedPair
from baton.core.rules import CodeProblem, CodeRedemption
from baton.core.tokens import TokenKind, digest, mint
from baton.core.vocabulary import (
    FeedEntryKind,
    RevocationCause,
    SecurityEventKind,
    WebhookEventType,
)
from baton.store.admin import Actor
from baton.store.base import Client, CodeRefused, Issued, NewCode, Refused, Replayed
from baton.store.sql import SQLStore
from tests.store.test_prepared_switch import store_with
from tests.store.test_sql_store import NOW, ask_for, first_pair
from tests.support import register_client, register_user

LATER = NOW + 601  # past the default leeway (600 s)


def _client(store: SQLStore, client_id: str) -> Client:
    found = anyio.run(store.get_client, client_id)
    assert found is not None
    return found


def write_every_word(store: SQLStore) -> dict[RevocationCause, str]:
    """Each revocation cause once, each on its own grant; the grant ids by cause."""
    register_user(store)
    client_id = register_client(store).id
    client = _client(store, client_id)
    by_cause: dict[RevocationCause, str] = {}

    # A refresh token retried inside its leeway (leeway_retry), then after it: reuse.
    pair = first_pair(store, client_id)
    assert pair.refresh_token is not None
    assert isinstance(anyio.run(store.exchange, ask_for(pair.refresh_token, client_id)), Issued)
    assert isinstance(anyio.run(store.exchange, ask_for(pair.refresh_token, client_id)), Replayed)
    reused = anyio.run(store.exchange, ask_for(pair.refresh_token, client_id, LATER))
    assert isinstance(reused, Refused) and reused.revoked_grant
    by_cause[RevocationCause.REUSE] = pair.grant_id

    # A code presented twice: code_reuse.
    code = mint(TokenKind.CODE)
    anyio.run(store.save_code, NewCode(code.digest, client_id, 1, None, "read", None, NOW, LATER))
    ask = CodeRedemption(client_id, None, None)
    issued = anyio.run(store.redeem_code, code.digest, ask, MintedPair.new(), NOW, None)
    assert isinstance(issued, Issued)
    again = anyio.run(store.redeem_code, code.digest, ask, MintedPair.new(), NOW + 1, None)
    assert isinstance(again, CodeRefused) and again.problem is CodeProblem.REUSED
    by_cause[RevocationCause.CODE_REUSE] = issued.pair.grant_id

    # The client's own revocation of a refresh token (RFC 7009), and of an access token alone:
    # a feed entry of each kind.
    revoked = first_pair(store, client_id)
    assert revoked.refresh_token is not None
    answer = anyio.run(store.revoke_token, client, digest(revoked.refresh_token), True, NOW + 2)
    assert answer == "grant"
    by_cause[RevocationCause.REVOKED] = revoked.grant_id
    lone = first_pair(store, client_id)
    answer = anyio.run(store.revoke_token, client, digest(lone.access_token), False, NOW + 2)
    assert answer == "access_token"

    # An administrator's revocation, by the CLI's path and by the console's.
    admin = first_pair(store, client_id)
    assert anyio.run(store.revoke_grant, admin.grant_id, NOW + 3, RevocationCause.ADMIN)
    by_cause[RevocationCause.ADMIN] = admin.grant_id
    assert anyio.run(store.admin().revoke_grant, lone.grant_id, Actor("root", None, NOW + 3))

    # A client disabled: its grants revoked in one go (an executemany and Core statements).
    other_id = register_client(store, name="other").id
    disabled = first_pair(store, other_id)
    done = anyio.run(store.admin().disable_client, other_id, Actor("root", None, NOW + 4))
    assert done is not None and done.grants_revoked == 1
    by_cause[RevocationCause.CLIENT_DISABLED] = disabled.grant_id

    # The user signing out at the provider: the session's grant (no offline_access) ends.
    signed_in = first_pair(store, client_id)
    cookie = digest("session:vocabulary")

    def sign_in(conn: Connection) -> None:
        conn.execute(
            text(
                "INSERT INTO sessions (digest, user_id, created_at, expires_at, sid) "
                "VALUES (:digest, 1, :now, :later, 'sid-vocabulary')"
            ),
            {"digest": cookie, "now": NOW, "later": NOW + 3600},
        )
        conn.execute(
            text("UPDATE grants SET sid = 'sid-vocabulary' WHERE id = :id"),
            {"id": signed_in.grant_id},
        )

    anyio.run(store.runner.write, sign_in)
    assert anyio.run(store.end_op_session, cookie, NOW + 5).revoked == (signed_in.grant_id,)
    by_cause[RevocationCause.LOGOUT] = signed_in.grant_id
    return by_cause


def _rows(sql: str) -> Any:
    def work(conn: Connection) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in conn.execute(text(sql))]

    return work


@pytest.mark.parametrize("fast_paths", [True, False], ids=["fast", "plain"])
def test_members_are_stored_and_read_back_as_their_plain_strings(
    database: Path | str, fast_paths: bool
) -> None:
    store = store_with(database, fast_paths)
    try:
        by_cause = write_every_word(store)
        read = anyio.run(store.inspect, _rows("SELECT id, revoked_reason FROM grants"))
        events = anyio.run(store.inspect, _rows("SELECT kind FROM security_events"))
        feed = anyio.run(store.inspect, _rows("SELECT kind FROM revocation_events"))
        outbox = anyio.run(store.inspect, _rows("SELECT event_type, payload FROM webhook_outbox"))
        # The database compares them with its own literals: the stored text is the value.
        reuse = anyio.run(
            store.inspect, _rows("SELECT id FROM grants WHERE revoked_reason = 'reuse'")
        )
        grant = anyio.run(store.get_grant, by_cause[RevocationCause.CODE_REUSE])
        kinds = [e.kind for e in anyio.run(store.security_events)]
    finally:
        anyio.run(store.close)

    reasons = {grant_id: reason for grant_id, reason in read}
    for cause, grant_id in by_cause.items():
        assert reasons[grant_id] == cause and type(reasons[grant_id]) is str
    assert {reason for reason in reasons.values() if reason is not None} == set(RevocationCause)
    assert reuse == [(by_cause[RevocationCause.REUSE],)]
    assert grant is not None and grant.revoked_reason == RevocationCause.CODE_REUSE
    assert type(grant.revoked_reason) is str

    assert {kind for (kind,) in events} == set(SecurityEventKind) - {"login_lockout"}
    assert all(type(kind) is str for (kind,) in events + feed)
    assert set(kinds) == {kind for (kind,) in events}
    assert {kind for (kind,) in feed} == set(FeedEntryKind)

    assert {event_type for event_type, _ in outbox} == set(WebhookEventType)
    payloads = [json.loads(payload) for _, payload in outbox]
    assert all(p["type"] == event_type for p, (event_type, _) in zip(payloads, outbox, strict=True))
    revoked = [p for p in payloads if p["type"] == WebhookEventType.GRANT_REVOKED]
    assert {p["reason"] for p in revoked} == set(RevocationCause)
    detected = [p for p in payloads if p["type"] == WebhookEventType.REUSE_DETECTED]
    assert sorted(p["kind"] for p in detected) == ["code_reuse", "refresh_token_reuse"]

"""The store's part of OpenID Connect at the token endpoint: a redeemed code hands its session
and sign-in to the grant (every later read of the grant carries them), its nonce to the first ID
token only; an OIDC grant without offline_access has no refresh token, and its lone access
token still dies with the grant."""

from __future__ import annotations

from pathlib import Path

import anyio
from sqlalchemy import select

from baton.core.facts import AccessFacts, GrantFacts, SignIn
from baton.core.pairs import MintedPair
from baton.core.rules import CodeRedemption, access_liveness
from baton.core.tokens import TokenKind, digest, mint
from baton.core.vocabulary import RevocationCause
from baton.store.base import ExchangeAsk, Issued, NewCode
from baton.store.schema import refresh_tokens
from baton.store.sql import SQLStore
from baton.store.sql.lifecycle import access_facts
from tests.support import migrated_store, register_client, register_user

NOW = 1_800_000_000
SIGN_IN = SignIn(auth_time=NOW - 10, acr="urn:x", amr=("pwd",), claims={"name": "Alice"})


class Recorder:
    """An ID token format that records what it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[GrantFacts, str, str | None, int]] = []

    def issue(self, grant: GrantFacts, access_token: str, nonce: str | None, issued_at: int) -> str:
        self.calls.append((grant, access_token, nonce, issued_at))
        return f"id-token-{len(self.calls)}"


def store_on(tmp_path: Path) -> SQLStore:
    store = migrated_store(tmp_path / "baton.db")
    register_user(store)
    return store


def redeem(store: SQLStore, client_id: str, scope: str, pair: MintedPair) -> Issued:
    code = mint(TokenKind.CODE)
    new = NewCode(
        code.digest,
        client_id,
        1,
        None,
        scope,
        None,
        NOW,
        NOW + 60,
        nonce="the-nonce",
        sid="sid_1",
        sign_in=SIGN_IN,
    )
    anyio.run(store.save_code, new)
    ask = CodeRedemption(client_id, None, None)
    result = anyio.run(store.redeem_code, code.digest, ask, pair, NOW, None)
    assert isinstance(result, Issued)
    return result


def test_the_grant_keeps_the_codes_session_and_sign_in(tmp_path: Path) -> None:
    store = store_on(tmp_path)
    client = register_client(store, scope="openid offline_access")
    ids = Recorder()
    first = redeem(store, client.id, "openid offline_access", MintedPair.new(id_tokens=ids))
    assert first.pair.id_token == "id-token-1"
    grant = anyio.run(store.get_grant, first.pair.grant_id)
    assert grant is not None and (grant.sid, grant.sign_in) == ("sid_1", SIGN_IN)
    (asked_grant, access_token, nonce, issued_at) = ids.calls[0]
    assert (asked_grant.sid, asked_grant.sign_in, asked_grant.subject) == (
        "sid_1",
        SIGN_IN,
        "alice",
    )
    assert (access_token, nonce, issued_at) == (first.pair.access_token, "the-nonce", NOW)

    assert first.pair.refresh_token is not None
    ask = ExchangeAsk(
        digest=digest(first.pair.refresh_token),
        client_id=client.id,
        scope=None,
        now=NOW + 60,
        source_address=None,
        child=MintedPair.new(id_tokens=ids),
        seal=None,
    )
    child = anyio.run(store.exchange, ask)
    assert isinstance(child, Issued) and child.pair.id_token == "id-token-2"
    refreshed_grant, access_token, nonce, issued_at = ids.calls[1]
    assert (refreshed_grant.sid, refreshed_grant.sign_in) == ("sid_1", SIGN_IN)
    assert (access_token, nonce, issued_at) == (child.pair.access_token, None, NOW + 60)


def test_no_offline_access_no_refresh_token_and_revocation_still_kills(tmp_path: Path) -> None:
    store = store_on(tmp_path)
    client = register_client(store, scope="openid")
    issued = redeem(store, client.id, "openid", MintedPair.new(id_tokens=Recorder())).pair
    assert issued.refresh_token is None and issued.id_token == "id-token-1"
    rows = anyio.run(
        store.inspect,
        lambda conn: conn.execute(
            select(refresh_tokens).where(refresh_tokens.c.grant_id == issued.grant_id)
        ).all(),
    )
    assert rows == []

    def read() -> AccessFacts:
        found = anyio.run(store.inspect, lambda conn: access_facts(conn, at_digest))
        assert isinstance(found, AccessFacts)
        return found

    at_digest = digest(issued.access_token)
    facts = read()
    assert facts.companion is None and access_liveness(facts, NOW + 1).active
    assert anyio.run(store.revoke_grant, issued.grant_id, NOW + 1, RevocationCause.REVOKED)
    assert not access_liveness(read(), NOW + 1).active

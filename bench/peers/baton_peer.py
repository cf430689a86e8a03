"""Seeding Baton for `bench/compare.py`: one confidential client and many grants, in bulk.

Each grant gets what an authorization code exchange would have written (a grant row, its first
refresh token and its access token, lifetimes and `jti` planned by `baton.core.pairs.plan_pair`,
as the token endpoint plans them) but all rows go in with a few multi-row INSERTs in one
transaction, through `SQLStore`'s own runner: `redeem_code` costs one committed transaction per
grant, far too slow for the tens of thousands of tokens a revocation run consumes. The seeding
is never timed.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from functools import partial

from sqlalchemy import Connection, insert, select

from baton.core.facts import GrantFacts
from baton.core.pairs import MintedPair, plan_pair
from baton.core.policy import Policy
from baton.core.tokens import TokenKind, mint, random_id
from baton.passwords import hash_password
from baton.store.base import Client, User
from baton.store.schema import access_tokens, grants, refresh_tokens
from baton.store.sql import SQLStore

SCOPE = "read write"
BATCH = 2000


@dataclass(frozen=True)
class Seeded:
    client_id: str
    client_secret: str
    pairs: list[tuple[str, str]]  # (access token, refresh token), one per grant


async def seed(db: str, grant_count: int) -> Seeded:
    """Registers a client and a user, then seeds `grant_count` live grants into `db`."""
    store = SQLStore.open(db)
    try:
        if not await store.schema_is_current():
            raise SystemExit(f"error: {db} is not migrated: run `baton db upgrade --db {db}`")
        now = int(time.time())
        client, secret, user = await register_client_and_user(store, "bench", SCOPE, now)
        pairs: list[tuple[str, str]] = []
        for start in range(0, grant_count, BATCH):
            count = min(BATCH, grant_count - start)
            batch = _plan(client.id, user.id, user.username, count, now, store.policy)
            await store.runner.write(partial(_insert, batch=batch))
            pairs.extend((p.access_token, p.refresh_token) for p in batch)
        return Seeded(client.id, secret, pairs)
    finally:
        await store.close()


async def register_client_and_user(
    store: SQLStore, name: str, scope: str, now: int
) -> tuple[Client, str, User]:
    """A confidential client (its secret returned in plaintext) and a user, for seeding."""
    secret = mint(TokenKind.CLIENT_SECRET)
    client = Client(
        id=random_id("cl_"),
        name=name,
        secret_digest=secret.digest,
        is_public=False,
        is_resource_server=False,
        redirect_uris=("http://127.0.0.1:9000/callback",),
        scope=scope,
        created_at=now,
    )
    await store.create_client(client)
    user = await store.create_user(
        f"bench-{secrets.token_hex(4)}", hash_password(secrets.token_urlsafe(16)), now
    )
    return client, secret.plaintext, user


@dataclass(frozen=True)
class _Planned:
    grant: GrantFacts
    refresh_digest: bytes
    refresh_token: str
    refresh_expires_at: int
    access_token: str
    access_digest: bytes
    access_expires_at: int
    jti: str


def _plan(
    client_id: str, user_id: int, subject: str, count: int, now: int, policy: Policy
) -> list[_Planned]:
    planned: list[_Planned] = []
    for _ in range(count):
        grant = GrantFacts(
            id=random_id("grt_"),
            client_id=client_id,
            user_id=user_id,
            subject=subject,
            scope=SCOPE,
            created_at=now,
            expires_at=policy.grant_expiry(now),
            revoked_at=None,
            revoked_reason=None,
        )
        minted = MintedPair.new()
        pair = plan_pair(grant, minted, 0, SCOPE, now, policy)
        assert minted.refresh is not None and pair.issued.refresh_expires_at is not None
        assert pair.issued.refresh_token is not None
        planned.append(
            _Planned(
                grant=grant,
                refresh_digest=minted.refresh.digest,
                refresh_token=pair.issued.refresh_token,
                refresh_expires_at=pair.issued.refresh_expires_at,
                access_token=pair.issued.access_token,
                access_digest=pair.access_digest,
                access_expires_at=pair.issued.access_expires_at,
                jti=pair.jti,
            )
        )
    return planned


def _insert(conn: Connection, *, batch: list[_Planned]) -> None:
    conn.execute(
        insert(grants),
        [
            {
                "id": p.grant.id,
                "client_id": p.grant.client_id,
                "user_id": p.grant.user_id,
                "scope": p.grant.scope,
                "created_at": p.grant.created_at,
                "expires_at": p.grant.expires_at,
            }
            for p in batch
        ],
    )
    conn.execute(
        insert(refresh_tokens),
        [
            {
                "digest": p.refresh_digest,
                "grant_id": p.grant.id,
                "parent_id": None,
                "generation": 0,
                "issued_at": p.grant.created_at,
                "expires_at": p.refresh_expires_at,
                # Its companion's `exp`, as the store writes it (`INSERT_REFRESH`).
                "access_expires_at": p.access_expires_at,
            }
            for p in batch
        ],
    )
    digests = [p.refresh_digest for p in batch]
    rows = conn.execute(
        select(refresh_tokens.c.digest, refresh_tokens.c.id).where(
            refresh_tokens.c.digest.in_(digests)
        )
    )
    ids = {digest: token_id for digest, token_id in rows}
    conn.execute(
        insert(access_tokens),
        [
            {
                "digest": p.access_digest,
                "grant_id": p.grant.id,
                "refresh_token_id": ids[p.refresh_digest],
                "generation": 0,
                "scope": SCOPE,
                "issued_at": p.grant.created_at,
                "expires_at": p.access_expires_at,
                "jti": p.jti,
                "audience": None,
            }
            for p in batch
        ],
    )

"""PostgreSQL's plans for the statements a revocation and a rotation run on `access_tokens`.

Each of them picks a grant's or a refresh token's access tokens by equality and also names
`expires_at`. With the equality column indexed alone, the planner could serve `expires_at` from
its own index instead: `max(expires_at) ... WHERE grant_id = $1` became a backward scan of every
access token until one of the grant's turned up, and the companion's announcement a bitmap AND
with a range over all live tokens. On a freshly filled table (no statistics yet, as after an
import or in the bench) that cost 5 ms of database CPU per revocation and 1.4 ms per refresh,
growing with the table. The composite indexes of migration 0004 make the equality and the range
one index condition, which the planner takes with or without statistics. Since migration 0005 a
grant's access tokens are found through their companion refresh tokens, one statement each (as a
join, the planner hashed a scan of the whole table on fresh statistics).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import anyio
import asyncpg
import pytest
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect

from baton.store.prepared import Prepared
from baton.store.sql.signals import access_by_digest_query
from baton.store.sql.statements import (
    ANNOUNCE_COMPANION,
    COMPANION_LAST_EXPIRY,
    COMPANIONS_BY_EXPIRY,
    UNPAIRED_LAST_EXPIRY,
)
from tests.databases import create_database, drop_database, plain_url

NOW = 1_700_000_000
ROWS = 20_000  # grants, each with one refresh and one access token


@pytest.fixture(scope="module")
def filled_database() -> Iterator[str]:
    """A database of its own: statistics are what the planner has right after the rows land."""
    url = create_database()
    try:
        anyio.run(_fill, url)
        yield url
    finally:
        drop_database(url)


async def _fill(url: str) -> None:
    conn = await asyncpg.connect(plain_url(url))
    try:
        await conn.execute(
            f"""
            INSERT INTO clients (id, name, is_public, is_resource_server, redirect_uris, scope,
                                 created_at)
            VALUES ('c', 'c', false, false, '[]', 'read', {NOW});
            INSERT INTO grants (id, client_id, scope, created_at, expires_at)
            SELECT 'g' || n, 'c', 'read', {NOW}, {NOW} + 86400 FROM generate_series(1, {ROWS}) n;
            INSERT INTO refresh_tokens (id, digest, grant_id, generation, issued_at, expires_at)
            SELECT n, sha256(('r' || n)::bytea), 'g' || n, 1, {NOW}, {NOW} + 86400
            FROM generate_series(1, {ROWS}) n;
            INSERT INTO access_tokens (digest, grant_id, refresh_token_id, generation, scope,
                                       issued_at, expires_at, jti)
            SELECT sha256(('a' || n)::bytea), 'g' || n, n, 1, 'read', {NOW} + n, {NOW} + 600 + n,
                   'j' || n
            FROM generate_series(1, {ROWS}) n;
            """
        )
    finally:
        await conn.close()


def plan_of(url: str, statement: Prepared, **params: Any) -> dict[str, Any]:
    dialect = asyncpg_dialect.dialect()  # type: ignore[no-untyped-call]
    sql, positional = statement._for(dialect)
    args = positional(params)

    async def explain() -> dict[str, Any]:
        conn = await asyncpg.connect(plain_url(url))
        try:
            text = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args)
        finally:
            await conn.close()
        plan: dict[str, Any] = json.loads(text)[0]["Plan"]
        return plan

    return anyio.run(explain)


def scans(plan: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(node type, index) of every node of the plan."""
    found = [(plan["Node Type"], plan.get("Index Name"))]
    for child in plan.get("Plans", []):
        found += scans(child)
    return found


def middle_row() -> int:
    return ROWS // 2


@pytest.mark.parametrize(
    ("statement", "index", "params"),
    [
        (COMPANIONS_BY_EXPIRY, "ix_refresh_tokens_grant_id_expires_at", {"grant_id": "g7"}),
        (COMPANION_LAST_EXPIRY, "ix_access_tokens_refresh_token_id_expires_at", {"key": 7}),
        (
            UNPAIRED_LAST_EXPIRY,
            "ix_access_tokens_unpaired_grant_id_expires_at",
            {"grant_id": "g7"},
        ),
    ],
)
def test_a_revocation_finds_its_grant_s_last_expiry_through_companions(
    filled_database: str, statement: Prepared, index: str, params: dict[str, Any]
) -> None:
    """A grant's companions newest expiry first, each one's access tokens, and the access
    tokens without a companion by the grant (migration 0005): each an index condition."""
    used = scans(plan_of(filled_database, statement, after=NOW, **params))
    assert ("Seq Scan", None) not in used, used
    assert all(i != "ix_access_tokens_expires_at" for _, i in used), used
    assert any(i == index for _, i in used), used


def test_a_rotation_finds_the_companion_by_its_refresh_token(filled_database: str) -> None:
    plan = plan_of(
        filled_database,
        ANNOUNCE_COMPANION,
        effective_at=NOW + 600,
        now=NOW,
        key=middle_row(),
        expiring_after=NOW + 600,
    )
    used = scans(plan)
    assert ("Seq Scan", None) not in used, used
    assert all(index != "ix_access_tokens_expires_at" for _, index in used), used
    assert any(index == "ix_access_tokens_refresh_token_id_expires_at" for _, index in used), used


def relation_scans(plan: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
    """(node type, relation, index) of every node of the plan."""
    found = [(plan["Node Type"], plan.get("Relation Name"), plan.get("Index Name"))]
    for child in plan.get("Plans", []):
        found += relation_scans(child)
    return found


@pytest.mark.parametrize("reported", [1, 1000])
def test_a_token_use_report_reads_its_tokens_through_the_digest_index(
    filled_database: str, reported: int
) -> None:
    """`POST /token-use` (issue 28) names tokens by digest, not by `jti` (which has no index,
    migration 0004): a report's tokens are found through the unique digest index, one
    statement for up to 1000 of them. With 1000 digests against this table of 20,000 rows the
    planner rightly prefers a scan (cheaper than 1000 probes of so small a table); with scans
    discouraged, as a table of millions of tokens makes them, the digest index serves the whole
    report, which a lookup by `jti` could never do."""
    digests = [hashlib.sha256(f"a{n}".encode()).digest() for n in range(1, reported + 1)]
    dialect = asyncpg_dialect.dialect()  # type: ignore[no-untyped-call]
    compiled = access_by_digest_query(digests).compile(
        dialect=dialect, compile_kwargs={"render_postcompile": True}
    )
    args = [compiled.params[name] for name in compiled.positiontup or ()]

    async def explain() -> dict[str, Any]:
        conn = await asyncpg.connect(plain_url(filled_database))
        try:
            if reported > 1:
                await conn.execute("SET enable_seqscan = off")
            text = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {compiled.string}", *args)
        finally:
            await conn.close()
        plan: dict[str, Any] = json.loads(text)[0]["Plan"]
        return plan

    used = relation_scans(anyio.run(explain))
    assert ("Seq Scan", "access_tokens") not in [(node, relation) for node, relation, _ in used]
    # An index scan, or a bitmap of index probes, of the unique digest index.
    assert any(index == "access_tokens_digest_key" for _, _, index in used), used

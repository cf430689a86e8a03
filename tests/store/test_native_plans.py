"""PostgreSQL's plans for the native paths' statements (`baton.store.sql.native`), on a freshly
filled table as `test_query_plans` makes it: every token and grant is found through an index,
never a scan of a whole table (a revocation's last expiry is LATERAL for that reason)."""

from __future__ import annotations

import json
from typing import Any

import anyio
import asyncpg
import pytest
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect

from baton.store.sql.native import (
    REVOKE_ACCESS,
    REVOKE_GRANT,
    ROTATE,
    NativeStatement,
    native_facts,
)
from tests.databases import plain_url
from tests.store.test_query_plans import NOW, filled_database, middle_row

__all__ = ["filled_database"]  # the fixture, used by name

VALUES: dict[str, Any] = {
    "access_kind": "access_token",
    "grant_kind": "grant",
    "event_type": "grant.revoked",
    "now": NOW,
    "retire_at": NOW + 600,
    "sealed": None,
    "sealed_id_token": None,
    "issued_at": NOW,
    "expires_at": NOW + 86400,
    "client_id": "c",
    "client_xmin": 1,
    "refresh_digest": b"r" * 32,
    "generation": 2,
    "issued": NOW,
    "refresh_expires_at": NOW + 86400,
    "access_expires_at": NOW + 3600,
    "access_digest": b"a" * 32,
    "scope": "read",
    "jti": "j",
    "audience": None,
    "reason": "revoked",
    "payload": "{}",
    "issued_now_expire_by": NOW + 3602,
    "digest": b"x" * 32,
    "confirm_id": "c",
}


def seq_scans(plan: dict[str, Any]) -> list[str]:
    """The relations the plan reads whole."""
    found = [plan["Relation Name"]] if plan["Node Type"] == "Seq Scan" else []
    for child in plan.get("Plans", []):
        found += seq_scans(child)
    return found


def plan_of(url: str, statement: NativeStatement, **params: Any) -> dict[str, Any]:
    values = {**VALUES, **params}

    async def explain() -> dict[str, Any]:
        conn = await asyncpg.connect(plain_url(url))
        try:
            text = await conn.fetchval(
                f"EXPLAIN (FORMAT JSON) {statement.sql}", *statement.args(values)
            )
        finally:
            await conn.close()
        plan: dict[str, Any] = json.loads(text)[0]["Plan"]
        return plan

    return anyio.run(explain)


ROW = middle_row()
STATEMENTS: dict[str, tuple[NativeStatement, dict[str, Any]]] = {
    "rotate": (ROTATE, {"rt_id": ROW, "grant_id": f"g{ROW}"}),
    "revoke_grant": (REVOKE_GRANT, {"grant_id": f"g{ROW}"}),
    "revoke_access": (REVOKE_ACCESS, {"at_id": ROW}),
}
_dialect = asyncpg_dialect.dialect()  # type: ignore[no-untyped-call]
for _name, _facts in native_facts(_dialect).items():
    STATEMENTS[f"facts_{_name}"] = (_facts, {})


@pytest.mark.parametrize("name", sorted(STATEMENTS))
def test_the_native_statements_read_tokens_and_grants_through_indexes(
    filled_database: str, name: str
) -> None:
    statement, params = STATEMENTS[name]
    whole = seq_scans(plan_of(filled_database, statement, **params))
    # (`clients`, one row here, may be read whole: a client is found by its primary key.)
    assert not [table for table in whole if table != "clients"], whole

"""Integration signals in the store (issue 28): the counts each process flushes, the health read
back from them, and the access tokens a resource server reports by their digests.

`client_signals` holds one row per client, kind, reason, source and grant for each flush that
counted any (`baton.server.runtime.signals.SignalBook`): ids, counts and delays, never a token.
The health of a client (`baton.core.signals.Health`) is summed from its rows in a window, read
in one query, with the client's live grants counted in one more.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import Connection, Select, func, insert, select

from baton.core.facts import AccessFacts
from baton.core.signals import Health, Refusal, SignalKind
from baton.store.base import Client, SignalCount
from baton.store.schema import (
    access_tokens,
    client_signals,
    clients,
    grants,
    refresh_tokens,
    users,
)
from baton.store.sql.rows import access_from_row, client_from_row
from baton.store.sql.statements import GRANT_COLUMNS

# Ids in one `IN (...)` list: well under SQLite's and asyncpg's limits on bound parameters
# (32766 and 32767), and a short statement for either planner.
CHUNK = 500

_T = TypeVar("_T")

# Digests in one query: a whole `/token-use` report (`MAX_USES`), so that it costs one read of
# the unique `access_tokens.digest` index.
DIGEST_CHUNK = 1000


def _chunks(items: Sequence[_T], size: int = CHUNK) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def delays_to_stored(delays: Mapping[int, int]) -> str | None:
    """`client_signals.delays`: a JSON object {seconds: count}, NULL when none was counted."""
    if not delays:
        return None
    return json.dumps(
        {str(delay): count for delay, count in sorted(delays.items())}, separators=(",", ":")
    )


def delays_from_stored(stored: str | None) -> dict[int, int]:
    if not stored:
        return {}
    return {int(delay): int(count) for delay, count in json.loads(stored).items()}


def record_signals(conn: Connection, counts: Sequence[SignalCount]) -> None:
    """Inserts one row per count (one executemany: a flush is one short transaction)."""
    if not counts:
        return
    conn.execute(
        insert(client_signals),
        [
            {
                "client_id": count.client_id,
                "kind": str(count.kind),
                "reason": None if count.reason is None else str(count.reason),
                "source": str(count.source),
                "grant_id": count.grant_id,
                "first_at": count.first_at,
                "last_at": count.last_at,
                "count": count.count,
                "delays": delays_to_stored(count.delays),
            }
            for count in counts
        ],
    )


def client_health(
    conn: Connection, client_ids: Sequence[str] | None, since: int, now: int
) -> list[Health]:
    """The health of each of `client_ids` (in their order, one per client even without a signal),
    or of every client with a signal whose `last_at` is at or after `since` (by client id),
    summed from their rows; `active_grants` counts each client's grants live at `now`."""
    cs = client_signals
    columns = (
        cs.c.client_id,
        cs.c.kind,
        cs.c.reason,
        cs.c.grant_id,
        cs.c.last_at,
        cs.c.count,
        cs.c.delays,
    )
    healths: dict[str, Health] = {}
    if client_ids is None:
        rows: list[Any] = list(conn.execute(select(*columns).where(cs.c.last_at >= since)))
        for client_id in sorted({row.client_id for row in rows}):
            healths[client_id] = Health(client_id, since)
    else:
        for client_id in client_ids:
            healths.setdefault(client_id, Health(client_id, since))
        rows = []
        for chunk in _chunks(list(healths)):
            rows.extend(
                conn.execute(
                    select(*columns).where(cs.c.client_id.in_(chunk), cs.c.last_at >= since)
                )
            )
    for row in rows:
        kind = SignalKind(row.kind)
        # Only the report-only refusals count grants: the share of grants a change would break.
        touched = (row.grant_id,) if kind is SignalKind.WOULD_REFUSE and row.grant_id else ()
        healths[row.client_id].add(
            kind,
            None if row.reason is None else Refusal(row.reason),
            row.count,
            row.last_at,
            delays_from_stored(row.delays),
            touched,
        )
    for chunk in _chunks(list(healths)):
        live = conn.execute(
            select(grants.c.client_id, func.count())
            .where(
                grants.c.client_id.in_(chunk),
                grants.c.revoked_at.is_(None),
                grants.c.expires_at > now,
            )
            .group_by(grants.c.client_id)
        )
        for client_id, count in live:
            healths[client_id].active_grants = int(count)
    return list(healths.values())


def access_by_digest_query(digests: Sequence[bytes]) -> Select[Any]:
    """The statement `access_by_digest` runs for one chunk of digests: the access tokens, their
    companions (`exchanged_at`) and grants, found through the unique index on
    `access_tokens.digest` (tests/store/test_query_plans.py checks PostgreSQL's plan)."""
    at, rt = access_tokens, refresh_tokens
    return (
        select(
            at.c.digest,
            at.c.id,
            at.c.generation,
            at.c.scope,
            at.c.issued_at,
            at.c.expires_at,
            at.c.revoked_at,
            at.c.refresh_token_id,
            at.c.jti,
            at.c.audience,
            rt.c.retire_at.label("rt_retire_at"),
            rt.c.revoked_at.label("rt_revoked_at"),
            rt.c.exchanged_at.label("rt_exchanged_at"),
            *GRANT_COLUMNS,
        )
        .join(grants, grants.c.id == at.c.grant_id)
        .outerjoin(users, users.c.id == grants.c.user_id)
        .outerjoin(rt, rt.c.id == at.c.refresh_token_id)
        .where(at.c.digest.in_(digests))
    )


def access_by_digest(conn: Connection, digests: Sequence[bytes]) -> dict[bytes, AccessFacts]:
    """The access tokens stored under these SHA-256 digests (`baton.core.tokens.digest`), with
    their companions' `exchanged_at`, keyed by digest; an unknown digest is simply absent.

    `access_tokens.digest` is unique-indexed (every introspection finds a token by it), so a
    report costs one indexed read of its tokens (one query per `DIGEST_CHUNK` of them), never a
    scan: `access_tokens.jti` has no index (migration 0004: a rotation would pay for it)."""
    found: dict[bytes, AccessFacts] = {}
    for chunk in _chunks(sorted(set(digests)), DIGEST_CHUNK):
        for row in conn.execute(access_by_digest_query(chunk)).mappings():
            found[bytes(row["digest"])] = access_from_row(dict(row))
    return found


def clients_by_id(conn: Connection, client_ids: Sequence[str]) -> dict[str, Client]:
    """The clients of these ids that have a row (their report-only policies, for `/token-use`:
    the owners of a batch's tokens, in one read)."""
    found: dict[str, Client] = {}
    for chunk in _chunks(sorted(set(client_ids))):
        for row in conn.execute(select(clients).where(clients.c.id.in_(chunk))).mappings():
            client = client_from_row(row)
            found[client.id] = client
    return found

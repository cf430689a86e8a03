"""Integration signals in the store (issue 28): the counts each process flushes, the health read
back from them, and the access tokens a resource server reports by their digests.

`client_signals` holds one row per client, kind, reason, source, grant (of a `would_refuse`
only) and hour, into which every process's flushes are merged (`record_signals`; the counts of
`baton.server.runtime.signals.SignalBook`): ids, counts and delays, never a token. The health of
a client (`baton.core.signals.Health`) is summed in SQL from its rows in a window; only the
delay histograms of the clients asked are merged in Python.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import BigInteger, Connection, Select, and_, case, cast, exists, func, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from baton.core.facts import AccessFacts
from baton.core.signals import OTHER_CLIENTS, Health, Refusal, SignalKind, Tally, merge_delays
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


HOUR = 3600
# `client_signals.count` is a 32-bit INTEGER on PostgreSQL: a row's count saturates there.
COUNT_MAX = 2**31 - 1
# Serializes the flushes of every process on PostgreSQL (`pg_advisory_xact_lock`), so that the
# delays a flush reads and merges are not overwritten by another's (SQLite has one writer).
FLUSH_LOCK = 0x62617430_28  # "bat0" + issue 28

_KEY = ("client_id", "kind", "reason", "source", "grant_id", "bucket")
_Key = tuple[str, str, str, str, str, int]


def bucket_of(at: int) -> int:
    """The hour a signal counted at `at` is merged into (`client_signals.bucket`)."""
    return at - at % HOUR


def _key_of(count: SignalCount) -> _Key:
    # Only a report-only refusal keeps its grant: it is what `breaking_share` counts. The other
    # kinds are summed per client, so a busy client's rows do not grow with its grants.
    grant = count.grant_id or "" if count.kind == SignalKind.WOULD_REFUSE else ""
    return (
        count.client_id,
        str(count.kind),
        "" if count.reason is None else str(count.reason),
        str(count.source),
        grant,
        bucket_of(count.last_at),
    )


def record_signals(conn: Connection, counts: Sequence[SignalCount]) -> None:
    """Merges one flush into the rows of its keys (client, kind, reason, source, grant of a
    `would_refuse`, hour): an upsert on `ux_client_signals_key` (`ON CONFLICT DO UPDATE`, which
    SQLite and PostgreSQL both speak) adds the counts and widens first/last seen; the delays,
    JSON, are merged here with what the rows held (read in the same transaction, under the
    flush lock on PostgreSQL). A table that grows per hour, not per flush and grant."""
    if not counts:
        return
    merged: dict[_Key, dict[str, Any]] = {}

    def add(key: _Key, count: SignalCount, n: int, delays: Mapping[int, int]) -> None:
        row = merged.get(key)
        if row is None:
            merged[key] = {
                **dict(zip(_KEY, key, strict=True)),
                "first_at": count.first_at,
                "last_at": count.last_at,
                "count": min(n, COUNT_MAX),
                "delays": dict(delays),
            }
        else:
            row["first_at"] = min(row["first_at"], count.first_at)
            row["last_at"] = max(row["last_at"], count.last_at)
            row["count"] = min(row["count"] + n, COUNT_MAX)
            merge_delays(row["delays"], delays)

    for count in counts:
        key = _key_of(count)
        if key[4]:
            # A refusal's grant row holds its count only; its delays go to the grantless row of
            # its key (count 0), so that reading the delays never costs a row per grant.
            add(key, count, count.count, {})
            add((*key[:4], "", key[5]), count, 0, count.delays)
        else:
            add(key, count, count.count, count.delays)
    postgres = conn.dialect.name == "postgresql"
    if postgres:
        conn.execute(select(func.pg_advisory_xact_lock(FLUSH_LOCK)))
    cs = client_signals
    clients_of = sorted({key[0] for key in merged})
    buckets = sorted({key[5] for key in merged})
    for chunk in _chunks(clients_of):
        held = conn.execute(
            select(*(cs.c[name] for name in _KEY), cs.c.delays).where(
                cs.c.client_id.in_(chunk), cs.c.bucket.in_(buckets), cs.c.delays.is_not(None)
            )
        )
        for row in held:
            mine = merged.get(tuple(row[: len(_KEY)]))
            if mine is not None:
                merge_delays(mine["delays"], delays_from_stored(row.delays))
    dialect_insert = postgresql_insert if postgres else sqlite_insert
    statement = dialect_insert(cs)
    new = statement.excluded
    total = cast(cs.c.count, BigInteger) + cast(new.count, BigInteger)
    statement = statement.on_conflict_do_update(
        index_elements=list(_KEY),
        set_={
            "count": case((total > COUNT_MAX, COUNT_MAX), else_=total),
            "first_at": case((new.first_at < cs.c.first_at, new.first_at), else_=cs.c.first_at),
            "last_at": case((new.last_at > cs.c.last_at, new.last_at), else_=cs.c.last_at),
            "delays": new.delays,
        },
    )
    conn.execute(
        statement,
        [{**row, "delays": delays_to_stored(row["delays"])} for row in merged.values()],
    )


def _reason(stored: str | None) -> Refusal | None:
    return Refusal(stored) if stored else None


def client_health(
    conn: Connection,
    client_ids: Sequence[str] | None,
    since: int,
    now: int,
    with_delays: bool = True,
) -> list[Health]:
    """The health of each of `client_ids` (in their order, one per client even without a signal),
    or of every client with a signal whose `last_at` is at or after `since` (by client id).

    Counts, last seen and distinct grants are summed in SQL (`GROUP BY` client, kind and
    reason); only the delays, JSON histograms, are merged here, from the rows of the clients
    asked and only when `with_delays`. `active_grants` counts each client's grants with a
    refresh token still live at `now`."""
    healths: dict[str, Health] = {}
    if client_ids is None:
        found = _sums(conn, None, since)
        for client_id in sorted({row[0] for row in found}):
            healths[client_id] = Health(client_id, since)
    else:
        for client_id in client_ids:
            healths.setdefault(client_id, Health(client_id, since))
        found = []
        for chunk in _chunks(list(healths)):
            found.extend(_sums(conn, chunk, since))
    _fill(healths, found)
    chunks: list[Sequence[str] | None] = (
        list(_chunks(list(healths))) if client_ids is not None else [None]
    )
    for some in chunks:
        for client_id, grants_count in _refusing_grants(conn, some, since):
            if client_id in healths:
                healths[client_id].tallies[SignalKind.WOULD_REFUSE].grant_count = grants_count
    if with_delays:
        for chunk in _chunks(list(healths)):
            _add_delays(conn, healths, chunk, since, None)
    for chunk in _chunks(list(healths)):
        for client_id, count in _live_grants(conn, chunk, now):
            healths[client_id].active_grants = count
    return list(healths.values())


def client_series(conn: Connection, since: int, now: int, top: int) -> list[Health]:
    """The `/metrics` series: the `top` clients with the most signals since `since` (ranked in
    SQL), each with its stale-access delays, then every other client summed as one `Health`
    named `other` (counts, last seen, grants; no delays). The delays merged are the top
    clients' only, so a scrape's cost does not grow with the number of clients' rows."""
    cs = client_signals
    total = func.sum(cs.c.count)
    ranked = select(cs.c.client_id, total).where(cs.c.last_at >= since).group_by(cs.c.client_id)
    leaders = [
        row[0]
        for row in conn.execute(ranked.order_by(total.desc(), cs.c.client_id).limit(max(top, 0)))
    ]
    own = client_health(conn, leaders, since, now, with_delays=False)
    healths = {health.client_id: health for health in own}
    for chunk in _chunks(leaders):
        _add_delays(conn, healths, chunk, since, SignalKind.STALE_ACCESS)
    other = Health(OTHER_CLIENTS, since)
    rest = conn.execute(
        select(cs.c.kind, cs.c.reason, total, func.max(cs.c.last_at), _distinct_grants())
        .where(cs.c.last_at >= since, cs.c.client_id.not_in(leaders))
        .group_by(cs.c.kind, cs.c.reason)
    ).all()
    if not rest:
        return own
    # A grant belongs to one client: the others' distinct grants are a sum over clients.
    for kind, reason, count, last_at, grants_count in rest:
        tally = Tally(int(count), int(last_at), grant_count=int(grants_count))
        _add_tally(other, SignalKind(kind), _reason(reason), tally)
    others = select(cs.c.client_id).where(cs.c.last_at >= since, cs.c.client_id.not_in(leaders))
    refusing = conn.execute(
        select(func.count(func.distinct(cs.c.grant_id))).where(
            cs.c.last_at >= since,
            cs.c.client_id.not_in(leaders),
            cs.c.kind == str(SignalKind.WOULD_REFUSE),
            cs.c.grant_id != "",
        )
    ).scalar_one()
    if SignalKind.WOULD_REFUSE in other.tallies:
        other.tallies[SignalKind.WOULD_REFUSE].grant_count = int(refusing)
    other.active_grants = int(
        conn.execute(
            select(func.count())
            .select_from(grants)
            .where(grants.c.client_id.in_(others.distinct().scalar_subquery()), _live(now))
        ).scalar_one()
    )
    return [*own, other]


def _distinct_grants() -> Any:
    cs = client_signals
    return func.count(func.distinct(case((cs.c.grant_id != "", cs.c.grant_id))))


def _sums(conn: Connection, chunk: Sequence[str] | None, since: int) -> list[Any]:
    cs = client_signals
    query = (
        select(
            cs.c.client_id,
            cs.c.kind,
            cs.c.reason,
            func.sum(cs.c.count),
            func.max(cs.c.last_at),
            _distinct_grants(),
        )
        .where(cs.c.last_at >= since)
        .group_by(cs.c.client_id, cs.c.kind, cs.c.reason)
    )
    if chunk is not None:
        query = query.where(cs.c.client_id.in_(chunk))
    return list(conn.execute(query))


def _refusing_grants(
    conn: Connection, chunk: Sequence[str] | None, since: int
) -> list[tuple[str, int]]:
    """Per client, the distinct grants of its `would_refuse` rows whatever the rule."""
    cs = client_signals
    query = (
        select(cs.c.client_id, func.count(func.distinct(cs.c.grant_id)))
        .where(
            cs.c.last_at >= since,
            cs.c.kind == str(SignalKind.WOULD_REFUSE),
            cs.c.grant_id != "",
        )
        .group_by(cs.c.client_id)
    )
    if chunk is not None:
        query = query.where(cs.c.client_id.in_(chunk))
    return [(row[0], int(row[1])) for row in conn.execute(query)]


def _add_tally(health: Health, kind: SignalKind, reason: Refusal | None, tally: Tally) -> None:
    into = health.tallies.setdefault(kind, Tally())
    into.count += tally.count
    into.last_at = tally.last_at if into.last_at is None else max(into.last_at, tally.last_at or 0)
    into.grant_count += tally.grant_count
    if reason is not None:
        health.refusals[reason] = tally


def _fill(healths: dict[str, Health], found: Sequence[Any]) -> None:
    for client_id, kind, reason, count, last_at, grants_count in found:
        tally = Tally(int(count), int(last_at), grant_count=int(grants_count))
        _add_tally(healths[client_id], SignalKind(kind), _reason(reason), tally)


def _add_delays(
    conn: Connection,
    healths: dict[str, Health],
    chunk: Sequence[str],
    since: int,
    kind: SignalKind | None,
) -> None:
    cs = client_signals
    query = select(cs.c.client_id, cs.c.kind, cs.c.reason, cs.c.delays).where(
        cs.c.client_id.in_(chunk), cs.c.last_at >= since, cs.c.delays.is_not(None)
    )
    if kind is not None:
        query = query.where(cs.c.kind == str(kind))
    for client_id, stored_kind, reason, stored in conn.execute(query):
        health = healths[client_id]
        delays = delays_from_stored(stored)
        # setdefault: a flush may have added a row since the sums were read
        merge_delays(health.tallies.setdefault(SignalKind(stored_kind), Tally()).delays, delays)
        refusal = _reason(reason)
        if refusal is not None:
            merge_delays(health.refusals.setdefault(refusal, Tally()).delays, delays)


def _live(now: int) -> Any:
    """A grant that can still be used: not revoked, within its absolute lifetime, and with a
    refresh token that is not exchanged, revoked nor idled out (a grant whose refresh token
    idled out can never refresh again: it is not counted in `breaking_share`)."""
    rt = refresh_tokens
    return and_(
        grants.c.revoked_at.is_(None),
        grants.c.expires_at > now,
        exists().where(
            rt.c.grant_id == grants.c.id,
            rt.c.exchanged_at.is_(None),
            rt.c.revoked_at.is_(None),
            rt.c.expires_at > now,
        ),
    )


def _live_grants(conn: Connection, chunk: Sequence[str], now: int) -> list[tuple[str, int]]:
    query = (
        select(grants.c.client_id, func.count())
        .where(grants.c.client_id.in_(chunk), _live(now))
        .group_by(grants.c.client_id)
    )
    return [(row[0], int(row[1])) for row in conn.execute(query)]


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

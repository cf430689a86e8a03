"""The client a request authenticated as, confirmed unchanged in the transaction that works for it.

A server process authenticates requests against the clients it has cached; the store call that
does the work first compares the client's row, as it is now, with the client the request
authenticated as (`baton.store.base.ClientChanged`), so a disabled client, a rotated secret or
an RFC 7592 update of what the client may do (its grant types, its authentication method, its
key set's URL, its redirect URIs) holds in every process from the commit that changed it, not
after the client cache's lifetime (a client's scope and resources are read afresh by the grants
that use them). And before a new grant, the
client is read once more (`require_enabled`), so a disable never misses a grant it could not see.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import Connection

from baton.core.client_policy import ClientPolicy
from baton.store.base import CLIENT_CHANGED, Client, ClientChanged, ClientDisabled
from baton.store.prepared import Prepared
from baton.store.sql.statements import (
    CLIENT_AUTHENTICATION,
    CLIENT_DISABLED_AT,
    CONFIRMED_COLUMNS,
    CONFIRMED_LABELS,
)

T = TypeVar("T")
F = TypeVar("F")  # facts a row is read into


def confirmed(conn: Connection, client: Client, answer: T) -> T | ClientChanged:
    """`answer` if `client`'s row is unchanged, read in this transaction (see `ClientChanged`):
    the whole of a store call that has nothing else to read (no token to look up)."""
    return answer if client_unchanged(conn, client) else CLIENT_CHANGED


def require_enabled(conn: Connection, client_id: str) -> None:
    """Before a new grant of `client_id`: the client is still enabled, read in this
    transaction, or `ClientDisabled`.

    The request authenticated on an earlier read; a disable committed since then must not be
    followed by a grant it could not see to revoke (`AdminStore.disable_client` revokes the
    grants it finds). On PostgreSQL the row is read FOR SHARE: a disable's UPDATE of it waits
    for this transaction to commit, and then finds this grant; one that committed first is
    seen here. SQLite's writers are serialized anyway (the clause is not rendered there)."""
    disabled_at = conn.execute(CLIENT_DISABLED_AT, {"client_id": client_id}).first()
    if disabled_at is None or disabled_at[0] is not None:
        raise ClientDisabled(client_id)


def client_unchanged(conn: Connection, client: Client) -> bool:
    """Whether `client`'s row still authenticates as `client` did (`CONFIRMED_COLUMNS`: see
    `ClientChanged`)."""
    return authenticates_as(CLIENT_AUTHENTICATION.run(conn, client_id=client.id).fetchone(), client)


def authenticates_as(row: Sequence[Any] | None, client: Client) -> bool:
    """`row`: the client's `CONFIRMED_COLUMNS` as stored, or None when it has no row any more.
    The JSON columns are compared decoded (as `client_from_row` reads them), so their spelling
    in the row never matters."""
    if row is None:
        return False
    stored = dict(zip(CONFIRMED_COLUMNS, row, strict=True))
    return (
        stored["secret_digest"] == client.secret_digest
        and bool(stored["is_public"]) is client.is_public
        and bool(stored["is_resource_server"]) is client.is_resource_server
        and stored["disabled_at"] == client.disabled_at
        and _json_tuple(stored["grant_types"]) == client.grant_types
        and stored["token_endpoint_auth_method"] == client.token_endpoint_auth_method
        and stored["jwks_uri"] == client.jwks_uri
        and _json_tuple(stored["redirect_uris"]) == client.redirect_uris
        and ClientPolicy.from_stored(stored["policy"]) == client.policy
    )


def _json_tuple(stored: str | None) -> tuple[Any, ...] | None:
    return None if stored is None else tuple(json.loads(stored))


def read_confirming(
    conn: Connection,
    facts: Prepared,
    client: Client | None,
    digest: bytes,
    build: Callable[[dict[str, Any]], F],
) -> F | ClientChanged | None:
    """A token's row by `digest` (`REFRESH_FACTS` or `ACCESS_FACTS`) as `build` makes it,
    if `client` (when given) still authenticates as it did (see `ClientChanged`): the client's
    row is joined to the token's (see `_CONFIRMING`), one query where the confirmation used to
    be a second. A token that is not found is no proof of anything, so the client is then
    confirmed on its own."""
    row = facts.one(conn, digest=digest, confirm_id=None if client is None else client.id)
    if client is None:
        return None if row is None else build(row)
    if row is None:
        return None if client_unchanged(conn, client) else CLIENT_CHANGED
    now_stored = tuple(row[label] for label in CONFIRMED_LABELS)
    confirmed = row["c_id"] is not None and authenticates_as(now_stored, client)
    return build(row) if confirmed else CLIENT_CHANGED

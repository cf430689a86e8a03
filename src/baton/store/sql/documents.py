"""Clients described by a client ID metadata document: the validated document kept as the
client's row (its URL is the client id), refreshed when its cached copy expires.

The row is the document cache every process shares: `document_expires_at` says until when the
copy may be used without fetching it again (draft-ietf-oauth-client-id-metadata-document §5.2,
"Metadata Caching"). A fetch rewrites what the document says, and only that: the operator's
decisions on the row (disabled, deleted, remembered consent, login and consent apps) are kept,
so a document never re-enables a client an operator disabled. An id held by a client the
operator (or RFC 7591 registration) created is never overwritten by a document.

`DocumentClientStore` is a mixin of `SQLStore`: each method is one unit of work through the
store's runner.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Connection, delete, exists, select, update
from sqlalchemy.exc import IntegrityError

from baton.store.base import Client, RegisteredVia
from baton.store.schema import auth_challenges, authorization_codes, clients, consents, grants
from baton.store.sql.registry import get_client, insert_client
from baton.store.sql.rows import client_values

T = TypeVar("T")

# What a document decides of its client's row; everything else is the operator's.
DOCUMENT_COLUMNS = (
    "name",
    "is_public",
    "redirect_uris",
    "scope",
    "allowed_resources",
    "client_uri",
    "registration",
    "document_expires_at",
    "grant_types",
    "token_endpoint_auth_method",
    "jwks_uri",
)


def save_document_client(conn: Connection, client: Client) -> Client | None:
    """Inserts `client` (a document's), or updates the document's columns of its existing
    document row unless that row is a deleted client's tombstone; None when the id belongs to a
    client that is not a document's (nothing is written). Returns the row as stored."""
    existing = get_client(conn, client.id)
    if existing is None:
        insert_client(conn, client)
        return client
    if existing.registered_via != RegisteredVia.DOCUMENT:
        return None
    values = client_values(client)
    conn.execute(
        update(clients)
        # A deleted client's tombstone stays as the deletion left it, even when a fetch that
        # started before the deletion ends after it (checked here, in the UPDATE, not only in
        # the read above); `disabled_at` is not a document's column, so a disable is kept too.
        .where(clients.c.id == client.id, clients.c.deleted_at.is_(None))
        .values(**{name: values[name] for name in DOCUMENT_COLUMNS})
    )
    return get_client(conn, client.id)


def _unused() -> Any:
    """Nothing names the client: no grant, code, consent or sign-in challenge."""
    condition: Any = None
    for table in (grants, authorization_codes, consents, auth_challenges):
        absent = ~exists().where(table.c.client_id == clients.c.id)
        condition = absent if condition is None else condition & absent
    return condition


def forget_unused(conn: Connection, cutoff: int, batch: int) -> int:
    """Deletes up to `batch` document clients whose document expired before `cutoff` and that
    nothing names; an operator's disable is kept (a decision, recorded in the row)."""
    stale = (
        select(clients.c.id)
        .where(
            clients.c.registered_via == RegisteredVia.DOCUMENT,
            clients.c.document_expires_at < cutoff,
            clients.c.disabled_at.is_(None),
            clients.c.deleted_at.is_(None),
            _unused(),
        )
        .limit(batch)
        .scalar_subquery()
    )
    # Checked again in the DELETE itself: a grant made since cannot lose its client.
    return conn.execute(delete(clients).where(clients.c.id.in_(stale), _unused())).rowcount


class DocumentClientStore:
    """Metadata-document clients."""

    if TYPE_CHECKING:

        async def _write(self, work: Callable[[Connection], T]) -> T: ...

    async def forget_unused_document_clients(self, now: int, expiry: int, batch: int = 500) -> int:
        """Deletes the rows of document clients nobody used whose document expired more than
        `expiry` seconds before `now` (anyone can make such a row by naming a valid document at
        /authorize; the URL is fetched again if it comes back). How many."""
        return await self._write(lambda conn: forget_unused(conn, now - expiry, batch))

    async def save_document_client(self, client: Client) -> Client | None:
        """Stores a freshly fetched and validated document's client: a new row, or the
        document's columns of its row (never its `disabled_at`, `deleted_at` or `created_at`);
        None, with nothing written, when the id is a client no document made. Returns the row
        as stored."""
        try:
            return await self._write(lambda conn: save_document_client(conn, client))
        except IntegrityError:
            # Another process inserted the same URL's row between the read and the insert:
            # its row is there now, so this is an update.
            return await self._write(lambda conn: save_document_client(conn, client))

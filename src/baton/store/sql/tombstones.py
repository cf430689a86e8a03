"""A deleted client: its row kept as a tombstone, so that its id can never authenticate again
and is never reused, while the grants, tokens and audit rows that name it keep their history.

The tombstone is marked `deleted_at`; it also becomes a confidential client with no secret
(client authentication refuses one), and loses its redirect, logout and app URLs and origins.
The admin store never enables a deleted client nor rotates its secret (`WHERE deleted_at IS
NULL`), and the console's and `client list`'s lists leave it out. The deletion first disables
the client (`AdminStore.disable_client`: every live grant revoked at once and announced on the
feed) and clears what could ever let it act, in one transaction (`ClientAdmin.delete_client`):
a second deletion, even one racing the first, finds the tombstone and writes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement, Connection, func, update

from baton.store.admin import Actor
from baton.store.base import Client
from baton.store.schema import clients
from baton.store.sql.audit import record

if TYPE_CHECKING:
    from baton.store.sql.facade import SQLStore


def is_deleted(client: Client) -> bool:
    """Whether `client` is a tombstone (see the module docstring)."""
    return client.deleted_at is not None


@dataclass(frozen=True)
class Deleted:
    """A client deleted, and how many live grants of it its disabling revoked (0 when it was
    disabled already: the disabling revoked them then)."""

    grants_revoked: int


async def delete_client(store: SQLStore, client_id: str, actor: Actor) -> Deleted | None:
    """Disables the client (revoking every live grant) and turns its row into a tombstone, each
    step audited; None when there is no such client or it was deleted already."""
    return await store.admin().delete_client(client_id, actor)


def tombstone(
    conn: Connection, client_id: str, actor: Actor, *conditions: ColumnElement[bool]
) -> bool:
    """Turns a client's row into a tombstone (it was disabled first), audited; False when it
    has no row, is a tombstone already, or fails one of `conditions`: those are the UPDATE's own
    WHERE, so that PostgreSQL checks them again on the row as it is once any row lock the
    UPDATE waited for is released (READ COMMITTED), not as an earlier SELECT saw it."""
    changed = conn.execute(
        update(clients)
        .where(clients.c.id == client_id, clients.c.deleted_at.is_(None), *conditions)
        .values(
            is_public=False,
            secret_digest=None,
            disabled_at=func.coalesce(clients.c.disabled_at, actor.now),
            deleted_at=actor.now,
            redirect_uris=json.dumps([]),
            post_logout_redirect_uris=None,
            backchannel_logout_uri=None,
            allowed_origins=json.dumps([]),
            login_url=None,
            consent_url=None,
        )
    ).rowcount
    if changed == 1:
        record(conn, actor, "client.delete", "client", client_id, None)
    return changed == 1

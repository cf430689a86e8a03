"""Dynamically registered clients (RFC 7591, RFC 7592): their registration, read, update and
deletion with the registration access token, and the expiry of registrations never used.

`DynamicClientStore` is a mixin of `SQLStore`: each method is one unit of work through the
store's runner, each write with its audit row (never a secret nor a token). A deletion, by the
client (RFC 7592 §2.3) or by the expiry, is the one `baton client delete` makes
(`ClientAdmin.delete_client`): the client disabled, every live grant revoked and announced on
the feed, the row kept as a tombstone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Connection, exists, select, update

from baton.core.client_metadata import registration
from baton.store.admin import Actor
from baton.store.base import Client, RegisteredVia
from baton.store.schema import auth_challenges, clients, consents
from baton.store.sql import registry
from baton.store.sql.audit import record
from baton.store.sql.lifecycle import mark_used
from baton.store.sql.rows import client_from_row, client_values
from baton.store.sql.tombstones import Deleted, tombstone

if TYPE_CHECKING:
    from baton.store.sql.admin import AdminStore

T = TypeVar("T")

# What an RFC 7592 update may write: the metadata, never the id, the secret, the kind, the
# times, the tombstone or the registration access token.
UPDATED_COLUMNS = (
    "name",
    "redirect_uris",
    "scope",
    "allowed_resources",
    "client_uri",
    "registration",
    "grant_types",
    "token_endpoint_auth_method",
    "jwks_uri",
)
# What the audit rows leave out: the audit row's own target and time.
_NOT_AUDITED = ("client_id", "created_at", "disabled_at", "deleted")


@dataclass(frozen=True, slots=True)
class DynamicClient:
    """A dynamically registered client that is not deleted, and the SHA-256 digest of its
    registration access token (RFC 7592 §1), which the caller compares in constant time."""

    client: Client
    token_digest: bytes | None


def _audited(client: Client) -> dict[str, Any]:
    shown = registration(client)
    detail = {k: v for k, v in shown.items() if k not in _NOT_AUDITED}
    detail["registration"] = dict(client.registration)
    return detail


def _dynamic(conn: Connection, client_id: str) -> DynamicClient | None:
    row = (
        conn.execute(
            select(clients).where(
                clients.c.id == client_id,
                clients.c.registered_via == RegisteredVia.DYNAMIC,
                clients.c.deleted_at.is_(None),
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    return DynamicClient(client_from_row(row), row["registration_token_digest"])


def _never_used() -> Any:
    """The client was never used: no first use recorded (`used_at`, set when a code or a
    client_credentials grant is issued for it, or a signed-in person is asked to consent; kept
    when the purge removes its dead grants), no consent app's or login app's challenge in
    flight, and no consent remembered (an operator's import, say)."""
    return (
        clients.c.used_at.is_(None)
        & ~exists().where(auth_challenges.c.client_id == clients.c.id)
        & ~exists().where(consents.c.client_id == clients.c.id)
    )


class DynamicClientStore:
    """RFC 7591/7592 registrations."""

    if TYPE_CHECKING:

        async def _write(self, work: Callable[[Connection], T]) -> T: ...

        async def _read(self, work: Callable[[Connection], T]) -> T: ...

        def admin(self) -> AdminStore: ...

    async def register_dynamic_client(
        self, client: Client, token_digest: bytes, actor: Actor
    ) -> None:
        """Stores a client registered at /register (RFC 7591 §3.1) with the digest of its
        registration access token, audited (`client.register`: the registration as shown, the
        metadata as registered; never the secret nor the token)."""

        def work(conn: Connection) -> None:
            registry.insert_client(conn, client)
            conn.execute(
                update(clients)
                .where(clients.c.id == client.id)
                .values(registration_token_digest=token_digest)
            )
            record(conn, actor, "client.register", "client", client.id, _audited(client))

        await self._write(work)

    async def dynamic_client(self, client_id: str) -> DynamicClient | None:
        """The dynamically registered client `client_id`, unless deleted, with its registration
        access token's digest; None for any other client."""
        return await self._read(lambda conn: _dynamic(conn, client_id))

    async def update_dynamic_client(self, before: Client, after: Client, actor: Actor) -> bool:
        """Writes `after`'s metadata (RFC 7592 §2.2, checked by the caller) if the client is
        still a dynamic one, not deleted; audited (`client.update`, the fields changed and
        their new values). False when it is gone."""
        old, new = client_values(before), client_values(after)
        changes = {c: new[c] for c in UPDATED_COLUMNS if old[c] != new[c]}
        shown_before, shown_after = _audited(before), _audited(after)
        detail = {k: v for k, v in shown_after.items() if shown_before.get(k) != v}

        def work(conn: Connection) -> bool:
            where = (
                clients.c.id == before.id,
                clients.c.registered_via == RegisteredVia.DYNAMIC,
                clients.c.deleted_at.is_(None),
            )
            if not changes:
                return conn.execute(select(clients.c.id).where(*where)).first() is not None
            if conn.execute(update(clients).where(*where).values(**changes)).rowcount != 1:
                return False
            record(conn, actor, "client.update", "client", before.id, detail)
            return True

        return await self._write(work)

    async def note_consent_asked(self, client_id: str, now: int) -> None:
        """Records that a signed-in person was asked to consent to the client (its first use,
        unless it was used before): the expiry of unused registrations must not delete it
        while that person reads the consent page."""
        await self._write(lambda conn: mark_used(conn, client_id, now))

    async def delete_dynamic_client(self, client_id: str, actor: Actor) -> Deleted | None:
        """Deletes the client as `baton client delete` does (disabled, every live grant
        revoked, a tombstone), each step audited; None when it was deleted already."""
        return await self.admin().delete_client(client_id, actor)

    async def expire_dynamic_clients(
        self, now: int, expiry: int, actor_name: str, batch: int = 100
    ) -> int:
        """Deletes (as `delete_dynamic_client` does) up to `batch` dynamically registered
        clients created more than `expiry` seconds before `now` that were never used
        (`_never_used`), each in its own transaction that checks it again (audited
        `client.delete` by `actor_name`); returns how many."""
        cutoff = now - expiry

        def candidates(conn: Connection) -> list[str]:
            stmt = (
                select(clients.c.id)
                .where(
                    clients.c.registered_via == RegisteredVia.DYNAMIC,
                    clients.c.deleted_at.is_(None),
                    clients.c.created_at < cutoff,
                    _never_used(),
                )
                .order_by(clients.c.created_at)
                .limit(batch)
            )
            return list(conn.execute(stmt).scalars())

        actor = Actor(actor_name, None, now)
        deleted = 0
        for client_id in await self._read(candidates):

            def work(conn: Connection, client_id: str = client_id) -> bool:
                # Checked again in the transaction that deletes: a use since the read keeps
                # the client. On PostgreSQL (READ COMMITTED) a plain SELECT would not wait for a
                # first use in flight (a code, a client_credentials grant or a consent asked:
                # `mark_used`'s UPDATE of the row, uncommitted), and the tombstone's UPDATE,
                # once that committed, would check only its own WHERE. So the row is locked
                # first (FOR UPDATE waits for `mark_used`, and for the KEY SHARE lock the
                # foreign-key check of any code, grant, consent or challenge inserted for the
                # client holds), and the never-used test is the UPDATE's own WHERE, evaluated
                # by a statement that sees what those committed. SQLite: the write
                # transaction is exclusive already. Never used, it has no grant to revoke, no
                # consent and no code to end: the tombstone (disabled, no secret, no redirect
                # URI) is all of `baton client delete` there is to do.
                row = clients.c.id == client_id
                if conn.execute(select(clients.c.id).where(row).with_for_update()).first() is None:
                    return False
                return tombstone(conn, client_id, actor, _never_used())

            if await self._write(work):
                deleted += 1
        return deleted

"""Clients and signing keys as the admin API (`baton.server.admin.api_clients`) and the CLI
change them: each write one transaction with the audit row that records it.

`ClientAdmin` is a base of `baton.store.sql.admin.AdminStore` (`SQLStore.admin()`), beside the
console's actions it reuses (disable, enable, rotate the secret):

- `register_client`: the client's row and its `client.create` audit row (the whole registration,
  never the secret), or `ResourceUriTaken`.
- `client_page`: clients oldest first, keyset-paged along (created_at, id).
- `update_registration(before, after, actor)`: optimistic concurrency. The row is written only
  if it still holds what `before` says (every column but the secret: a rotation is no
  conflicting edit), so two administrators who read the same registration cannot both write
  their edit of it: the second finds its `before` stale (`STALE`) and must read again. That is
  what makes the admin API's `If-Match` hold even between two requests racing each other.
  An edit of a dynamically registered client ends its RFC 7592 management: its registration
  access token is forgotten, so the client cannot read back, then PUT back, what the operator
  changed (its scope, resources, redirect URIs): the operator took it over.
- `delete_client`: disable (every live grant revoked, announced on the feed) and the tombstone
  (`baton.store.sql.tombstones`), in one transaction.
- `schedule_client_policy`: the client's policy (`clients.policy`, `ClientPolicy.stored()`),
  checked for the client's kind, with its audit row naming the change in words and, when the
  client has a `notify_url`, a signed notice of it through the outbox (`outbox.policy_notice`).
  `clients.policy` is a confirmed column, so every process's cached copy of the client is
  re-read at its next use (`ClientChanged`).
- `set_client_contact`: the integrator's e-mail contacts and `notify_url`, checked, audited.
- `add_signing_key_audited`: `baton keys rotate`'s read of the keys and write of the new one, in
  one transaction serialized with any other rotation, with its `key.rotate` audit row.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import Connection, and_, or_, select, update
from sqlalchemy.exc import IntegrityError

from baton.core.client_metadata import registration
from baton.core.client_policy import ClientPolicy, PolicyError, PolicyVersion
from baton.core.keys import StoredKey
from baton.core.policy import Policy
from baton.core.vocabulary import PolicyNoticeEvent
from baton.store.admin import Actor, Disabled, checked_contact, policy_change, shown_url
from baton.store.base import Client, RegisteredVia, ResourceUriTaken
from baton.store.schema import clients
from baton.store.sql import outbox, registry
from baton.store.sql.audit import record
from baton.store.sql.rows import client_from_row, client_values
from baton.store.sql.tombstones import Deleted, is_deleted, tombstone

T = TypeVar("T")

# What a registration edit may write (never the id, the secret, the kind, the resource URI, the
# times or the tombstone).
EDITABLE_COLUMNS = (
    "name",
    "redirect_uris",
    "scope",
    "allowed_resources",
    "remember_consent",
    "require_pkce",
    *registry.OIDC_COLUMNS[1:],  # the OpenID Connect settings, the app URLs, the homepage
)
_NOT_AUDITED = ("client_id", "created_at", "disabled_at", "deleted")
# When a new key starts signing and the keys it replaces retire, from the keys stored
# (`baton.server.runtime.keyring.rotation_window` with the rotation's parameters).
KeyWindow = Callable[[Sequence[StoredKey]], tuple[int, int | None]]
# Every column the row as read must still hold, the credentials aside (not on `Client`), the
# first use (`used_at`, not on `Client` either: a use is no conflicting edit), and the client's
# policy and contact (issue 28): written by their own calls (`schedule_client_policy`, which
# checks its own `before`), no part of the registration an edit or its ETag is made from.
_COMPARED = tuple(
    c.name
    for c in clients.columns
    if c.name
    not in (
        "secret_digest",
        "registration_token_digest",
        "used_at",
        "policy",
        "contacts",
        "notify_url",
    )
)


class Stale(enum.Enum):
    """The row no longer holds what the edit was made from (changed, or gone)."""

    STALE = "stale"


STALE = Stale.STALE


class ClientAdmin:
    """The admin API's client and key writes, for a class with the store's `_read` and `_write`
    (`baton.store.sql.admin.AdminStore`)."""

    async def _read(self, work: Callable[[Connection], T]) -> T:
        raise NotImplementedError

    async def _write(self, work: Callable[[Connection], T]) -> T:
        raise NotImplementedError

    def _disable_in(self, conn: Connection, client_id: str, actor: Actor) -> Disabled | None:
        raise NotImplementedError

    async def register_client(self, client: Client, actor: Actor) -> None:
        """Stores a new client, audited (`client.create`, never its secret); `ResourceUriTaken`
        when another client is registered with its `resource_uri`."""

        def work(conn: Connection) -> None:
            registry.insert_client(conn, client)
            # The whole registration as `GET /clients/{id}` shows it (never the secret), less
            # what the audit row says itself (the id is its target, the time its own).
            detail = {
                name: value
                for name, value in registration(client).items()
                if name not in _NOT_AUDITED
            }
            record(conn, actor, "client.create", "client", client.id, detail)

        try:
            await self._write(work)
        except IntegrityError as exc:
            if client.resource_uri is not None:  # the unique `ix_clients_resource_uri`
                raise ResourceUriTaken(client.resource_uri) from exc
            raise

    async def resource_uris(self) -> frozenset[str]:
        """Every registered resource server's `resource_uri` (RFC 8707)."""
        return await self._read(registry.registered_resources)

    async def client_page(
        self, after: tuple[int, str] | None, limit: int, include_deleted: bool
    ) -> tuple[list[Client], tuple[int, str] | None]:
        """Up to `limit` clients oldest first, after the keyset cursor `after` (created_at, id)
        of the last one shown; and the cursor of the next page, if there is one."""

        def work(conn: Connection) -> tuple[list[Client], tuple[int, str] | None]:
            stmt = select(clients).order_by(clients.c.created_at, clients.c.id)
            if not include_deleted:
                stmt = stmt.where(clients.c.deleted_at.is_(None))
            if after is not None:
                created_at, client_id = after
                stmt = stmt.where(
                    or_(
                        clients.c.created_at > created_at,
                        and_(clients.c.created_at == created_at, clients.c.id > client_id),
                    )
                )
            found = [client_from_row(r) for r in conn.execute(stmt.limit(limit + 1)).mappings()]
            if len(found) > limit:
                last = found[limit - 1]
                return found[:limit], (last.created_at, last.id)
            return found, None

        return await self._read(work)

    async def update_registration(
        self, before: Client, after: Client, actor: Actor
    ) -> dict[str, Any] | Stale:
        """Writes `after`'s editable fields (checked by the caller) if the row still holds
        `before`, audited (`client.update`, the fields changed and their new values): the
        changes (empty: nothing changed, nothing written), or `STALE` when the row changed or
        went since `before` was read."""
        old, new = client_values(before), client_values(after)
        changes: dict[str, Any] = {c: new[c] for c in EDITABLE_COLUMNS if old[c] != new[c]}
        detail = {
            name: list(value) if isinstance(value, tuple) else value
            for name in _fields_changed(before, after)
            for value in [getattr(after, name)]
        }
        if changes and before.registered_via == RegisteredVia.DYNAMIC:
            # The operator's edit stands: an RFC 7592 PUT would rebuild the scope, resources
            # and redirect URIs from the client's request and the registration policy. The
            # registration access token stops working (the one 401 of any invalid token).
            changes["registration_token_digest"] = None
            detail["registration_access_token"] = "revoked"

        def work(conn: Connection) -> dict[str, Any] | Stale:
            unchanged = [clients.c[c].is_not_distinct_from(old[c]) for c in _COMPARED]
            stmt = update(clients).where(*unchanged)
            if not changes:  # still confirm the row is as read: an If-Match must hold
                held = conn.execute(select(clients.c.id).where(*unchanged)).first()
                return {} if held is not None else STALE
            if conn.execute(stmt.values(**changes)).rowcount != 1:
                return STALE
            record(conn, actor, "client.update", "client", before.id, detail)
            return detail

        return await self._write(work)

    async def delete_client(self, client_id: str, actor: Actor) -> Deleted | None:
        """Disables the client (revoking every live grant) and turns its row into a tombstone,
        each step audited, in one transaction; None when there is no such client or it was
        deleted already (a second deletion writes nothing, not even an audit row)."""

        def work(conn: Connection) -> Deleted | None:
            found = registry.get_client(conn, client_id)
            if found is None or is_deleted(found):
                return None
            disabled = self._disable_in(conn, client_id, actor)
            if not tombstone(conn, client_id, actor):
                # Deleted by another transaction since the read (PostgreSQL): it disabled the
                # client too, so `disabled` is None and this one wrote nothing.
                return None
            return Deleted(disabled.grants_revoked if disabled is not None else 0)

        return await self._write(work)

    async def schedule_client_policy(
        self,
        client_id: str,
        policy: ClientPolicy,
        now: int,
        actor: Actor,
        *,
        before: ClientPolicy | None = None,
        server: Policy | None = None,
    ) -> Client | Stale | None:
        """Writes the client's whole policy (`ClientPolicy.schedule` or `cancel` of the one it
        has), each version checked for the client's kind (`PolicySettings.check_for`) and each
        new one against the server's policy `server` when given (`check_against`; every surface
        gives it), raising `PolicyError` before anything is written; audited with the change in
        words (`client.schedule_policy` or `client.cancel_policy`), with a signed notice to the
        client's `notify_url` when it has one. The client as it now is; None when there is no
        such client or it was deleted; `STALE` when `before` is given and the row no longer
        holds it (another change got there first: read again). Writing the policy it already
        has (or the same pending change again) writes nothing, not even an audit row. A change
        applied at once that replaces a pending one says so in its audit row, and the
        integrator is sent `policy.cancelled` for the pending one before `policy.scheduled`."""

        def work(conn: Connection) -> Client | Stale | PolicyError | None:
            found = registry.get_client(conn, client_id)
            if found is None or is_deleted(found):
                return None
            if before is not None and found.policy != before:
                return STALE
            try:
                for version in policy.versions:
                    version.settings.check_for(is_public=found.is_public)
                    if server is not None and version not in found.policy.versions:
                        # Only the new one: a version stored before the server's options
                        # changed does not make every later change impossible.
                        version.settings.check_against(server)
            except PolicyError as refused:
                # Answered, not raised: a write job that raises makes the SQLite runner run
                # its whole batch again, one job at a time.
                return refused
            change = policy_change(found.policy, policy, now)
            if change is None:
                return found
            # The row's own text, as read: the update holds only if no other write came between
            # (PostgreSQL's read committed lets one in).
            held = conn.execute(select(clients.c.policy).where(clients.c.id == client_id)).scalar()
            if ClientPolicy.from_stored(held) != found.policy:
                return STALE
            written = conn.execute(
                update(clients)
                .where(
                    clients.c.id == client_id,
                    clients.c.deleted_at.is_(None),
                    clients.c.policy.is_not_distinct_from(held),
                )
                .values(policy=policy.stored())
            ).rowcount
            if written != 1:
                return STALE  # changed by another transaction since the read (PostgreSQL)
            version = change.version
            detail = {
                "change": change.words,
                "settings": version.settings.to_json(),
                "effective_at": version.effective_at,
                "report_only": version.report_only,
            }
            record(conn, actor, change.action, "client", client_id, detail)
            if found.notify_url is not None:
                if change.dropped is not None:
                    claims = _notice_claims(found, change.dropped)
                    event = PolicyNoticeEvent.CANCELLED
                    outbox.policy_notice(conn, found.notify_url, event, claims, now)
                event = (
                    PolicyNoticeEvent.CANCELLED if change.cancelled else PolicyNoticeEvent.SCHEDULED
                )
                claims = _notice_claims(found, version)
                outbox.policy_notice(conn, found.notify_url, event, claims, now)
            return dataclasses.replace(found, policy=policy)

        done = await self._write(work)
        if isinstance(done, PolicyError):
            raise done
        return done

    async def set_client_contact(
        self,
        client_id: str,
        contacts: tuple[str, ...],
        notify_url: str | None,
        now: int,
        actor: Actor,
        *,
        allow_private: bool = False,
    ) -> Client | None:
        """Sets whom to tell about the client's policy: the integrator's e-mail `contacts` and
        the `notify_url` signed notices are POSTed to (None: none), checked (`ContactError`
        before anything is written; internal addresses only with `allow_private`), audited
        (`client.contact`, the URL without its query). The client as it now is, or None when
        there is no such client or it was deleted."""
        kept, url = checked_contact(contacts, notify_url, allow_private=allow_private)

        def work(conn: Connection) -> Client | None:
            found = registry.get_client(conn, client_id)
            if found is None or is_deleted(found):
                return None
            if (found.contacts, found.notify_url) == (kept, url):
                return found
            conn.execute(
                update(clients)
                .where(clients.c.id == client_id, clients.c.deleted_at.is_(None))
                .values(contacts=json.dumps(list(kept)) if kept else None, notify_url=url)
            )
            detail = {"contacts": list(kept), "notify_url": shown_url(url)}
            record(conn, actor, "client.contact", "client", client_id, detail)
            return dataclasses.replace(found, contacts=kept, notify_url=url)

        return await self._write(work)

    async def add_signing_key_audited(
        self, key: StoredKey, window: KeyWindow, actor: Actor
    ) -> tuple[StoredKey, int | None]:
        """Stores a new signing key, audited (`key.rotate`, never key material): `window(keys)`
        says, from the keys as they are in this transaction, when it starts signing and when
        the lasting keys it replaces retire (`registry.add_signing_key`). The read and the
        insert are one transaction serialized with every other rotation
        (`registry.lock_signing_keys`), so two rotations at once never both plan from the same
        keys (the second would retire the first's key before the tokens it signs expire). The
        key as stored, and when the keys it replaced retire."""

        def work(conn: Connection) -> tuple[StoredKey, int | None]:
            registry.lock_signing_keys(conn)
            activates_at, retire_others_at = window(registry.list_signing_keys(conn))
            stored = dataclasses.replace(key, activates_at=activates_at)
            registry.add_signing_key(conn, stored, retire_others_at)
            detail = {
                "alg": stored.alg,
                "purpose": stored.purpose,
                "activates_at": activates_at,
                "old_keys_retire_at": retire_others_at,
            }
            record(conn, actor, "key.rotate", "signing_key", stored.kid, detail)
            return stored, retire_others_at

        return await self._write(work)


def _notice_claims(found: Client, version: PolicyVersion) -> dict[str, Any]:
    """The claims of a signed notice of `version` of the client's policy
    (`outbox.policy_notice`)."""
    return {
        "client_id": found.id,
        "settings": version.settings.to_json(),
        "effective_at": version.effective_at,
        "report_only": version.report_only,
        "scheduled_at": version.scheduled_at,
        # What the policy falls back on where it leaves these unset: the client's own
        # registration, as `GET /client-policy` resolves them.
        "registered": {
            "grant_types": None if found.grant_types is None else list(found.grant_types),
            "require_pkce": found.require_pkce,
        },
    }


def _fields_changed(before: Client, after: Client) -> list[str]:
    return [name for name in EDITABLE_COLUMNS if getattr(before, name) != getattr(after, name)]


__all__ = ["EDITABLE_COLUMNS", "STALE", "ClientAdmin", "KeyWindow", "Stale"]

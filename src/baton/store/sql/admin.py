"""What the admin console asks of the database: paged lists, a grant's family, and actions.

Every action runs in one transaction with the `audit_log` row that records it (actor, action,
target, time, source address; never a secret), so no action goes unrecorded and no record
claims an action that rolled back. Lists are keyset-paged along an index, so a page costs the
same on the first page as on the thousandth.

It shares the `Runner` of `baton.store.sql.SQLStore` (`SQLStore.admin()` makes it), and its
grant revocation is the store's own (`lifecycle.revoke_grant`), which also announces the
revocation on the feed.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import replace
from typing import Any, TypeVar

from sqlalchemy import Connection, and_, delete, func, insert, or_, select, update

from baton.core.client_metadata import OidcSettings, version
from baton.core.timeline import AccessRecord, EventRecord, RefreshRecord
from baton.core.user_claims import ClaimChanges
from baton.core.vocabulary import (
    FeedEntryKind,
    RevocationCause,
    SecurityEventKind,
    WebhookEventType,
)
from baton.store.admin import (
    FAMILY_PAIRS,
    PAGE,
    Actor,
    AuditRow,
    Disabled,
    Family,
    GrantPage,
    GrantQuery,
)
from baton.store.base import Client, GrantSummary, SecurityEvent, User
from baton.store.engines import Runner
from baton.store.schema import (
    access_tokens,
    audit_log,
    authorization_codes,
    clients,
    consents,
    grants,
    refresh_tokens,
    revocation_events,
    security_events,
    users,
)
from baton.store.sql import lifecycle, logout, outbox, registry
from baton.store.sql.audit import record
from baton.store.sql.client_admin import STALE, ClientAdmin, Stale
from baton.store.sql.feed import wake_feed
from baton.store.sql.records import RecordStore
from baton.store.sql.rows import client_from_row, client_values, grant_from_labels, user_from_row
from baton.store.sql.statements import GRANT_COLUMNS
from baton.store.sql.users import UserStore

T = TypeVar("T")


class AdminStore(ClientAdmin, RecordStore, UserStore):
    """The console's queries and actions over a store's runner (`SQLStore.admin()`); the
    users' life-cycle actions are `UserStore`'s (`baton.store.sql.users`)."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    async def _read(self, work: Callable[[Connection], T]) -> T:
        return await self.runner.read(work)

    async def _write(self, work: Callable[[Connection], T]) -> T:
        # The store's own writes' way: a back-channel logout written here is sent at once.
        return await outbox.write(self.runner, work)

    # -- clients ------------------------------------------------------------------------------

    async def clients(self, offset: int = 0, limit: int = PAGE) -> list[Client]:
        def work(conn: Connection) -> list[Client]:
            rows = list(
                conn.execute(
                    select(clients)
                    .where(clients.c.deleted_at.is_(None))
                    .order_by(clients.c.created_at.desc(), clients.c.id)
                    .offset(offset)
                    .limit(limit)
                ).mappings()
            )
            return [client_from_row(row) for row in rows]

        return await self._read(work)

    async def create_client(self, client: Client, actor: Actor) -> None:
        def work(conn: Connection) -> None:
            conn.execute(insert(clients).values(**client_values(client)))
            detail = {
                "name": client.name,
                "public": client.is_public,
                "resource_server": client.is_resource_server,
                "redirect_uris": list(client.redirect_uris),
                "scope": client.scope,
                "remember_consent": client.remember_consent,
                "require_pkce": client.require_pkce,
            }
            record(conn, actor, "client.create", "client", client.id, detail)

        await self._write(work)

    async def client(self, client_id: str) -> Client | None:
        return await self._read(lambda conn: registry.get_client(conn, client_id))

    async def client_names(self, client_ids: Collection[str]) -> dict[str, str]:
        """The names of these clients, by id, in one query: a page labels its rows with them
        rather than asking once per row."""
        wanted = sorted(set(client_ids))
        if not wanted:
            return {}

        def work(conn: Connection) -> dict[str, str]:
            stmt = select(clients.c.id, clients.c.name).where(clients.c.id.in_(wanted))
            return {row.id: row.name for row in conn.execute(stmt)}

        return await self._read(work)

    async def update_client_oidc(
        self,
        client_id: str,
        settings: OidcSettings,
        actor: Actor,
        apps: dict[str, str | None] | None = None,
        expected_version: str | None = None,
    ) -> dict[str, Any] | Stale | None:
        """Stores a client's OpenID Connect settings (checked by the caller) and, in `apps`,
        its `login_url`, `consent_url` and `client_uri`, audited with the fields that changed
        and their new values: the changes (empty: nothing changed, nothing written), None when
        there is no such client, or `STALE` when `expected_version` (the console form's) is not
        the registration's `version` any more: the edit was made from a stale page."""
        urls = apps or {}

        def work(conn: Connection) -> dict[str, Any] | Stale | None:
            before = registry.get_client(conn, client_id)
            if before is None:
                return None
            if expected_version is not None and version(before) != expected_version:
                return STALE
            changes = OidcSettings.of(before).differences(settings)
            changes |= {k: v for k, v in urls.items() if getattr(before, k) != v}
            if changes:
                fields: dict[str, Any] = {**settings.fields(), **urls}
                after = replace(before, **fields)
                registry.update_client_oidc(conn, after)
                record(conn, actor, "client.update_oidc", "client", client_id, changes)
            return changes

        return await self._write(work)

    async def rotate_secret(self, client_id: str, secret_digest: bytes, actor: Actor) -> bool:
        """Replaces a confidential client's secret: the old one fails from this commit on."""

        def work(conn: Connection) -> bool:
            changed = conn.execute(
                update(clients)
                .where(
                    clients.c.id == client_id,
                    clients.c.is_public.is_(False),
                    clients.c.deleted_at.is_(None),
                )
                .values(secret_digest=secret_digest)
            ).rowcount
            if changed == 1:
                record(conn, actor, "client.rotate_secret", "client", client_id, None)
            return changed == 1

        return await self._write(work)

    async def disable_client(self, client_id: str, actor: Actor) -> Disabled | None:
        """Disables the client and, in the same transaction, revokes every live grant of it
        (authorization-code and client_credentials grants alike): disabling is the incident
        response, so every token it issued dies now, and the feed and the webhooks announce
        each grant. None if the client was not enabled."""
        return await self._write(lambda conn: self._disable_in(conn, client_id, actor))

    def _disable_in(self, conn: Connection, client_id: str, actor: Actor) -> Disabled | None:
        """`disable_client`'s work, in the caller's transaction (a deletion's too)."""
        changed = conn.execute(
            update(clients)
            .where(clients.c.id == client_id, clients.c.disabled_at.is_(None))
            .values(disabled_at=actor.now)
        ).rowcount
        if changed != 1:
            return None
        revoked = _revoke_client_grants(conn, client_id, actor.now, RevocationCause.CLIENT_DISABLED)
        # As an administrator's revocation of a grant does (`lifecycle.revoke_grant`), the
        # disabling forgets every user's remembered consent: enabling the client again
        # asks each user before it gets anything.
        conn.execute(delete(consents).where(consents.c.client_id == client_id))
        # Codes issued but not redeemed yet end too, so that enabling the client again
        # within their minute revives nothing (few rows: only codes not yet expired).
        codes = authorization_codes
        conn.execute(
            update(codes)
            .where(
                codes.c.expires_at > actor.now,
                codes.c.client_id == client_id,
                codes.c.used_at.is_(None),
            )
            .values(expires_at=actor.now)
        )
        record(conn, actor, "client.disable", "client", client_id, {"grants_revoked": revoked})
        return Disabled(revoked)

    async def enable_client(self, client_id: str, actor: Actor) -> bool:
        """Enables a disabled client again: it may authenticate and obtain new grants; what the
        disabling revoked stays revoked."""

        def work(conn: Connection) -> bool:
            changed = conn.execute(
                update(clients)
                .where(
                    clients.c.id == client_id,
                    clients.c.disabled_at.is_not(None),
                    clients.c.deleted_at.is_(None),
                )
                .values(disabled_at=None)
            ).rowcount
            if changed == 1:
                record(conn, actor, "client.enable", "client", client_id, None)
            return changed == 1

        return await self._write(work)

    # -- grants -------------------------------------------------------------------------------

    async def grants(self, query: GrantQuery, now: int) -> GrantPage:
        """Grants newest first, by their absolute expiry (creation + the absolute lifetime, so
        the same order as creation while that lifetime is unchanged), along its index."""

        def work(conn: Connection) -> GrantPage:
            stmt = select(*GRANT_COLUMNS).outerjoin(users, users.c.id == grants.c.user_id)
            if query.client_id:
                stmt = stmt.where(grants.c.client_id == query.client_id)
            if query.username:
                stmt = stmt.where(users.c.username == query.username)
            # `revoked_at + 0`: not an indexed column, so the planner walks the expiry index
            # down to the page instead of collecting every unrevoked grant and sorting them.
            unrevoked = (grants.c.revoked_at + 0).is_(None)
            if query.status == "active":
                stmt = stmt.where(unrevoked, grants.c.expires_at > now)
            elif query.status == "revoked":
                stmt = stmt.where(grants.c.revoked_at.is_not(None))
            elif query.status == "expired":
                stmt = stmt.where(unrevoked, grants.c.expires_at <= now)
            if query.after is not None:
                expires_at, grant_id = query.after
                stmt = stmt.where(
                    or_(
                        grants.c.expires_at < expires_at,
                        and_(grants.c.expires_at == expires_at, grants.c.id < grant_id),
                    )
                )
            stmt = stmt.order_by(grants.c.expires_at.desc(), grants.c.id.desc())
            found = [
                grant_from_labels(r) for r in conn.execute(stmt.limit(query.limit + 1)).mappings()
            ]
            more = len(found) > query.limit
            found = found[: query.limit]
            stats = {
                row[0]: (int(row[1]), row[2])
                for row in conn.execute(
                    select(
                        refresh_tokens.c.grant_id,
                        func.count(),
                        func.max(refresh_tokens.c.issued_at),
                    )
                    .where(refresh_tokens.c.grant_id.in_([g.id for g in found]))
                    .group_by(refresh_tokens.c.grant_id)
                ).all()
            }
            rows = [GrantSummary(g, *stats.get(g.id, (0, None))) for g in found]
            cursor = (found[-1].expires_at, found[-1].id) if more and found else None
            return GrantPage(rows, cursor)

        return await self._read(work)

    async def family(self, grant_id: str, pairs: int = FAMILY_PAIRS) -> Family | None:
        def work(conn: Connection) -> Family | None:
            grant = lifecycle.read_grant(conn, grant_id)
            if grant is None:
                return None
            rt, at = refresh_tokens, access_tokens
            refresh = [
                RefreshRecord(
                    id=r["id"],
                    parent_id=r["parent_id"],
                    generation=r["generation"],
                    issued_at=r["issued_at"],
                    expires_at=r["expires_at"],
                    exchanged_at=r["exchanged_at"],
                    retire_at=r["retire_at"],
                    revoked_at=r["revoked_at"],
                )
                for r in conn.execute(
                    select(
                        rt.c.id,
                        rt.c.parent_id,
                        rt.c.generation,
                        rt.c.issued_at,
                        rt.c.expires_at,
                        rt.c.exchanged_at,
                        rt.c.retire_at,
                        rt.c.revoked_at,
                    )
                    .where(rt.c.grant_id == grant_id)
                    .order_by(rt.c.id.desc())
                    .limit(pairs)
                ).mappings()
            ]
            total = conn.execute(
                select(func.count()).select_from(rt).where(rt.c.grant_id == grant_id)
            ).scalar_one()
            oldest = min((r.generation for r in refresh), default=0)
            # Access tokens by their companions' ids, and by the grant for those without one
            # (`access_tokens` has no index of every row by grant: migration 0005).
            companions = (
                conn.execute(
                    select(rt.c.id).where(rt.c.grant_id == grant_id, rt.c.generation >= oldest)
                )
                .scalars()
                .all()
            )
            in_family = or_(
                at.c.refresh_token_id.in_(companions),
                and_(at.c.refresh_token_id.is_(None), at.c.grant_id == grant_id),
            )
            access = [
                AccessRecord(
                    generation=r["generation"],
                    refresh_id=r["refresh_token_id"],
                    issued_at=r["issued_at"],
                    expires_at=r["expires_at"],
                    revoked_at=r["revoked_at"],
                )
                for r in conn.execute(
                    select(
                        at.c.generation,
                        at.c.refresh_token_id,
                        at.c.issued_at,
                        at.c.expires_at,
                        at.c.revoked_at,
                    )
                    .where(in_family, at.c.generation >= oldest)
                    .order_by(at.c.id.desc())
                    .limit(pairs * 2)
                ).mappings()
            ]
            ev = security_events
            events = [
                EventRecord(r["kind"], r["generation"], r["occurred_at"], r["detail"])
                for r in conn.execute(
                    select(ev.c.kind, ev.c.generation, ev.c.occurred_at, ev.c.detail)
                    .where(ev.c.grant_id == grant_id)
                    .order_by(ev.c.id.desc())
                    .limit(pairs * 4)
                ).mappings()
            ]
            return Family(grant, refresh, access, events, max(0, int(total) - len(refresh)))

        return await self._read(work)

    async def revoke_grant(self, grant_id: str, actor: Actor) -> bool:
        def work(conn: Connection) -> bool:
            revoked = lifecycle.revoke_grant(conn, grant_id, actor.now, RevocationCause.ADMIN)
            if revoked:
                record(conn, actor, "grant.revoke", "grant", grant_id, None)
            return revoked

        return await self._write(work)

    # -- users ---------------------------------------------------------------------------------

    async def sign_out_everywhere(self, username: str, actor: Actor) -> int | None:
        """Ends every live session of the user (None: no such user), audited."""

        def work(conn: Connection) -> int | None:
            user_id = conn.execute(select(users.c.id).where(users.c.username == username)).scalar()
            if user_id is None:
                return None
            ended = logout.end_user_sessions(conn, user_id, actor.now).sessions
            record(conn, actor, "user.sign_out_everywhere", "user", username, {"sessions": ended})
            return ended

        return await self._write(work)

    async def users(self, offset: int = 0, limit: int = PAGE) -> list[User]:
        def work(conn: Connection) -> list[User]:
            rows = conn.execute(
                select(users).order_by(users.c.username).offset(offset).limit(limit)
            ).mappings()
            return [user_from_row(row) for row in rows]

        return await self._read(work)

    async def user(self, username: str) -> User | None:
        return await self._read(lambda conn: registry.user_named(conn, username))

    async def set_user_claims(
        self, username: str, changes: ClaimChanges, actor: Actor
    ) -> list[str] | None:
        """Applies checked claim changes to the user, audited with the names of the claims that
        changed (not their values: an email address is personal data the log need not keep).
        The names changed (empty: nothing), or None when there is no such user."""

        def work(conn: Connection) -> list[str] | None:
            found = registry.set_user_claims(conn, username, changes, actor.now)
            if found is None:
                return None
            changed = _changed_claims(*found)
            if changed:
                record(conn, actor, "user.set_claims", "user", username, {"claims": changed})
            return changed

        return await self._write(work)

    # -- security events and the audit log -----------------------------------------------------

    async def security_events(
        self, kind: str | None = None, before: int | None = None, limit: int = PAGE
    ) -> tuple[list[SecurityEvent], int | None]:
        def work(conn: Connection) -> tuple[list[SecurityEvent], int | None]:
            ev = security_events
            stmt = select(ev).order_by(ev.c.id.desc()).limit(limit + 1)
            if kind:
                stmt = stmt.where(ev.c.kind == kind)
            if before is not None:
                stmt = stmt.where(ev.c.id < before)
            rows = [SecurityEvent(**row) for row in conn.execute(stmt).mappings()]
            return _paged(rows, limit)

        return await self._read(work)

    async def record_security_event(
        self,
        kind: SecurityEventKind,
        now: int,
        *,
        subject: str | None = None,
        source_address: str | None = None,
        detail: str | None = None,
    ) -> None:
        """A security event that concerns no grant (a sign-in lockout)."""
        values = {
            "kind": kind,
            "subject": subject,
            "occurred_at": now,
            "source_address": source_address,
            "detail": detail,
        }
        await self._write(lambda conn: conn.execute(insert(security_events).values(**values)))

    async def audit(
        self, before: int | None = None, limit: int = PAGE
    ) -> tuple[list[AuditRow], int | None]:
        def work(conn: Connection) -> tuple[list[AuditRow], int | None]:
            stmt = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit + 1)
            if before is not None:
                stmt = stmt.where(audit_log.c.id < before)
            rows = [AuditRow(**row) for row in conn.execute(stmt).mappings()]
            return _paged(rows, limit)

        return await self._read(work)


def _revoke_client_grants(
    conn: Connection, client_id: str, now: int, reason: RevocationCause
) -> int:
    """Revokes every live grant of a client at once, writing what `lifecycle.revoke_grant`
    writes for each (the grant's row, a feed entry lasting until its last access token would
    have expired, a `grant.revoked` webhook) with a fixed number of statements however many
    grants the client has: no statement per grant. Returns how many it revoked."""
    g, rt, at = grants, refresh_tokens, access_tokens
    ids = {
        row[0]
        for row in conn.execute(
            update(g)
            .where(g.c.client_id == client_id, g.c.revoked_at.is_(None), g.c.expires_at > now)
            .values(revoked_at=now, revoked_reason=reason)
            .returning(g.c.id)
        )
    }
    if not ids:
        return 0
    mine = (g.c.client_id == client_id, g.c.revoked_at == now, g.c.revoked_reason == reason)
    # The latest `exp` of each grant's access tokens still to expire (as `lifecycle.revoke_grant`
    # finds it: through the companions not yet expired, and by the grant for those without one).
    last: dict[str, int] = {}
    paired = (
        select(rt.c.grant_id, func.max(at.c.expires_at))
        .select_from(at.join(rt, rt.c.id == at.c.refresh_token_id))
        .join(g, g.c.id == rt.c.grant_id)
        .where(*mine, rt.c.expires_at > now, at.c.expires_at > now)
        .group_by(rt.c.grant_id)
    )
    unpaired = (
        select(at.c.grant_id, func.max(at.c.expires_at))
        .join(g, g.c.id == at.c.grant_id)
        .where(*mine, at.c.refresh_token_id.is_(None), at.c.expires_at > now)
        .group_by(at.c.grant_id)
    )
    for query in (paired, unpaired):
        for grant_id, expires_at in conn.execute(query):
            last[grant_id] = max(last.get(grant_id, 0), int(expires_at))
    subjects = {
        row[0]: row[1]
        for row in conn.execute(
            select(g.c.id, users.c.username)
            .outerjoin(users, users.c.id == g.c.user_id)
            .where(*mine)
        )
        if row[0] in ids
    }
    ordered = sorted(ids)
    conn.execute(
        insert(revocation_events),
        [
            {
                "kind": FeedEntryKind.GRANT,
                "grant_id": grant_id,
                "effective_at": now,
                "expires_at": last.get(grant_id, now),
                "created_at": now,
            }
            for grant_id in ordered
        ],
    )
    wake_feed(conn)
    outbox.enqueue_many(
        conn,
        WebhookEventType.GRANT_REVOKED,
        [
            {
                "grant_id": grant_id,
                "client_id": client_id,
                "subject": subjects.get(grant_id),
                "reason": reason,
            }
            for grant_id in ordered
        ],
        now,
    )
    conn.execute(
        insert(security_events).values(
            kind=SecurityEventKind.CLIENT_DISABLED,
            client_id=client_id,
            occurred_at=now,
            detail=f"client disabled: {len(ids)} live grant(s) revoked",
        )
    )
    return len(ids)


def _changed_claims(before: User, after: User) -> list[str]:
    names = [n for n in ("email", "email_verified") if getattr(before, n) != getattr(after, n)]
    keys = sorted(set(before.profile) | set(after.profile))
    return names + [k for k in keys if before.profile.get(k) != after.profile.get(k)]


R = TypeVar("R", SecurityEvent, AuditRow)


def _paged(rows: list[R], limit: int) -> tuple[list[R], int | None]:
    """The page and the cursor of the next one (the last id shown), if there is more."""
    if len(rows) > limit:
        return rows[:limit], rows[limit - 1].id
    return rows, None

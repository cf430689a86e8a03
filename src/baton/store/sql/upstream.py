"""Upstream OpenID Connect providers and their links to local users, as units of work.

`UpstreamStore` is a mixin of `baton.store.sql.SQLStore`: the provider rows the CLI manages, the
links the console shows, and the sign-in's one transaction that finds (or makes) the local user
of an upstream account and records it in the audit log (never a token).

Two first sign-ins of one upstream account at once both find no link and both try to make it
(and the user): the loser's transaction fails on the primary key or the username and is run
once more, when it finds the winner's link. A made user's name is derived from the `sub`, so
the name of a deleted one stays reserved (`registry.create_user`): that upstream account is
refused ("deleted"), never given a new user.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

from sqlalchemy import Connection, RowMapping, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from baton.core.upstream import (
    DELETED,
    DISABLED,
    NOT_LINKED,
    NOT_SET_UP,
    SEVERAL_BY_EMAIL,
    Linked,
    SignInOutcome,
    UpstreamIdentity,
    UpstreamLink,
    UpstreamProvider,
    may_link_by_email,
    may_link_user_by_email,
    same_email,
    username_for,
)
from baton.core.user_claims import ClaimChanges, ClaimError, check
from baton.passwords import NO_PASSWORD
from baton.store.admin import Actor
from baton.store.base import UpstreamExists, UserExists, UsernameOfDeletedUser
from baton.store.schema import upstream_links, upstream_providers, users
from baton.store.sql import registry
from baton.store.sql.audit import record

T = TypeVar("T")


class UpstreamStore:
    """`SQLStore`'s upstream providers and links."""

    async def _write(self, work: Callable[[Connection], T]) -> T:
        raise NotImplementedError  # SQLStore's

    async def _read(self, work: Callable[[Connection], T]) -> T:
        raise NotImplementedError  # SQLStore's

    # -- providers (the CLI) --------------------------------------------------------------------

    async def add_upstream(self, provider: UpstreamProvider) -> None:
        """Raises `UpstreamExists` if the id is taken."""

        def work(conn: Connection) -> None:
            if conn.execute(
                select(upstream_providers.c.id).where(upstream_providers.c.id == provider.id)
            ).first():
                raise UpstreamExists(provider.id)
            conn.execute(
                insert(upstream_providers).values(
                    id=provider.id,
                    name=provider.name,
                    issuer=provider.issuer,
                    client_id=provider.client_id,
                    client_secret=provider.client_secret,
                    scope=provider.scope,
                    link_by_email=provider.link_by_email,
                    create_users=provider.create_users,
                    created_at=provider.created_at,
                    disabled_at=provider.disabled_at,
                )
            )

        try:
            await self._write(work)
        except IntegrityError as exc:  # added at the same time by another process
            raise UpstreamExists(provider.id) from exc

    async def upstreams(self, *, enabled_only: bool = False) -> list[UpstreamProvider]:
        """The configured providers in id order (the enabled ones: the login page's list)."""

        def work(conn: Connection) -> list[UpstreamProvider]:
            query = select(upstream_providers).order_by(upstream_providers.c.id)
            if enabled_only:
                query = query.where(upstream_providers.c.disabled_at.is_(None))
            return [_provider(row) for row in conn.execute(query).mappings()]

        return await self._read(work)

    async def upstream(self, provider_id: str) -> UpstreamProvider | None:
        def work(conn: Connection) -> UpstreamProvider | None:
            row = (
                conn.execute(
                    select(upstream_providers).where(upstream_providers.c.id == provider_id)
                )
                .mappings()
                .first()
            )
            return None if row is None else _provider(row)

        return await self._read(work)

    async def set_upstream_disabled(self, provider_id: str, disabled_at: int | None) -> bool:
        """Disables (a time) or enables (None) a provider; whether there is one."""

        def work(conn: Connection) -> bool:
            done = conn.execute(
                update(upstream_providers)
                .where(upstream_providers.c.id == provider_id)
                .values(disabled_at=disabled_at)
            )
            return done.rowcount > 0

        return await self._write(work)

    async def remove_upstream(self, provider_id: str) -> int | None:
        """Removes a provider and its links (the local users stay): how many links there were,
        or None when there is no such provider."""

        def work(conn: Connection) -> int | None:
            links = conn.execute(
                delete(upstream_links).where(upstream_links.c.provider_id == provider_id)
            ).rowcount
            done = conn.execute(
                delete(upstream_providers).where(upstream_providers.c.id == provider_id)
            )
            return links if done.rowcount > 0 else None

        return await self._write(work)

    # -- links (the console) --------------------------------------------------------------------

    async def upstream_links_of(self, user_id: int) -> list[UpstreamLink]:
        def work(conn: Connection) -> list[UpstreamLink]:
            query = (
                select(upstream_links, upstream_providers.c.name)
                .join(upstream_providers, upstream_providers.c.id == upstream_links.c.provider_id)
                .where(upstream_links.c.user_id == user_id)
                .order_by(upstream_links.c.provider_id, upstream_links.c.subject)
            )
            return [
                UpstreamLink(
                    row["provider_id"],
                    row["name"],
                    row["subject"],
                    row["user_id"],
                    row["created_at"],
                    row["last_used_at"],
                    row["email"],
                )
                for row in conn.execute(query).mappings()
            ]

        return await self._read(work)

    async def unlink_upstream(
        self, user_id: int, provider_id: str, subject: str, actor: Actor
    ) -> bool:
        """Forgets that this upstream account is this user (audited): it signs in as nobody
        until linked again; the user's sessions stay. Whether there was such a link."""

        def work(conn: Connection) -> bool:
            gone = conn.execute(
                delete(upstream_links).where(
                    upstream_links.c.user_id == user_id,
                    upstream_links.c.provider_id == provider_id,
                    upstream_links.c.subject == subject,
                )
            ).rowcount
            if gone:
                username = conn.execute(
                    select(users.c.username).where(users.c.id == user_id)
                ).scalar_one()
                detail = {"provider": provider_id, "upstream_subject": subject}
                record(conn, actor, "upstream.unlink", "user", username, detail)
            return bool(gone)

        return await self._write(work)

    # -- the sign-in ----------------------------------------------------------------------------

    async def upstream_sign_in(
        self, provider: UpstreamProvider, identity: UpstreamIdentity, actor: Actor
    ) -> SignInOutcome:
        """The local user of the upstream account, in one transaction with its audit row: the
        link by (provider, `sub`); else, as the provider is configured, a link made by the
        upstream's verified e-mail to the one local user with it, or a user made now; else a
        refusal. A disabled user is refused; so is the upstream account of a deleted user."""
        for attempt in range(2):
            try:
                return await self._write(lambda conn: _sign_in(conn, provider, identity, actor))
            except (IntegrityError, UserExists):
                # Another first sign-in of this account made the link (or the user) meanwhile:
                # run again, to find its link. A second failure is no race: refuse.
                if attempt:
                    break
        return SignInOutcome(refusal=NOT_SET_UP)


def _sign_in(
    conn: Connection, provider: UpstreamProvider, identity: UpstreamIdentity, actor: Actor
) -> SignInOutcome:
    now = actor.now
    key = (upstream_links.c.provider_id == provider.id) & (
        upstream_links.c.subject == identity.subject
    )
    user_id = conn.execute(select(upstream_links.c.user_id).where(key)).scalar()
    how = Linked.LINK
    if user_id is None:
        found = _user_to_link(conn, provider, identity, now)
        if isinstance(found, str):
            return SignInOutcome(refusal=found)
        user_id, how = found
    user = registry.user_by_id(conn, user_id)
    if user is None:  # the link outlived its user
        return SignInOutcome(refusal=NOT_LINKED)
    if user.disabled_at is not None:  # refused before any link is made
        return SignInOutcome(refusal=DISABLED)
    if how != Linked.LINK:
        conn.execute(
            insert(upstream_links).values(
                provider_id=provider.id,
                subject=identity.subject,
                user_id=user_id,
                created_at=now,
            )
        )
    conn.execute(update(upstream_links).where(key).values(last_used_at=now, email=identity.email))
    detail = {"provider": provider.id, "upstream_subject": identity.subject, "linked": how}
    record(conn, actor, "upstream.sign_in", "user", user.username, detail)
    return SignInOutcome(user.id, user.username, how)


def _user_to_link(
    conn: Connection, provider: UpstreamProvider, identity: UpstreamIdentity, now: int
) -> tuple[int, str] | str:
    """The local user a new link is for and how it was found, or the refusal."""
    if may_link_by_email(provider.link_by_email, identity):
        assert identity.email is not None
        # The index-friendly lower() narrows; the case-folded comparison decides.
        rows = conn.execute(
            select(users.c.id, users.c.email, users.c.email_verified, users.c.is_admin).where(
                func.lower(users.c.email) == identity.email.lower(),
                users.c.deleted_at.is_(None),
            )
        ).all()
        matches = [row for row in rows if same_email(row.email, identity.email)]
        if len(matches) > 1:
            return SEVERAL_BY_EMAIL
        if matches:
            match = matches[0]
            linked = conn.execute(
                select(upstream_links.c.subject).where(
                    upstream_links.c.user_id == match.id,
                    upstream_links.c.provider_id == provider.id,
                )
            ).first()
            if may_link_user_by_email(
                email_verified=bool(match.email_verified),
                is_admin=bool(match.is_admin),
                linked_to_provider=linked is not None,
            ):
                return match.id, Linked.EMAIL
    if provider.create_users:
        try:
            return _create_user(conn, provider, identity, now), Linked.CREATED
        except UsernameOfDeletedUser:
            return DELETED
    return NOT_LINKED


def _create_user(
    conn: Connection, provider: UpstreamProvider, identity: UpstreamIdentity, now: int
) -> int:
    """A user for the upstream account, named after its `sub` (`username_for`). Raises
    `UsernameOfDeletedUser` when that user was deleted, `UserExists` when the name is taken
    (a concurrent first sign-in)."""
    made = registry.create_user(
        conn, username_for(provider.id, identity.subject), NO_PASSWORD, now, False
    )
    changes = _claims(identity)
    if changes:
        registry.set_user_claims(conn, made.username, changes, now)
    return made.id


def _claims(identity: UpstreamIdentity) -> ClaimChanges:
    """The upstream's e-mail (with its `email_verified`) and profile claims, each one only if
    Baton may hold it (`baton.core.user_claims.check`)."""
    values: dict[str, str | None] = {}
    candidates: Mapping[str, str] = {
        **({"email": identity.email} if identity.email else {}),
        **identity.profile,
    }
    for name, value in candidates.items():
        try:
            check(ClaimChanges({name: value}))
        except ClaimError:
            continue
        values[name] = value
    verified = identity.email_verified if "email" in values else None
    return ClaimChanges(values, verified)


def _provider(row: RowMapping) -> UpstreamProvider:
    return UpstreamProvider(
        id=str(row["id"]),
        name=str(row["name"]),
        issuer=str(row["issuer"]),
        client_id=str(row["client_id"]),
        client_secret=row["client_secret"],
        scope=str(row["scope"]),
        link_by_email=bool(row["link_by_email"]),
        create_users=bool(row["create_users"]),
        created_at=row["created_at"],
        disabled_at=row["disabled_at"],
    )

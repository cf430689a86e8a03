"""Login and consent challenges (`auth_challenges`), and the delegated session state the admin
API reaches: a subject's remembered consent and grants.

A challenge is stored under the SHA-256 digest of its value, bound to the digest of the browser
cookie that started it; its decision hands out a verifier, stored as a digest too. Each decision
and each verifier's use is one conditional UPDATE (`WHERE decided_at IS NULL`, `WHERE used_at
IS NULL`): of two racing attempts, one wins, the other finds the row already changed. Every admin
API action is audited in the transaction that does it (`baton.store.sql.audit.record`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from baton.core.challenges import LOGIN, State
from baton.core.vocabulary import RevocationCause
from baton.passwords import NO_PASSWORD
from baton.store.admin import Actor
from baton.store.base import Challenge, NotHonoured, Remembered, SignedOut
from baton.store.base import ChallengeRefused as Refused
from baton.store.engines import Runner
from baton.store.schema import auth_challenges, consents, grants, upstream_links, users
from baton.store.sql import lifecycle, logout, outbox, registry
from baton.store.sql.audit import record

T = TypeVar("T")


def _challenge(row: Any) -> Challenge:
    return Challenge(
        digest=bytes(row.digest),
        kind=row.kind,
        client_id=row.client_id,
        browser=bytes(row.browser),
        request=json.loads(row.request),
        user_id=row.user_id,
        created_at=row.created_at,
        expires_at=row.expires_at,
        decided_at=row.decided_at,
        outcome=json.loads(row.outcome) if row.outcome is not None else None,
        used_at=row.used_at,
    )


def _read(conn: Connection, digest: bytes) -> Challenge | None:
    row = conn.execute(
        select(auth_challenges).where(auth_challenges.c.digest == digest)
    ).one_or_none()
    return None if row is None else _challenge(row)


def _why_undecidable(found: Challenge | None, kind: str, now: int) -> Refused:
    if found is None or found.kind != kind:
        return "unknown"
    return "expired" if found.state(now) is State.EXPIRED else "decided"


def _delegated_user(conn: Connection, subject: str, now: int) -> int | Refused:
    """The id of the delegated user named `subject`, made now (with no password) if no user
    holds the name; or why a login app may not sign in as it.

    A login app speaks only for the users it makes: its subjects are their own namespace. A
    name held by a built-in user (a password, an administrator, a second factor, required MFA)
    or by an upstream provider's user is refused, else an app's accept would sign in as them
    without their password or second factor.

    The insert is `ON CONFLICT DO NOTHING`, then the row is read: two first accepts of one new
    subject at once both find the one row (on PostgreSQL the second insert waits for the first
    to commit; READ COMMITTED then lets the read see it)."""
    c = users.c
    values = {
        "username": subject,
        "password_hash": NO_PASSWORD,
        "is_admin": False,
        "created_at": now,
    }
    dialect_insert = postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(
        dialect_insert(users).values(**values).on_conflict_do_nothing(index_elements=["username"])
    )
    row = conn.execute(
        select(
            c.id,
            c.password_hash,
            c.is_admin,
            c.totp_secret,
            c.mfa_required,
            c.disabled_at,
            c.deleted_at,
        ).where(c.username == subject)
    ).one()
    if row.deleted_at is not None:
        # A deleted user's name stays theirs: nobody signs in under it again.
        return "user_deleted"
    linked = conn.execute(
        select(upstream_links.c.user_id).where(upstream_links.c.user_id == row.id).limit(1)
    ).first()
    if (
        row.password_hash != NO_PASSWORD
        or row.is_admin
        or row.totp_secret is not None
        or row.mfa_required
        or linked is not None
    ):
        return "subject_not_delegated"
    if row.disabled_at is not None:
        return "user_disabled"
    return int(row.id)


class ChallengeStore:
    """The challenges' units of work (a mixin of `baton.store.sql.SQLStore`)."""

    runner: Runner

    async def _change(self, work: Callable[[Connection], T]) -> T:
        # The store's writes' way (`SQLStore._write`): a back-channel logout is sent at once.
        return await outbox.write(self.runner, work)

    async def create_challenge(
        self,
        digest: bytes,
        kind: str,
        client_id: str,
        browser: bytes,
        request: dict[str, Any],
        user_id: int | None,
        now: int,
        expires_at: int,
    ) -> None:
        values = {
            "digest": digest,
            "kind": kind,
            "client_id": client_id,
            "browser": browser,
            "request": json.dumps(request, separators=(",", ":"), sort_keys=True),
            "user_id": user_id,
            "created_at": now,
            "expires_at": expires_at,
        }
        await self._change(lambda conn: conn.execute(insert(auth_challenges).values(**values)))

    async def find_challenge(self, digest: bytes) -> Challenge | None:
        """The challenge stored under `digest`, whatever its state (a read: not audited; the
        decision that follows is)."""
        return await self.runner.read(lambda conn: _read(conn, digest))

    async def read_challenge(
        self, digest: bytes, kind: str, actor: Actor, action: str, target: str
    ) -> Challenge | None:
        """The challenge of `kind` stored under `digest` (None: no such one), the read audited."""

        def work(conn: Connection) -> Challenge | None:
            found = _read(conn, digest)
            if found is not None and found.kind != kind:
                found = None
            detail = {"found": found is not None}
            record(conn, actor, action, f"{kind}_challenge", target, detail)
            return found

        return await self._change(work)

    async def decide_challenge(
        self,
        digest: bytes,
        kind: str,
        outcome: dict[str, Any],
        verifier: bytes,
        actor: Actor,
        action: str,
        target: str,
        subject: str | None = None,
        remember_consent: Remembered | None = None,
    ) -> Challenge | Refused:
        """Records the app's decision and the verifier that carries it back, once: the decided
        challenge, or why not. A login accept names its `subject`: the delegated user is found or
        made (with no password) in the same transaction (`_delegated_user`); a built-in or
        upstream user's name, a disabled or a deleted user refuses the accept. A
        consent accept with `remember_consent` (scope, resources, expires_at, claims) records
        the user's consent for the client, with its expiry and the app's claims."""
        now = actor.now

        def work(conn: Connection) -> Challenge | Refused:
            found = _read(conn, digest)
            if found is None or found.kind != kind or found.state(now) is not State.PENDING:
                refused = _why_undecidable(found, kind, now)
                record(conn, actor, action, f"{kind}_challenge", target, {"refused": refused})
                return refused
            user_id = found.user_id
            if subject is not None:
                found_user = _delegated_user(conn, subject, now)
                if isinstance(found_user, str):
                    refusal = {"refused": found_user}
                    record(conn, actor, action, f"{kind}_challenge", target, refusal)
                    return found_user
                user_id = found_user
            changed = conn.execute(
                update(auth_challenges)
                .where(
                    auth_challenges.c.digest == digest,
                    auth_challenges.c.decided_at.is_(None),
                    auth_challenges.c.expires_at > now,
                )
                .values(
                    decided_at=now,
                    outcome=json.dumps(outcome, separators=(",", ":"), sort_keys=True),
                    verifier=verifier,
                    user_id=user_id,
                )
            ).rowcount
            if changed != 1:  # another decision won the race since the read
                return "decided"
            if remember_consent is not None and user_id is not None:
                scope, resources, expires_at, claims = remember_consent
                values = registry.consent_values(scope, resources, now, expires_at, claims)
                registry.remember_consent(conn, user_id, found.client_id, values)
            detail: dict[str, Any] = {"decision": outcome.get("decision")}
            if subject is not None and kind == LOGIN:
                detail["subject"] = subject
            record(conn, actor, action, f"{kind}_challenge", target, detail)
            return _read(conn, digest) or "unknown"

        return await self._change(work)

    async def redeem_verifier(
        self, verifier: bytes, kind: str, client_id: str, browser: bytes | None, now: int
    ) -> Challenge | NotHonoured:
        """Uses the verifier once: the decided challenge it answers, if it is of `kind`, for
        `client_id`, started by this `browser`, unexpired and unused; else why not (and the
        verifier stays as it was: a foreign browser cannot burn another's verifier)."""

        def work(conn: Connection) -> Challenge | NotHonoured:
            c = auth_challenges.c
            changed = conn.execute(
                update(auth_challenges)
                .where(
                    c.verifier == verifier,
                    c.used_at.is_(None),
                    c.kind == kind,
                    c.client_id == client_id,
                    c.browser == (browser or b""),
                    c.expires_at > now,
                )
                .values(used_at=now)
            ).rowcount
            row = conn.execute(select(auth_challenges).where(c.verifier == verifier)).one_or_none()
            if row is None:
                return "unknown"
            found = _challenge(row)
            if changed == 1:
                return found
            if found.kind != kind:
                return "kind"
            if found.client_id != client_id:
                return "client"
            if found.used_at is not None:
                return "used"
            if now >= found.expires_at:
                return "expired"
            return "browser"

        return await self._change(work)

    async def audit_api(
        self, actor: Actor, action: str, kind: str, target: str, detail: dict[str, Any] | None
    ) -> None:
        """An audit row for an admin API call that changed nothing (a refusal, a bad body)."""
        await self._change(lambda conn: record(conn, actor, action, kind, target, detail))

    async def end_subject_sessions(self, subject: str, actor: Actor) -> SignedOut | None:
        """ "Sign out everywhere" for the user named `subject`: every live session ends as the
        provider's sign-out ends it (grants without `offline_access`, back-channel logouts);
        None when there is no such user. Audited."""

        def work(conn: Connection) -> SignedOut | None:
            user_id = conn.execute(select(users.c.id).where(users.c.username == subject)).scalar()
            if user_id is None:
                record(conn, actor, "subject.sessions.delete", "user", subject, {"found": False})
                return None
            done = logout.end_user_sessions(conn, user_id, actor.now)
            detail = {"sessions": done.sessions, "grants_revoked": len(done.revoked)}
            record(conn, actor, "subject.sessions.delete", "user", subject, detail)
            return done

        return await self._change(work)

    async def forget_subject_consents(
        self, subject: str, client_id: str | None, actor: Actor
    ) -> int | None:
        """Forgets the user's remembered consent (for `client_id`, or every client) and revokes
        their live grants of those clients (each announced on the feed, as an operator's
        revocation): how many grants, or None when there is no such user. Audited."""
        now = actor.now

        def work(conn: Connection) -> int | None:
            user_id = conn.execute(select(users.c.id).where(users.c.username == subject)).scalar()
            if user_id is None:
                record(conn, actor, "subject.consents.delete", "user", subject, {"found": False})
                return None
            which = consents.c.user_id == user_id
            live = (grants.c.user_id == user_id) & grants.c.revoked_at.is_(None)
            if client_id is not None:
                which = which & (consents.c.client_id == client_id)
                live = live & (grants.c.client_id == client_id)
            conn.execute(delete(consents).where(which))
            ids = conn.execute(select(grants.c.id).where(live, grants.c.expires_at > now)).scalars()
            revoked = sum(
                lifecycle.revoke_grant(conn, grant_id, now, RevocationCause.ADMIN)
                for grant_id in list(ids)
            )
            detail = {"client_id": client_id, "grants_revoked": revoked}
            record(conn, actor, "subject.consents.delete", "user", subject, detail)
            return revoked

        return await self._change(work)


def purge_batch(conn: Connection, horizon: int, batch: int) -> int:
    """Deletes a batch of challenges expired before `horizon` (their story is over: a verifier
    dies with its challenge, and the audit log keeps what was decided)."""
    c = auth_challenges.c
    old = select(c.digest).where(c.expires_at < horizon).limit(batch).scalar_subquery()
    return conn.execute(delete(auth_challenges).where(c.digest.in_(old))).rowcount

"""What the admin console asks of the store: its queries and audited actions (`AdminQueries`).

The console gets them from the server's store (`AdminSource.admin()`), rather than testing which
store it holds; `baton.store.sql.SQLStore.admin()` answers with `baton.store.sql.AdminStore`.
Each action runs in one transaction with the audit row that records it.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Protocol

from baton.core.client_metadata import OidcSettings
from baton.core.client_policy import ClientPolicy
from baton.core.policy import Policy
from baton.core.user_claims import ClaimChanges
from baton.core.vocabulary import SecurityEventKind
from baton.store.admin import (
    FAMILY_PAIRS,
    PAGE,
    Actor,
    AuditRow,
    Disabled,
    Family,
    GrantPage,
    GrantQuery,
    UserEnded,
    UserListing,
)
from baton.store.base import (
    Challenge,
    ChallengeRefused,
    Client,
    NotHonoured,
    Remembered,
    SecurityEvent,
    SignedOut,
    User,
)
from baton.store.sql.client_admin import Stale


class AdminQueries(Protocol):
    async def clients(self, offset: int = 0, limit: int = PAGE) -> list[Client]: ...

    async def create_client(self, client: Client, actor: Actor) -> None: ...

    async def client(self, client_id: str) -> Client | None: ...

    async def client_names(self, client_ids: Collection[str]) -> dict[str, str]:
        """The names of these clients, by id, in one query (a page's labels; an id with no
        client is left out)."""
        ...

    async def update_client_oidc(
        self,
        client_id: str,
        settings: OidcSettings,
        actor: Actor,
        apps: dict[str, str | None] | None = None,
        expected_version: str | None = None,
    ) -> dict[str, Any] | Stale | None:
        """Stores a client's OpenID Connect settings (and, in `apps`, its login app, consent
        app and homepage URLs), audited: the fields changed, with their new values (None: no
        such client; `STALE`: the registration is no longer at `expected_version`, the version
        the edit was made from)."""
        ...

    async def rotate_secret(self, client_id: str, secret_digest: bytes, actor: Actor) -> bool:
        """Replaces a confidential client's secret: the old one fails from this commit on."""
        ...

    async def disable_client(self, client_id: str, actor: Actor) -> Disabled | None:
        """Disables the client and revokes every live grant of it, at once (None: it was not
        enabled)."""
        ...

    async def enable_client(self, client_id: str, actor: Actor) -> bool: ...

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
        """Writes the client's whole policy, audited (raises `PolicyError` for settings the
        client's kind, or the server's policy `server`, cannot have); None: no such client;
        `STALE`: its policy is no longer `before` (changed meanwhile). Issue 28."""
        ...

    async def grants(self, query: GrantQuery, now: int) -> GrantPage: ...

    async def family(self, grant_id: str, pairs: int = FAMILY_PAIRS) -> Family | None: ...

    async def revoke_grant(self, grant_id: str, actor: Actor) -> bool: ...

    async def sign_out_everywhere(self, username: str, actor: Actor) -> int | None:
        """Ends every live session of the user (None: no such user)."""
        ...

    async def users(self, offset: int = 0, limit: int = PAGE) -> list[User]: ...

    async def user(self, username: str) -> User | None: ...

    async def set_user_claims(
        self, username: str, changes: ClaimChanges, actor: Actor
    ) -> list[str] | None:
        """Applies claim changes to the user, audited: the names of the claims changed (None:
        no such user)."""
        ...

    # The users' life (`baton.store.sql.users.UserStore`), each action audited.

    async def user_listing(self, offset: int = 0, limit: int = PAGE) -> list[UserListing]: ...

    async def set_password(self, username: str, password_hash: str, actor: Actor) -> bool:
        """False: no such user."""
        ...

    async def disable_user(self, username: str, actor: Actor) -> UserEnded | None:
        """Disables the user, ending their sessions and grants (None: no such user, or
        disabled already)."""
        ...

    async def enable_user(self, username: str, actor: Actor) -> bool: ...

    async def delete_user(self, username: str, actor: Actor) -> UserEnded | None:
        """Ends everything as disabling does, erases the user's personal data and frees the
        name (None: no such user)."""
        ...

    async def security_events(
        self, kind: str | None = None, before: int | None = None, limit: int = PAGE
    ) -> tuple[list[SecurityEvent], int | None]: ...

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
        ...

    async def audit(
        self, before: int | None = None, limit: int = PAGE
    ) -> tuple[list[AuditRow], int | None]: ...


class AdminSource(Protocol):
    """A store that has an admin console's queries."""

    def admin(self) -> AdminQueries: ...


class ApiKeeper(Protocol):
    """What the admin API asks of the store (`baton.store.sql.ChallengeStore`)."""

    async def find_challenge(self, digest: bytes) -> Challenge | None: ...

    async def read_challenge(
        self, digest: bytes, kind: str, actor: Actor, action: str, target: str
    ) -> Challenge | None: ...

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
    ) -> Challenge | ChallengeRefused: ...

    async def redeem_verifier(
        self, verifier: bytes, kind: str, client_id: str, browser: bytes | None, now: int
    ) -> Challenge | NotHonoured: ...

    async def audit_api(
        self, actor: Actor, action: str, kind: str, target: str, detail: dict[str, Any] | None
    ) -> None: ...

    async def end_subject_sessions(self, subject: str, actor: Actor) -> SignedOut | None: ...

    async def forget_subject_consents(
        self, subject: str, client_id: str | None, actor: Actor
    ) -> int | None: ...

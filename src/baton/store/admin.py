"""The admin console's vocabulary: its queries' arguments and answers, whoever stores them.

The queries themselves are `baton.store.sql.admin.AdminStore` (`SQLStore.admin()`); the console
declares what it asks of them (`baton.server.admin.queries.AdminQueries`). These values are what
both sides share, with no SQL in them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from baton.core.facts import GrantFacts
from baton.core.timeline import AccessRecord, EventRecord, RefreshRecord
from baton.store.base import GrantSummary, User

PAGE = 50
FAMILY_PAIRS = 60  # pairs drawn on a timeline; older ones are counted, not drawn

GrantStatus = Literal["active", "revoked", "expired"]


@dataclass(frozen=True, slots=True)
class GrantQuery:
    client_id: str | None = None
    username: str | None = None
    status: GrantStatus | None = None
    after: tuple[int, str] | None = None  # keyset cursor: (expires_at, id) of the last row
    limit: int = PAGE


@dataclass(frozen=True, slots=True)
class GrantPage:
    rows: list[GrantSummary]
    next: tuple[int, str] | None  # cursor of the next page, if there is one


@dataclass(frozen=True, slots=True)
class Family:
    """A grant and the facts its timeline is drawn from."""

    grant: GrantFacts
    refresh: list[RefreshRecord]
    access: list[AccessRecord]
    events: list[EventRecord]
    omitted: int  # older pairs not loaded


@dataclass(frozen=True, slots=True)
class AuditRow:
    id: int
    actor: str
    action: str
    target_kind: str
    target_id: str
    detail: str | None
    occurred_at: int
    source_address: str | None


@dataclass(frozen=True, slots=True)
class Disabled:
    """A client disabled, and how many live grants of it that revoked."""

    grants_revoked: int


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts, from where, and when: what every audit row records."""

    username: str
    address: str | None
    now: int


@dataclass(frozen=True, slots=True)
class UserListing:
    """A user as `baton user list` and the console's list show them: with when they were
    created and when they last signed in here (None: never, or not since the sessions were
    purged)."""

    user: User
    created_at: int
    last_sign_in: int | None


@dataclass(frozen=True, slots=True)
class UserEnded:
    """What disabling or deleting a user ended at once: their live browser sessions and their
    live grants (each announced on the revocation feed, with a back-channel logout to its relying
    party)."""

    sessions: int
    grants_revoked: int


__all__ = [
    "FAMILY_PAIRS",
    "PAGE",
    "Actor",
    "AuditRow",
    "Disabled",
    "Family",
    "GrantPage",
    "GrantQuery",
    "GrantStatus",
    "UserEnded",
    "UserListing",
]

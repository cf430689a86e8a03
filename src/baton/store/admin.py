"""The admin console's vocabulary: its queries' arguments and answers, whoever stores them.

The queries themselves are `baton.store.sql.admin.AdminStore` (`SQLStore.admin()`); the console
declares what it asks of them (`baton.server.admin.queries.AdminQueries`). These values are what
both sides share, with no SQL in them.
"""

from __future__ import annotations

import hashlib
import ipaddress
import socket
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from baton.core.addresses import refusal
from baton.core.challenges import app_url_problem
from baton.core.client_policy import ClientPolicy, PolicySettings, PolicyVersion
from baton.core.facts import GrantFacts
from baton.core.timeline import AccessRecord, EventRecord, RefreshRecord
from baton.core.user_claims import EMAIL, claim_problem
from baton.store.base import Client, GrantSummary, User

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


# -- a client's policy and contact (issue 28) --------------------------------------------------

MAX_CONTACTS = 20
MAX_URL = 2000


class ContactError(ValueError):
    """A contact that cannot be: the message says which and why."""


def checked_contact(
    contacts: tuple[str, ...] | list[str],
    notify_url: str | None,
    *,
    allow_private: bool = False,
) -> tuple[tuple[str, ...], str | None]:
    """The integrator's e-mail addresses (duplicates dropped, order kept) and the URL signed
    notices are POSTed to ("" or None: none), checked: an address as a user's `email` claim is,
    the URL absolute https. The server POSTs to that URL, so it must not name an internal
    address (server-side request forgery): a host that is an IP literal (in any of its forms:
    `127.1`, `2130706433`, `[::ffff:10.0.0.1]`) must be public, and `localhost` is refused;
    plain http, loopback and private addresses only with `allow_private` (the server's
    `--client-documents-allow-private`, for development; the CLI, which has no server settings,
    never allows them). A name resolving to an internal address is refused at delivery
    (`baton.server.runtime.fetching.post`), where it is resolved. Raises `ContactError`."""
    kept = tuple(dict.fromkeys(c.strip() for c in contacts if c.strip()))
    if len(kept) > MAX_CONTACTS:
        raise ContactError(f"at most {MAX_CONTACTS} contacts")
    for address in kept:
        if (problem := claim_problem(EMAIL, address)) is not None:
            raise ContactError(problem.replace("email ", "contact ", 1))
    url = notify_url or None
    if url is not None:
        if len(url) > MAX_URL:
            raise ContactError(f"notify_url must be at most {MAX_URL} characters")
        if (problem := app_url_problem(url, "notify_url")) is not None:
            raise ContactError(problem)
        if not allow_private and (problem := _internal_url(url)) is not None:
            raise ContactError(problem)
    return kept, url


def _internal_url(url: str) -> str | None:
    """Why the server must not POST to `url` (already checked by `app_url_problem`) when
    private addresses are not allowed, or None."""
    # The one judge of an address, as delivery uses it (pure: no I/O at import or here).

    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".")
    if parts.scheme == "http":
        return (
            "notify_url must use https (plain http on loopback only on a development server, "
            "--client-documents-allow-private)"
        )
    if host == "localhost" or host.endswith(".localhost"):
        return "notify_url must not name localhost"
    literal: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        if host and all(c in "0123456789abcdefx." for c in host):
            # The legacy IPv4 forms getaddrinfo still accepts (`127.1`, `0x7f.1`, a number).
            try:
                literal = ipaddress.IPv4Address(socket.inet_aton(host))
            except OSError:
                literal = None
    if literal is not None and (why := refusal(literal)) is not None:
        return f"notify_url must name a public address: {why}"
    return None


def shown_url(url: str | None) -> str | None:
    """A notify URL as the audit log and the logs show it: without its query, which may hold
    a credential (as a webhook URL may)."""
    if url is None:
        return None
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}
MAX_SPAN = 10 * 366 * 86_400  # a date ten years off is a typo
# The first instant ISO 8601 (and `iso`) cannot write: 10000-01-01T00:00:00Z. An instant given
# (`effective_at`) is below it, so every surface can print it back.
INSTANT_LIMIT = 253_402_300_800
# The longest window a report or a health query looks back over (`baton report enforcement
# --since`, `GET /clients/{id}/health?since=`): the signals are kept far less long.
MAX_WINDOW = 366 * 86_400


def parse_duration(text: str) -> int:
    """Seconds from `30s`, `15m`, `2h`, `7d`, `1w` or a plain number of seconds; `ValueError`
    saying what is expected otherwise."""
    raw = text.strip().lower()
    unit = _UNITS.get(raw[-1:]) if raw else None
    digits = raw[:-1] if unit is not None else raw
    if not (digits.isascii() and digits.isdigit() and len(digits) <= 12):
        raise ValueError(f"{text!r} is no duration: give e.g. 90s, 15m, 2h, 7d or 1w")
    seconds = int(digits) * (unit or 1)
    if seconds > MAX_SPAN:
        raise ValueError(f"{text!r} is more than ten years")
    return seconds


def parse_instant(text: str, now: int) -> int:
    """An instant from ISO 8601 (`2026-12-12T09:00:00Z`; no offset means UTC), Unix seconds,
    or relative to `now` (`+7d`, `+2h`, `+30m`); `ValueError` saying what is expected."""
    raw = text.strip()
    if raw.startswith("+"):
        instant = now + parse_duration(raw[1:])
    elif raw.isascii() and raw.isdigit() and len(raw) <= 12:
        instant = int(raw)
    else:
        try:
            parsed = datetime.fromisoformat(raw.replace("z", "Z"))
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            instant = int(parsed.timestamp())
        except (ValueError, OverflowError):  # OverflowError: an offset past year 1 or 9999
            raise ValueError(
                f"{text!r} is no instant: give ISO 8601 UTC (2026-12-12T09:00:00Z), Unix "
                "seconds, or +7d, +2h, +30m from now"
            ) from None
    return checked_instant(instant, text)


def checked_instant(instant: int, said: object) -> int:
    """`instant` if it is from 1970 to the end of year 9999 UTC (what `iso` can write back);
    `ValueError` otherwise."""
    if not 0 <= instant < INSTANT_LIMIT:
        raise ValueError(f"{said!r} is not between 1970 and the end of 9999 (UTC)")
    return instant


def iso(instant: int) -> str:
    """An instant as ISO 8601 UTC, as the CLI and the audit log write it."""
    return datetime.fromtimestamp(instant, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def settings_words(settings: PolicySettings) -> str:
    """A client's settings in words, e.g. "leeway 60 s, retry strict" ("the server's defaults"
    when it sets none)."""
    words = []
    for name, value in settings.to_json().items():
        if isinstance(value, bool):
            shown = "yes" if value else "no"
        elif isinstance(value, int):
            shown = f"{value} s"
        elif isinstance(value, list):
            shown = " ".join(value) or "none"
        else:
            shown = str(value)
        words.append(f"{name} {shown}")
    return ", ".join(words) or "the server's defaults"


def policy_version(policy: ClientPolicy) -> str:
    """A client's policy's version, as a quoted entity tag: a digest of what the store holds.
    The admin API's `ETag` / `If-Match` on `/clients/{id}/policy` and the console's policy form
    carry it, so that a change made from a stale read is refused rather than silently replacing
    another administrator's (issue 28)."""
    held = policy.stored() or ""
    return '"' + hashlib.sha256(held.encode()).hexdigest()[:32] + '"'


@dataclass(frozen=True, slots=True)
class PolicyChange:
    """What writing a client's policy over the one it had changes: a change scheduled (or
    applied at once) or cancelled, the version concerned, and the change in words. `dropped`:
    the pending change a change applied at once replaced (it will not happen: its integrator
    is told so, `policy.cancelled`, before the change applied)."""

    cancelled: bool
    version: PolicyVersion
    words: str
    dropped: PolicyVersion | None = None

    @property
    def action(self) -> str:
        """The audit log's action."""
        return "client.cancel_policy" if self.cancelled else "client.schedule_policy"


def _same(one: PolicyVersion | None, other: PolicyVersion | None) -> bool:
    """Whether two pending changes are the same change, whenever each was made."""
    if one is None or other is None:
        return one is other
    return replace(one, scheduled_at=0) == replace(other, scheduled_at=0)


def _cancelled_words(old: PolicyVersion) -> str:
    when = "undated" if old.effective_at is None else f"for {iso(old.effective_at)}"
    return f"cancelled the change scheduled {when} ({settings_words(old.settings)})"


def policy_change(before: ClientPolicy, after: ClientPolicy, now: int) -> PolicyChange | None:
    """The change from `before` to `after` at `now`, or None when nothing changes: the same
    settings in force and the same pending change (whenever it was made: writing a change again
    writes nothing, no audit row, no notice)."""
    old, new = before.pending(now), after.pending(now)
    in_force = after.in_force_version(now)
    if _same(old, new) and after.settings_at(now) == before.settings_at(now):
        return None
    if new is not None and not _same(new, old):
        when = (
            "with no date, report-only"
            if new.effective_at is None
            else f"from {iso(new.effective_at)}"
            + (", report-only until then" if new.report_only else "")
        )
        return PolicyChange(False, new, f"scheduled {settings_words(new.settings)} {when}")
    if in_force != before.in_force_version(now):
        version = in_force or PolicyVersion(PolicySettings(), now, now)
        words = f"applied at once: {settings_words(version.settings)}"
        dropped = old if new is None else None
        if dropped is not None:
            # Said, not silent: the operator and the integrator planned for that change.
            words += f"; {_cancelled_words(dropped)}"
        return PolicyChange(False, version, words, dropped)
    if old is not None and new is None:
        return PolicyChange(True, old, _cancelled_words(old))
    return None


def policy_view(client: Client, now: int) -> dict[str, Any]:
    """A client's own policy as an operator reads it (`baton client policy show --json`, the
    admin API's `own`): the settings it sets in force now (unset knobs: the server's) and since
    when, its scheduled change, and whom a change is told to."""
    own = client.policy
    current = own.in_force_version(now)
    pending = own.pending(now)
    return {
        "client_id": client.id,
        "in_force": {
            "settings": own.settings_at(now).to_json(),
            "since": None if current is None else current.effective_at,
        },
        "scheduled": None if pending is None else pending.to_json(),
        "contacts": list(client.contacts),
        "notify_url": client.notify_url,
    }


__all__ = [
    "FAMILY_PAIRS",
    "INSTANT_LIMIT",
    "MAX_CONTACTS",
    "MAX_WINDOW",
    "PAGE",
    "Actor",
    "AuditRow",
    "ContactError",
    "Disabled",
    "Family",
    "GrantPage",
    "GrantQuery",
    "GrantStatus",
    "PolicyChange",
    "UserEnded",
    "UserListing",
    "checked_contact",
    "checked_instant",
    "iso",
    "parse_duration",
    "parse_instant",
    "policy_change",
    "policy_version",
    "policy_view",
    "settings_words",
    "shown_url",
]

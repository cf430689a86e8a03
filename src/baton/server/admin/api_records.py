"""The admin API's users, grants, consent, security events and audit log (issue 27): what
`baton user ...`, `baton grants ...` and `baton consent ...` do, and the records a SIEM reads.

Each route is declared once in `ENDPOINTS` with the scope it needs (`api.admin_endpoint`);
`baton.server.routes` includes them in the table. The store's side is the console's
(`baton.store.sql.AdminStore`, reached as the console reaches it), with the admin API's own
record queries in `baton.store.sql.records`; `RecordQueries` below says what the handlers ask.

Decisions a reader should know:

- The API never makes a console administrator, and never writes to one. `POST /users` with
  `admin` is a 400, and setting the password of, changing the claims of, disabling, enabling or
  deleting a user who may sign in to /admin is a 409 `console-admin`: an app holding
  `admin:users:write` could otherwise give itself the console (set an administrator's password
  and sign in as them) or lock every operator out. Console administrators are made and managed
  with `baton user ...` on the server.
- Lists are keyset-paged: `limit` (1..200, default 50) and an opaque `cursor` taken from the
  previous page's `next_cursor`; a bad one is a 400 problem.
- The audit export (`GET /audit/export?after=<id>&limit=`) answers JSON Lines (`application/
  jsonl`), ascending ids strictly after `after`, with the id to ask after next in
  `Baton-Next-After`; the store guarantees no row with a lower id commits later (`records.
  audit_after`), so a SIEM polling from that header never misses a row nor gets one twice.
- Every write is audited by the store in its own transaction (`Caller.actor`); reads are not
  (a refused token is, by `require_scope`).
"""

from __future__ import annotations

import json
from typing import Any, Protocol, cast
from urllib.parse import quote

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response

from baton.core.challenges import delegated_subject_problem, subject_problem
from baton.core.claims import PROFILE_MEMBERS
from baton.core.passwords_policy import password_problem
from baton.core.scope import render as render_scope
from baton.core.user_claims import ClaimChanges, ClaimError, Claims, apply, check
from baton.core.vocabulary import FeedEntryKind, RevocationCause, SecurityEventKind
from baton.data import common_passwords
from baton.passwords import NO_PASSWORD, hash_password
from baton.server.admin.api import (
    PREFIX,
    AdminScope,
    Caller,
    CallerHandler,
    Problem,
    admin_endpoint,
    json_answer,
    json_body,
    no_content,
    opaque_cursor,
    opened_cursor,
)
from baton.server.endpoints.openapi import (
    ADMIN_AUTH_ERRORS,
    BODY_ERRORS,
    NO_STORE,
    STRINGS,
    json_request_body,
    no_store_json,
    operation,
    path_parameter,
    problem,
    query_parameter,
    response,
)
from baton.server.observability import metrics
from baton.server.routing import Endpoint, Operation
from baton.server.runtime.context import baton
from baton.store.admin import (
    FAMILY_PAIRS,
    Actor,
    AuditRow,
    Family,
    GrantPage,
    GrantQuery,
    GrantStatus,
    UserEnded,
    UserListing,
)
from baton.store.base import GrantSummary, SecurityEvent, User, UserExists, UsernameOfDeletedUser
from baton.store.sql.records import (
    EXPORT_MAX,
    AuditBusy,
    ConsentListing,
    audit_line,
    audit_payload,
)

JSONL = "application/jsonl"
NEXT_AFTER = "Baton-Next-After"
DEFAULT_LIMIT, MAX_LIMIT = 50, 200
EXPORT_DEFAULT = 1000
_CLAIM_FIELDS = ("email", *PROFILE_MEMBERS)
_STATUSES: tuple[GrantStatus, ...] = ("active", "revoked", "expired")


class RecordQueries(Protocol):
    """What these handlers ask of the store (`baton.store.sql.AdminStore`), each write audited."""

    async def user_page(
        self, after: str | None, limit: int
    ) -> tuple[list[UserListing], str | None]: ...

    async def user_record(self, username: str) -> UserListing | None: ...

    async def create_user_with_claims(
        self, username: str, password_hash: str, claims: ClaimChanges, actor: Actor
    ) -> User: ...

    async def set_user_claims(
        self, username: str, changes: ClaimChanges, actor: Actor
    ) -> list[str] | None: ...

    async def set_password(self, username: str, password_hash: str, actor: Actor) -> bool: ...

    async def disable_user(self, username: str, actor: Actor) -> UserEnded | None: ...

    async def enable_user(self, username: str, actor: Actor) -> bool: ...

    async def delete_user(self, username: str, actor: Actor) -> UserEnded | None: ...

    async def grants(self, query: GrantQuery, now: int) -> GrantPage: ...

    async def family(self, grant_id: str, pairs: int = FAMILY_PAIRS) -> Family | None: ...

    async def revoke_grant(self, grant_id: str, actor: Actor) -> bool: ...

    async def client_names(self, client_ids: list[str]) -> dict[str, str]: ...

    async def consent_page(
        self,
        username: str | None,
        client_id: str | None,
        after: tuple[str, str] | None,
        limit: int,
        now: int,
    ) -> tuple[list[ConsentListing], tuple[str, str] | None]: ...

    async def security_events(
        self, kind: str | None = None, before: int | None = None, limit: int = DEFAULT_LIMIT
    ) -> tuple[list[SecurityEvent], int | None]: ...

    async def audit(
        self, before: int | None = None, limit: int = DEFAULT_LIMIT
    ) -> tuple[list[AuditRow], int | None]: ...

    async def audit_after(self, after: int, limit: int) -> list[AuditRow]: ...


class ConsentForgetter(Protocol):
    """The store's forgetting of a subject's consent (`SQLStore.forget_subject_consents`, as
    `DELETE /subjects/{subject}/consents` and `baton consent revoke` use it)."""

    async def forget_subject_consents(
        self, subject: str, client_id: str | None, actor: Actor
    ) -> int | None: ...


def _records(request: Request) -> RecordQueries:
    found = getattr(request.app.state, "admin_store", None)
    if found is None:  # pragma: no cover - every SQL store has one (`console_entry.install`)
        raise Problem(404, "not-found", "the admin API needs an SQL store")
    return cast(RecordQueries, found)


# -- parameters ----------------------------------------------------------------------------------


def _bad(detail: str) -> Problem:
    return Problem(400, "bad-request", detail)


def _limit(request: Request, default: int = DEFAULT_LIMIT, most: int = MAX_LIMIT) -> int:
    raw = request.query_params.get("limit")
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 6 and 1 <= int(raw) <= most):
        raise _bad(f"limit must be an integer from 1 to {most}")
    return int(raw)


def _number(request: Request, name: str) -> int | None:
    """A decimal id parameter (a cursor, `after`): None when absent or empty."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
        raise _bad(f"{name} must be the decimal id a previous answer gave")
    return int(raw)


def _opened(request: Request) -> str | None:
    """The text inside an opaque cursor, None when there is none; a 400 when it is not one of
    ours (`api.opened_cursor`)."""
    return opened_cursor(request.query_params.get("cursor"))


def _text_filter(request: Request, name: str, most: int = 200) -> str | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if len(raw) > most or not raw.isprintable():
        raise _bad(f"{name} is not a valid {name}")
    return raw


def _page(items: list[dict[str, Any]], cursor: str | None) -> Response:
    return json_answer({"items": items, "next_cursor": cursor})


# -- users ---------------------------------------------------------------------------------------


def _user_item(listing: UserListing) -> dict[str, Any]:
    """A user as the API shows them: never the password hash, the TOTP secret nor the recovery
    codes; whether they have a password and a second factor, and when they last signed in."""
    u = listing.user
    return {
        "id": str(u.id),
        "username": u.username,
        "admin": u.is_admin,
        "disabled": u.disabled_at is not None,
        "disabled_at": u.disabled_at,
        "deleted_at": u.deleted_at,
        "email": u.email,
        "email_verified": u.email_verified,
        "profile": {k: u.profile[k] for k in PROFILE_MEMBERS if k in u.profile},
        "updated_at": u.updated_at,
        "has_password": u.password_hash != NO_PASSWORD,
        "mfa_enrolled": u.totp_enabled,
        "mfa_required": u.mfa_required,
        "created_at": listing.created_at,
        "password_changed_at": u.password_changed_at,
        "last_sign_in_at": listing.last_sign_in,
    }


def _username(request: Request) -> str:
    username = request.path_params["username"]
    if subject_problem(username) is not None:
        raise Problem(404, "unknown-user", "no such user")
    return cast(str, username)


async def _found(request: Request) -> UserListing:
    found = await _records(request).user_record(_username(request))
    if found is None:
        raise Problem(404, "unknown-user", "no such user")
    return found


async def _writable(request: Request) -> UserListing:
    """The path's user, if the API may change them: not deleted, not a console administrator."""
    found = await _found(request)
    if found.user.deleted_at is not None:
        raise Problem(409, "user-deleted", "the user was deleted: the name stays reserved")
    if found.user.is_admin:
        raise Problem(
            409,
            "console-admin",
            "the user is a console administrator: the admin API never changes one (use "
            "`baton user ...` on the server)",
        )
    return found


def _claim_changes(body: dict[str, Any], allowed: tuple[str, ...]) -> ClaimChanges:
    """The body's claim members as checked changes (null or "" clears), or a 400 naming the
    first member the API does not take."""
    for name in body:
        if name == "admin":
            raise _bad(
                "admin: the admin API never makes a console administrator (use `baton user "
                "create --admin` on the server)"
            )
        if name not in allowed:
            raise _bad(f"{name}: not a member the API takes here (see the OpenAPI document)")
    values: dict[str, str | None] = {}
    for name in _CLAIM_FIELDS:
        if name in body:
            value = body[name]
            if value is not None and not isinstance(value, str):
                raise _bad(f"{name} must be a string, or null to clear it")
            values[name] = value
    verified = body.get("email_verified")
    if verified is not None and not isinstance(verified, bool):
        raise _bad("email_verified must be true or false")
    try:
        return check(ClaimChanges(values, verified))
    except ClaimError as exc:
        raise _bad(str(exc)) from None


async def _hashed(request: Request, password: object, username: str) -> str:
    if not isinstance(password, str):
        raise _bad("password must be a string")
    min_length = baton(request).settings.password_min_length
    refused = password_problem(password, min_length, common_passwords(), username=username)
    if refused is not None:
        raise Problem(400, "password-policy", refused)
    return await anyio.to_thread.run_sync(hash_password, password)


async def list_users(request: Request, caller: Caller) -> Response:
    """Users by name (deleted users left out)."""
    limit = _limit(request)
    rows, after = await _records(request).user_page(_opened(request), limit)
    return _page([_user_item(r) for r in rows], opaque_cursor(after) if after is not None else None)


async def get_user(request: Request, caller: Caller) -> Response:
    """One user (a deleted one too: `deleted_at` says so, the name stays reserved)."""
    return json_answer(_user_item(await _found(request)))


async def create_user(request: Request, caller: Caller) -> Response:
    """Creates a user, with a password (checked by the password policy) or none, and claims."""
    body = await json_body(request)
    username = body.get("username")
    if (refused := delegated_subject_problem(username)) is not None:
        raise _bad(refused.replace("subject", "username", 1))
    name = cast(str, username)
    claims = _claim_changes(
        {k: v for k, v in body.items() if k not in ("username", "password")},
        ("email_verified", *_CLAIM_FIELDS),
    )
    if claims.email_verified and not claims.values.get("email"):
        raise _bad("email_verified needs an email address")
    password = body.get("password")
    hashed = NO_PASSWORD if password is None else await _hashed(request, password, name)
    records = _records(request)
    try:
        await records.create_user_with_claims(name, hashed, claims, caller.actor)
    except UsernameOfDeletedUser:
        raise Problem(
            409,
            "username-reserved",
            "the name belonged to a deleted user and is never reused (a subject identifier is "
            "never reassigned, OpenID Connect Core §2)",
        ) from None
    except UserExists:
        raise Problem(409, "user-exists", "a user of that name exists") from None
    created = await records.user_record(name)
    assert created is not None
    location = f"{PREFIX}/users/{quote(name, safe='')}"
    answer = json_answer(_user_item(created), 201)
    answer.headers["Location"] = location
    return answer


async def patch_user(request: Request, caller: Caller) -> Response:
    """Sets or clears the user's claims (RFC 7396: only the members given; null clears)."""
    body = await json_body(request)
    for name in ("username", "password"):
        if name in body:
            where = "PUT /users/{username}/password" if name == "password" else "nowhere"
            raise _bad(f"{name}: not changed by PATCH (it is changed {where})")
    changes = _claim_changes(body, ("email_verified", *_CLAIM_FIELDS))
    found = await _writable(request)
    u = found.user
    after = apply(Claims(u.email, u.email_verified, u.profile), changes)
    if changes.email_verified and not after.email:
        raise _bad("email_verified needs an email address")
    records = _records(request)
    if changes and await records.set_user_claims(u.username, changes, caller.actor) is None:
        raise Problem(404, "unknown-user", "no such user")
    updated = await records.user_record(u.username)
    assert updated is not None
    return json_answer(_user_item(updated))


async def set_password(request: Request, caller: Caller) -> Response:
    """Gives the user a new password, checked by the password policy (their sessions stay)."""
    body = await json_body(request)
    extra = sorted(set(body) - {"password"})
    if extra:
        raise _bad(f"{extra[0]}: the body holds only password")
    if "password" not in body:
        raise _bad("password is required")
    found = await _writable(request)
    hashed = await _hashed(request, body["password"], found.user.username)
    if not await _records(request).set_password(found.user.username, hashed, caller.actor):
        raise Problem(404, "unknown-user", "no such user")
    return no_content()


def _count_revoked(request: Request, revoked: int) -> None:
    metrics.of(request).revoked(FeedEntryKind.GRANT, RevocationCause.ADMIN, revoked)


def _ended(username: str, ended: UserEnded) -> dict[str, Any]:
    return {
        "username": username,
        "sessions_ended": ended.sessions,
        "grants_revoked": ended.grants_revoked,
    }


async def disable_user(request: Request, caller: Caller) -> Response:
    """Disables the user: every session and grant of theirs ends now (the revocation feed, a
    back-channel logout to each OpenID Connect relying party), and they cannot sign in."""
    found = await _writable(request)
    ended = await _records(request).disable_user(found.user.username, caller.actor)
    if ended is None:
        raise Problem(409, "user-disabled", "the user is disabled already")
    _count_revoked(request, ended.grants_revoked)
    return json_answer(_ended(found.user.username, ended))


async def enable_user(request: Request, caller: Caller) -> Response:
    """Lets a disabled user sign in again; what the disabling ended stays ended."""
    found = await _writable(request)
    if not await _records(request).enable_user(found.user.username, caller.actor):
        raise Problem(409, "user-not-disabled", "the user is not disabled")
    return json_answer({"username": found.user.username, "disabled": False})


async def delete_user(request: Request, caller: Caller) -> Response:
    """Erases the user as `baton user delete` does: everything disabling ends, then their
    personal data; the name stays reserved."""
    found = await _writable(request)
    ended = await _records(request).delete_user(found.user.username, caller.actor)
    if ended is None:
        raise Problem(409, "user-deleted", "the user was deleted already")
    _count_revoked(request, ended.grants_revoked)
    return no_content()


# -- grants --------------------------------------------------------------------------------------


def _grant_status(revoked_at: int | None, expires_at: int, now: int) -> str:
    if revoked_at is not None:
        return "revoked"
    return "active" if now < expires_at else "expired"


def grant_item(summary: GrantSummary, now: int) -> dict[str, Any]:
    """A grant as the API shows it: never a token, a digest or its OpenID Connect session id."""
    g = summary.grant
    return {
        "id": g.id,
        "client_id": g.client_id,
        "username": g.subject,
        "scope": g.scope,
        "resources": list(g.resources),
        "status": _grant_status(g.revoked_at, g.expires_at, now),
        "created_at": g.created_at,
        "expires_at": g.expires_at,
        "revoked_at": g.revoked_at,
        "revoked_reason": g.revoked_reason,
        "refresh_tokens_issued": summary.generations,
        "last_issued_at": summary.last_issued_at,
    }


def _grant_cursor(request: Request) -> tuple[int, str] | None:
    opened = _opened(request)
    if opened is None:
        return None
    expires_at, _, grant_id = opened.partition(":")
    if not (expires_at.isdigit() and len(expires_at) <= 18 and 0 < len(grant_id) <= 64):
        raise _bad("cursor is not a next_cursor this API gave")
    return int(expires_at), grant_id


async def list_grants(request: Request, caller: Caller) -> Response:
    """Grants newest first, by client, user and status."""
    status = request.query_params.get("status") or None
    if status is not None and status not in _STATUSES:
        raise _bad("status must be one of " + ", ".join(_STATUSES))
    query = GrantQuery(
        client_id=_text_filter(request, "client_id", 64),
        username=_text_filter(request, "username"),
        status=status,
        after=_grant_cursor(request),
        limit=_limit(request),
    )
    page = await _records(request).grants(query, caller.now)
    cursor = opaque_cursor(f"{page.next[0]}:{page.next[1]}") if page.next else None
    return _page([grant_item(r, caller.now) for r in page.rows], cursor)


def _grant_id(request: Request) -> str:
    grant_id = request.path_params["grant_id"]
    if not (0 < len(grant_id) <= 64 and grant_id.isascii() and grant_id.isprintable()):
        raise Problem(404, "unknown-grant", "no such grant")
    return cast(str, grant_id)


def grant_detail(family: Family, now: int) -> dict[str, Any]:
    """A grant with its token family's summary: how many refresh tokens were issued, the
    current pair's expiries, the security events (`GET /grants/{id}`, `baton grants show`)."""
    refresh, access = family.refresh, family.access
    issued = len(refresh) + family.omitted
    summary = GrantSummary(family.grant, issued, refresh[0].issued_at if refresh else None)
    current = None
    if refresh or access:
        current = {
            "generation": max(
                [r.generation for r in refresh[:1]] + [a.generation for a in access[:1]]
            ),
            "refresh_expires_at": refresh[0].expires_at if refresh else None,
            "access_expires_at": access[0].expires_at if access else None,
        }
    body = grant_item(summary, now)
    body["family"] = {
        "generations": issued,
        "current": current,
        "events": [
            {
                "kind": e.kind,
                "generation": e.generation,
                "occurred_at": e.occurred_at,
                "detail": e.detail,
            }
            for e in family.events
        ],
    }
    return body


async def get_grant(request: Request, caller: Caller) -> Response:
    """The grant and its token family's summary."""
    family = await _records(request).family(_grant_id(request))
    if family is None:
        raise Problem(404, "unknown-grant", "no such grant")
    return json_answer(grant_detail(family, caller.now))


async def revoke_grant(request: Request, caller: Caller) -> Response:
    """Revokes the grant: every token of its family dies at once (the revocation feed, the
    `grant.revoked` webhook, a back-channel logout to an OpenID Connect relying party)."""
    grant_id = _grant_id(request)
    records = _records(request)
    if await records.revoke_grant(grant_id, caller.actor):
        metrics.of(request).revoked(FeedEntryKind.GRANT, RevocationCause.ADMIN)
        return json_answer({"grant_id": grant_id, "revoked": True})
    if await records.family(grant_id, pairs=1) is None:
        raise Problem(404, "unknown-grant", "no such grant")
    raise Problem(409, "grant-revoked", "the grant was revoked already")


# -- consent -------------------------------------------------------------------------------------


def _consent_cursor(request: Request) -> tuple[str, str] | None:
    opened = _opened(request)
    if opened is None:
        return None
    try:
        pair = json.loads(opened)
    except ValueError:
        pair = None
    if not (isinstance(pair, list) and len(pair) == 2 and all(_storable(p) for p in pair)):
        raise _bad("cursor is not a next_cursor this API gave")
    return pair[0], pair[1]


def _storable(part: object) -> bool:
    """A cursor's part the database can compare: JSON's escapes can spell a NUL (PostgreSQL's
    text refuses it) or a lone surrogate (not UTF-8) that the cursor's own text did not hold."""
    if not (isinstance(part, str) and len(part) <= 200 and "\x00" not in part):
        return False
    try:
        part.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def consent_item(c: ConsentListing) -> dict[str, Any]:
    """A remembered consent (`GET /consents`, `baton consent list`)."""
    return {
        "username": c.username,
        "client_id": c.client_id,
        "scope": render_scope(c.scope),
        "resources": list(c.resources),
        "updated_at": c.updated_at,
        "expires_at": c.expires_at,
    }


async def list_consents(request: Request, caller: Caller) -> Response:
    """Remembered consents still in force, by user then client."""
    username = _text_filter(request, "username")
    client_id = _text_filter(request, "client_id", 64)
    after = _consent_cursor(request)
    rows, cursor = await _records(request).consent_page(
        username, client_id, after, _limit(request), caller.now
    )
    items = [consent_item(c) for c in rows]
    return _page(items, opaque_cursor(json.dumps(list(cursor))) if cursor else None)


async def delete_consent(request: Request, caller: Caller) -> Response:
    """Forgets the user's remembered consent to the client and revokes every live grant the
    user gave it, as `baton consent revoke` does: the next authorization asks again."""
    username = _username(request)
    client_id = request.path_params["client_id"]
    if not (0 < len(client_id) <= 64 and client_id.isprintable()):
        raise Problem(404, "unknown-client", "no such client")
    if not await _records(request).client_names([client_id]):
        raise Problem(404, "unknown-client", "no such client")
    forgetter = cast(ConsentForgetter, baton(request).store)
    revoked = await forgetter.forget_subject_consents(username, client_id, caller.actor)
    if revoked is None:
        raise Problem(404, "unknown-user", "no such user")
    _count_revoked(request, revoked)
    return no_content()


# -- security events and the audit log ---------------------------------------------------------


def event_item(e: SecurityEvent) -> dict[str, Any]:
    return {
        "id": str(e.id),
        "kind": e.kind,
        "grant_id": e.grant_id,
        "client_id": e.client_id,
        "username": e.subject,
        "generation": e.generation,
        "occurred_at": e.occurred_at,
        "source_address": e.source_address,
        "detail": e.detail,
    }


async def list_security_events(request: Request, caller: Caller) -> Response:
    """Security events, newest first (reuse detected, sign-in lockouts, clients disabled)."""
    kind = request.query_params.get("kind") or None
    if kind is not None and kind not in set(SecurityEventKind):
        raise _bad("kind must be one of " + ", ".join(SecurityEventKind))
    before, limit = _number(request, "cursor"), _limit(request)
    rows, cursor = await _records(request).security_events(kind, before, limit)
    return _page([event_item(e) for e in rows], str(cursor) if cursor is not None else None)


async def list_audit(request: Request, caller: Caller) -> Response:
    """The audit log, newest first."""
    before, limit = _number(request, "cursor"), _limit(request)
    rows, cursor = await _records(request).audit(before, limit)
    return _page([audit_payload(r) for r in rows], str(cursor) if cursor is not None else None)


async def export_audit(request: Request, caller: Caller) -> Response:
    """The audit log as JSON Lines, ascending, strictly after `after`; `Baton-Next-After` names
    the id to ask after next (the last one sent, or `after` when none was)."""
    after = _number(request, "after") or 0
    limit = _limit(request, EXPORT_DEFAULT, EXPORT_MAX)
    try:
        rows = await _records(request).audit_after(after, limit)
    except AuditBusy:
        detail = "audit rows are being written: ask again"
        raise Problem(503, "audit-busy", detail, {"Retry-After": "1"}) from None
    body = "".join(audit_line(r) + "\n" for r in rows)
    following = rows[-1].id if rows else after
    headers = {"Cache-Control": "no-store", NEXT_AFTER: str(following)}
    return Response(body, 200, headers, media_type=JSONL)


# -- OpenAPI -------------------------------------------------------------------------------------

_NULLABLE_INT: dict[str, Any] = {"type": ["integer", "null"]}
_NULLABLE_STR: dict[str, Any] = {"type": ["string", "null"]}
_LIMIT = query_parameter(
    "limit",
    "How many items (1 to 200, default 50).",
    {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
)
_CURSOR = query_parameter(
    "cursor",
    "The `next_cursor` of the previous page (none: the first page).",
    {"type": "string", "pattern": "^[A-Za-z0-9_-]*$"},
)
_BAD_QUERY = {"400": problem("A bad `limit`, `cursor` or filter.")}
_USER_PATH = path_parameter("username", "The user's username (their `sub`).")
_GRANT_PATH = path_parameter("grant_id", "The grant's id.")
_CLIENT_PATH = path_parameter("client_id", "The client's id.")


def _object(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": required,
        "properties": properties,
        "additionalProperties": True,
    }


def _list_of(item: dict[str, Any]) -> dict[str, Any]:
    return _object(
        ["items", "next_cursor"],
        {"items": {"type": "array", "items": item}, "next_cursor": _NULLABLE_STR},
    )


_USER = _object(
    ["id", "username", "admin", "disabled", "created_at", "mfa_enrolled"],
    {
        "id": {"type": "string"},
        "username": {"type": "string"},
        "admin": {"type": "boolean", "description": "May sign in to the admin console."},
        "disabled": {"type": "boolean"},
        "disabled_at": _NULLABLE_INT,
        "deleted_at": _NULLABLE_INT,
        "email": _NULLABLE_STR,
        "email_verified": {"type": "boolean"},
        "profile": {"type": "object", "description": "The profile claims set (OIDC Core §5.1)."},
        "updated_at": _NULLABLE_INT,
        "has_password": {"type": "boolean"},
        "mfa_enrolled": {"type": "boolean", "description": "A TOTP second factor is set."},
        "mfa_required": {"type": "boolean"},
        "created_at": {"type": "integer"},
        "password_changed_at": _NULLABLE_INT,
        "last_sign_in_at": _NULLABLE_INT,
    },
)
_CLAIMS: dict[str, Any] = {
    "email": _NULLABLE_STR,
    "email_verified": {"type": "boolean"},
    **{member: _NULLABLE_STR for member in PROFILE_MEMBERS},
}
_NEW_USER = {
    "type": "object",
    "required": ["username"],
    "properties": {
        "username": {"type": "string"},
        "password": {"type": "string", "description": "None: the user has no password."},
        **_CLAIMS,
    },
    "additionalProperties": False,
}
_CLAIMS_PATCH = {"type": "object", "properties": _CLAIMS, "additionalProperties": False}
_PASSWORD = {
    "type": "object",
    "required": ["password"],
    "properties": {"password": {"type": "string"}},
    "additionalProperties": False,
}
_ENDED = _object(
    ["username", "sessions_ended", "grants_revoked"],
    {
        "username": {"type": "string"},
        "sessions_ended": {"type": "integer"},
        "grants_revoked": {"type": "integer"},
    },
)
_GRANT_PROPERTIES: dict[str, Any] = {
    "id": {"type": "string"},
    "client_id": {"type": "string"},
    "username": _NULLABLE_STR,
    "scope": {"type": "string"},
    "resources": STRINGS,
    "status": {"enum": list(_STATUSES)},
    "created_at": {"type": "integer"},
    "expires_at": {"type": "integer"},
    "revoked_at": _NULLABLE_INT,
    "revoked_reason": _NULLABLE_STR,
    "refresh_tokens_issued": {"type": "integer"},
    "last_issued_at": _NULLABLE_INT,
}
_GRANT = _object(["id", "client_id", "scope", "status", "expires_at"], _GRANT_PROPERTIES)
_FAMILY = _object(
    ["generations", "current", "events"],
    {
        "generations": {"type": "integer", "description": "Refresh tokens issued so far."},
        "current": {
            "type": ["object", "null"],
            "properties": {
                "generation": {"type": "integer"},
                "refresh_expires_at": _NULLABLE_INT,
                "access_expires_at": _NULLABLE_INT,
            },
        },
        "events": {
            "type": "array",
            "items": _object(
                ["kind", "occurred_at"],
                {
                    "kind": {"type": "string"},
                    "generation": _NULLABLE_INT,
                    "occurred_at": {"type": "integer"},
                    "detail": _NULLABLE_STR,
                },
            ),
        },
    },
)
_GRANT_DETAIL = _object(
    ["id", "client_id", "scope", "status", "family"], {**_GRANT_PROPERTIES, "family": _FAMILY}
)
_CONSENT = _object(
    ["username", "client_id", "scope", "resources", "expires_at"],
    {
        "username": {"type": "string"},
        "client_id": {"type": "string"},
        "scope": {"type": "string"},
        "resources": STRINGS,
        "updated_at": {"type": "integer"},
        "expires_at": _NULLABLE_INT,
    },
)
_EVENT = _object(
    ["id", "kind", "occurred_at"],
    {
        "id": {"type": "string"},
        "kind": {"type": "string"},
        "grant_id": _NULLABLE_STR,
        "client_id": _NULLABLE_STR,
        "username": _NULLABLE_STR,
        "generation": _NULLABLE_INT,
        "occurred_at": {"type": "integer"},
        "source_address": _NULLABLE_STR,
        "detail": _NULLABLE_STR,
    },
)
_AUDIT = _object(
    ["id", "actor", "action", "target_kind", "target_id", "occurred_at"],
    {
        "id": {"type": "string"},
        "actor": {"type": "string", "description": "`client:<id>`, `cli:<login>` or an admin."},
        "action": {"type": "string"},
        "target_kind": {"type": "string"},
        "target_id": {"type": "string"},
        "detail": {"description": "What the action recorded (JSON), never a secret."},
        "occurred_at": {"type": "integer"},
        "source_address": _NULLABLE_STR,
    },
)
_NO_USER = {"404": problem("No such user.")}
# The export's 503: a problem when an audit writer held the log too long, or the server's usual
# JSON error when the database is unreachable.
_BUSY = problem(
    "An audit row's transaction stayed open for seconds, or the database is unreachable: ask "
    "again.",
    **{"Retry-After": {"schema": {"type": "string"}}},
)
_BUSY["content"] |= no_store_json("")["content"]
_WRITE_CONFLICT = {
    "409": problem(
        "The user was deleted, is a console administrator (never changed by the API), or is "
        "already in the state asked for."
    )
}
_DONE = {"204": response("Done.", NO_STORE)}


def _op(
    operation_id: str,
    responses: dict[str, Any],
    description: str,
    parameters: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
) -> Operation:
    more: dict[str, Any] = {"description": description}
    if parameters:
        more["parameters"] = parameters
    if body is not None:
        more["requestBody"] = json_request_body(body)
        responses = {**BODY_ERRORS, **responses}
    return operation(operation_id, {**ADMIN_AUTH_ERRORS, **responses}, **more)


USERS = _op(
    "listUsers",
    {"200": no_store_json("A page of users.", _list_of(_USER)), **_BAD_QUERY},
    "Needs `admin:users:read`. Users by username; deleted users are left out.",
    [_LIMIT, _CURSOR],
)
USER = _op(
    "getUser",
    {"200": no_store_json("The user.", _USER), **_NO_USER},
    "Needs `admin:users:read`. Never the password hash, the TOTP secret or recovery codes.",
    [_USER_PATH],
)
CREATE_USER = _op(
    "createUser",
    {
        "201": no_store_json("The user, created.", _USER, Location={"schema": {"type": "string"}}),
        "409": problem("The username is taken, or was a deleted user's (never reused)."),
    },
    "Needs `admin:users:write`. `password` is checked by the password policy (none: the user "
    "has no password). Never a console administrator: `admin` is refused.",
    body=_NEW_USER,
)
PATCH_USER = _op(
    "updateUser",
    {"200": no_store_json("The user, changed.", _USER), **_NO_USER, **_WRITE_CONFLICT},
    "Needs `admin:users:write`. Sets the claims given (RFC 7396 merge: null clears).",
    [_USER_PATH],
    _CLAIMS_PATCH,
)
USER_PASSWORD = _op(
    "setUserPassword",
    {**_DONE, **_NO_USER, **_WRITE_CONFLICT},
    "Needs `admin:users:write`. A new password, checked by the password policy (400 "
    "`password-policy` says why not); the user's sessions stay.",
    [_USER_PATH],
    _PASSWORD,
)
DISABLE_USER = _op(
    "disableUser",
    {"200": no_store_json("What ended.", _ENDED), **_NO_USER, **_WRITE_CONFLICT},
    "Needs `admin:users:write`. Every session and grant of the user ends at once (revocation "
    "feed, back-channel logout); they cannot sign in.",
    [_USER_PATH],
)
ENABLE_USER = _op(
    "enableUser",
    {
        "200": no_store_json("Enabled.", _object(["username"], {"username": {"type": "string"}})),
        **_NO_USER,
        **_WRITE_CONFLICT,
    },
    "Needs `admin:users:write`. What the disabling ended stays ended.",
    [_USER_PATH],
)
DELETE_USER = _op(
    "deleteUser",
    {**_DONE, **_NO_USER, **_WRITE_CONFLICT},
    "Needs `admin:users:write`. Ends everything as disabling does, then erases the user's "
    "personal data; the name stays reserved.",
    [_USER_PATH],
)
GRANTS = _op(
    "listGrants",
    {"200": no_store_json("A page of grants.", _list_of(_GRANT)), **_BAD_QUERY},
    "Needs `admin:grants:read`. Grants newest first.",
    [
        query_parameter("client_id", "Only this client's.", {"type": "string"}),
        query_parameter("username", "Only this user's.", {"type": "string"}),
        query_parameter("status", "Only these.", {"enum": list(_STATUSES)}),
        _LIMIT,
        _CURSOR,
    ],
)
GRANT = _op(
    "getGrant",
    {
        "200": no_store_json("The grant and its family.", _GRANT_DETAIL),
        "404": problem("No such grant."),
    },
    "Needs `admin:grants:read`. Never a token value or digest.",
    [_GRANT_PATH],
)
REVOKE_GRANT = _op(
    "revokeGrant",
    {
        "200": no_store_json(
            "Revoked.",
            _object(
                ["grant_id", "revoked"],
                {"grant_id": {"type": "string"}, "revoked": {"type": "boolean"}},
            ),
        ),
        "404": problem("No such grant."),
        "409": problem("The grant was revoked already."),
    },
    "Needs `admin:grants:write`. Every token of the family dies at once.",
    [_GRANT_PATH],
)
CONSENTS = _op(
    "listConsents",
    {"200": no_store_json("A page of consents.", _list_of(_CONSENT)), **_BAD_QUERY},
    "Needs `admin:consents:read`. Remembered consents still in force.",
    [
        query_parameter("username", "Only this user's.", {"type": "string"}),
        query_parameter("client_id", "Only this client's.", {"type": "string"}),
        _LIMIT,
        _CURSOR,
    ],
)
DELETE_CONSENT = _op(
    "deleteConsent",
    {**_DONE, "404": problem("No such user or client.")},
    "Needs `admin:consents:write`. Forgets the remembered consent and revokes the user's "
    "grants of the client.",
    [_USER_PATH, _CLIENT_PATH],
)
EVENTS = _op(
    "listSecurityEvents",
    {"200": no_store_json("A page of events.", _list_of(_EVENT)), **_BAD_QUERY},
    "Needs `admin:events:read`. Newest first.",
    [
        query_parameter("kind", "Only this kind.", {"enum": list(SecurityEventKind)}),
        _LIMIT,
        _CURSOR,
    ],
)
AUDIT = _op(
    "listAudit",
    {"200": no_store_json("A page of the audit log.", _list_of(_AUDIT)), **_BAD_QUERY},
    "Needs `admin:audit:read`. Newest first.",
    [_LIMIT, _CURSOR],
)
AUDIT_EXPORT = _op(
    "exportAudit",
    {
        "200": response(
            "JSON Lines: one audit row per line (the `listAudit` item), ascending ids.",
            {
                **NO_STORE,
                NEXT_AFTER: {
                    "description": "The `after` of the next poll: the last id sent (or `after`).",
                    "required": True,
                    "schema": {"type": "string", "pattern": "^[0-9]+$"},
                },
            },
            **{JSONL: {"type": "string"}},
        ),
        **_BAD_QUERY,
        "503": _BUSY,
    },
    "Needs `admin:audit:read`. For a SIEM: rows strictly after `after`, at most `limit`; no "
    "row with a lower id commits later, so polling from `Baton-Next-After` misses none and "
    "repeats none.",
    [
        query_parameter(
            "after",
            "The last id already read (0: from the start).",
            {"type": "integer", "minimum": 0},
        ),
        query_parameter(
            "limit",
            "At most this many rows (1 to 10000, default 1000).",
            {"type": "integer", "minimum": 1, "maximum": EXPORT_MAX},
        ),
    ],
)


_R, _W = AdminScope.USERS_READ, AdminScope.USERS_WRITE
_ROWS: tuple[tuple[str, str, CallerHandler, AdminScope, Operation, str], ...] = (
    ("/users", "GET", list_users, _R, USERS, "List users"),
    ("/users", "POST", create_user, _W, CREATE_USER, "Create a user (never a console admin)"),
    ("/users/{username}", "GET", get_user, _R, USER, "A user (never a password or secret)"),
    ("/users/{username}", "PATCH", patch_user, _W, PATCH_USER, "Set or clear a user's claims"),
    ("/users/{username}", "DELETE", delete_user, _W, DELETE_USER, "Delete (erase) a user"),
    ("/users/{username}/password", "PUT", set_password, _W, USER_PASSWORD, "Set a password"),
    ("/users/{username}/disable", "POST", disable_user, _W, DISABLE_USER, "Disable a user"),
    ("/users/{username}/enable", "POST", enable_user, _W, ENABLE_USER, "Enable a user"),
    ("/grants", "GET", list_grants, AdminScope.GRANTS_READ, GRANTS, "List grants"),
    ("/grants/{grant_id}", "GET", get_grant, AdminScope.GRANTS_READ, GRANT, "A grant, its family"),
    (
        "/grants/{grant_id}/revoke",
        "POST",
        revoke_grant,
        AdminScope.GRANTS_WRITE,
        REVOKE_GRANT,
        "Revoke a grant: every token of its family",
    ),
    ("/consents", "GET", list_consents, AdminScope.CONSENTS_READ, CONSENTS, "List consents"),
    (
        "/consents/{username}/{client_id}",
        "DELETE",
        delete_consent,
        AdminScope.CONSENTS_WRITE,
        DELETE_CONSENT,
        "Forget a consent, revoking its grants",
    ),
    (
        "/security-events",
        "GET",
        list_security_events,
        AdminScope.EVENTS_READ,
        EVENTS,
        "List security events",
    ),
    ("/audit", "GET", list_audit, AdminScope.AUDIT_READ, AUDIT, "List the audit log"),
    (
        "/audit/export",
        "GET",
        export_audit,
        AdminScope.AUDIT_READ,
        AUDIT_EXPORT,
        "Export the audit log as JSON Lines from a cursor (for a SIEM)",
    ),
)

ENDPOINTS: tuple[Endpoint, ...] = tuple(
    admin_endpoint(path, methods, handler, scope, openapi=openapi, summary=summary)
    for path, methods, handler, scope, openapi, summary in _ROWS
)

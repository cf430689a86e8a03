"""The admin console under /admin: clients, grants and their timelines, security events, audit.

Server-rendered HTML, no script (the Content Security Policy allows none), one stylesheet.
Users: the list, and per user claims, a new password (the password policy), sign out
everywhere, disable and enable, delete (`baton.store.sql.users`).
Sign-in is Baton's own (`/login`, with its rate limit and lockout); only users created with
`baton user create --admin` may enter, others get 403. Every POST carries the session's CSRF
token and is written to the audit log in the transaction that carries it out. No page ever
shows a token or a secret, except a client secret once, on the page that created or rotated it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args
from urllib.parse import quote, urlencode

import anyio.to_thread
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from baton.core import timeline
from baton.core.challenges import app_url_problem
from baton.core.claims import PROFILE_MEMBERS
from baton.core.client_metadata import MetadataError, OidcSettings, checked, version
from baton.core.client_policy import DURATIONS, PolicyError, PolicySettings
from baton.core.keys import ALGORITHMS
from baton.core.notice import Subject, affected, changes_of, describe, evidence, in_force
from baton.core.notice import notice as integrator_notice
from baton.core.passwords_policy import MAX_LENGTH, password_problem
from baton.core.policy import DAY
from baton.core.redirects import client_option_problem, redirect_uri_problem
from baton.core.scope import ScopeError
from baton.core.scope import parse as parse_scope
from baton.core.scope import render as render_scope
from baton.core.signals import Health, Refusal, SignalKind
from baton.core.subject import SUBJECT_TYPES
from baton.core.tokens import TokenKind, mint, random_id
from baton.core.user_claims import SETTABLE, ClaimChanges, ClaimError, check
from baton.core.vocabulary import (
    REUSE_CAUSES,
    ErrorCode,
    FeedEntryKind,
    RevocationCause,
    SecurityEventKind,
)
from baton.data import common_passwords
from baton.passwords import NO_PASSWORD, hash_password
from baton.server.admin.queries import AdminQueries
from baton.server.admin.timeline_svg import dated, duration, minute, render, when
from baton.server.admin.upstream_links import unlink, user_links
from baton.server.endpoints.errors import OAuthError
from baton.server.endpoints.forms import Form, read_form
from baton.server.observability import metrics
from baton.server.runtime.context import Baton, baton, source_address
from baton.server.runtime.pages import add_to_templates, templates
from baton.server.runtime.sessions import csrf_ok, csrf_token
from baton.store.admin import (
    PAGE,
    Actor,
    GrantQuery,
    GrantStatus,
    checked_instant,
    policy_version,
)
from baton.store.base import Client, User
from baton.store.sql.client_admin import Stale

log = logging.getLogger("baton.admin")
_HERE = Path(__file__).parents[1]  # baton/server: templates/ and static/
add_to_templates(
    filters={
        "when": lambda t: when(t) if t is not None else "—",
        "minute": lambda t: minute(t) if t is not None else "—",
        "duration": duration,
        "dated": dated,  # a security event's detail, its times as dates
    }
)


def client_label(client_id: str | None, names: Mapping[str, str]) -> Markup:
    """A client as a person reads it: its name, with its id beside it, small and monospace (the
    id alone when the client has no name to show, or no longer exists); "—" for none."""
    if not client_id:
        return Markup("—")
    name = names.get(client_id)
    if not name:
        return Markup('<span class="mono">{}</span>').format(client_id)
    return Markup('{} <span class="mono small id">{}</span>').format(name, client_id)


add_to_templates(
    globals={"client_label": client_label, "reuse_causes": REUSE_CAUSES}  # causes: shown in red
)
_STYLESHEET = (_HERE / "static" / "admin.css").read_text()
_NO_STORE = {"Cache-Control": "no-store"}
_STATUSES: tuple[str, ...] = get_args(GrantStatus)
_EVENT_KINDS = (
    SecurityEventKind.REFRESH_TOKEN_REUSE,
    SecurityEventKind.CODE_REUSE,
    SecurityEventKind.LOGIN_LOCKOUT,
    SecurityEventKind.LEEWAY_RETRY,
    SecurityEventKind.CLIENT_DISABLED,
)


def _admin_store(request: Request) -> AdminQueries:
    found: AdminQueries | None = getattr(request.app.state, "admin_store", None)
    if found is None:
        raise OAuthError(ErrorCode.INVALID_REQUEST, "the admin console needs an SQL store", 404)
    return found


# -- who may enter -----------------------------------------------------------------------------


async def _signed_in_admin(request: Request) -> User | Response:
    uid = request.session.get("uid")
    user = await baton(request).store.get_user_by_id(uid) if isinstance(uid, int) else None
    if user is None or user.disabled_at is not None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if request.method != "GET":  # a form posted after the session ended: start over
            target = "/admin/"
        return RedirectResponse("/login?next=" + quote(target, safe=""), status_code=303)
    if not user.is_admin:
        return _page(request, "admin/forbidden.html", {"user": user}, status=403)
    return user


def _page(request: Request, name: str, context: dict[str, Any], *, status: int = 200) -> Response:
    context = {"csrf": csrf_token(request.session), "path": request.url.path, **context}
    return templates.TemplateResponse(request, name, context, status_code=status, headers=_NO_STORE)


async def _posted(request: Request) -> tuple[User, Form] | Response:
    """An admin's form post with its CSRF token checked; or the page that refuses it."""
    user = await _signed_in_admin(request)
    if isinstance(user, Response):
        return user
    try:
        form = await read_form(request, baton(request).settings.max_body_bytes)
    except OAuthError as exc:
        return _page(request, "admin/message.html", {"message": exc.description}, status=400)
    if not csrf_ok(request.session, form.get("csrf")):
        message = "The form expired. Go back, reload the page and try again."
        return _page(request, "admin/message.html", {"message": message}, status=403)
    return user, form


async def _client_names(request: Request, ids: Iterable[str | None]) -> dict[str, str]:
    """The names of the clients a page shows, in one query for the whole page."""
    return await _admin_store(request).client_names({i for i in ids if i})


def _actor(request: Request, user: User) -> Actor:
    return Actor(user.username, source_address(request), baton(request).clock.now())


# -- pages -------------------------------------------------------------------------------------


async def home(request: Request) -> Response:
    user = await _signed_in_admin(request)
    if isinstance(user, Response):
        return user
    return RedirectResponse("/admin/grants", status_code=303)


async def stylesheet(_request: Request) -> Response:
    return Response(
        _STYLESHEET, media_type="text/css", headers={"Cache-Control": "public, max-age=3600"}
    )


async def grants_page(request: Request) -> Response:
    user = await _signed_in_admin(request)
    if isinstance(user, Response):
        return user
    if (refused := _bad_query(request)) is not None:
        return refused
    params = request.query_params
    status = params.get("status") or None
    query = GrantQuery(
        client_id=(params.get("client") or "").strip() or None,
        username=(params.get("user") or "").strip() or None,
        status=status if status in _STATUSES else None,  # type: ignore[arg-type]
        after=_cursor(params.get("after")),
    )
    now = baton(request).clock.now()
    page = await _admin_store(request).grants(query, now)
    next_url = None
    if page.next is not None:
        filters = {k: v for k, v in params.items() if k != "after" and v}
        next_url = "/admin/grants?" + urlencode(
            {**filters, "after": f"{page.next[0]}:{page.next[1]}"}
        )
    return _page(
        request,
        "admin/grants.html",
        {
            "user": user,
            "rows": page.rows,
            "names": await _client_names(request, (row.grant.client_id for row in page.rows)),
            "query": query,
            "statuses": _STATUSES,
            "now": now,
            "next_url": next_url,
        },
    )


def _cursor(raw: str | None) -> tuple[int, str] | None:
    if not raw:
        return None
    expires, _, grant_id = raw.partition(":")
    at = _int(expires)
    return None if at is None else (at, grant_id)


async def _timeline(request: Request, grant_id: str) -> tuple[timeline.Timeline, Any] | None:
    app = baton(request)
    family = await _admin_store(request).family(grant_id)
    if family is None:
        return None
    drawn = timeline.build(
        family.grant,
        family.refresh,
        family.access,
        family.events,
        now=app.clock.now(),
        policy=app.settings.policy,
        omitted=family.omitted,
    )
    return drawn, family


async def grant_page(request: Request) -> Response:
    user = await _signed_in_admin(request)
    if isinstance(user, Response):
        return user
    grant_id = request.path_params["grant_id"]
    found = await _timeline(request, grant_id)
    if found is None:
        message = f"There is no grant {grant_id}."
        return _page(request, "admin/message.html", {"message": message}, status=404)
    drawn, family = found
    return _page(
        request,
        "admin/grant.html",
        {
            "user": user,
            "timeline": drawn,
            "svg": Markup(render(drawn)),  # noqa: S704 - every text in it is escaped by render()
            "events": sorted(family.events, key=lambda e: e.occurred_at),
            "names": await _client_names(request, [drawn.grant.client_id]),
            "live": drawn.grant.live(drawn.now),
        },
    )


async def timeline_svg(request: Request) -> Response:
    user = await _signed_in_admin(request)
    if isinstance(user, Response):
        return user
    found = await _timeline(request, request.path_params["grant_id"])
    if found is None:
        return Response("no such grant", status_code=404, media_type="text/plain")
    return Response(render(found[0]), media_type="image/svg+xml", headers=_NO_STORE)


async def revoke_grant(request: Request) -> Response:
    posted = await _posted(request)
    if isinstance(posted, Response):
        return posted
    user, _form = posted
    grant_id = request.path_params["grant_id"]
    if await _admin_store(request).revoke_grant(grant_id, _actor(request, user)):
        metrics.of(request).revoked(FeedEntryKind.GRANT, RevocationCause.ADMIN)
    return RedirectResponse(f"/admin/grants/{quote(grant_id)}", status_code=303)


async def clients_page(request: Request) -> Response:
    user = await _signed_in_admin(request)
    if isinstance(user, Response):
        return user
    if (refused := _bad_query(request)) is not None:
        return refused
    return await _clients(request, user, None, 200)


async def _clients(request: Request, user: User, error: str | None, status: int) -> Response:
    page = _int(request.query_params.get("page"), _MAX_INT // PAGE - 1) or 0
    rows = await _admin_store(request).clients(offset=page * PAGE, limit=PAGE + 1)
    next_url = f"/admin/clients?page={page + 1}" if len(rows) > PAGE else None
    shown = rows[:PAGE]
    context = {
        "user": user,
        "rows": shown,
        "error": error,
        "next_url": next_url,
        "changes": await _scheduled_marks(request, shown),
    }
    return _page(request, "admin/clients.html", context, status=status)


# -- a client's policy and its integration health (issue 28) ---------------------------------------

# The integration health the console shows: the signals of the last seven days.
HEALTH_WINDOW = 7 * DAY

# Each knob of a client's policy as the console names it, in `PolicySettings`' order.
_KNOBS = {
    "access_ttl": "Access token lifetime",
    "refresh_idle_ttl": "Refresh token idle lifetime",
    "refresh_absolute_ttl": "Grant lifetime (absolute)",
    "leeway": "Leeway after an exchange",
    "retry": "Retry inside the leeway",
    "rotate": "Refresh tokens rotate",
    "grant_types": "Grant types",
    "require_pkce": "PKCE required",
}

# What each report-only refusal means, in the health panel.
_REFUSALS = {
    Refusal.LEEWAY: "after the shorter leeway",
    Refusal.STRICT: "a retry under strict",
    Refusal.ACCESS_TTL: "an access token past the shorter lifetime",
    Refusal.IDLE: "a refresh token idle past the shorter lifetime",
    Refusal.ABSOLUTE: "a grant past the shorter absolute lifetime",
    Refusal.GRANT_TYPE: "a grant type no longer allowed",
    Refusal.PKCE: "an authorization request without PKCE",
}


def _knob_text(name: str, value: Any) -> str:
    if name in DURATIONS:
        return duration(int(value))
    if value is None:
        return "every grant type its kind allows"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(value) or "none"
    return str(value)


async def _healths(request: Request, client_ids: list[str], now: int) -> dict[str, Health]:
    """The integration health of these clients over `HEALTH_WINDOW`, in one query."""
    if not client_ids:
        return {}
    found = await baton(request).store.client_health(client_ids, now - HEALTH_WINDOW, now)
    return {h.client_id: h for h in found}


async def _scheduled_marks(request: Request, rows: list[Client]) -> dict[str, dict[str, Any]]:
    """For each client of a clients page with a scheduled change: when, whether report-only,
    and whether it would break the client (its signals of the last seven days)."""
    now = baton(request).clock.now()
    server = baton(request).settings.policy
    pending = {c.id: c for c in rows if c.policy.pending(now) is not None}
    healths = await _healths(request, list(pending), now)
    marks: dict[str, dict[str, Any]] = {}
    for client_id, client in pending.items():
        change = client.policy.pending(now)
        assert change is not None
        health = healths.get(client_id) or Health(client_id, now - HEALTH_WINDOW)
        marks[client_id] = {
            "effective_at": change.effective_at,
            "report_only": change.report_only,
            "affected": affected(Subject.of(client), server, health, now),
        }
    return marks


async def _policy_view(request: Request, client: Client) -> dict[str, Any]:
    """What the client page shows of the client's policy: each knob in force (and whether it is
    the server's default), the scheduled change, and the integration health of the last seven
    days with the notice its integrator would be sent."""
    now = baton(request).clock.now()
    server = baton(request).settings.policy
    subject = Subject.of(client)
    health = (await _healths(request, [client.id], now)).get(client.id) or Health(
        client.id, now - HEALTH_WINDOW
    )
    current = in_force(subject, server, now)
    changes = changes_of(subject, server, now)
    scheduled = {c.setting: c.after for c in changes}
    knobs = [
        {
            "name": name,
            "label": label,
            "value": _knob_text(name, current[name]),
            # Where the value comes from: the client's policy, else its registration (grant
            # types, PKCE) or the server's defaults (lifetimes, leeway, retry, rotation).
            "source": "policy"
            if name in current["client_sets"]
            else "registration"
            if name in ("grant_types", "require_pkce")
            else "server",
            "scheduled": _knob_text(name, scheduled[name]) if name in scheduled else None,
        }
        for name, label in _KNOBS.items()
    ]
    found = evidence(subject, server, health, now)
    tallies = {kind.value: health.tally(kind) for kind in SignalKind}
    refusals = [(_REFUSALS[reason], tally) for reason, tally in sorted(health.refusals.items())]
    return {
        "knobs": knobs,
        "since": current["since"],
        "pending": client.policy.pending(now),
        "changes": [describe(c) for c in changes],
        "health": health,
        "tallies": tallies,
        "refusals": refusals,
        "affected": found["affected"],
        "integrator_notice": (
            integrator_notice(subject, server, health, now) if found["affected"] else None
        ),
        "retry_choices": ("replay", "fork", "strict"),
        "duration_knobs": [(name, _KNOBS[name]) for name in DURATIONS],
    }


async def create_client(request: Request) -> Response:
    posted = await _posted(request)
    if isinstance(posted, Response):
        return posted
    user, form = posted
    name = (form.get("name") or "").strip()
    kind = form.get("kind") or "confidential"
    uris = tuple((form.get("redirect_uris") or "").split())
    try:
        scope = render_scope(parse_scope((form.get("scope") or "").strip()))
    except ScopeError as exc:
        return await _clients(request, user, str(exc), 400)
    problems = [p for p in map(redirect_uri_problem, uris) if p is not None]
    if not name or len(name) > 200:
        problems.insert(0, "Give the client a name (at most 200 characters).")
    if kind not in ("confidential", "public", "resource_server"):
        problems.append("Choose confidential, public or resource server.")
    remember_consent = form.get("remember_consent") == "on"
    pkce_optional = form.get("pkce_optional") == "on"
    option = client_option_problem(kind == "public", uris, remember_consent, pkce_optional)
    if option is not None:
        problems.append(option[0].upper() + option[1:] + ".")
    if problems:
        return await _clients(request, user, problems[0], 400)
    secret = None if kind == "public" else mint(TokenKind.CLIENT_SECRET)
    record = Client(
        id=random_id("cl_"),
        name=name,
        secret_digest=secret.digest if secret else None,
        is_public=kind == "public",
        is_resource_server=kind == "resource_server",
        redirect_uris=uris,
        scope=scope,
        created_at=baton(request).clock.now(),
        remember_consent=remember_consent,
        require_pkce=not pkce_optional,
    )
    await _admin_store(request).create_client(record, _actor(request, user))
    return _secret_page(request, user, record.id, name, secret.plaintext if secret else None, True)


def _secret_page(
    request: Request, user: User, client_id: str, name: str, secret: str | None, created: bool
) -> Response:
    context = {"user": user, "client_id": client_id, "name": name, "secret": secret}
    return _page(request, "admin/secret.html", {**context, "created": created})


async def rotate_secret(request: Request) -> Response:
    posted = await _posted(request)
    if isinstance(posted, Response):
        return posted
    user, _form = posted
    client_id = request.path_params["client_id"]
    secret = mint(TokenKind.CLIENT_SECRET)
    if not await _admin_store(request).rotate_secret(
        client_id, secret.digest, _actor(request, user)
    ):
        return await _clients(request, user, "Only a confidential client has a secret.", 400)
    name = (await _client_names(request, [client_id])).get(client_id, "")
    return _secret_page(request, user, client_id, name, secret.plaintext, False)


async def disable_client(request: Request) -> Response:
    posted = await _posted(request)
    if isinstance(posted, Response):
        return posted
    user, _form = posted
    disabled = await _admin_store(request).disable_client(
        request.path_params["client_id"], _actor(request, user)
    )
    if disabled is not None:
        metrics.of(request).revoked(
            FeedEntryKind.GRANT, RevocationCause.CLIENT_DISABLED, disabled.grants_revoked
        )
    return RedirectResponse("/admin/clients", status_code=303)


async def enable_client(request: Request) -> Response:
    posted = await _posted(request)
    if isinstance(posted, Response):
        return posted
    user, _form = posted
    await _admin_store(request).enable_client(
        request.path_params["client_id"], _actor(request, user)
    )
    return RedirectResponse("/admin/clients", status_code=303)


async def client_page(request: Request) -> Response:
    user = await _signed_in_admin(request)
    if isinstance(user, Response):
        return user
    return await _client(request, user, None, None, 200)


async def _client(
    request: Request, user: User, notice: str | None, error: str | None, status: int
) -> Response:
    client_id = request.path_params["client_id"]
    found = await _admin_store(request).client(client_id)
    if found is None:
        message = f"There is no client {client_id}."
        return _page(request, "admin/message.html", {"message": message}, status=404)
    context = {
        "user": user,
        "c": found,
        "version": version(found),
        "policy_version": policy_version(found.policy),
        "notice": notice,
        "error": error,
        "algorithms": ALGORITHMS,
        "subject_types": SUBJECT_TYPES,
        "policy": await _policy_view(request, found),
    }
    return _page(request, "admin/client.html", context, status=status)


# The longest number a duration field takes: ten years is nine digits.
_MAX_DIGITS = 12
# What a policy field takes to give its knob back to the server's default (or, for grant
# types and PKCE, to the client's registration), as `baton client policy set` does.
DEFAULT = "default"


def _policy_form(form: Form, base: PolicySettings) -> tuple[PolicySettings, int | None, bool]:
    """The settings the client page's policy form posted, over those in force (`base`): each
    field set changes its knob (`default`: back to the server's), an empty one keeps it; its
    effective instant (UTC; empty: undated, report-only) and whether it is report-only. Raises
    `PolicyError` saying what is wrong."""
    change: dict[str, Any] = base.to_json()
    given = False

    def said(name: str) -> str | None:
        """The field's value (None: empty, unchanged), `default` dropping the knob."""
        nonlocal given
        raw = (form.get(name) or "").strip()
        if not raw:
            return None
        given = True
        if raw.lower() == DEFAULT:
            change.pop(name, None)
            return None
        return raw

    for name in DURATIONS:
        if (raw := said(name)) is not None:
            # ASCII digits only, and few: "²" and "٣" are digits to `str.isdigit`, and a
            # 5000-digit number is one `int` refuses to read.
            if not (raw.isascii() and raw.isdigit() and len(raw) <= _MAX_DIGITS):
                raise PolicyError(f"{_KNOBS[name].lower()} must be a whole number of seconds")
            change[name] = int(raw)
    if (retry := said("retry")) is not None:
        change["retry"] = retry
    for name in ("rotate", "require_pkce"):
        if (yes_no := said(name)) is not None:
            if yes_no not in ("yes", "no"):
                raise PolicyError(f"{_KNOBS[name].lower()}: yes, no or default")
            change[name] = yes_no == "yes"
    if (grant_types := said("grant_types")) is not None:
        change["grant_types"] = grant_types.split()
    if not given:
        raise PolicyError("set at least one setting to change")
    raw_when = (form.get("effective_at") or "").strip()
    effective_at = None
    if raw_when:
        try:
            effective_at = checked_instant(
                int(datetime.strptime(raw_when, "%Y-%m-%dT%H:%M").replace(tzinfo=UTC).timestamp()),
                raw_when,
            )
        except (ValueError, OverflowError):
            raise PolicyError(
                "give the effective date as YYYY-MM-DD and a time (UTC), before the year 10000"
            ) from None
    return PolicySettings.from_json(change), effective_at, form.get("report_only") == "on"


async def _write_policy(request: Request, cancel: bool) -> Response:
    """Schedules the change the client page's form posted, or cancels the pending one; only
    if the client's policy is still the one the page showed (its `policy_version`)."""
    posted = await _posted(request)
    if isinstance(posted, Response):
        return posted
    user, form = posted
    client_id = request.path_params["client_id"]
    store = _admin_store(request)
    found = await store.client(client_id)
    if found is None:
        message = f"There is no client {client_id}."
        return _page(request, "admin/message.html", {"message": message}, status=404)
    changed_meanwhile = (
        "This client's policy was changed since you opened this page, so nothing was "
        "saved. The page now shows its current policy: make your change again."
    )
    # The form's version of the policy, not the one read here: another administrator's change
    # made between the page and this post would otherwise be replaced without a word.
    if form.get("policy_version") != policy_version(found.policy):
        return await _client(request, user, None, changed_meanwhile, 409)
    now = baton(request).clock.now()
    try:
        if cancel:
            if found.policy.pending(now) is None:
                return await _client(request, user, "No change was scheduled.", None, 200)
            policy = found.policy.cancel(now)
        else:
            settings, effective_at, report_only = _policy_form(form, found.policy.settings_at(now))
            policy = found.policy.schedule(
                settings, now, effective_at, report_only, replace_all=True
            )
        written = await store.schedule_client_policy(
            client_id,
            policy,
            now,
            _actor(request, user),
            before=found.policy,
            server=baton(request).settings.policy,
        )
    except PolicyError as exc:
        return await _client(request, user, None, _capitalized(str(exc)) + ".", 400)
    if written is None:
        message = f"There is no client {client_id}."
        return _page(request, "admin/message.html", {"message": message}, status=404)
    if isinstance(written, Stale):
        return await _client(request, user, None, changed_meanwhile, 409)
    baton(request).clients.forget(client_id)
    pending = written.policy.pending(now)
    if cancel:
        said = "The scheduled change was cancelled."
    elif written.policy == found.policy:
        said = "Nothing changed."
    elif pending is None:
        said = "The change is in force from now."
    else:
        start = "undated" if pending.effective_at is None else f"from {when(pending.effective_at)}"
        mode = ", report-only until then" if pending.report_only else ""
        said = f"Change scheduled ({start}{mode})."
    return await _client(request, user, said, None, 200)


async def schedule_policy(request: Request) -> Response:
    return await _write_policy(request, cancel=False)


async def cancel_policy(request: Request) -> Response:
    return await _write_policy(request, cancel=True)


def _oidc_form(form: Form) -> OidcSettings:
    """The OpenID Connect settings the client page's form posted (not checked yet)."""
    origins = tuple((form.get("allowed_origins") or "").split())
    return OidcSettings(
        id_token_signed_response_alg=form.get("id_token_signed_response_alg") or "RS256",
        subject_type=form.get("subject_type") or "public",
        sector_identifier_uri=(form.get("sector_identifier_uri") or "").strip() or None,
        post_logout_redirect_uris=tuple((form.get("post_logout_redirect_uris") or "").split()),
        backchannel_logout_uri=(form.get("backchannel_logout_uri") or "").strip() or None,
        backchannel_logout_session_required=form.get("backchannel_logout_session_required") == "on",
        require_nonce=form.get("require_nonce") == "on",
        allowed_origins=None if form.get("origins") != "listed" else origins,
    )


# The client's own login and consent apps, and its homepage (`baton client update --login-url`):
# the form's field, and how its problems name it.
_APP_URLS = {
    "login_url": "the login app URL",
    "consent_url": "the consent app URL",
    "client_uri": "the homepage",
}


def _app_urls(form: Form) -> dict[str, str | None] | str:
    """The app URLs the client page's form posted, each checked as the CLI checks them (empty:
    none); or why one is refused."""
    urls: dict[str, str | None] = {}
    for name, said in _APP_URLS.items():
        value = (form.get(name) or "").strip()
        if value and (problem := app_url_problem(value, said)) is not None:
            return problem
        urls[name] = value or None
    return urls


async def update_client(request: Request) -> Response:
    """Saves a client's OpenID Connect settings, checked as `baton client update` checks
    them, and audited with what changed."""
    posted = await _posted(request)
    if isinstance(posted, Response):
        return posted
    user, form = posted
    client_id = request.path_params["client_id"]
    found = await _admin_store(request).client(client_id)
    if found is None:
        message = f"There is no client {client_id}."
        return _page(request, "admin/message.html", {"message": message}, status=404)
    try:
        settings = checked(_oidc_form(form), found.redirect_uris)
    except MetadataError as exc:
        error = str(exc)
        return await _client(request, user, None, error[0].upper() + error[1:] + ".", 400)
    apps = _app_urls(form)
    if isinstance(apps, str):
        return await _client(request, user, None, apps[0].upper() + apps[1:] + ".", 400)
    changed = await _admin_store(request).update_client_oidc(
        client_id, settings, _actor(request, user), apps, form.get("version") or None
    )
    if changed is None:
        message = f"There is no client {client_id}."
        return _page(request, "admin/message.html", {"message": message}, status=404)
    if isinstance(changed, Stale):
        # Saved by someone else (console, CLI or admin API) since this page was opened: the
        # page shows the client as it now is, and nothing of this form was written.
        changed_meanwhile = (
            "This client was changed since you opened this page, so nothing was saved. "
            "The page now shows its current settings: make your change again."
        )
        return await _client(request, user, None, changed_meanwhile, 409)
    # This process authenticates from its cache: it reads the new settings at once.
    baton(request).clients.forget(client_id)
    notice = "Saved: " + ", ".join(changed) + "." if changed else "Nothing changed."
    return await _client(request, user, notice, None, 200)


async def events_page(request: Request) -> Response:
    user = await _signed_in_admin(request)
    if isinstance(user, Response):
        return user
    if (refused := _bad_query(request)) is not None:
        return refused
    kind = request.query_params.get("kind") or None
    before = _int(request.query_params.get("before"))
    rows, more = await _admin_store(request).security_events(kind, before)
    next_url = None
    if more is not None:
        next_url = "/admin/events?" + urlencode(
            {**({"kind": kind} if kind else {}), "before": more}
        )
    return _page(
        request,
        "admin/events.html",
        {
            "user": user,
            "rows": rows,
            "names": await _client_names(request, (e.client_id for e in rows)),
            "kind": kind,
            "kinds": _EVENT_KINDS,
            "next_url": next_url,
        },
    )


async def audit_page(request: Request) -> Response:
    user = await _signed_in_admin(request)
    if isinstance(user, Response):
        return user
    if (refused := _bad_query(request)) is not None:
        return refused
    rows, more = await _admin_store(request).audit(_int(request.query_params.get("before")))
    next_url = f"/admin/audit?before={more}" if more is not None else None
    names = await _client_names(request, (a.target_id for a in rows if a.target_kind == "client"))
    context = {"user": user, "rows": rows, "names": names, "next_url": next_url}
    return _page(request, "admin/audit.html", context)


async def users_page(request: Request) -> Response:
    user = await _signed_in_admin(request)
    if isinstance(user, Response):
        return user
    if (refused := _bad_query(request)) is not None:
        return refused
    return await _users(request, user, None, None, 200)


async def _users(
    request: Request, user: User, notice: str | None, error: str | None, status: int
) -> Response:
    page = _int(request.query_params.get("page"), _MAX_INT // PAGE - 1) or 0
    rows = await _admin_store(request).user_listing(offset=page * PAGE, limit=PAGE + 1)
    next_url = f"/admin/users?page={page + 1}" if len(rows) > PAGE else None
    context = {
        "user": user,
        "rows": rows[:PAGE],
        "notice": notice,
        "error": error,
        "next_url": next_url,
    }
    return _page(request, "admin/users.html", context, status=status)


async def user_page(request: Request) -> Response:
    user = await _signed_in_admin(request)
    if isinstance(user, Response):
        return user
    if (refused := _bad_query(request)) is not None:
        return refused
    username = request.query_params.get("username") or ""
    return await _user(request, user, username, None, None, 200)


async def _user(
    request: Request,
    user: User,
    username: str,
    notice: str | None,
    error: str | None,
    status: int,
) -> Response:
    found = await _admin_store(request).user(username) if username else None
    if found is None:
        message = f"There is no user {username!r}."
        return _page(request, "admin/message.html", {"message": message}, status=404)
    context = {
        "user": user,
        "u": found,
        "members": PROFILE_MEMBERS,
        "notice": notice,
        "error": error,
        "upstream_links": await user_links(request, found.id),
        "has_password": found.password_hash != NO_PASSWORD,
        "min_length": baton(request).settings.password_min_length,
        "max_length": MAX_LENGTH,
        "is_self": found.id == user.id,
    }
    return _page(request, "admin/user.html", context, status=status)


async def set_user_claims(request: Request) -> Response:
    """Saves a user's email and profile claims, checked as `baton user set` checks them, and
    audited with the names of the claims that changed."""
    posted = await _posted(request)
    if isinstance(posted, Response):
        return posted
    user, form = posted
    username = form.get("username") or ""
    # Every field is on the form: an empty one clears its claim.
    values = {name: (form.get(name) or "").strip() for name in SETTABLE}
    verified = form.get("email_verified") == "on" and bool(values["email"])
    try:
        changes = check(ClaimChanges(values, verified))
    except ClaimError as exc:
        error = str(exc)
        return await _user(request, user, username, None, error[0].upper() + error[1:] + ".", 400)
    changed = await _admin_store(request).set_user_claims(username, changes, _actor(request, user))
    if changed is None:
        message = f"There is no user {username!r}."
        return _page(request, "admin/message.html", {"message": message}, status=404)
    notice = "Saved: " + ", ".join(changed) + "." if changed else "Nothing changed."
    return await _user(request, user, username, notice, None, 200)


async def sign_out_everywhere(request: Request) -> Response:
    """Ends every browser session of a user at once (a stolen or forgotten session cookie stops
    working), with the grants those sessions gave without `offline_access` and a back-channel
    logout to their relying parties; grants with offline access stay (disable the user, or revoke
    them on the grants page)."""
    posted = await _posted(request)
    if isinstance(posted, Response):
        return posted
    user, form = posted
    username = (form.get("username") or "").strip()
    ended = await _admin_store(request).sign_out_everywhere(username, _actor(request, user))
    if ended is None:
        return await _users(request, user, None, f"There is no user {username!r}.", 404)
    notice = f"Signed {username} out everywhere: {ended} session(s) ended."
    return await _users(request, user, notice, None, 200)


async def unlink_upstream_account(request: Request) -> Response:
    """Forgets that an upstream account signs in as this user (a link made by mistake, or an
    account the person lost): audited; the user's sessions stay (sign them out too if needed)."""
    posted = await _posted(request)
    if isinstance(posted, Response):
        return posted
    user, form = posted
    username = (form.get("username") or "").strip()
    found = await _admin_store(request).user(username)
    if found is None:
        return _no_user(request, username)
    provider_id, subject = form.get("provider_id") or "", form.get("subject") or ""
    if await unlink(request, found.id, provider_id, subject, _actor(request, user)):
        notice = f"Unlinked the {provider_id} account {subject!r}: it no longer signs in here."
        return await _user(request, user, username, notice, None, 200)
    missing = "There is no such link (unlinked already?)."
    return await _user(request, user, username, None, missing, 404)


def _capitalized(message: str) -> str:
    return message[0].upper() + message[1:] + "."


def _no_user(request: Request, username: str) -> Response:
    message = f"There is no user {username!r}."
    return _page(request, "admin/message.html", {"message": message}, status=404)


async def set_user_password(request: Request) -> Response:
    """Gives a user a new password, typed twice and held to the password policy
    (`baton.core.passwords_policy`), as `baton user set-password` does; audited (never the
    password)."""
    posted = await _posted(request)
    if isinstance(posted, Response):
        return posted
    user, form = posted
    username = form.get("username") or ""
    password = form.get("password") or ""
    if password != (form.get("password_again") or ""):
        refusal = "The two passwords differ: type the same password twice."
        return await _user(request, user, username, None, refusal, 400)
    min_length = baton(request).settings.password_min_length
    problem = password_problem(password, min_length, common_passwords(), username=username)
    if problem is not None:
        return await _user(request, user, username, None, _capitalized(problem), 400)
    # Argon2 takes a tenth of a second of CPU: off the event loop.
    hashed = await anyio.to_thread.run_sync(hash_password, password)
    if not await _admin_store(request).set_password(username, hashed, _actor(request, user)):
        return _no_user(request, username)
    return await _user(request, user, username, "Saved the new password.", None, 200)


def _count_revoked(request: Request, revoked: int) -> None:
    metrics.of(request).revoked(FeedEntryKind.GRANT, RevocationCause.ADMIN, revoked)


async def disable_user(request: Request) -> Response:
    """Disables a user: they cannot sign in, and every session and grant of theirs ends at once
    (the revocation feed, back-channel logouts). An administrator cannot disable themselves
    here: `baton user disable` can."""
    posted = await _posted(request)
    if isinstance(posted, Response):
        return posted
    user, form = posted
    username = form.get("username") or ""
    if username == user.username:
        refusal = "You cannot disable yourself here (use `baton user disable`)."
        return await _user(request, user, username, None, refusal, 400)
    store = _admin_store(request)
    ended = await store.disable_user(username, _actor(request, user))
    if ended is None:
        if await store.user(username) is None:
            return _no_user(request, username)
        return await _user(request, user, username, "Already disabled.", None, 200)
    _count_revoked(request, ended.grants_revoked)
    notice = (
        f"Disabled: {ended.sessions} session(s) ended, {ended.grants_revoked} grant(s) revoked."
    )
    return await _user(request, user, username, notice, None, 200)


async def enable_user(request: Request) -> Response:
    posted = await _posted(request)
    if isinstance(posted, Response):
        return posted
    user, form = posted
    username = form.get("username") or ""
    store = _admin_store(request)
    if not await store.enable_user(username, _actor(request, user)):
        found = await store.user(username)
        if found is None:
            return _no_user(request, username)
        if found.deleted_at is not None:
            refusal = "A deleted user is never enabled again."
            return await _user(request, user, username, None, refusal, 400)
        return await _user(request, user, username, "Not disabled.", None, 200)
    return await _user(request, user, username, "Enabled: the user may sign in again.", None, 200)


async def delete_user(request: Request) -> Response:
    """Deletes a user once their name is typed again to confirm: everything disabling ends, then
    their personal data. The name stays reserved: it is their `sub`, never reassigned (OIDC
    Core §2). Not oneself."""
    posted = await _posted(request)
    if isinstance(posted, Response):
        return posted
    user, form = posted
    username = form.get("username") or ""
    if username == user.username:
        refusal = "You cannot delete yourself here (use `baton user delete`)."
        return await _user(request, user, username, None, refusal, 400)
    if form.get("confirm") != username:
        refusal = "Type the username to confirm the deletion."
        return await _user(request, user, username, None, refusal, 400)
    store = _admin_store(request)
    ended = await store.delete_user(username, _actor(request, user))
    if ended is None:
        if await store.user(username) is None:
            return _no_user(request, username)
        return await _user(request, user, username, "Already deleted.", None, 200)
    _count_revoked(request, ended.grants_revoked)
    notice = (
        f"Deleted {username}: {ended.sessions} session(s) ended, "
        f"{ended.grants_revoked} grant(s) revoked; the name stays reserved, never given to "
        "another user."
    )
    return await _users(request, user, notice, None, 200)


_MAX_INT = 2**63 - 1  # the databases' BIGINT: a larger value is no id, time or page


def _int(raw: str | None, maximum: int = _MAX_INT) -> int | None:
    """A query parameter as a non-negative integer the database can hold, or None (ignored:
    the first page) for anything else, a huge integer included."""
    try:
        value = int(raw) if raw else None
    except ValueError:
        return None
    return value if value is not None and 0 <= value <= maximum else None


def _bad_query(request: Request) -> Response | None:
    """A page that refuses a query string no database can compare (a NUL character), or None."""
    if any("\x00" in value for value in request.query_params.values()):
        message = "The address holds a character that is not allowed."
        return _page(request, "admin/message.html", {"message": message}, status=400)
    return None


__all__ = ["Baton"]

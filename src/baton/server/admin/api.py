"""The admin API under /admin/api/v1: a machine API for the product's own apps.

Its first room is login and consent delegation: a login or consent app reads the challenge
/authorize handed it, and accepts or rejects it; and "sign out everywhere" and forgetting a
subject's consent reach the delegated session state. Issue 27 grows the rest of the admin API on
the same pieces:

- `AdminScope`: the admin scopes, declared once; each route needs exactly one, and a write scope
  does not imply its read scope (an app that only revokes grants never lists users).
- `admin_endpoint(path, methods, handler, scope, ...)`: an admin API route, its scope declared
  once in its row: the handler is called with the `Caller` only once `require_scope` passed, and
  its `Problem`s are answered as RFC 9457 documents; the OpenAPI operation's `security` and the
  per-scope authorization test (tests/server/test_admin_api_scopes.py) read the row's scope.
- `require_scope(request, scope) -> Caller`: every call carries `Authorization: Bearer <access
  token>` of a client_credentials grant of an enabled confidential client, granted `scope`. The
  token is looked up and judged as /userinfo and introspection judge it (opaque or JWT, stored
  under its digest; `baton.core.rules.access_liveness`), so a revoked token stops at once. Never a
  cookie: these paths skip the session middleware (`Table.sessionless_prefixes`), and nothing
  here reads a session. Each caller is rate limited as a client (`Limits.check_client`).
- `Problem`: errors are RFC 9457 problem details (`application/problem+json`), 401 and 403 with
  the RFC 6750 `WWW-Authenticate` challenge (§3.1: no error code when the request carried no
  credentials; 400 `invalid_request` for another scheme, such as Basic).
- `Caller.actor`: the name the audit log gives the caller, `client:<client_id>`. Every write is
  audited in its own transaction, and so is every refusal of a caller (a missing scope, a user's
  token, a client it may not manage); reads are not audited, except a challenge's (a login or
  consent app reading what it will decide). A challenge is named in the audit log by a prefix of
  its digest, never by itself.
- `require_admin_scopes(request, caller, scopes)`: the rule that keeps `admin:clients:write` from
  widening anyone's admin scopes (see `AdminScope`).
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import math
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from baton.core import rules
from baton.core.challenges import (
    CONSENT,
    LOGIN,
    MAX_ACR,
    MAX_AMR,
    BodyError,
    State,
    delegated_subject_problem,
    registered_claims,
    reject_problem,
    remember_for_problem,
    string_list,
    subject_problem,
)
from baton.core.scope import ADMIN_PREFIX
from baton.core.tokens import TokenKind, digest
from baton.server.admin.queries import ApiKeeper
from baton.server.endpoints.clientauth import enabled_client
from baton.server.endpoints.errors import OAuthError
from baton.server.endpoints.revocation import token_kind
from baton.server.routing import Endpoint, Kind, OperationSource, endpoint
from baton.server.runtime.context import Baton, baton, source_address
from baton.store.admin import Actor
from baton.store.base import Challenge, Remembered

PREFIX = "/admin/api/v1"
PROBLEM = "application/problem+json"


class AdminScope(enum.StrEnum):
    """The admin API's scopes. A confidential client is registered with the ones it needs
    (`baton client create --name tooling --scope "admin:clients:read ..."`) and asks for them
    in its client_credentials request; each route needs exactly one, held both by the token and
    by the client's registration as it is now (a scope taken from the client stops its tokens at
    once).

    `admin:clients:write` never reaches beyond its holder's own admin scopes: a caller may
    create, change, rotate the secret of, disable, enable or delete a client only if every
    `admin:*` scope that client holds, before and after the change, is also held by the
    caller's token; otherwise 403 `insufficient-scope` naming the missing scopes, audited
    (`require_admin_scopes`). So no caller widens its own or anyone's admin scopes beyond its
    own, nor takes over (by its secret) a client more privileged than itself."""

    # Login and consent delegation (issue 25): read, accept and reject challenges.
    CHALLENGES = "admin:challenges"
    # Sign a subject out everywhere; forget a subject's consent.
    SESSIONS = "admin:sessions"
    CLIENTS_READ = "admin:clients:read"
    # Create, update, rotate the secret of, disable, enable and delete clients.
    CLIENTS_WRITE = "admin:clients:write"
    USERS_READ = "admin:users:read"
    # Create, set passwords of, disable, enable and delete users.
    USERS_WRITE = "admin:users:write"
    GRANTS_READ = "admin:grants:read"
    # Revoke grants (every token of the family dies at once).
    GRANTS_WRITE = "admin:grants:write"
    CONSENTS_READ = "admin:consents:read"
    CONSENTS_WRITE = "admin:consents:write"
    KEYS_READ = "admin:keys:read"
    # Rotate the signing keys.
    KEYS_WRITE = "admin:keys:write"
    # Security events (reuse detected, sign-in lockouts, ...).
    EVENTS_READ = "admin:events:read"
    # The audit log: list, and export as JSON lines from a cursor.
    AUDIT_READ = "admin:audit:read"


_MAX_CLAIMS_BYTES = 16 * 1024  # an app's claims for one sign-in, as JSON


class Problem(Exception):
    """An RFC 9457 problem: `type` a URN naming the kind, `title` the status's phrase."""

    def __init__(
        self, status: int, kind: str, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.detail = detail
        self.headers = headers or {}

    def response(self) -> Response:
        body = {
            "type": f"urn:baton:problem:{self.kind}",
            "title": HTTPStatus(self.status).phrase,
            "status": self.status,
            "detail": self.detail,
        }
        headers = {"Cache-Control": "no-store", **self.headers}
        return JSONResponse(body, self.status, headers, media_type=PROBLEM)


def _unauthorized(detail: str) -> Problem:
    challenge = f'Bearer realm="baton", error="invalid_token", error_description="{detail}"'
    return Problem(401, "invalid-token", detail, {"WWW-Authenticate": challenge})


def _forbidden(scope: str, detail: str) -> Problem:
    challenge = f'Bearer realm="baton", error="insufficient_scope", scope="{scope}"'
    return Problem(403, "insufficient-scope", detail, {"WWW-Authenticate": challenge})


@dataclass(frozen=True, slots=True)
class Caller:
    """Who calls the admin API: the confidential client whose token it presented."""

    client_id: str
    scope: frozenset[str]
    address: str | None
    now: int

    @property
    def actor(self) -> Actor:
        return Actor(f"client:{self.client_id}", self.address, self.now)


async def require_scope(request: Request, scope: str) -> Caller:
    """The caller, if its bearer token is live, of a client_credentials grant of an enabled
    confidential client, and granted `scope` (the token and the client's registration alike);
    else a `Problem` (400 for credentials that are no bearer token, 401, 403, 429)."""
    app = baton(request)
    header = request.headers.get("authorization", "").strip()
    if not header:
        # RFC 6750 §3.1: a request with no authentication information gets a challenge with
        # no error code.
        detail = "an access token is required: Authorization: Bearer <token>"
        raise Problem(401, "invalid-token", detail, {"WWW-Authenticate": 'Bearer realm="baton"'})
    kind, _, token = header.partition(" ")
    token = token.strip()
    if kind.lower() != "bearer" or not token:
        # RFC 6750 §3.1 `invalid_request`: another scheme (Basic: a client's secret is no
        # admin credential), or a Bearer header without its token.
        detail = "the request must carry Authorization: Bearer <access token>"
        challenge = f'Bearer realm="baton", error="invalid_request", error_description="{detail}"'
        raise Problem(400, "invalid-request", detail, {"WWW-Authenticate": challenge})
    if token_kind(token) is not TokenKind.ACCESS:
        raise _unauthorized("not an access token")
    facts = await app.store.find_access_token(digest(token))
    now = app.clock.now()
    if facts is None or not rules.access_liveness(facts, now).active:
        raise _unauthorized("the access token is unknown, expired or revoked")
    grant = facts.grant
    if not _for_this_server(app, facts.audience):
        # RFC 8707 / RFC 9068 §4: a token for a resource server is that server's; here it
        # would let the resource server (which saw it) call the admin API as the app.
        raise _unauthorized("the access token's audience is not this server")
    client = await enabled_client(app.store, grant.client_id)
    if client is None or client.is_public:
        raise _unauthorized("the access token's client is unknown, disabled or public")
    caller = Caller(client.id, frozenset(facts.scope.split()), source_address(request), now)
    try:
        await app.limits.check_client(client.id)
    except OAuthError as exc:
        raise Problem(exc.status, "rate-limited", exc.description, exc.headers) from None
    if grant.user_id is not None:
        # A user's token speaks for that user, not for the app's client.
        await _audit_refusal(app, caller, request, "not a client_credentials token")
        raise _forbidden(scope, "the token must come from a client_credentials grant")
    if scope not in caller.scope:
        await _audit_refusal(app, caller, request, f"lacks {scope}")
        raise _forbidden(scope, f"the token was not granted the {scope} scope")
    if scope not in client.scope.split():
        # The token outlives a change of the client's registration: the scope taken from the
        # client is taken from its live tokens too.
        await _audit_refusal(app, caller, request, f"client no longer registered for {scope}")
        raise _forbidden(scope, f"the client is no longer registered for the {scope} scope")
    return caller


def admin_scopes(scope: str) -> frozenset[str]:
    """The `admin:*` scopes of a space-separated scope string."""
    return frozenset(s for s in scope.split() if s.startswith(ADMIN_PREFIX))


async def require_admin_scopes(request: Request, caller: Caller, scopes: frozenset[str]) -> None:
    """A 403 `insufficient-scope` problem naming the `admin:*` scopes of `scopes` that the
    caller's token lacks, audited; nothing when it holds them all (see `AdminScope`)."""
    missing = sorted(admin_scopes(" ".join(scopes)) - caller.scope)
    if not missing:
        return
    shown = " ".join(missing)
    await _audit_refusal(baton(request), caller, request, f"client holds {shown}")
    raise _forbidden(
        shown,
        f"the client holds admin scopes the caller's token lacks: {shown} (a caller manages "
        "only clients whose admin scopes it holds itself)",
    )


def _for_this_server(app: Baton, audience: tuple[str, ...]) -> bool:
    """Whether a token with `audience` is for Baton itself: the default audience (a grant with
    no RFC 8707 resource), the issuer, or none recorded."""
    settings = app.settings
    own = {settings.default_audience, settings.issuer, settings.issuer_identifier}
    return set(audience) <= own


async def _audit_refusal(app: Baton, caller: Caller, request: Request, why: str) -> None:
    """A refusal, named by the route's template and its parameters but a challenge (a bearer
    secret of the login app, never written down: the audit log is exported to a SIEM)."""
    route = getattr(request.scope.get("route"), "path", None)
    params = {k: v for k, v in request.path_params.items() if k != "challenge"}
    detail: dict[str, Any] = {"refused": why, "method": request.method}
    if params:
        detail["params"] = params
    target = route if isinstance(route, str) else PREFIX
    await _keeper(app).audit_api(caller.actor, "admin_api.refused", "path", target, detail)


def _keeper(app: Baton) -> ApiKeeper:
    return app.store


CallerHandler = Callable[[Request, Caller], Awaitable[Response]]


def admin_endpoint(
    path: str,
    methods: str,
    handler: CallerHandler,
    scope: AdminScope,
    *,
    openapi: OperationSource,
    summary: str,
    details: str | None = None,
) -> Endpoint:
    """The admin API route at `PREFIX + path`: `handler` runs with its `Caller` once the bearer
    token holds `scope`; every `Problem` either raises is answered as RFC 9457 JSON."""

    async def answer(request: Request) -> Response:
        try:
            caller = await require_scope(request, scope)
            return await handler(request, caller)
        except Problem as problem:
            return problem.response()

    answer.__name__ = handler.__name__
    answer.__doc__ = handler.__doc__
    return endpoint(
        PREFIX + path,
        methods,
        answer,
        Kind.MACHINE,
        openapi=openapi,
        summary=summary,
        details=details,
        scope=str(scope),
    )


def no_content() -> Response:
    """The 204 of a write that answers nothing (never cached, as every admin answer)."""
    return Response(status_code=204, headers={"Cache-Control": "no-store"})


def json_answer(body: Any, status: int = 200) -> Response:
    """A JSON answer of the admin API: never cached (it names users, clients and grants)."""
    return JSONResponse(body, status, {"Cache-Control": "no-store"})


MERGE_PATCH = "application/merge-patch+json"  # RFC 7396 §4


async def json_body(request: Request, merge_patch: bool = False) -> dict[str, Any]:
    """The request's JSON object (`Content-Type: application/json`; with `merge_patch`, a
    PATCH's, `application/merge-patch+json` too), or a 400 problem."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/json" and not (merge_patch and media == MERGE_PATCH):
        also = f" (or {MERGE_PATCH})" if merge_patch else ""
        raise Problem(
            400, "bad-body", f"send a JSON body with Content-Type: application/json{also}"
        )
    limit = baton(request).settings.max_body_bytes
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise Problem(413, "too-large", f"the body exceeds {limit} bytes")
    try:
        body = json.loads(raw, parse_constant=_no_constant, parse_float=_finite)
    except (ValueError, RecursionError):
        raise Problem(400, "bad-body", "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise Problem(400, "bad-body", "the body must be a JSON object")
    # A `\ud800` escape parses to a lone surrogate, which no database column takes: RFC 8259
    # §8.2 leaves such strings' behaviour unpredictable, so they are refused here, by member.
    for name, value in body.items():
        try:
            json.dumps([name, value], ensure_ascii=False).encode()
        except UnicodeEncodeError:
            shown = name.encode("utf-8", "replace").decode()
            detail = f"{shown}: holds a string that is not Unicode (a lone surrogate)"
            raise Problem(400, "bad-body", detail) from None
    return body


def opaque_cursor(value: str) -> str:
    """A list's `next_cursor`: `value` (the keyset position) as unpadded base64url."""
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def opened_cursor(raw: str | None) -> str | None:
    """The text inside an `opaque_cursor` (`?cursor=`), None when there is none; a 400 problem
    for anything but the exact spelling this API gives (so never a NUL, which PostgreSQL's text
    refuses, nor bytes that are not UTF-8)."""
    if raw is None or raw == "":
        return None
    try:
        if len(raw) > 1000 or not raw.isascii():
            raise ValueError(raw)
        opened = base64.b64decode(raw + "=" * (-len(raw) % 4), b"-_", validate=True).decode()
        if not opened or "\x00" in opened or opaque_cursor(opened) != raw:
            raise ValueError(raw)
        return opened
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise Problem(400, "bad-request", "cursor is not a next_cursor this API gave") from None


def _finite(text: str) -> float:
    # `1e999` parses to infinity, which `json.dumps` writes back as `Infinity`: refused as the
    # constants are. (An integer too long to print, over Python's 4300 digits, `json.loads`
    # refuses itself; any shorter one prints back as it came.)
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} is not a finite number")
    return value


def _no_constant(name: str) -> Any:
    # `json.loads` takes NaN, Infinity and -Infinity, which are not JSON (RFC 8259 §6): an ID
    # token or a UserInfo answer made of them would be invalid.
    raise ValueError(f"{name} is not a JSON number")


# -- challenges ----------------------------------------------------------------------------------


def _challenge_key(request: Request) -> tuple[bytes, str]:
    """The path's challenge: its digest and its name in the audit log (a prefix of the digest's
    hex, never the challenge)."""
    value = request.path_params["challenge"]
    if not (1 <= len(value) <= 200 and value.isascii() and value.isprintable()):
        raise Problem(404, "unknown-challenge", "no such challenge")
    key = digest(value)
    return key, key.hex()[:16]


async def _audited_key(
    app: Baton, caller: Caller, action: str, kind: str, request: Request
) -> tuple[bytes, str]:
    """`_challenge_key`, its 404 for a value that cannot be a challenge audited too."""
    try:
        return _challenge_key(request)
    except Problem as problem:
        detail = {"refused": problem.status}
        await _keeper(app).audit_api(caller.actor, action, f"{kind}_challenge", "-", detail)
        raise


_REFUSED = {
    "unknown": (404, "unknown-challenge", "no such challenge"),
    "decided": (409, "challenge-decided", "the challenge was already decided or used"),
    "expired": (410, "challenge-expired", "the challenge has expired"),
    "user_disabled": (409, "user-disabled", "user disabled"),
    "user_deleted": (409, "user-deleted", "user deleted: the subject is never given again"),
    "subject_not_delegated": (
        409,
        "subject-not-delegated",
        "the name belongs to a built-in or upstream user: a login app may sign in only the "
        "users it made",
    ),
}


def _refused(why: str) -> Problem:
    status, kind, detail = _REFUSED[why]
    return Problem(status, kind, detail)


def _state_problem(found: Challenge, now: int) -> Problem | None:
    state = found.state(now)
    if state is State.EXPIRED:
        return _refused("expired")
    if state is not State.PENDING:
        return _refused("decided")
    return None


def _described(found: Challenge, value: str) -> dict[str, Any]:
    carried = found.request
    body: dict[str, Any] = {"challenge": value, "client": carried["client"]}
    if found.kind == CONSENT:
        body["subject"] = carried.get("subject")
    body["requested_scope"] = carried["requested_scope"]
    body["requested_resource"] = carried["requested_resource"]
    if found.kind == CONSENT:
        body["requested_claims"] = carried.get("requested_claims", {"id_token": [], "userinfo": []})
    body["oidc"] = carried.get("oidc")
    if found.kind == LOGIN:
        body["session"] = carried.get("session")
    else:
        body["remembered"] = carried.get("remembered")
    body["expires_at"] = found.expires_at
    return body


def _get_challenge(kind: str) -> CallerHandler:
    async def get_challenge(request: Request, caller: Caller) -> Response:
        app = baton(request)
        key, target = await _audited_key(app, caller, f"{kind}_challenge.read", kind, request)
        found = await _keeper(app).read_challenge(
            key, kind, caller.actor, f"{kind}_challenge.read", target
        )
        if found is None:
            raise _refused("unknown")
        if (problem := _state_problem(found, caller.now)) is not None:
            raise problem
        return json_answer(_described(found, request.path_params["challenge"]))

    return get_challenge


def _decide(kind: str, decision: str) -> CallerHandler:
    action = f"{kind}_challenge.{decision}"

    async def decide(request: Request, caller: Caller) -> Response:
        app = baton(request)
        keeper = _keeper(app)
        key, target = await _audited_key(app, caller, action, kind, request)
        try:
            body = await json_body(request)
            found = await keeper.find_challenge(key)
            if found is None or found.kind != kind:
                raise _refused("unknown")
            if (problem := _state_problem(found, caller.now)) is not None:
                raise problem
            outcome, subject, remember = _outcome(kind, decision, body, found, caller.now)
        except (Problem, BodyError) as exc:
            status = exc.status if isinstance(exc, Problem) else 400
            detail = {"refused": status}
            await keeper.audit_api(caller.actor, action, f"{kind}_challenge", target, detail)
            if isinstance(exc, BodyError):
                raise Problem(400, "bad-body", str(exc)) from None
            raise
        verifier = secrets.token_urlsafe(32)
        decided = await keeper.decide_challenge(
            key, kind, outcome, digest(verifier), caller.actor, action, target, subject, remember
        )
        if isinstance(decided, str):
            raise _refused(decided)
        query = urlencode({"client_id": decided.client_id, f"{kind}_verifier": verifier})
        return json_answer(
            {"redirect_to": f"{app.settings.issuer_identifier}/authorize/continue?{query}"}
        )

    decide.__name__ = f"{kind}_{decision}"
    return decide


def _outcome(
    kind: str, decision: str, body: dict[str, Any], found: Challenge, now: int
) -> tuple[dict[str, Any], str | None, Remembered | None]:
    """The decision to record, the login accept's subject, and what a consent accept with
    `remember` records; `BodyError` for a body the contract does not allow."""
    if decision == "reject":
        error, description = body.get("error"), body.get("error_description")
        if (problem := reject_problem(error, description)) is not None:
            raise BodyError(problem)
        outcome: dict[str, Any] = {"decision": "reject", "error": error}
        if description:
            outcome["error_description"] = description
        return outcome, None, None
    remember = body.get("remember", False)
    if not isinstance(remember, bool):
        raise BodyError("remember must be true or false")
    remember_for = body.get("remember_for")
    if (problem := remember_for_problem(remember_for)) is not None:
        raise BodyError(problem)
    if kind == LOGIN:
        subject = body.get("subject")
        if (problem := delegated_subject_problem(subject)) is not None:
            raise BodyError(problem)
        acr = body.get("acr")
        if acr is not None and not (isinstance(acr, str) and 0 < len(acr) <= MAX_ACR):
            raise BodyError(f"acr must be a string of 1 to {MAX_ACR} characters, or null")
        amr = string_list(body.get("amr", []), "amr", MAX_AMR)
        if any(not (0 < len(a) <= 50 and a.isascii() and a.isprintable()) for a in amr):
            raise BodyError("each amr value must be printable ASCII of 1 to 50 characters")
        outcome = {
            "decision": "accept",
            "subject": subject,
            "remember": remember,
            "remember_for": remember_for or 0,
            "acr": acr,
            "amr": list(amr),
        }
        return outcome, cast(str, subject), None
    requested_scope = frozenset(found.request["requested_scope"])
    requested_resource = tuple(found.request["requested_resource"])
    scope = frozenset(string_list(body.get("grant_scope", sorted(requested_scope)), "grant_scope"))
    if not scope <= requested_scope:
        extra = " ".join(sorted(scope - requested_scope))
        raise BodyError(f"grant_scope holds what was not requested: {extra}")
    resources = string_list(body.get("grant_resource", list(requested_resource)), "grant_resource")
    if not set(resources) <= set(requested_resource):
        raise BodyError("grant_resource holds what was not requested")
    session = body.get("session", {})
    if not isinstance(session, dict):
        raise BodyError("session must be an object")
    claims: dict[str, dict[str, Any]] = {}
    for place in ("id_token", "userinfo"):
        given = session.get(place, {})
        if not isinstance(given, dict):
            raise BodyError(f"session.{place} must be an object")
        if taken := registered_claims(given):
            raise BodyError(f"session.{place} may not set registered claims: {', '.join(taken)}")
        claims[place] = given
    if len(json.dumps(claims)) > _MAX_CLAIMS_BYTES:
        raise BodyError(f"session claims exceed {_MAX_CLAIMS_BYTES} bytes")
    outcome = {
        "decision": "accept",
        "grant_scope": sorted(scope),
        "grant_resource": list(dict.fromkeys(resources)),
        "remember": remember,
        "remember_for": remember_for or 0,
        "id_token": claims["id_token"],
        "userinfo": claims["userinfo"],
    }
    remembered: Remembered | None = None
    if remember:
        expires_at = now + remember_for if remember_for else None
        kept = {place: given for place, given in claims.items() if given}
        remembered = (scope, tuple(dict.fromkeys(resources)), expires_at, kept)
    return outcome, None, remembered


get_login_challenge = _get_challenge(LOGIN)
accept_login = _decide(LOGIN, "accept")
reject_login = _decide(LOGIN, "reject")
get_consent_challenge = _get_challenge(CONSENT)
accept_consent = _decide(CONSENT, "accept")
reject_consent = _decide(CONSENT, "reject")


# -- a subject's sessions and consent --------------------------------------------------------------


async def _subject(request: Request, caller: Caller, action: str) -> str:
    """The path's subject; a value no subject can have is a 404, audited as any refusal."""
    subject = request.path_params["subject"]
    if subject_problem(subject) is not None:
        detail = {"refused": 404, "found": False}
        await _keeper(baton(request)).audit_api(caller.actor, action, "user", "-", detail)
        raise Problem(404, "unknown-subject", "no such subject")
    return cast(str, subject)


async def delete_sessions(request: Request, caller: Caller) -> Response:
    """Sign out everywhere: every session of the subject ends as /session/end ends one."""
    subject = await _subject(request, caller, "subject.sessions.delete")
    done = await _keeper(baton(request)).end_subject_sessions(subject, caller.actor)
    if done is None:
        raise Problem(404, "unknown-subject", "no such subject")
    return no_content()


async def delete_consents(request: Request, caller: Caller) -> Response:
    """Forgets the subject's remembered consent (of `client_id`, or all) and revokes the
    subject's grants of those clients: the next authorization asks again."""
    action = "subject.consents.delete"
    subject = await _subject(request, caller, action)
    client_id = request.query_params.get("client_id") or None
    if client_id is not None and not (len(client_id) <= 64 and client_id.isprintable()):
        detail = {"refused": 400, "client_id": "invalid"}
        await _keeper(baton(request)).audit_api(caller.actor, action, "user", subject, detail)
        raise Problem(400, "bad-request", "client_id is not a client identifier")
    found = await _keeper(baton(request)).forget_subject_consents(subject, client_id, caller.actor)
    if found is None:
        raise Problem(404, "unknown-subject", "no such subject")
    return no_content()


__all__ = [
    "MERGE_PATCH",
    "PREFIX",
    "AdminScope",
    "Caller",
    "CallerHandler",
    "Problem",
    "admin_endpoint",
    "admin_scopes",
    "json_answer",
    "json_body",
    "no_content",
    "opaque_cursor",
    "opened_cursor",
    "require_admin_scopes",
    "require_scope",
]

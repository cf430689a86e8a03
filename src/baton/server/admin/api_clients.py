"""The admin API's clients and signing keys (issue 27): what `baton client ...` and `baton keys
...` do, over HTTP, for a platform's own tooling.

Each route is declared once in `ENDPOINTS` with the scope it needs (`api.admin_endpoint`);
`baton.server.routes` includes them in the table. The writes are the CLI's and the console's
own store calls (`baton.store.sql.AdminStore`, its `ClientAdmin` part), each one transaction with
its audit row, the caller named `client:<client_id>`; the registrations are checked by the one
rule the CLI and the console apply (`baton.core.client_metadata.checked_registration`).

- `GET /clients/{id}` answers an `ETag` (a digest of the registration it shows); `PATCH` with
  `If-Match` writes only if the registration is still the one read, else 412, so two
  administrators editing one client cannot silently overwrite each other. The store checks it in
  the write's own transaction (`ClientAdmin.update_registration`), so it holds even when the two
  race. Without `If-Match` the patch applies to the registration as it is.
- `admin:clients:write` reaches no further than the caller's own admin scopes: every route that
  writes a client first checks that the caller's token holds each `admin:*` scope the client
  holds, before and after the change (`api.require_admin_scopes`; see `AdminScope`), else 403.
- A `resource_uri` never names this server's own audience (`own_audience_problem`).
- A client never disables or deletes itself here: the call would cut the caller off (its own
  token dies with its grants) and a script meant for another client could do it by a typo; a
  409 says to use another admin client or `baton client disable`. Rotating its own secret is
  allowed (credential hygiene); the token it called with stays valid until it expires.
- Each write forgets the client in this process's cache (`ClientCache`), as the console does,
  and with it this process's CORS origins (`ClientCache.on_forget`); other processes confirm a
  client's row in each request's transaction, so a disabled client or a rotated secret is
  refused everywhere at once, and settings (origins too) reach them within 30 s.
- A client's policy (issue 28): `GET /clients/{id}/policy` shows it resolved over the server's
  defaults (as `GET /client-policy` does) beside the client's own settings; `PUT` schedules a
  change (its whole settings, from `effective_at`, report-only until then if asked), `DELETE`
  cancels the pending one; `PUT /clients/{id}/contact` sets whom a change is told to.
  `GET /clients/{id}/health?since=7d` is the client's integration health.
- `POST /keys/rotate` is `baton keys rotate` with the server's own key-encryption key; the
  server reloads its keys at once. The window is planned from the keys as the write's own
  transaction finds them (`ClientAdmin.add_signing_key_audited`), and lifetimes below the
  server's own (or a publish-ahead below its key reload interval) are refused: no live token
  outlives its key in the JWKS. `GET /keys` shows public keys only.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response

from baton.core.audience import own_audience_problem
from baton.core.client_metadata import (
    ID_TOKEN_ALG_CHOICES,
    MetadataError,
    check_sector_kept,
    checked_registration,
    registration,
    version,
)
from baton.core.client_policy import ClientPolicy, PolicyError, PolicySettings
from baton.core.keys import (
    ALGORITHM_CHOICES,
    KeyEncryptionError,
    StoredKey,
    algorithm,
    generate,
    key_encryption_key,
    unseal,
)
from baton.core.policy import Policy
from baton.core.signals import Health
from baton.core.subject import SUBJECT_TYPES
from baton.core.tokens import TokenKind, mint, random_id
from baton.core.vocabulary import FeedEntryKind, RevocationCause
from baton.server.admin.api import (
    MERGE_PATCH,
    PREFIX,
    AdminScope,
    Caller,
    Problem,
    admin_endpoint,
    admin_scopes,
    json_answer,
    json_body,
    no_content,
    opaque_cursor,
    opened_cursor,
    require_admin_scopes,
)
from baton.server.endpoints.client_policy import client_policy
from baton.server.endpoints.openapi import (
    ADMIN_AUTH_ERRORS,
    BODY_ERRORS,
    CLIENT_POLICY_DOCUMENT,
    NO_STORE,
    POLICY_SETTINGS,
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
from baton.server.routing import Endpoint
from baton.server.runtime.context import Baton, baton
from baton.server.runtime.keyring import ID_TOKEN, key_states, rotation_window
from baton.store.admin import (
    MAX_WINDOW,
    Actor,
    ContactError,
    Disabled,
    checked_instant,
    parse_duration,
    parse_instant,
    policy_version,
    policy_view,
)
from baton.store.base import Client, ResourceUriTaken
from baton.store.sql.client_admin import KeyWindow, Stale
from baton.store.sql.tombstones import Deleted

MAX_LIMIT = 200
DEFAULT_LIMIT = 50
MAX_ITEMS = 100  # redirect URIs, origins, post-logout URIs, resources: per client
MAX_STRING = 2000  # a URL or a scope string
_RETRIES = 3  # a patch without If-Match, re-applied when another write got there first


@runtime_checkable
class ClientKeeper(Protocol):
    """What these handlers ask of the store's admin side (`baton.store.sql.AdminStore`)."""

    async def client(self, client_id: str) -> Client | None: ...

    async def client_page(
        self, after: tuple[int, str] | None, limit: int, include_deleted: bool
    ) -> tuple[list[Client], tuple[int, str] | None]: ...

    async def resource_uris(self) -> frozenset[str]: ...

    async def register_client(self, client: Client, actor: Actor) -> None:
        """`ResourceUriTaken` when another client has its resource URI."""
        ...

    async def update_registration(
        self, before: Client, after: Client, actor: Actor
    ) -> dict[str, Any] | Stale:
        """The fields changed, or `STALE` when the row no longer holds `before`."""
        ...

    async def rotate_secret(self, client_id: str, secret_digest: bytes, actor: Actor) -> bool: ...

    async def disable_client(self, client_id: str, actor: Actor) -> Disabled | None: ...

    async def enable_client(self, client_id: str, actor: Actor) -> bool: ...

    async def delete_client(self, client_id: str, actor: Actor) -> Deleted | None: ...

    async def add_signing_key_audited(
        self, key: StoredKey, window: KeyWindow, actor: Actor
    ) -> tuple[StoredKey, int | None]: ...

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
        """`PolicyError` for settings the client's kind (or the server's policy `server`)
        cannot have; `STALE` when the row no longer holds `before`; None when the client is
        gone."""
        ...

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
        """`ContactError` for an address or URL that cannot be (an internal address unless
        `allow_private`)."""
        ...


def _keeper(request: Request) -> ClientKeeper:
    found = baton(request).store.admin()
    if not isinstance(found, ClientKeeper):
        raise Problem(404, "not-available", "the admin API needs an SQL store")
    return found


# -- the registration's fields -------------------------------------------------------------------


def _text(name: str, value: Any, limit: int = MAX_STRING) -> str:
    if not isinstance(value, str):
        raise Problem(400, "bad-body", f"{name} must be a string")
    if len(value) > limit:
        raise Problem(400, "bad-body", f"{name} must be at most {limit} characters")
    return value


def _strings(name: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise Problem(400, "bad-body", f"{name} must be an array of strings")
    if len(value) > MAX_ITEMS:
        raise Problem(400, "bad-body", f"{name} may hold at most {MAX_ITEMS} values")
    return tuple(_text(f"each of {name}", v) for v in value)


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise Problem(400, "bad-body", f"{name} must be true or false")
    return value


def _optional_text(name: str, value: Any) -> str | None:
    return None if value is None or value == "" else _text(name, value)


def _origins(name: str, value: Any) -> tuple[str, ...] | None:
    return None if value is None else _strings(name, value)


# Each field a client's registration is created or patched with: the `Client` attribute it sets
# and how its JSON value is read (None in a patch: RFC 7396 removal, the field's default).
_FIELD = Callable[[str, Any], Any]
_EDITABLE: dict[str, tuple[str, _FIELD]] = {
    "name": ("name", lambda n, v: _text(n, v, 1000)),
    "redirect_uris": ("redirect_uris", _strings),
    "scope": ("scope", _text),
    "resources": ("allowed_resources", lambda n, v: tuple(dict.fromkeys(_strings(n, v)))),
    "remember_consent": ("remember_consent", _flag),
    "require_pkce": ("require_pkce", _flag),
    "id_token_signed_response_alg": ("id_token_signed_response_alg", _text),
    "subject_type": ("subject_type", _text),
    "sector_identifier_uri": ("sector_identifier_uri", _optional_text),
    "post_logout_redirect_uris": ("post_logout_redirect_uris", _strings),
    "backchannel_logout_uri": ("backchannel_logout_uri", _optional_text),
    "backchannel_logout_session_required": ("backchannel_logout_session_required", _flag),
    "require_nonce": ("require_nonce", _flag),
    "allowed_origins": ("allowed_origins", _origins),
    "login_url": ("login_url", _optional_text),
    "consent_url": ("consent_url", _optional_text),
    "client_uri": ("client_uri", _optional_text),
}
# Set when the client is created, never changed: a client of another kind is another client.
_CREATE_ONLY: dict[str, tuple[str, _FIELD]] = {
    "public": ("is_public", _flag),
    "resource_server": ("is_resource_server", _flag),
    "resource_uri": ("resource_uri", _optional_text),
}
_READ_ONLY = ("client_id", "created_at", "disabled_at", "deleted", "client_secret")
_DEFAULTS = Client(
    id="", name="", secret_digest=None, is_public=False, is_resource_server=False,
    redirect_uris=(), scope="", created_at=0,
)  # fmt: skip


def _changes(body: dict[str, Any], fields: dict[str, tuple[str, _FIELD]]) -> dict[str, Any]:
    """The `Client` attributes `body` sets, each value of the right JSON type; a 400 naming the
    first field that is unknown, read-only or of the wrong type."""
    changes: dict[str, Any] = {}
    for name, value in body.items():
        if name not in fields:
            if name in _READ_ONLY or name in _CREATE_ONLY:
                how = {
                    "disabled_at": ": POST /clients/{id}/disable or /enable",
                    "client_secret": ": POST /clients/{id}/secret",
                }.get(name, "")
                raise Problem(400, "bad-body", f"{_shown(name)} cannot be changed{how}")
            raise Problem(400, "bad-body", f"unknown field {_shown(name)}")
        attribute, read = fields[name]
        if value is None and attribute not in ("allowed_origins",):
            if attribute == "name":
                raise Problem(400, "bad-body", "name cannot be removed")
            changes[attribute] = getattr(_DEFAULTS, attribute)
        else:
            changes[attribute] = read(name, value)
    return changes


def _shown(name: str) -> str:
    """A field name from the body as a detail may quote it."""
    return json.dumps(name[:60])


def _checked(client: Client, before: Client | None = None) -> Client:
    """`client` as `checked_registration` normalizes it; an edit of `before` also keeps a
    pairwise client's sector (`check_sector_kept`). A 400 problem otherwise."""
    try:
        checked = checked_registration(client)
        if before is not None:
            check_sector_kept(before, checked)
        return checked
    except MetadataError as exc:
        raise Problem(400, "invalid-client-metadata", str(exc)) from None


def _not_own_audience(app: Baton, client: Client) -> None:
    """A resource server is never named by this server's own audience (`own_audience_problem`)."""
    if client.resource_uri is None:
        return
    settings = app.settings
    own = (settings.issuer, settings.issuer_identifier, settings.default_audience)
    if (found := own_audience_problem(client.resource_uri, own)) is not None:
        raise Problem(400, "invalid-client-metadata", found)


async def _check_resources(keeper: ClientKeeper, client: Client) -> None:
    """RFC 8707: a client may be allowed only resources a resource server is registered for."""
    if not client.allowed_resources:
        return
    registered = await keeper.resource_uris()
    unknown = [uri for uri in client.allowed_resources if uri not in registered]
    if unknown:
        raise Problem(
            400,
            "invalid-client-metadata",
            f"resources: {unknown[0]!r} is no registered resource server's URI",
        )


def _answer(client: Client, status: int = 200, **extra: Any) -> Response:
    answer = json_answer({**registration(client), **extra}, status)
    answer.headers["ETag"] = version(client)
    return answer


# -- clients -------------------------------------------------------------------------------------


def _client_id(request: Request) -> str:
    value: str = request.path_params["client_id"]
    if not (0 < len(value) <= 64 and value.isascii() and value.isprintable()):
        raise _no_such_client()
    return value


def _no_such_client() -> Problem:
    return Problem(404, "unknown-client", "no such client")


def _deleted() -> Problem:
    return Problem(
        409, "client-deleted", "the client was deleted: its id never authenticates again"
    )


async def _found(request: Request, keeper: ClientKeeper) -> Client:
    found = await keeper.client(_client_id(request))
    if found is None:
        raise _no_such_client()
    return found


async def _live(request: Request, keeper: ClientKeeper) -> Client:
    found = await _found(request, keeper)
    if found.deleted_at is not None:
        raise _deleted()
    return found


async def _managed(request: Request, caller: Caller, keeper: ClientKeeper) -> Client:
    """The path's live client, if the caller's token holds every admin scope it holds."""
    found = await _live(request, keeper)
    await require_admin_scopes(request, caller, admin_scopes(found.scope))
    return found


def _cursor(raw: str | None) -> tuple[int, str] | None:
    """The (created_at, client_id) inside a `next_cursor` this API gave (`api.opened_cursor`),
    None for the first page; a 400 problem for anything else."""
    opened = opened_cursor(raw)
    if opened is None:
        return None
    try:
        pair = json.loads(opened)
    except ValueError:
        pair = None
    if isinstance(pair, list) and len(pair) == 2:
        created_at, client_id = pair
        if (
            type(created_at) is int
            and 0 <= created_at < 2**53
            and isinstance(client_id, str)
            and 0 < len(client_id) <= 64
            and client_id.isascii()
            and client_id.isprintable()
            and _cursor_text((created_at, client_id)) == raw
        ):
            return created_at, client_id
    raise Problem(400, "bad-request", "cursor is not a next_cursor this API gave")


def _cursor_text(cursor: tuple[int, str]) -> str:
    return opaque_cursor(json.dumps(list(cursor), separators=(",", ":")))


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 4 and 1 <= int(raw) <= MAX_LIMIT):
        raise Problem(400, "bad-request", f"limit must be an integer from 1 to {MAX_LIMIT}")
    return int(raw)


def _boolean(name: str, raw: str | None) -> bool:
    if raw is None or raw == "false":
        return False
    if raw == "true":
        return True
    raise Problem(400, "bad-request", f"{name} must be true or false")


async def list_clients(request: Request, caller: Caller) -> Response:
    """The clients, oldest first; deleted ones (tombstones) with `?include_deleted=true`."""
    params = request.query_params
    limit = _limit(params.get("limit"))
    after = _cursor(params.get("cursor"))
    include_deleted = _boolean("include_deleted", params.get("include_deleted"))
    rows, following = await _keeper(request).client_page(after, limit, include_deleted)
    return json_answer(
        {
            "items": [registration(c) for c in rows],
            "next_cursor": _cursor_text(following) if following else None,
        }
    )


async def create_client(request: Request, caller: Caller) -> Response:
    """Registers a client as `baton client create` does: its secret is in the answer, once."""
    body = await json_body(request)
    if "name" not in body:
        raise Problem(400, "bad-body", "name is required")
    changes = _changes(body, {**_EDITABLE, **_CREATE_ONLY})
    public = changes.get("is_public", False)
    secret = None if public else mint(TokenKind.CLIENT_SECRET)
    candidate = dataclasses.replace(
        _DEFAULTS,
        id=random_id("cl_"),
        secret_digest=secret.digest if secret else None,
        created_at=caller.now,
        **changes,
    )
    client = _checked(candidate)
    _not_own_audience(baton(request), client)
    await require_admin_scopes(request, caller, admin_scopes(client.scope))
    keeper = _keeper(request)
    await _check_resources(keeper, client)
    try:
        await keeper.register_client(client, caller.actor)
    except ResourceUriTaken:
        raise Problem(
            409,
            "resource-uri-taken",
            f"resource_uri {client.resource_uri!r} is already registered to another client",
        ) from None
    baton(request).clients.forget(client.id)  # its origins: this process's CORS at once
    extra = {"client_secret": secret.plaintext} if secret else {}
    answer = _answer(client, 201, **extra)
    answer.headers["Location"] = f"{PREFIX}/clients/{client.id}"
    return answer


async def get_client(request: Request, caller: Caller) -> Response:
    """A client's registration (a deleted one too, `deleted: true`), never its secret."""
    return _answer(await _found(request, _keeper(request)))


def _if_match(request: Request) -> list[str] | None:
    header = request.headers.get("if-match")
    if header is None:
        return None
    return [tag.strip() for tag in header.split(",") if tag.strip()]


def _precondition_failed(client: Client) -> Problem:
    return Problem(
        412,
        "precondition-failed",
        "the client changed since it was read (its ETag is no longer the If-Match given): "
        "read it again and reapply the change",
        {"ETag": version(client)},
    )


def _matches(tags: list[str], client: Client) -> bool:
    return "*" in tags or version(client) in tags


async def update_client(request: Request, caller: Caller) -> Response:
    """Changes the fields given (RFC 7396 merge patch), checked as `baton client update`
    checks them; with `If-Match`, only if the registration is still the one read."""
    body = await json_body(request, merge_patch=True)
    changes = _changes(body, _EDITABLE)
    tags = _if_match(request)
    keeper = _keeper(request)
    for _ in range(_RETRIES):
        before = await _live(request, keeper)
        if tags is not None and not _matches(tags, before):
            raise _precondition_failed(before)
        after = _checked(dataclasses.replace(before, **changes), before)
        held = admin_scopes(before.scope) | admin_scopes(after.scope)
        await require_admin_scopes(request, caller, held)
        if after.allowed_resources != before.allowed_resources:
            await _check_resources(keeper, after)
        done = await keeper.update_registration(before, after, caller.actor)
        if not isinstance(done, Stale):
            baton(request).clients.forget(before.id)
            return _answer(after)
        if tags is not None:
            now = await _live(request, keeper)
            raise _precondition_failed(now)
    raise Problem(409, "conflict", "the client is being changed by others: try again")


async def rotate_secret(request: Request, caller: Caller) -> Response:
    """A new secret, in the answer once; the old one fails from now on, in every process."""
    keeper = _keeper(request)
    found = await _managed(request, caller, keeper)
    if found.is_public:
        raise Problem(409, "public-client", "a public client has no secret")
    secret = mint(TokenKind.CLIENT_SECRET)
    if not await keeper.rotate_secret(found.id, secret.digest, caller.actor):
        raise _deleted()
    baton(request).clients.forget(found.id)
    return json_answer({"client_id": found.id, "client_secret": secret.plaintext})


async def _not_itself(
    request: Request, caller: Caller, found: Client, action: str, why: str = ""
) -> None:
    if found.id != caller.client_id:
        return
    detail = {"refused": 409, "method": request.method}
    await baton(request).store.audit_api(caller.actor, action, "client", found.id, detail)
    raise Problem(
        409,
        "own-client",
        f"a client cannot {action.split('.')[1].replace('_', ' ')} itself here "
        f"({why or 'its own token would die with it'}): use another admin client, or "
        "`baton client` on the command line",
    )


async def disable_client(request: Request, caller: Caller) -> Response:
    """The incident response: the client can no longer authenticate, and every live grant of
    it (so every token it holds) is revoked at once and announced on the feed."""
    keeper = _keeper(request)
    found = await _managed(request, caller, keeper)
    await _not_itself(request, caller, found, "client.disable")
    done = await keeper.disable_client(found.id, caller.actor)
    baton(request).clients.forget(found.id)
    if done is None:
        raise Problem(409, "client-disabled", "the client is disabled already")
    metrics.of(request).revoked(
        FeedEntryKind.GRANT, RevocationCause.CLIENT_DISABLED, done.grants_revoked
    )
    return json_answer(
        {"client_id": found.id, "disabled": True, "grants_revoked": done.grants_revoked}
    )


async def enable_client(request: Request, caller: Caller) -> Response:
    """Lets a disabled client authenticate again; what the disabling revoked stays revoked."""
    keeper = _keeper(request)
    found = await _managed(request, caller, keeper)
    if not await keeper.enable_client(found.id, caller.actor):
        raise Problem(409, "client-enabled", "the client is not disabled")
    baton(request).clients.forget(found.id)
    return json_answer({"client_id": found.id, "disabled": False})


async def delete_client(request: Request, caller: Caller) -> Response:
    """`baton client delete`: disabled, then kept only as a tombstone."""
    keeper = _keeper(request)
    found = await _managed(request, caller, keeper)
    await _not_itself(request, caller, found, "client.delete")
    done = await keeper.delete_client(found.id, caller.actor)
    baton(request).clients.forget(found.id)
    if done is None:
        raise _deleted()
    metrics.of(request).revoked(
        FeedEntryKind.GRANT, RevocationCause.CLIENT_DISABLED, done.grants_revoked
    )
    return no_content()


# -- a client's policy and contact (issue 28) -----------------------------------------------------

_POLICY_FIELDS = ("settings", "effective_at", "report_only")
DEFAULT_HEALTH_WINDOW = "7d"
MAX_HEALTH_WINDOW = MAX_WINDOW
# Why a client never changes its own policy here: an admin client would lengthen its own
# tokens' lifetimes, or lift its own limits, with the very token the policy governs.
_OWN_POLICY = "a client does not set the rules its own admin token lives by"


def _policy_answer(app: Baton, client: Client, now: int) -> Response:
    """The policy resolved as the client's app reads it (`GET /client-policy`), and the
    client's own settings and contact (`own`) as `baton client policy show --json` prints
    them."""
    answer = json_answer(
        {**client_policy(app.settings.policy, client, now), "own": policy_view(client, now)}
    )
    answer.headers["ETag"] = policy_version(client.policy)
    return answer


def _instant(value: Any, now: int) -> int | None:
    """`effective_at`: Unix seconds, an ISO 8601 string or `+7d`-style offset, or null."""
    if value is None:
        return None
    try:
        if type(value) is int:
            return checked_instant(value, value)
        if isinstance(value, str) and len(value) <= 64:
            return parse_instant(value, now)
    except ValueError as exc:
        raise Problem(400, "bad-body", f"effective_at: {exc}") from None
    raise Problem(400, "bad-body", "effective_at must be Unix seconds, an ISO 8601 string or null")


async def get_policy(request: Request, caller: Caller) -> Response:
    """A client's policy in force and its scheduled change, resolved over the server's
    defaults, with its own settings and contact."""
    return _policy_answer(baton(request), await _found(request, _keeper(request)), caller.now)


async def put_policy(request: Request, caller: Caller) -> Response:
    """Schedules a change of the client's policy: `settings` are its whole settings from
    `effective_at` (null: at once; report-only with no date when `report_only`), replacing any
    change pending."""
    body = await json_body(request)
    for name in body:
        if name not in _POLICY_FIELDS:
            raise Problem(400, "bad-body", f"unknown field {_shown(name)}")
    try:
        settings = PolicySettings.from_json(body.get("settings", {}))
    except PolicyError as exc:
        raise Problem(400, "invalid-policy", str(exc)) from None
    now = caller.now
    effective_at = _instant(body.get("effective_at"), now)
    report_only = _flag("report_only", body.get("report_only", False))
    if effective_at is None and not report_only:
        effective_at = now
    keeper = _keeper(request)
    found = await _policy_of(request, caller, keeper, "client.schedule_policy")
    try:
        scheduled = found.policy.schedule(
            settings, now, effective_at, report_only, replace_all=True
        )
    except PolicyError as exc:
        raise Problem(400, "invalid-policy", str(exc)) from None
    return await _write_policy(request, caller, keeper, found, scheduled)


async def _policy_of(request: Request, caller: Caller, keeper: ClientKeeper, action: str) -> Client:
    """The path's live client whose policy the caller may change: not its own, and, with
    `If-Match`, still at the version read (`GET` answers it as the `ETag`), else 412."""
    found = await _managed(request, caller, keeper)
    await _not_itself(request, caller, found, action, _OWN_POLICY)
    tags = _if_match(request)
    if tags is not None and not ("*" in tags or policy_version(found.policy) in tags):
        raise _policy_precondition_failed(found)
    return found


def _policy_precondition_failed(client: Client) -> Problem:
    return Problem(
        412,
        "precondition-failed",
        "the client's policy changed since it was read (its ETag is no longer the If-Match "
        "given): read it again and reapply the change",
        {"ETag": policy_version(client.policy)},
    )


async def cancel_policy(request: Request, caller: Caller) -> Response:
    """Cancels the client's pending policy change (its policy in force stays)."""
    keeper = _keeper(request)
    found = await _policy_of(request, caller, keeper, "client.cancel_policy")
    if found.policy.pending(caller.now) is None:
        raise Problem(409, "no-scheduled-change", "the client has no policy change scheduled")
    return await _write_policy(request, caller, keeper, found, found.policy.cancel(caller.now))


async def _write_policy(
    request: Request, caller: Caller, keeper: ClientKeeper, found: Client, policy: ClientPolicy
) -> Response:
    app = baton(request)
    try:
        done = await keeper.schedule_client_policy(
            found.id,
            policy,
            caller.now,
            caller.actor,
            before=found.policy,
            server=app.settings.policy,
        )
    except PolicyError as exc:
        raise Problem(400, "invalid-policy", str(exc)) from None
    if done is None:
        raise _deleted()
    if isinstance(done, Stale):
        if _if_match(request) is not None:
            raise _policy_precondition_failed(await _live(request, keeper))
        raise Problem(
            409, "conflict", "the client's policy changed meanwhile: read it again and retry"
        )
    baton(request).clients.forget(found.id)
    return _policy_answer(baton(request), done, caller.now)


async def put_contact(request: Request, caller: Caller) -> Response:
    """Sets whom a policy change is told to: `contacts` (e-mail addresses) and `notify_url`
    (signed notices are POSTed there; null: none)."""
    body = await json_body(request)
    for name in body:
        if name not in ("contacts", "notify_url"):
            raise Problem(400, "bad-body", f"unknown field {_shown(name)}")
    contacts = _strings("contacts", body.get("contacts", []))
    notify_url = _optional_text("notify_url", body.get("notify_url"))
    keeper = _keeper(request)
    found = await _managed(request, caller, keeper)
    try:
        done = await keeper.set_client_contact(
            found.id,
            contacts,
            notify_url,
            caller.now,
            caller.actor,
            # As notices are delivered: internal addresses only on a development server.
            allow_private=baton(request).settings.client_documents_allow_private,
        )
    except ContactError as exc:
        raise Problem(400, "invalid-contact", str(exc)) from None
    if done is None:
        raise _deleted()
    baton(request).clients.forget(found.id)
    return json_answer(
        {"client_id": done.id, "contacts": list(done.contacts), "notify_url": done.notify_url}
    )


async def get_health(request: Request, caller: Caller) -> Response:
    """The client's integration health over the window `since` (e.g. `7d`): stale access-token
    uses after rotation, retries inside the leeway, reuse, late refreshes, and what the
    report-only policy would have refused."""
    app = baton(request)
    raw = request.query_params.get("since", DEFAULT_HEALTH_WINDOW)
    try:
        if len(raw) > 32:
            raise ValueError("too long: give e.g. 30m, 24h or 7d")
        window = parse_duration(raw)
    except ValueError as exc:
        raise Problem(400, "bad-request", f"since: {exc}") from None
    if not 0 < window <= MAX_HEALTH_WINDOW:
        raise Problem(400, "bad-request", "since must be from 1 second to 366 days")
    found = await _found(request, _keeper(request))
    now = caller.now
    since = now - window
    found_health = await app.store.client_health([found.id], since, now)
    health = next((h for h in found_health if h.client_id == found.id), None)
    return json_answer((health or Health(found.id, since)).to_json())


# -- signing keys --------------------------------------------------------------------------------


def _key(key: StoredKey, state: str) -> dict[str, Any]:
    return {
        "kid": key.kid,
        "alg": key.alg,
        "purpose": key.purpose,
        "state": state,
        "created_at": key.created_at,
        "activates_at": key.activates_at,
        "retires_at": key.retires_at,
        "public_jwk": json.loads(key.public_jwk),
    }


async def list_keys(request: Request, caller: Caller) -> Response:
    """The signing keys, oldest first, with their publication window and public JWK."""
    stored = await baton(request).store.signing_keys()
    states = key_states(stored, caller.now)
    return json_answer({"items": [_key(k, states[k.kid]) for k in stored], "next_cursor": None})


_ROTATE_FIELDS = ("alg", "publish_ahead", "max_access_ttl", "max_id_token_ttl", "id_token_only")
MAX_SECONDS = 366 * 86400


def _seconds(body: dict[str, Any], name: str, default: int, minimum: int, floor: str = "") -> int:
    """`body[name]`, seconds from `minimum` to `MAX_SECONDS`; a 400 saying why (`floor`: what
    the minimum is) otherwise."""
    value = body.get(name, default)
    if type(value) is not int or not minimum <= value <= MAX_SECONDS:
        why = f" ({floor})" if floor else ""
        raise Problem(
            400,
            "bad-body",
            f"{name} must be an integer of seconds from {minimum} to {MAX_SECONDS}{why}",
        )
    return value


async def rotate_keys(request: Request, caller: Caller) -> Response:
    """`baton keys rotate`: a new key published now, signing after `publish_ahead` while a key
    of its role signs; the keys it replaces stay published the longest lifetime of a token they
    signed."""
    app = baton(request)
    body = await json_body(request)
    for name in body:
        if name not in _ROTATE_FIELDS:
            raise Problem(400, "bad-body", f"unknown field {_shown(name)}")
    alg = body.get("alg", "ES256")
    if alg not in ALGORITHM_CHOICES:
        choices = ", ".join(ALGORITHM_CHOICES)
        raise Problem(400, "bad-body", f"alg must be one of {choices}")
    settings = app.settings
    # Below these floors a live JWT would outlive its key in the JWKS, or a server would sign
    # with a key resource servers have not fetched yet.
    reload, access, id_token = (
        settings.key_reload_interval,
        settings.policy.lifetimes.access_ttl,
        settings.id_token_lifetime,
    )
    publish_ahead = _seconds(
        body,
        "publish_ahead",
        max(600, reload),
        reload,
        "the servers reload their keys every --key-reload-interval seconds",
    )
    access_ttl = _seconds(
        body, "max_access_ttl", access, access, "the server's access-token lifetime, --access-ttl"
    )
    id_token_ttl = _seconds(
        body,
        "max_id_token_ttl",
        id_token,
        id_token,
        "the server's ID-token lifetime, --id-token-lifetime",
    )
    purpose = ID_TOKEN if _flag("id_token_only", body.get("id_token_only", False)) else None
    if settings.key_encryption_key is None:
        raise Problem(
            409,
            "no-key-encryption-key",
            "this server has no key-encryption key (--key-encryption-key): it keeps no "
            "signing keys",
        )
    kek = key_encryption_key(settings.key_encryption_key)
    now, new_alg = caller.now, algorithm(alg)
    existing = await app.store.signing_keys()
    keep = max(access_ttl, id_token_ttl)

    def window(keys: Sequence[StoredKey]) -> tuple[int, int | None]:
        return rotation_window(keys, new_alg, purpose, now, publish_ahead, keep)

    def made() -> StoredKey:
        for stored in existing:
            unseal(stored, kek)  # the same key-encryption key, or refuse before writing
        # Its `activates_at` is set in the write's transaction, from the keys as they are then.
        return dataclasses.replace(generate(new_alg, now, now, kek), purpose=purpose)

    try:
        # An RSA key takes a good part of a second to make: not on the event loop.
        made_key = await anyio.to_thread.run_sync(made)
    except KeyEncryptionError as exc:
        raise Problem(409, "wrong-key-encryption-key", str(exc)) from None
    new, retire_at = await _keeper(request).add_signing_key_audited(made_key, window, caller.actor)
    activates_at = new.activates_at
    await _reload(app, now)
    return json_answer(
        {
            "kid": new.kid,
            "alg": new.alg,
            "purpose": purpose,
            "activates_at": activates_at,
            "old_keys_retire_at": retire_at,
        }
    )


async def _reload(app: Baton, now: int) -> None:
    """This process signs with the new key as soon as it is active (the others within their
    --key-reload-interval, which --publish-ahead exceeds)."""
    await app.keys.reload(now)


# -- OpenAPI -------------------------------------------------------------------------------------

_CLIENT_PATH = path_parameter("client_id", "The client's id.")
_NULLABLE_STRING = {"type": ["string", "null"]}
_FIELDS_SCHEMA: dict[str, Any] = {
    "name": {"type": "string", "minLength": 1, "maxLength": 200},
    "redirect_uris": STRINGS,
    "scope": {"type": "string", "description": "Space-separated scopes it may ask for."},
    "resources": {**STRINGS, "description": "Resource servers' URIs it may get tokens for."},
    "remember_consent": {"type": "boolean"},
    "require_pkce": {"type": "boolean"},
    "id_token_signed_response_alg": {"enum": list(ID_TOKEN_ALG_CHOICES)},
    "subject_type": {"enum": list(SUBJECT_TYPES)},
    "sector_identifier_uri": _NULLABLE_STRING,
    "post_logout_redirect_uris": STRINGS,
    "backchannel_logout_uri": _NULLABLE_STRING,
    "backchannel_logout_session_required": {"type": "boolean"},
    "require_nonce": {"type": "boolean"},
    "allowed_origins": {
        "type": ["array", "null"],
        "items": {"type": "string"},
        "description": "Browser origins allowed to call the token endpoints; null: the "
        "redirect URIs' origins; []: none.",
    },
    "login_url": _NULLABLE_STRING,
    "consent_url": _NULLABLE_STRING,
    "client_uri": _NULLABLE_STRING,
}


def _or_null(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema`, null allowed too (RFC 7396: null removes a member, here restores the default)."""
    if "enum" in schema:
        return {**schema, "enum": [*schema["enum"], None]}
    kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    return {**schema, "type": [*dict.fromkeys([*kinds, "null"])]}


# What a create or a patch may send: every field, null for its default, except `name`.
_SENT_SCHEMA: dict[str, Any] = {
    name: schema if name == "name" else _or_null(schema) for name, schema in _FIELDS_SCHEMA.items()
}
_KIND_SCHEMA: dict[str, Any] = {
    "public": {"type": "boolean"},
    "resource_server": {"type": "boolean"},
    "resource_uri": _NULLABLE_STRING,
}
_CLIENT: dict[str, Any] = {
    "type": "object",
    "required": ["client_id", "name", "public", "redirect_uris", "scope", "disabled_at"],
    "properties": {
        "client_id": {"type": "string"},
        **_FIELDS_SCHEMA,
        **_KIND_SCHEMA,
        "created_at": {"type": "integer"},
        "disabled_at": {"type": ["integer", "null"]},
        "deleted": {"type": "boolean"},
    },
    "additionalProperties": True,
}
_CREATED: dict[str, Any] = {
    **_CLIENT,
    "properties": {**_CLIENT["properties"], "client_secret": {"type": "string"}},
}
_ETAG = {"ETag": {"description": "The registration's version.", "schema": {"type": "string"}}}
_UNKNOWN_CLIENT = {"404": problem("No such client.")}
_INVALID = {
    "400": problem(
        "The body is not the JSON object described (a field unknown, read-only or of the wrong "
        "type), or the registration is refused (the same rules as `baton client create`)."
    )
}
_OUTCOME = {
    "type": "object",
    "required": ["client_id"],
    "properties": {
        "client_id": {"type": "string"},
        "disabled": {"type": "boolean"},
        "grants_revoked": {"type": "integer"},
        "client_secret": {"type": "string"},
    },
}
_KEY: dict[str, Any] = {
    "type": "object",
    "required": ["kid", "alg", "state", "created_at", "activates_at", "public_jwk"],
    "properties": {
        "kid": {"type": "string"},
        "alg": {"type": "string"},
        "purpose": {"type": ["string", "null"]},
        "state": {"enum": ["pending", "signing", "verifying", "retired"]},
        "created_at": {"type": "integer"},
        "activates_at": {"type": "integer"},
        "retires_at": {"type": ["integer", "null"]},
        "public_jwk": {"type": "object"},
    },
}


def _merge_patch_body(schema: dict[str, Any]) -> dict[str, Any]:
    """A PATCH's body: JSON, as `application/json` or RFC 7396's `application/merge-patch+json`."""
    body = json_request_body(schema)
    (content,) = body["content"].values()
    return {**body, "content": {**body["content"], MERGE_PATCH: content}}


def _page_of(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {"items": {"type": "array", "items": item}, "next_cursor": _NULLABLE_STRING},
    }


def _errors(*extra: dict[str, Any]) -> dict[str, Any]:
    merged = {**ADMIN_AUTH_ERRORS}
    for more in extra:
        merged |= more
    return merged


LIST_CLIENTS = operation(
    "listClients",
    {
        "200": no_store_json("A page of clients.", _page_of(_CLIENT)),
        **_errors({"400": problem("A bad `limit`, `cursor` or `include_deleted`.")}),
    },
    description="Needs `admin:clients:read`. Oldest first.",
    parameters=[
        query_parameter("limit", "1 to 200 (default 50).", {"type": "string"}),
        query_parameter("cursor", "The `next_cursor` of the page before.", {"type": "string"}),
        query_parameter(
            "include_deleted", "`true`: deleted clients too.", {"enum": ["true", "false"]}
        ),
    ],
)
CREATE_CLIENT = operation(
    "createClient",
    {
        "201": no_store_json(
            "The client, with its `client_secret` (confidential clients; shown only now).",
            _CREATED,
            Location={"description": "The client's URL.", "schema": {"type": "string"}},
            **_ETAG,
        ),
        **_errors(
            BODY_ERRORS,
            _INVALID,
            {"409": problem("Another client is registered with this `resource_uri`.")},
        ),
    },
    description="Needs `admin:clients:write`. As `baton client create`.",
    requestBody=json_request_body(
        {
            "type": "object",
            "required": ["name"],
            "properties": {**_SENT_SCHEMA, **{k: _or_null(v) for k, v in _KIND_SCHEMA.items()}},
            "additionalProperties": False,
        }
    ),
)
GET_CLIENT = operation(
    "getClient",
    {"200": no_store_json("The client.", _CLIENT, **_ETAG), **_errors(_UNKNOWN_CLIENT)},
    description="Needs `admin:clients:read`. Never the secret.",
    parameters=[_CLIENT_PATH],
)
UPDATE_CLIENT = operation(
    "updateClient",
    {
        "200": no_store_json("The client as it now is.", _CLIENT, **_ETAG),
        **_errors(
            BODY_ERRORS,
            _INVALID,
            _UNKNOWN_CLIENT,
            {
                "409": problem(
                    "The client was deleted (or, without If-Match, changed by others under "
                    "each of three attempts to apply the patch)."
                ),
                "412": problem("`If-Match` names a version the client no longer has.", **_ETAG),
            },
        ),
    },
    description="Needs `admin:clients:write`. RFC 7396 merge patch of the fields to change; "
    "`If-Match: <ETag>` makes it conditional.",
    parameters=[
        _CLIENT_PATH,
        query_parameter(
            "If-Match", "The ETag the change was made from.", {"type": "string"}, "header"
        ),
    ],
    requestBody=_merge_patch_body(
        {"type": "object", "properties": _SENT_SCHEMA, "additionalProperties": False}
    ),
)


def _action(operation_id: str, description: str, conflict: str, **more: Any) -> dict[str, Any]:
    return operation(
        operation_id,
        {
            "200": no_store_json("Done.", _OUTCOME),
            **_errors(_UNKNOWN_CLIENT, {"409": problem(conflict)}),
        },
        description=description,
        parameters=[_CLIENT_PATH],
        **more,
    )


ROTATE_SECRET = _action(
    "rotateClientSecret",
    "Needs `admin:clients:write`. The new `client_secret`, shown only now; the old one fails "
    "at once.",
    "The client is public or deleted.",
)
DISABLE_CLIENT = _action(
    "disableClient",
    "Needs `admin:clients:write`. Every live grant of it is revoked (`grants_revoked`).",
    "The client is disabled already, deleted, or the caller itself.",
)
ENABLE_CLIENT = _action(
    "enableClient", "Needs `admin:clients:write`.", "The client is not disabled, or deleted."
)
DELETE_CLIENT = operation(
    "deleteClient",
    {
        "204": response("Deleted.", NO_STORE),
        **_errors(_UNKNOWN_CLIENT, {"409": problem("Deleted already, or the caller itself.")}),
    },
    description="Needs `admin:clients:write`. Disabled, then kept only as a tombstone.",
    parameters=[_CLIENT_PATH],
)
LIST_KEYS = operation(
    "listSigningKeys",
    {"200": no_store_json("The signing keys.", _page_of(_KEY)), **ADMIN_AUTH_ERRORS},
    description="Needs `admin:keys:read`. Public keys only.",
)
ROTATE_KEYS = operation(
    "rotateSigningKeys",
    {
        "200": no_store_json(
            "The new key.",
            {
                "type": "object",
                "required": ["kid", "alg", "activates_at"],
                "properties": {
                    "kid": {"type": "string"},
                    "alg": {"type": "string"},
                    "purpose": {"type": ["string", "null"]},
                    "activates_at": {"type": "integer"},
                    "old_keys_retire_at": {"type": ["integer", "null"]},
                },
            },
        ),
        **_errors(
            BODY_ERRORS,
            {"409": problem("The server has no key-encryption key, or not the keys' one.")},
        ),
    },
    description="Needs `admin:keys:write`. As `baton keys rotate`.",
    requestBody=json_request_body(
        {
            "type": "object",
            "properties": {
                "alg": {"enum": list(ALGORITHM_CHOICES)},
                "publish_ahead": {"type": "integer", "minimum": 0, "maximum": MAX_SECONDS},
                "max_access_ttl": {"type": "integer", "minimum": 1, "maximum": MAX_SECONDS},
                "max_id_token_ttl": {"type": "integer", "minimum": 1, "maximum": MAX_SECONDS},
                "id_token_only": {"type": "boolean"},
            },
            "additionalProperties": False,
        }
    ),
)
_POLICY_ANSWER = {
    **CLIENT_POLICY_DOCUMENT,
    "properties": {
        **CLIENT_POLICY_DOCUMENT["properties"],
        "own": {
            "type": "object",
            "description": "The client's own settings (unset knobs: the server's), its "
            "scheduled change as stored, and its contact.",
            "additionalProperties": True,
        },
    },
}
_POLICY_ETAG = {
    "ETag": {"description": "The client's policy's version.", "schema": {"type": "string"}}
}
_POLICY_STALE = "`If-Match` names a version the client's policy no longer has."
_POLICY_IF_MATCH = query_parameter(
    "If-Match", "The policy's ETag the change was made from.", {"type": "string"}, "header"
)
GET_POLICY = operation(
    "getClientPolicy",
    {
        "200": no_store_json("The client's policy.", _POLICY_ANSWER, **_POLICY_ETAG),
        **_errors(_UNKNOWN_CLIENT),
    },
    description="Needs `admin:clients:read`. As `GET /client-policy`, with `own`.",
    parameters=[_CLIENT_PATH],
)
PUT_POLICY = operation(
    "scheduleClientPolicy",
    {
        "200": no_store_json("The client's policy as it now is.", _POLICY_ANSWER, **_POLICY_ETAG),
        **_errors(
            BODY_ERRORS,
            _UNKNOWN_CLIENT,
            {
                "400": problem(
                    "The body is not the object described, a setting the client's kind "
                    "cannot have (a public client always rotates and uses PKCE), or one the "
                    "server cannot honour (an `access_ttl` above its `--access-ttl`)."
                ),
                "409": problem(
                    "The client was deleted, is the caller itself, or (without If-Match) its "
                    "policy changed meanwhile."
                ),
                "412": problem(_POLICY_STALE, **_POLICY_ETAG),
            },
        ),
    },
    description="Needs `admin:clients:write`. Schedules a change: `settings` are the client's "
    "whole settings from `effective_at` (Unix seconds, ISO 8601, or `+7d`; null: at once, or "
    "undated with `report_only`), replacing any change pending. Report-only: evaluated and "
    "reported beside the policy in force, never refusing anything, until `effective_at`. A "
    "signed notice goes to the client's `notify_url`. `If-Match: <ETag>` (of `GET`) makes it "
    "conditional; the same change again writes nothing.",
    parameters=[_CLIENT_PATH, _POLICY_IF_MATCH],
    requestBody=json_request_body(
        {
            "type": "object",
            "properties": {
                "settings": POLICY_SETTINGS,
                "effective_at": {"type": ["integer", "string", "null"]},
                "report_only": {"type": "boolean"},
            },
            "additionalProperties": False,
        }
    ),
)
CANCEL_POLICY = operation(
    "cancelClientPolicy",
    {
        "200": no_store_json("The client's policy as it now is.", _POLICY_ANSWER, **_POLICY_ETAG),
        **_errors(
            _UNKNOWN_CLIENT,
            {
                "409": problem(
                    "No change is scheduled, the client was deleted, is the caller itself, or "
                    "it changed."
                ),
                "412": problem(_POLICY_STALE, **_POLICY_ETAG),
            },
        ),
    },
    description="Needs `admin:clients:write`. The policy in force stays; a signed notice goes "
    "to the client's `notify_url`. `If-Match: <ETag>` makes it conditional.",
    parameters=[_CLIENT_PATH, _POLICY_IF_MATCH],
)
PUT_CONTACT = operation(
    "setClientContact",
    {
        "200": no_store_json(
            "The contact as it now is.",
            {
                "type": "object",
                "required": ["client_id", "contacts", "notify_url"],
                "properties": {
                    "client_id": {"type": "string"},
                    "contacts": STRINGS,
                    "notify_url": _NULLABLE_STRING,
                },
            },
        ),
        **_errors(
            BODY_ERRORS,
            _UNKNOWN_CLIENT,
            {
                "400": problem("Not the object described, an address or URL refused."),
                "409": problem("The client was deleted."),
            },
        ),
    },
    description="Needs `admin:clients:write`. `contacts`: the integrator's e-mail addresses; "
    "`notify_url`: https to a public address (loopback, private addresses and http on "
    "loopback only under `--client-documents-allow-private`), where signed policy notices "
    "are POSTed.",
    parameters=[_CLIENT_PATH],
    requestBody=json_request_body(
        {
            "type": "object",
            "properties": {"contacts": STRINGS, "notify_url": _NULLABLE_STRING},
            "additionalProperties": False,
        }
    ),
)
GET_HEALTH = operation(
    "getClientHealth",
    {
        "200": no_store_json(
            "Each kind of signal's count, last time seen, p50/p95 delay and grants; what the "
            "report-only policy would have refused, by rule; the share of grants it would break.",
            {"type": "object", "required": ["client_id", "since"], "additionalProperties": True},
        ),
        **_errors(_UNKNOWN_CLIENT, {"400": problem("A bad `since`.")}),
    },
    description="Needs `admin:clients:read`. The client's integration health (issue 28).",
    parameters=[
        _CLIENT_PATH,
        query_parameter("since", "The window: `7d` (default), `24h`, `30m`...", {"type": "string"}),
    ],
)

_READ, _WRITE = AdminScope.CLIENTS_READ, AdminScope.CLIENTS_WRITE
ENDPOINTS: tuple[Endpoint, ...] = (
    admin_endpoint(
        "/clients",
        "GET",
        list_clients,
        _READ,
        openapi=LIST_CLIENTS,
        summary="List clients",
        details="`?include_deleted=true`, `?limit=&cursor=`",
    ),
    admin_endpoint(
        "/clients",
        "POST",
        create_client,
        _WRITE,
        openapi=CREATE_CLIENT,
        summary="Register a client",
        details="the `client_secret` answered once",
    ),
    admin_endpoint(
        "/clients/{client_id}",
        "GET",
        get_client,
        _READ,
        openapi=GET_CLIENT,
        summary="A client's registration",
        details="with an `ETag`",
    ),
    admin_endpoint(
        "/clients/{client_id}",
        "PATCH",
        update_client,
        _WRITE,
        openapi=UPDATE_CLIENT,
        summary="Change a client's registration",
        details="merge patch; `If-Match` or 412",
    ),
    admin_endpoint(
        "/clients/{client_id}",
        "DELETE",
        delete_client,
        _WRITE,
        openapi=DELETE_CLIENT,
        summary="Delete a client",
        details="a tombstone, as `baton client delete`",
    ),
    admin_endpoint(
        "/clients/{client_id}/secret",
        "POST",
        rotate_secret,
        _WRITE,
        openapi=ROTATE_SECRET,
        summary="Rotate a client's secret",
        details="the old one fails at once",
    ),
    admin_endpoint(
        "/clients/{client_id}/disable",
        "POST",
        disable_client,
        _WRITE,
        openapi=DISABLE_CLIENT,
        summary="Disable a client",
        details="every live grant revoked",
    ),
    admin_endpoint(
        "/clients/{client_id}/enable",
        "POST",
        enable_client,
        _WRITE,
        openapi=ENABLE_CLIENT,
        summary="Enable a disabled client",
    ),
    admin_endpoint(
        "/clients/{client_id}/policy",
        "GET",
        get_policy,
        _READ,
        openapi=GET_POLICY,
        summary="A client's policy",
        details="in force and scheduled, resolved (issue 28)",
    ),
    admin_endpoint(
        "/clients/{client_id}/policy",
        "PUT",
        put_policy,
        _WRITE,
        openapi=PUT_POLICY,
        summary="Schedule a change of a client's policy",
        details="`effective_at`, `report_only`; a signed notice to its `notify_url`",
    ),
    admin_endpoint(
        "/clients/{client_id}/policy",
        "DELETE",
        cancel_policy,
        _WRITE,
        openapi=CANCEL_POLICY,
        summary="Cancel a client's scheduled policy change",
    ),
    admin_endpoint(
        "/clients/{client_id}/contact",
        "PUT",
        put_contact,
        _WRITE,
        openapi=PUT_CONTACT,
        summary="Set whom a client's policy change is told to",
        details="e-mail `contacts`, `notify_url`",
    ),
    admin_endpoint(
        "/clients/{client_id}/health",
        "GET",
        get_health,
        _READ,
        openapi=GET_HEALTH,
        summary="A client's integration health",
        details="`?since=7d`",
    ),
    admin_endpoint(
        "/keys",
        "GET",
        list_keys,
        AdminScope.KEYS_READ,
        openapi=LIST_KEYS,
        summary="List the signing keys",
        details="public JWKs and publication windows",
    ),
    admin_endpoint(
        "/keys/rotate",
        "POST",
        rotate_keys,
        AdminScope.KEYS_WRITE,
        openapi=ROTATE_KEYS,
        summary="Rotate the signing keys",
        details="as `baton keys rotate`",
    ),
)

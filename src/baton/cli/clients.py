"""`baton client create`: register an OAuth client, a public one, a confidential one or a
resource server (RFC 8707), with its redirect URIs checked here as at `/authorize`; `baton client
update` changes its registration (the admin API's `PATCH /clients/{id}`, through the same audited
store call, which writes nothing if the client changed meanwhile); `rotate-secret` gives it a new
secret; `baton client show` and `list` print clients.

`baton client disable` is the incident response: the client can no longer authenticate, and
every live grant of it is revoked at once (announced on the feed and to webhooks); `enable` lets
it authenticate again and revives nothing. `delete` disables it, then keeps its row only as a
tombstone (`baton.store.sql.tombstones`): its id never authenticates again and is never reused,
while the grants and audit rows that name it keep their history; `list` leaves it out unless
`--all`. Each is audited with the actor `cli:<login name>`, as `baton user disable` is.

`baton client policy show|set|cancel` and `baton client contact` (issue 28) are
`baton.cli.policy`'s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

import click

from baton.cli import policy
from baton.cli.common import current_time, db_option, emit, fail, run_with_store
from baton.cli.users import cli_actor
from baton.core.audience import resource_uri_problem
from baton.core.challenges import app_url_problem
from baton.core.client_metadata import (
    ID_TOKEN_ALG_CHOICES,
    MetadataError,
    OidcSettings,
    check_sector_kept,
    checked,
    checked_registration,
    registration,
)
from baton.core.redirects import client_option_problem, redirect_uri_problem
from baton.core.scope import ScopeError
from baton.core.scope import parse as parse_scope
from baton.core.scope import render as render_scope
from baton.core.subject import SUBJECT_TYPES
from baton.core.tokens import TokenKind, mint, random_id
from baton.store.base import Client, ResourceUriTaken
from baton.store.sql import SQLStore
from baton.store.sql.client_admin import Stale
from baton.store.sql.tombstones import delete_client, is_deleted


@click.group()
def client() -> None:
    """OAuth clients."""


def check_redirect_uri(uri: str) -> str:
    problem = redirect_uri_problem(uri)
    if problem is not None:
        fail(problem)
    return uri


F = TypeVar("F", bound=Callable[..., Any])

# The OpenID Connect options of `create` and `update`: absent, each leaves the setting as it is
# (on `create`: its default).
_OIDC_OPTIONS = (
    click.option(
        "--id-token-alg",
        help="Algorithm of the client's ID tokens: "
        + ", ".join(ID_TOKEN_ALG_CHOICES)
        + " (EdDSA means Ed25519). Default RS256.",
    ),
    click.option(
        "--subject-type",
        help="The `sub` the client sees: " + " or ".join(SUBJECT_TYPES) + " (OIDC Core §8). "
        "Changing it changes every user's `sub` for this client.",
    ),
    click.option(
        "--sector-identifier-uri",
        help="https URL whose host is a pairwise client's sector (needed when the redirect "
        'URIs have several hosts, or are loopback); "" removes it.',
    ),
    click.option(
        "--post-logout-redirect-uri",
        "post_logout_redirect_uris",
        multiple=True,
        help="Where RP-initiated logout may return the browser. Repeat for several; on update "
        "they replace the registered ones.",
    ),
    click.option(
        "--no-post-logout-redirect-uris",
        is_flag=True,
        help="On update: remove every post-logout redirect URI.",
    ),
    click.option(
        "--backchannel-logout-uri",
        help='Where logout tokens are POSTed (https, or http on loopback); "" removes it.',
    ),
    click.option(
        "--backchannel-logout-session-required/--no-backchannel-logout-session-required",
        default=None,
        help="Logout tokens must carry the session's `sid`.",
    ),
    click.option(
        "--require-nonce/--no-require-nonce",
        default=None,
        help="Refuse an `openid` authorization request without a `nonce`.",
    ),
    click.option(
        "--allowed-origin",
        "allowed_origins",
        multiple=True,
        help="A browser origin (scheme://host[:port]) allowed to call the token endpoints. "
        "Repeat for several; on update they replace the registered ones. Default: the "
        "origins of the redirect URIs.",
    ),
    click.option(
        "--derived-origins",
        is_flag=True,
        help="Allow the origins of the redirect URIs (the default), forgetting listed ones.",
    ),
    click.option(
        "--no-allowed-origins",
        is_flag=True,
        help="Allow no browser origin at all.",
    ),
)


def oidc_options(command: F) -> F:
    for option in reversed(_OIDC_OPTIONS + _APP_OPTIONS):
        command = option(command)
    return command


# The client's own login and consent apps (they win over the server's --login-url and
# --consent-url) and its homepage, named on the consent page and to those apps.
_APP_OPTIONS = (
    click.option(
        "--login-url",
        help="This client's own login app (https, or http on loopback): /authorize sends the "
        'browser there with a login_challenge, instead of the server\'s; "" removes it.',
    ),
    click.option(
        "--consent-url",
        help="This client's own consent app (https, or http on loopback), sent a "
        'consent_challenge instead of the server\'s; "" removes it.',
    ),
    click.option(
        "--client-uri",
        help='The client\'s homepage (https, or http on loopback), shown to users; "" removes it.',
    ),
)
_APP_FIELDS = ("login_url", "consent_url", "client_uri")


def app_urls(oidc: dict[str, Any]) -> dict[str, Any]:
    """The `--login-url`, `--consent-url` and `--client-uri` given (taken out of `oidc`), each
    checked: "" removes the setting; absent ones are left out."""
    changes: dict[str, Any] = {}
    for name in _APP_FIELDS:
        value = oidc.pop(name, None)
        if value is None:
            continue
        option = "--" + name.replace("_", "-")
        if value and (problem := app_url_problem(value, option)) is not None:
            fail(problem)
        changes[name] = value or None
    return changes


def oidc_settings(
    base: OidcSettings,
    redirect_uris: tuple[str, ...],
    *,
    id_token_alg: str | None,
    subject_type: str | None,
    sector_identifier_uri: str | None,
    post_logout_redirect_uris: tuple[str, ...],
    no_post_logout_redirect_uris: bool,
    backchannel_logout_uri: str | None,
    backchannel_logout_session_required: bool | None,
    require_nonce: bool | None,
    allowed_origins: tuple[str, ...],
    derived_origins: bool,
    no_allowed_origins: bool,
) -> OidcSettings:
    """`base` with the options given applied, checked; or fail saying why not."""
    if no_post_logout_redirect_uris and post_logout_redirect_uris:
        fail("give --post-logout-redirect-uri or --no-post-logout-redirect-uris, not both")
    if sum((bool(allowed_origins), derived_origins, no_allowed_origins)) > 1:
        fail("give one of --allowed-origin, --derived-origins and --no-allowed-origins")
    changes: dict[str, Any] = {}
    if id_token_alg is not None:
        changes["id_token_signed_response_alg"] = id_token_alg
    if subject_type is not None:
        changes["subject_type"] = subject_type
    if sector_identifier_uri is not None:
        changes["sector_identifier_uri"] = sector_identifier_uri or None
    if post_logout_redirect_uris or no_post_logout_redirect_uris:
        changes["post_logout_redirect_uris"] = post_logout_redirect_uris
    if backchannel_logout_uri is not None:
        changes["backchannel_logout_uri"] = backchannel_logout_uri or None
    if backchannel_logout_session_required is not None:
        changes["backchannel_logout_session_required"] = backchannel_logout_session_required
    if require_nonce is not None:
        changes["require_nonce"] = require_nonce
    if allowed_origins:
        changes["allowed_origins"] = allowed_origins
    elif derived_origins:
        changes["allowed_origins"] = None
    elif no_allowed_origins:
        changes["allowed_origins"] = ()
    try:
        return checked(replace(base, **changes), redirect_uris)
    except MetadataError as exc:
        fail(str(exc))


def oidc_payload(settings: OidcSettings) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in settings.fields().items()}


def client_payload(record: Client) -> dict[str, Any]:
    """What `show`, `list` and `update` print of a client (never its secret): its registration
    as the admin API answers it."""
    return registration(record)


def client_text(payload: dict[str, Any]) -> str:
    """One `name: value` line per field, lists joined by spaces, unset ones as "-"."""
    lines = []
    width = max(map(len, payload)) + 1
    for key, value in payload.items():
        if key == "allowed_origins" and value is None:
            shown = "(derived from the redirect URIs)"
        elif isinstance(value, list):
            shown = " ".join(value) if value else "-"
        elif isinstance(value, bool):
            shown = "yes" if value else "no"
        else:
            shown = "-" if value is None or value == "" else str(value)
        lines.append(f"{key + ':':<{width}} {shown}")
    return "\n".join(lines)


@client.command("create")
@db_option
@click.option("--name", required=True)
@click.option("--redirect-uri", "redirect_uris", multiple=True, help="Repeat for several.")
@click.option("--public", is_flag=True, help="A public client (no secret; PKCE required).")
@click.option("--resource-server", is_flag=True, help="May introspect any token.")
@click.option(
    "--resource-uri",
    help="With --resource-server: its identifier (RFC 8707), the `aud` of tokens for it.",
)
@click.option(
    "--resource",
    "resources",
    multiple=True,
    help="A resource server's --resource-uri this client may get tokens for. Repeat for several.",
)
@click.option("--scope", default="", help='Scopes the client may ask for, e.g. "read write".')
@click.option(
    "--remember-consent",
    is_flag=True,
    help="Public clients only, on https redirect URIs: skip the consent page once given.",
)
@click.option(
    "--pkce-optional",
    is_flag=True,
    help="Confidential clients only: do not require PKCE (OAuth 2.1 requires it by default).",
)
@oidc_options
@click.option("--json", "as_json", is_flag=True)
def client_create(
    db: str,
    name: str,
    redirect_uris: tuple[str, ...],
    public: bool,
    resource_server: bool,
    resource_uri: str | None,
    resources: tuple[str, ...],
    scope: str,
    remember_consent: bool,
    pkce_optional: bool,
    as_json: bool,
    **oidc: Any,
) -> None:
    """Register a client; prints its id and, once only, its secret."""
    try:
        scopes = parse_scope(scope.strip())
    except ScopeError as exc:
        fail(str(exc))
    uris = tuple(check_redirect_uri(u) for u in redirect_uris)
    if public and resource_server:
        fail("a resource server must be a confidential client")
    if resource_uri is not None:
        if not resource_server:
            fail("--resource-uri identifies a resource server: add --resource-server")
        problem = resource_uri_problem(resource_uri)
        if problem is not None:
            fail(problem)
    allowed = tuple(dict.fromkeys(resources))
    if (
        problem := client_option_problem(public, uris, remember_consent, pkce_optional)
    ) is not None:
        fail(problem)
    urls = app_urls(oidc)
    settings = oidc_settings(OidcSettings(), uris, **oidc)
    secret = None if public else mint(TokenKind.CLIENT_SECRET)
    actor = cli_actor()
    record = Client(
        id=random_id("cl_"),
        name=name,
        secret_digest=secret.digest if secret else None,
        is_public=public,
        is_resource_server=resource_server,
        redirect_uris=uris,
        scope=render_scope(scopes),
        created_at=current_time(),
        resource_uri=resource_uri,
        allowed_resources=allowed,
        remember_consent=remember_consent,
        require_pkce=not pkce_optional,
        **settings.fields(),
        **urls,
    )
    try:
        # What the options above did not say yet (the name), by the rule the admin API applies.
        record = checked_registration(record)
    except MetadataError as exc:
        fail(str(exc))

    async def create(store: SQLStore) -> None:
        # RFC 8707: a client may be allowed only resources a resource server is registered for.
        registered = await store.registered_resources()
        unknown = [uri for uri in allowed if uri not in registered]
        if unknown:
            fail(
                f"--resource {unknown[0]!r} is no registered resource server's URI "
                "(register it first: baton client create --resource-server --resource-uri URI)"
            )
        try:
            await store.admin().register_client(record, actor)
        except ResourceUriTaken:
            fail(f"resource URI {resource_uri!r} is already registered to another client")

    run_with_store(db, create)
    payload: dict[str, Any] = {
        "client_id": record.id,
        "name": name,
        "public": public,
        "resource_server": resource_server,
        "redirect_uris": list(uris),
        "scope": record.scope,
        "resource_uri": resource_uri,
        "resources": list(allowed),
        "remember_consent": record.remember_consent,
        "require_pkce": record.require_pkce,
        **oidc_payload(settings),
        "login_url": record.login_url,
        "consent_url": record.consent_url,
        "client_uri": record.client_uri,
    }
    text = f"client_id:     {record.id}"
    if secret is not None:
        payload["client_secret"] = secret.plaintext
        text += f"\nclient_secret: {secret.plaintext}\n(the secret is shown only now: store it)"
    emit(as_json, payload, text)


@client.command("update")
@db_option
@click.argument("client_id")
@click.option("--name", default=None, help="A new name, shown to users.")
@click.option(
    "--redirect-uri",
    "redirect_uris",
    multiple=True,
    help="Replace the redirect URIs (repeat for several); /authorize honours them at once.",
)
@click.option(
    "--scope",
    default=None,
    help='Replace the scopes the client may ask for, e.g. "openid profile email offline_access '
    'read" (running servers see a change within 30 s; existing grants keep their scope).',
)
@click.option(
    "--resource",
    "resources",
    multiple=True,
    help="Replace the resource servers' URIs it may get tokens for (repeat for several).",
)
@click.option("--no-resources", is_flag=True, help="Allow it no resource server's URI.")
@click.option(
    "--remember-consent/--no-remember-consent",
    default=None,
    help="Public clients only, on https redirect URIs: skip the consent page once given.",
)
@click.option(
    "--pkce-optional/--pkce-required",
    default=None,
    help="Confidential clients only: whether PKCE may be left out.",
)
@oidc_options
@click.option("--json", "as_json", is_flag=True)
def client_update(
    db: str,
    client_id: str,
    name: str | None,
    redirect_uris: tuple[str, ...],
    scope: str | None,
    resources: tuple[str, ...],
    no_resources: bool,
    remember_consent: bool | None,
    pkce_optional: bool | None,
    as_json: bool,
    **oidc: Any,
) -> None:
    """Change a client's registration: name, redirect URIs, scope, resources, consent and PKCE
    options, OpenID Connect settings, login and consent apps and homepage; prints the client as
    it now is. Audited; if the client changed while this ran, nothing is written (run again)."""
    if scope is not None:
        try:
            scope = render_scope(parse_scope(scope))
        except ScopeError as exc:
            fail(f"--scope: {exc}")
    if resources and no_resources:
        fail("give --resource or --no-resources, not both")
    uris = tuple(check_redirect_uri(u) for u in redirect_uris)
    urls = app_urls(oidc)
    changes: dict[str, Any] = {**urls}
    if name is not None:
        changes["name"] = name
    if scope is not None:
        changes["scope"] = scope
    if uris:
        changes["redirect_uris"] = uris
    if resources or no_resources:
        changes["allowed_resources"] = tuple(dict.fromkeys(resources))
    if remember_consent is not None:
        changes["remember_consent"] = remember_consent
    if pkce_optional is not None:
        changes["require_pkce"] = not pkce_optional
    actor = cli_actor()

    async def update(store: SQLStore) -> Client:
        found = await store.get_client(client_id)
        if found is None:
            fail(f"no client {client_id!r}")
        if is_deleted(found):
            fail(_deleted(client_id))
        edited = replace(found, **changes)
        settings = oidc_settings(OidcSettings.of(found), edited.redirect_uris, **oidc)
        try:
            updated = checked_registration(replace(edited, **settings.fields()))
            check_sector_kept(found, updated)  # as the admin API's PATCH
        except MetadataError as exc:
            fail(str(exc))
        if updated.allowed_resources != found.allowed_resources:
            registered = await store.registered_resources()
            unknown = [uri for uri in updated.allowed_resources if uri not in registered]
            if unknown:
                fail(f"--resource {unknown[0]!r} is no registered resource server's URI")
        done = await store.admin().update_registration(found, updated, actor)
        if isinstance(done, Stale):
            fail(f"client {client_id!r} changed while this ran: nothing written, run it again")
        return updated

    updated = run_with_store(db, update)
    payload = client_payload(updated)
    emit(as_json, payload, client_text(payload))


@client.command("rotate-secret")
@db_option
@click.argument("client_id")
@click.option("--json", "as_json", is_flag=True)
def client_rotate_secret(db: str, client_id: str, as_json: bool) -> None:
    """Give a confidential client a new secret, printed once; the old one fails at once, in
    every running server."""
    actor = cli_actor()
    secret = mint(TokenKind.CLIENT_SECRET)

    async def work(store: SQLStore) -> Client | None:
        found = await store.get_client(client_id)
        if found is not None and not found.is_public and not is_deleted(found):
            await store.admin().rotate_secret(client_id, secret.digest, actor)
        return found

    found = run_with_store(db, work)
    if found is None:
        fail(f"no client {client_id!r}")
    if is_deleted(found):
        fail(_deleted(client_id))
    if found.is_public:
        fail(f"client {client_id!r} is public: it has no secret")
    payload = {"client_id": client_id, "client_secret": secret.plaintext}
    text = f"client_secret: {secret.plaintext}\n(the secret is shown only now: store it)"
    emit(as_json, payload, text)


@client.command("show")
@db_option
@click.argument("client_id")
@click.option("--json", "as_json", is_flag=True)
def client_show(db: str, client_id: str, as_json: bool) -> None:
    """Print a client's registration (never its secret)."""
    found = run_with_store(db, lambda store: store.get_client(client_id))
    if found is None:
        fail(f"no client {client_id!r}")
    payload = client_payload(found)
    emit(as_json, payload, client_text(payload))


@client.command("list")
@db_option
@click.option("--all", "show_all", is_flag=True, help="Include deleted clients.")
@click.option("--json", "as_json", is_flag=True)
def client_list(db: str, show_all: bool, as_json: bool) -> None:
    """List the registered clients, oldest first (deleted ones only with --all)."""
    found = run_with_store(db, lambda store: store.list_clients())
    if not show_all:
        found = [c for c in found if not is_deleted(c)]
    payload = {"clients": [client_payload(c) for c in found]}
    lines = [
        f"{c.id}  {c.name}  {'public' if c.is_public else 'confidential'}"
        + ("  (deleted)" if is_deleted(c) else "  (disabled)" if c.disabled_at is not None else "")
        for c in found
    ]
    emit(as_json, payload, "\n".join(lines) or "no clients")


def _deleted(client_id: str) -> str:
    return f"client {client_id!r} was deleted: its id never authenticates again"


@client.command("disable")
@db_option
@click.argument("client_id")
@click.option("--json", "as_json", is_flag=True)
def client_disable(db: str, client_id: str, as_json: bool) -> None:
    """Disable a client: it can no longer authenticate, and every live grant of it (and so
    every token it holds) is revoked at once, announced on the revocation feed."""
    actor = cli_actor()

    async def work(store: SQLStore) -> tuple[Client | None, int | None]:
        found = await store.get_client(client_id)
        if found is None or is_deleted(found):
            return found, None
        done = await store.admin().disable_client(client_id, actor)
        return found, None if done is None else done.grants_revoked

    found, revoked = run_with_store(db, work)
    if found is None:
        fail(f"no client {client_id!r}")
    if is_deleted(found):
        fail(_deleted(client_id))
    if revoked is None:
        fail(f"client {client_id!r} is disabled already")
    payload = {"client_id": client_id, "disabled": True, "grants_revoked": revoked}
    emit(as_json, payload, f"disabled client {client_id} ({revoked} grant(s) revoked)")


@client.command("enable")
@db_option
@click.argument("client_id")
@click.option("--json", "as_json", is_flag=True)
def client_enable(db: str, client_id: str, as_json: bool) -> None:
    """Let a disabled client authenticate again (what the disabling revoked stays revoked)."""
    actor = cli_actor()

    async def work(store: SQLStore) -> tuple[Client | None, bool]:
        found = await store.get_client(client_id)
        if found is None or is_deleted(found):
            return found, False
        return found, await store.admin().enable_client(client_id, actor)

    found, enabled = run_with_store(db, work)
    if found is None:
        fail(f"no client {client_id!r}")
    if is_deleted(found):
        fail(_deleted(client_id) + "; a deleted client is never enabled again")
    if not enabled:
        fail(f"client {client_id!r} is not disabled")
    emit(as_json, {"client_id": client_id, "disabled": False}, f"enabled client {client_id}")


@client.command("delete")
@db_option
@click.argument("client_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True)
def client_delete(db: str, client_id: str, yes: bool, as_json: bool) -> None:
    """Delete a client: everything `disable` does, then its registration (secret, redirect
    URIs, logout and app URLs) is erased. Its row stays as a tombstone so that the grants and
    audit rows naming it keep their history and its id is never reused; `list` leaves it out
    unless --all."""
    if not yes and not click.confirm(f"delete client {client_id} for good?", err=True):
        fail("nothing deleted (answer y, or pass --yes)")
    actor = cli_actor()

    async def work(store: SQLStore) -> tuple[Client | None, int | None]:
        found = await store.get_client(client_id)
        if found is None or is_deleted(found):
            return found, None
        done = await delete_client(store, client_id, actor)
        return found, None if done is None else done.grants_revoked

    found, revoked = run_with_store(db, work)
    if found is None:
        fail(f"no client {client_id!r}")
    if revoked is None:
        fail(f"client {client_id!r} was deleted already")
    payload = {"client_id": client_id, "deleted": True, "grants_revoked": revoked}
    emit(as_json, payload, f"deleted client {client_id} ({revoked} grant(s) revoked)")


# `baton client policy ...` and `baton client contact` (issue 28): their own module.
for _command in policy.COMMANDS:
    client.add_command(_command)

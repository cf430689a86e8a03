"""`baton client create`: register an OAuth client, a public one, a confidential one or a
resource server (RFC 8707), with its redirect URIs checked here as at `/authorize`.
"""

from __future__ import annotations

from typing import Any

import click

from baton.cli.common import current_time, db_option, emit, fail, run_with_store
from baton.core.audience import resource_uri_problem
from baton.core.redirects import client_option_problem, redirect_uri_problem
from baton.core.scope import ScopeError
from baton.core.scope import parse as parse_scope
from baton.core.scope import render as render_scope
from baton.core.tokens import TokenKind, mint, random_id
from baton.store.base import Client, ResourceUriTaken
from baton.store.sql import SQLStore


@click.group()
def client() -> None:
    """OAuth clients."""


def check_redirect_uri(uri: str) -> str:
    problem = redirect_uri_problem(uri)
    if problem is not None:
        fail(problem)
    return uri


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
    secret = None if public else mint(TokenKind.CLIENT_SECRET)
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
    )

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
            await store.create_client(record)
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
    }
    text = f"client_id:     {record.id}"
    if secret is not None:
        payload["client_secret"] = secret.plaintext
        text += f"\nclient_secret: {secret.plaintext}\n(the secret is shown only now: store it)"
    emit(as_json, payload, text)

"""`baton upstream add`, `list`, `disable`, `enable` and `remove`: the upstream OpenID Connect
providers the login page offers ("Sign in with ...").

The upstream's client secret is read from an environment variable or a 0600 file, never from
argv (which other users of the machine can read), and stored sealed under the key-encryption key
(`baton.core.upstream.seal_secret`); it is never printed.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import click

from baton.cli.common import (
    check_kek,
    current_time,
    db_option,
    emit,
    fail,
    kek_option,
    run_with_store,
)
from baton.core.upstream import (
    DEFAULT_SCOPE,
    UpstreamError,
    UpstreamProvider,
    check_issuer,
    check_provider_id,
    check_scope,
    seal_secret,
)
from baton.store.base import UpstreamExists


@click.group()
def upstream() -> None:
    """Upstream OpenID Connect providers users may sign in with."""


def _secret(env: str | None, file: Path | None) -> str | None:
    """The client secret from the environment variable or the 0600 file; None: a public
    client."""
    if env is not None and file is not None:
        fail("give at most one of --client-secret-env and --client-secret-file")
    if env is not None:
        value = os.environ.get(env, "")
        if not value:
            fail(f"the environment variable {env} is not set or empty")
        return value
    if file is not None:
        try:
            with file.open() as opened:
                mode = os.fstat(opened.fileno()).st_mode
                if mode & (stat.S_IRWXG | stat.S_IRWXO):
                    fail(
                        f"the client secret file {file} is accessible to other users "
                        f"(mode {stat.S_IMODE(mode):04o}): run `chmod 600 {file}`"
                    )
                value = opened.read().strip()
        except OSError as exc:
            fail(f"cannot read the client secret file {file}: {exc.strerror}")
        if not value:
            fail(f"the client secret file {file} is empty")
        return value
    return None


@upstream.command("add")
@db_option
@kek_option
@click.argument("provider_id", metavar="ID")
@click.option("--name", required=True, help='Shown on the login page: "Sign in with NAME".')
@click.option("--issuer", required=True, help="The upstream's issuer (https; http on loopback).")
@click.option("--client-id", required=True, help="Baton's client id at the upstream.")
@click.option(
    "--client-secret-env",
    metavar="VAR",
    help="The environment variable holding the client secret (none: a public client).",
)
@click.option(
    "--client-secret-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A file (mode 0600) holding the client secret.",
)
@click.option("--scope", default=DEFAULT_SCOPE, show_default=True)
@click.option(
    "--link-by-email",
    is_flag=True,
    help="Link an upstream account to the local user with its e-mail, if the upstream says "
    "email_verified.",
)
@click.option(
    "--create-users", is_flag=True, help="Make a user at the first sign-in of an unlinked account."
)
@click.option("--json", "as_json", is_flag=True)
def upstream_add(
    db: str,
    key_encryption_key: str | None,
    provider_id: str,
    name: str,
    issuer: str,
    client_id: str,
    client_secret_env: str | None,
    client_secret_file: Path | None,
    scope: str,
    link_by_email: bool,
    create_users: bool,
    as_json: bool,
) -> None:
    """Add an upstream provider. Its callback (to register at the upstream) is
    ISSUER/login/upstream/ID/callback."""
    try:
        check_provider_id(provider_id)
        check_issuer(issuer)
        scope = check_scope(scope)
    except UpstreamError as exc:
        fail(str(exc))
    name = name.strip()
    if not name or len(name) > 200 or not name.isprintable():
        fail("the name must be 1 to 200 printable characters")
    if not client_id or len(client_id) > 1000 or not client_id.isprintable():
        fail("the client id must be 1 to 1000 printable characters")
    secret = _secret(client_secret_env, client_secret_file)
    sealed = None
    if secret is not None:
        sealed = seal_secret(check_kek(key_encryption_key), provider_id, secret)
    provider = UpstreamProvider(
        id=provider_id,
        name=name,
        issuer=issuer,
        client_id=client_id,
        client_secret=sealed,
        scope=scope,
        link_by_email=link_by_email,
        create_users=create_users,
        created_at=current_time(),
    )
    try:
        run_with_store(db, lambda store: store.add_upstream(provider))
    except UpstreamExists:
        fail(f"an upstream provider {provider_id!r} already exists")
    emit(as_json, _shown(provider), f"added upstream provider {provider_id} ({name})")


def _shown(provider: UpstreamProvider) -> dict[str, Any]:
    """A provider as `list` shows it: whether it has a client secret, never the secret."""
    return {
        "id": provider.id,
        "name": provider.name,
        "issuer": provider.issuer,
        "client_id": provider.client_id,
        "confidential": provider.client_secret is not None,
        "scope": provider.scope,
        "link_by_email": provider.link_by_email,
        "create_users": provider.create_users,
        "created_at": provider.created_at,
        "disabled_at": provider.disabled_at,
    }


@upstream.command("list")
@db_option
@click.option("--json", "as_json", is_flag=True)
def upstream_list(db: str, as_json: bool) -> None:
    """List the upstream providers."""
    providers = run_with_store(db, lambda store: store.upstreams())
    shown = [_shown(p) for p in providers]
    lines = [
        f"{p.id}\t{p.name}\t{p.issuer}\t{'disabled' if p.disabled_at else 'enabled'}"
        for p in providers
    ]
    emit(as_json, {"upstreams": shown}, "\n".join(lines) or "no upstream providers")


def _set_disabled(db: str, provider_id: str, disabled: bool, as_json: bool) -> None:
    when = current_time() if disabled else None
    found = run_with_store(db, lambda store: store.set_upstream_disabled(provider_id, when))
    if not found:
        fail(f"no upstream provider {provider_id!r}")
    word = "disabled" if disabled else "enabled"
    emit(as_json, {"id": provider_id, "disabled": disabled}, f"{word} upstream {provider_id}")


@upstream.command("disable")
@db_option
@click.argument("provider_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True)
def upstream_disable(db: str, provider_id: str, as_json: bool) -> None:
    """Stop offering a provider (its links stay)."""
    _set_disabled(db, provider_id, True, as_json)


@upstream.command("enable")
@db_option
@click.argument("provider_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True)
def upstream_enable(db: str, provider_id: str, as_json: bool) -> None:
    """Offer a disabled provider again."""
    _set_disabled(db, provider_id, False, as_json)


@upstream.command("remove")
@db_option
@click.argument("provider_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True)
def upstream_remove(db: str, provider_id: str, as_json: bool) -> None:
    """Remove a provider and its links (the local users stay)."""
    links = run_with_store(db, lambda store: store.remove_upstream(provider_id))
    if links is None:
        fail(f"no upstream provider {provider_id!r}")
    payload = {"id": provider_id, "links_removed": links}
    emit(as_json, payload, f"removed upstream {provider_id} and {links} link(s)")

"""The `baton` command: serve, migrate, and manage clients, users and grants.

Every command that touches the database takes `--db` (or `BATON_DB`); a flag always wins over
its environment variable. `--json` prints one JSON object on stdout; errors go to stderr with
exit status 1 (2 for a config file Baton refuses). The options of `serve` (and of `config show`)
are generated from their declarations in `baton.config`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit

import anyio
import click
from click.core import ParameterSource

from baton import __version__
from baton.config import (
    BY_NAME,
    OPTIONS,
    ConfigFileError,
    Option,
    Source,
    build,
    read_config_file,
    split_list,
)
from baton.core.audience import resource_uri_problem
from baton.core.keys import (
    ALGORITHM_CHOICES,
    KeyEncryptionError,
    algorithm,
    generate,
    key_encryption_key,
    unseal,
)
from baton.core.redirects import client_option_problem, redirect_uri_problem
from baton.core.scope import ScopeError
from baton.core.scope import parse as parse_scope
from baton.core.scope import render as render_scope
from baton.core.tokens import TokenKind, mint, random_id
from baton.logs import dict_config
from baton.passwords import hash_password
from baton.store import migrate
from baton.store.base import Client, ResourceUriTaken
from baton.store.engines import PoolSettings, display_url, normalize_url, open_runner
from baton.store.sql import SQLStore, UserExists

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def click_option(option: Option) -> Callable[[F], F]:
    """The click option of a declared option: its flag, variable, type, bounds and default,
    with the variable and the default shown in `--help`."""
    shown: str | bool = option.default_text.replace("`", "") or True
    if isinstance(shown, str) and shown.startswith("none (") and shown.endswith(")"):
        shown = f"none; {shown[6:-1]}"  # click puts the text in parentheses itself
    if option.kind is bool:
        decls = [f"{option.flag}/--no-{option.flag[2:]}"]
        kind: Any = bool
    else:
        decls = [option.flag]
        if option.choices:
            kind = click.Choice(option.choices)
        elif option.is_path:
            kind = click.Path(dir_okay=False)
        elif option.kind is int:
            kind = click.IntRange(min=option.minimum) if option.minimum is not None else int
        elif option.kind is float:
            kind = click.FloatRange(min=option.minimum) if option.minimum is not None else float
        else:
            kind = str
    default = option.default
    if option.kind is tuple:
        default = ",".join(default)
    decorator: Callable[[F], F] = click.option(
        *decls,
        option.name,
        envvar=option.env,
        show_envvar=True,
        default=default,
        show_default=shown,
        type=kind,
        help=option.help,
    )
    return decorator


def serve_options(command: F) -> F:
    """Every option of `baton serve` but the secrets that never go on argv."""
    for option in reversed(OPTIONS):
        if not option.env_only:
            command = click_option(option)(command)
    return command


db_option = click_option(BY_NAME["db"])


def fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def run_with_store(db: str, work: Callable[[SQLStore], Awaitable[T]]) -> T:
    store = SQLStore.open(db)

    async def main() -> T:
        try:
            if not await store.schema_is_current():
                fail(f"the database is not migrated: run `baton db upgrade --db {db}` first")
            return await work(store)
        finally:
            await store.close()

    return anyio.run(main)


kek_option = click_option(BY_NAME["key_encryption_key"])


def _check_kek(secret: str | None) -> bytes:
    if not secret:
        fail(
            "JWT access tokens need a key-encryption key: set BATON_KEY_ENCRYPTION_KEY to 32 "
            "or more random characters, e.g. `python3 -c 'import secrets; "
            "print(secrets.token_urlsafe(32))'`"
        )
    try:
        return key_encryption_key(secret)
    except KeyEncryptionError as exc:
        fail(str(exc))


def emit(as_json: bool, payload: dict[str, Any], text: str) -> None:
    click.echo(json.dumps(payload) if as_json else text)


@click.group()
@click.version_option(version=__version__, prog_name="baton")
def main() -> None:
    """Baton: an OAuth 2.0 authorization server with safe rotating refresh tokens."""


# -- serve ---------------------------------------------------------------------------------------


def config_error(message: str) -> NoReturn:
    """A config file Baton refuses: one line, exit status 2 (a usage error, as click's own)."""
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


# What click saw; anything else (its default) gives way to the config file.
CLICK_SOURCES: dict[ParameterSource | None, Source] = {
    ParameterSource.COMMANDLINE: Source.FLAG,
    ParameterSource.ENVIRONMENT: Source.ENV,
}


def resolve_options(ctx: click.Context) -> dict[str, tuple[Any, Source]]:
    """Every serve option's value and where it came from: a flag wins over the environment,
    which wins over the config file (`--config`), which wins over the default. Lists come back
    as tuples; the trusted proxies as normalized networks."""
    path = ctx.params.get("config")
    try:
        in_file = read_config_file(path) if path else {}
    except ConfigFileError as exc:
        config_error(str(exc))
    resolved: dict[str, tuple[Any, Source]] = {}
    for option in OPTIONS:
        name = option.name
        if option.env_only:
            from_env = os.environ.get(option.env)
            given = Source.ENV if from_env else None
            value: Any = from_env
        else:
            value = ctx.params[name]
            given = CLICK_SOURCES.get(ctx.get_parameter_source(name))
        if given is None and name in in_file:
            given, value = Source.FILE, in_file[name]
        elif given is None:
            given, value = Source.DEFAULT, option.default
        if option.kind is tuple:
            value = split_list(value)
        resolved[name] = (value, given)
    networks, given = resolved["trusted_proxies"]
    resolved["trusted_proxies"] = (_trusted_proxies(networks, given, path), given)
    return resolved


@main.command()
@serve_options
def serve(**params: Any) -> None:
    """Run the authorization server."""
    import uvicorn

    from baton.server import fastpath
    from baton.server.runtime.asgi import CONFIG_VARIABLE
    from baton.server.runtime.workers import serve as serve_workers

    # The values come through the context, which knows where each came from (`params` too).
    resolved = resolve_options(click.get_current_context())
    config, serving = build({name: value for name, (value, _) in resolved.items()})
    settings, db, policy = config.settings, config.db, config.settings.policy
    host, port, workers = serving.host, serving.port, serving.workers
    _webhook_secret(settings.webhook_url, settings.webhook_secret)
    if settings.access_token_format == "jwt":
        _check_kek(settings.key_encryption_key)

    async def check() -> tuple[tuple[int, int], frozenset[str]] | None:
        store = SQLStore.open(db, policy, PoolSettings(size=0))
        try:
            if not await store.schema_is_current():
                return None
            return await store.counts(), await store.registered_resources()
        finally:
            await store.close()

    checked = anyio.run(check)
    if checked is None:
        fail(f"the database is not migrated: run `baton db upgrade --db {db}` first")
    counts, resources = checked
    if settings.access_token_audience in resources:
        # The default audience goes to tokens of grants that hold no resource: naming an API
        # there would hand every such token to that API, past its audience restriction.
        fail(
            f"--access-token-audience {settings.access_token_audience!r} is a registered "
            "resource server's URI: tokens for no resource would be accepted there; leave it "
            "unset (the issuer) or name no API, and allow clients that API with --resource"
        )
    if 0 in counts:
        click.echo(
            "This database has no users or clients yet. Create a first user and client with:\n"
            f"  baton user create --db {db} --username alice --password-stdin\n"
            f"  baton client create --db {db} --name demo --redirect-uri "
            "http://127.0.0.1:9000/callback --scope 'read write'\n",
            err=True,
        )
    click.echo(
        f"Baton serving {settings.issuer} on {display_url(db)} with {workers} process(es) "
        f"(retry policy {policy.retry.value}, leeway {policy.leeway}s)",
        err=True,
    )
    # Before any worker starts: every worker signs and checks cookies with this one key.
    settings = dataclasses.replace(
        settings, session_key=_session_key(db, serving.session_key_file, settings.session_key)
    )
    config = dataclasses.replace(config, settings=settings)

    os.environ[CONFIG_VARIABLE] = config.to_json()
    uvicorn_config: dict[str, Any] = dict(
        app="baton.server.runtime.asgi:create",
        factory=True,
        http=fastpath.http_protocol(settings.fast_paths),
        access_log=False,  # baton.access logs one line per request, without query strings
        # uvicorn would believe X-Forwarded-For from any loopback peer; Baton reads it only from
        # --trusted-proxies (baton.server.runtime.proxies).
        proxy_headers=False,
        log_level=serving.log_level,
        log_config=dict_config(serving.log_level, serving.log_format),
        server_header=False,
    )
    with metrics_directory(workers):
        if workers == 1:
            uvicorn.run(**uvicorn_config, host=host, port=port)
        else:
            # Not uvicorn's own --workers: one listening socket per process
            # (baton.server.runtime.workers).
            sys.exit(serve_workers(uvicorn_config, host, port, workers))


def _trusted_proxies(entries: tuple[str, ...], given: Source, path: str | None) -> tuple[str, ...]:
    from baton.server.runtime.proxies import parse_networks

    try:
        return tuple(str(network) for network in parse_networks(",".join(entries)))
    except ValueError as exc:
        if given is Source.FILE:
            config_error(f"{path}: trusted_proxies: {exc}")
        fail(f"--trusted-proxies: {exc}")


def default_session_key_file(db: str) -> Path:
    """Beside a SQLite database (`baton.db-session.key`); for PostgreSQL, whose database has no
    file, `baton-session.key` in the working directory."""
    url = normalize_url(db)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return Path(f"{url.database}-session.key")
    return Path("baton-session.key")


def _session_key(db: str, key_file: str | None, secret: str | None) -> str:
    """The session key (`BATON_SESSION_KEY` or the config file's), else read or generated in its
    file before any worker starts, so that every worker (and every restart) signs and checks
    cookies with the same key."""
    from baton.server.runtime.sessions import (
        KEY_VARIABLE,
        SessionKeyError,
        load_session_key,
        session_key,
    )

    if secret:
        try:
            session_key(secret)
        except SessionKeyError as exc:
            fail(f"{KEY_VARIABLE}: {exc}")
        return secret
    path = Path(key_file) if key_file else default_session_key_file(db)
    try:
        secret, generated = load_session_key(path)
    except SessionKeyError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot read or create the session key file {path}: {exc.strerror or exc}")
    if generated:
        click.echo(
            f"Generated the session key in {path} (mode 0600). Every server of this database "
            f"needs the same key: copy this file to the others or set {KEY_VARIABLE}.",
            err=True,
        )
    return secret


def _webhook_secret(url: str | None, secret: str | None) -> None:
    """The signing secret comes from the environment (or a private config file) only: argv is
    visible to every user."""
    if url is None:
        return
    scheme = urlsplit(url).scheme
    if scheme not in ("http", "https"):
        fail(f"--webhook-url must be an http or https URL, not {scheme or 'a relative one'!r}")
    if len(secret or "") < 16:
        fail(
            "webhooks need a signing secret: set BATON_WEBHOOK_SECRET to 16 or more random "
            "characters, e.g. `python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )


MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus_client in each worker


@contextlib.contextmanager
def metrics_directory(workers: int) -> Iterator[None]:
    """With several workers, prometheus_client's multiprocess mode: a fresh directory for this
    run's metric files, shared by the workers (who inherit the variable) and removed at exit."""
    if workers == 1:
        yield
        return
    directory = tempfile.mkdtemp(prefix="baton-metrics-")
    os.environ[MULTIPROC_VARIABLE] = directory
    try:
        yield
    finally:
        os.environ.pop(MULTIPROC_VARIABLE, None)
        shutil.rmtree(directory, ignore_errors=True)


# -- config --------------------------------------------------------------------------------------


@main.group("config")
def config_group() -> None:
    """The options of `baton serve`, resolved."""


MASK = "********"


@config_group.command("show")
@serve_options
@click.option("--json", "as_json", is_flag=True)
def config_show(as_json: bool, **params: Any) -> None:
    """Print every option of `baton serve` (given the same flags, environment and --config) with
    its value and where it came from (flag, env, file, default); secrets masked."""
    resolved = resolve_options(click.get_current_context())
    config, _ = build({name: value for name, (value, _) in resolved.items()})
    rows: dict[str, dict[str, Any]] = {}
    for option in OPTIONS:
        value, given = resolved[option.name]
        if option.name == "issuer":
            value = config.settings.issuer
        if option.secret and value:
            value = MASK
        rows[option.name] = {
            "value": list(value) if isinstance(value, tuple) else value,
            "source": given.value,
        }
    if as_json:
        click.echo(json.dumps(rows))
        return
    for name, row in rows.items():
        value = row["value"]
        if value is None or value == []:
            text = "(unset)"
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, list):
            text = ",".join(value)
        else:
            text = str(value)
        click.echo(f"{name:<22} {row['source']:<8} {text}")


# -- db ------------------------------------------------------------------------------------------


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@db_option
def db_upgrade(db: str) -> None:
    """Apply every pending migration."""
    runner = open_runner(db)

    async def work() -> str | None:
        try:
            await migrate.upgrade(runner)
            return await migrate.current(runner)
        finally:
            await runner.close()

    revision = anyio.run(work)
    click.echo(f"database {display_url(db)} is at revision {revision}")


# -- clients -------------------------------------------------------------------------------------


@main.group()
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
        created_at=_now(),
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


# -- users ---------------------------------------------------------------------------------------


@main.group()
def user() -> None:
    """Users who sign in at the authorization endpoint."""


@user.command("create")
@db_option
@click.option("--username", required=True)
@click.option("--password", help="The password (prefer --password-stdin: argv is visible).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--admin", is_flag=True, help="May sign in to the admin console at /admin.")
@click.option("--json", "as_json", is_flag=True)
def user_create(
    db: str, username: str, password: str | None, password_stdin: bool, admin: bool, as_json: bool
) -> None:
    """Create a user (with --admin, one who may use the admin console)."""
    if (password is None) == (not password_stdin):
        fail("give exactly one of --password and --password-stdin")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    assert password is not None
    if not password:
        fail("the password must not be empty")
    hashed = hash_password(password)
    try:
        created = run_with_store(
            db, lambda store: store.create_user(username, hashed, _now(), admin=admin)
        )
    except UserExists:
        fail(f"user {username!r} already exists")
    payload = {"id": created.id, "username": username, "admin": admin}
    emit(as_json, payload, f"created {'admin ' if admin else ''}user {username}")


@user.command("signout")
@db_option
@click.option("--username", required=True)
@click.option("--json", "as_json", is_flag=True)
def user_signout(db: str, username: str, as_json: bool) -> None:
    """Sign a user out everywhere: every browser session of theirs ends at once (their grants
    stay: revoke those with `baton grants revoke`)."""

    async def work(store: SQLStore) -> int | None:
        found = await store.get_user(username)
        if found is None:
            return None
        return await store.end_user_sessions(found.id, _now())

    ended = run_with_store(db, work)
    if ended is None:
        fail(f"no user {username!r}")
    payload = {"username": username, "sessions_ended": ended}
    emit(as_json, payload, f"signed {username} out everywhere ({ended} session(s) ended)")


# -- grants --------------------------------------------------------------------------------------


@main.group()
def grants() -> None:
    """Grants: one user's authorization of one client, and the tokens issued from it."""


@grants.command("list")
@db_option
@click.option("--client", "client_id", help="Only this client's grants.")
@click.option("--user", "username", help="Only this user's grants.")
@click.option("--json", "as_json", is_flag=True)
def grants_list(db: str, client_id: str | None, username: str | None, as_json: bool) -> None:
    """List grants with their state."""
    found = run_with_store(db, lambda store: store.list_grants(client_id, username))
    now = _now()
    rows = []
    for summary in found:
        g = summary.grant
        if g.revoked_at is not None:
            status = f"revoked ({g.revoked_reason})"
        elif now >= g.expires_at:
            status = "expired"
        else:
            status = "active"
        rows.append(
            {
                "grant_id": g.id,
                "client_id": g.client_id,
                "user": g.subject,
                "scope": g.scope,
                "status": status,
                "created_at": g.created_at,
                "expires_at": g.expires_at,
                "revoked_at": g.revoked_at,
                "refresh_tokens_issued": summary.generations,
            }
        )
    lines = [f"{'GRANT':<27} {'CLIENT':<25} {'USER':<16} {'STATUS':<20} TOKENS"]
    lines += [
        f"{r['grant_id']:<27} {r['client_id']:<25} {r['user'] or '-':<16} {r['status']:<20} "
        f"{r['refresh_tokens_issued']}"
        for r in rows
    ]
    emit(as_json, {"grants": rows}, "\n".join(lines))


@grants.command("revoke")
@db_option
@click.argument("grant_id")
@click.option("--json", "as_json", is_flag=True)
def grants_revoke(db: str, grant_id: str, as_json: bool) -> None:
    """Revoke a grant: every token of its family dies at once."""

    async def work(store: SQLStore) -> bool | None:
        if await store.get_grant(grant_id) is None:
            return None
        return await store.revoke_grant(grant_id, _now(), "admin")

    revoked = run_with_store(db, work)
    if revoked is None:
        fail(f"no grant {grant_id!r}")
    text = f"revoked grant {grant_id}" if revoked else f"grant {grant_id} was already revoked"
    emit(as_json, {"grant_id": grant_id, "revoked": bool(revoked)}, text)


# -- signing keys ----------------------------------------------------------------------------------


@main.group()
def keys() -> None:
    """Signing keys for JWT access tokens."""


@keys.command("rotate")
@db_option
@kek_option
@click.option(
    "--alg",
    default="ES256",
    show_default=True,
    type=click.Choice(list(ALGORITHM_CHOICES)),
    help="EdDSA: the old name of Ed25519 (RFC 9864), which the key signs as.",
)
@click.option(
    "--publish-ahead",
    default=600,
    show_default=True,
    type=click.IntRange(min=0),
    help="Seconds the new key is published before it signs (longer than resource servers "
    "cache the JWKS, and than the servers' 30 s key reload).",
)
@click.option(
    "--max-access-ttl",
    default=3600,
    show_default=True,
    type=click.IntRange(min=1),
    help="The longest access-token lifetime: the old keys stay published this long after "
    "the new one starts signing.",
)
@click.option("--json", "as_json", is_flag=True)
def keys_rotate(
    db: str,
    key_encryption_key: str | None,
    alg: str,
    publish_ahead: int,
    max_access_ttl: int,
    as_json: bool,
) -> None:
    """Publish a new signing key now; it signs after --publish-ahead, and the old keys retire
    after the longest access-token lifetime."""
    kek = _check_kek(key_encryption_key)
    now = _now()

    async def work(store: SQLStore) -> tuple[str, int, int | None]:
        existing = await store.signing_keys()
        for stored in existing:
            unseal(stored, kek)  # the same key-encryption key, or refuse before writing
        activates_at = now + publish_ahead if existing else now
        retire_at = activates_at + max_access_ttl if existing else None
        new = generate(alg, now, activates_at, kek)
        await store.add_signing_key(new, retire_at)
        return new.kid, activates_at, retire_at

    alg = algorithm(alg)  # the name the key signs with (EdDSA: Ed25519)
    try:
        kid, activates_at, retire_at = run_with_store(db, work)
    except KeyEncryptionError as exc:
        fail(str(exc))
    payload = {
        "kid": kid,
        "alg": alg,
        "activates_at": activates_at,
        "old_keys_retire_at": retire_at,
    }
    text = f"published key {kid} ({alg}); it signs from {activates_at}"
    if retire_at is not None:
        text += f"; older keys leave the JWKS at {retire_at}"
    emit(as_json, payload, text)


@keys.command("list")
@db_option
@click.option("--json", "as_json", is_flag=True)
def keys_list(db: str, as_json: bool) -> None:
    """List the signing keys with their publication window."""
    found = run_with_store(db, lambda store: store.signing_keys())
    rows = [
        {
            "kid": k.kid,
            "alg": k.alg,
            "created_at": k.created_at,
            "activates_at": k.activates_at,
            "retires_at": k.retires_at,
        }
        for k in found
    ]
    lines = [f"{'KID':<22} {'ALG':<7} {'CREATED':<11} {'SIGNS FROM':<11} RETIRES"]
    lines += [
        f"{r['kid']:<22} {r['alg']:<7} {r['created_at']:<11} {r['activates_at']:<11} "
        f"{r['retires_at'] or '-'}"
        for r in rows
    ]
    emit(as_json, {"keys": rows}, "\n".join(lines))


# -- demo ----------------------------------------------------------------------------------------


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=0, show_default=True, type=int, help="0: a free port.")
@click.option(
    "--exit", "exit_after", is_flag=True, help="Stop once the story is told (for scripts)."
)
def demo(host: str, port: int, exit_after: bool) -> None:
    """Tell a grant's story on a throwaway server: login, rotations, a lost response recovered
    in the leeway, a replay that revokes the family; print its timeline and keep the admin
    console open."""
    from rich.console import Console

    from baton import demo as story

    try:
        story.run(Console(), host=host, port=port, wait=not exit_after)
    except OSError as exc:
        fail(f"cannot serve the demo on {host}:{port}: {exc}")


def _now() -> int:
    from baton.core.clock import SystemClock

    return SystemClock().now()


if __name__ == "__main__":
    main()

"""`baton serve` and `baton config show`: the server's options resolved (a flag wins over the
environment, which wins over the config file, which wins over the default), checked, and
handed to uvicorn and the workers as one `ServeConfig`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import anyio
import click
from click.core import ParameterSource

from baton.cli.common import check_kek, fail, schema_refusal, serve_options
from baton.config import OPTIONS, ConfigFileError, Source, build, read_config_file, split_list
from baton.core.issuer import issuer_problem, missing_issuer_problem
from baton.core.keys import KeyEncryptionError, unseal
from baton.core.scope import ADMIN_PREFIX
from baton.logs import dict_config
from baton.server.observability import tracing_unavailable
from baton.store.engines import PoolSettings, display_url, normalize_url
from baton.store.sql import SQLStore
from baton.urls import masked_url


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


@click.command()
@serve_options
def serve(**params: Any) -> None:
    """Run the authorization server."""
    import uvicorn

    from baton.server import fastpath
    from baton.server.runtime.asgi import CONFIG_VARIABLE
    from baton.server.runtime.pages import check_theme
    from baton.server.runtime.workers import hand_over

    # The values come through the context, which knows where each came from (`params` too).
    resolved = resolve_options(click.get_current_context())
    config, serving = build({name: value for name, (value, _) in resolved.items()})
    settings, db, policy = config.settings, config.db, config.settings.policy
    host, port, workers = serving.host, serving.port, serving.workers
    # RFC 8414 §2: the issuer every client compares exactly, refused now rather than by them.
    issuer_given = resolved["issuer"][0] is not None
    problem = missing_issuer_problem(host, issuer_given) or issuer_problem(settings.issuer)
    if problem:
        fail(problem)
    _webhook_secret(settings.webhook_url, settings.webhook_secret)
    _registration_token(settings.registration, settings.registration_token)
    _dynamic_client_scopes(settings.dynamic_client_scopes)
    kek = None
    if settings.access_token_format == "jwt" or settings.key_encryption_key:
        kek = check_kek(settings.key_encryption_key)
    if settings.theme_dir is not None and (problem := check_theme(settings.theme_dir)):
        fail(f"--theme-dir: {problem}")
    if settings.tracing and (problem := tracing_unavailable()):
        fail(problem)

    async def check() -> tuple[tuple[int, int], frozenset[str]] | str:
        store = SQLStore.open(db, policy, PoolSettings(size=0))
        try:
            if (problem := await store.schema_problem()) is not None:
                return problem
            if kek is not None:
                # Every stored key opens with this key-encryption key, or the start stops here
                # with one line rather than in each worker's start-up with a traceback.
                for stored in await store.signing_keys():
                    unseal(stored, kek)
            return await store.counts(), await store.registered_resources()
        finally:
            await store.close()

    try:
        checked = anyio.run(check)
    except KeyEncryptionError as exc:
        fail(
            f"{exc}: start with the key-encryption key the keys were sealed with "
            "(BATON_KEY_ENCRYPTION_KEY or --key-encryption-key)"
        )
    shown_db = masked_url(db)  # the commands below are printed: never with the password
    if isinstance(checked, str):
        fail(schema_refusal(checked, shown_db))
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
            f"  baton user create --db {shown_db} --username alice --password-stdin\n"
            f"  baton client create --db {shown_db} --name demo --redirect-uri "
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
    if workers == 1:
        uvicorn.run(**uvicorn_config, host=host, port=port)
        return
    # Not uvicorn's own --workers: one listening socket per process, under a supervisor that
    # imports none of the app (baton.server.runtime.workers); this process becomes it.
    http = uvicorn_config["http"]
    if not isinstance(http, str):  # a protocol class: the workers import it by name
        uvicorn_config["http"] = f"{http.__module__}:{http.__qualname__}"
    hand_over(uvicorn_config, host, port, workers)


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


def _registration_token(mode: str, token: str | None) -> None:
    """`--registration token` needs its initial access token, long enough not to be guessed."""
    if mode == "token" and len(token or "") < 32:
        fail(
            "--registration token needs an initial access token: set BATON_REGISTRATION_TOKEN "
            "to 32 or more random characters, e.g. "
            "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )


def _dynamic_client_scopes(scopes: tuple[str, ...]) -> None:
    """`--dynamic-client-scopes` never names an admin API scope (`AdminScope`, `admin:*`): an
    anonymous registration (or a metadata document) would get it, and with the initial access
    token's client_credentials, a token for the admin API."""
    if refused := {scope for scope in scopes if scope.startswith(ADMIN_PREFIX)}:
        fail(
            "--dynamic-client-scopes cannot include admin API scopes ("
            + ", ".join(sorted(refused))
            + "): register a client that needs them with `baton client create`"
        )


# -- config show -----------------------------------------------------------------------------------


@click.group("config")
def config_group() -> None:
    """The options of `baton serve`, resolved."""


@config_group.command("show")
@serve_options
@click.option("--json", "as_json", is_flag=True)
def config_show(as_json: bool, **params: Any) -> None:
    """Print every option of `baton serve` (given the same flags, environment and --config) with
    its value and where it came from (flag, env, file, default); secrets masked, and the URLs
    that may carry credentials (database, Redis, webhook) shown without them."""
    resolved = resolve_options(click.get_current_context())
    config, _ = build({name: value for name, (value, _) in resolved.items()})
    rows: dict[str, dict[str, Any]] = {}
    for option in OPTIONS:
        value, given = resolved[option.name]
        if option.name == "issuer":
            value = config.settings.issuer
        value = option.shown(value)  # a secret masked, a URL without its password
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

"""Server configuration: every option of `baton serve`, declared once, and where it lands.

`OPTIONS` below declares each option (name, type, default, bounds or choices, help, whether it
is a secret) and the field it fills: of `Settings`, of the policy's `Lifetimes`, of
`PoolSettings` or `SQLiteSettings`, or of the serve command alone (host, port, workers, logs).
Defaults are read from those dataclasses, so each is written once. From the declarations derive
the command's flags (`--access-ttl`), the environment variables (`BATON_ACCESS_TTL`), the keys of
a TOML config file (`access_ttl`, snake_case), `baton config show` and the README's options
table (`python -m baton.config readme` rewrites it). A flag wins over the environment, which wins
over the file, which wins over the default (see `baton.cli`). The resolved configuration travels
to each worker process as JSON (`ServeConfig`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import sys
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any

from baton.core.keys import ALGORITHM_CHOICES
from baton.core.policy import DAY, Lifetimes, Policy, RetryPolicy
from baton.store.engines import DEFAULT_URL, SYNCHRONOUS_MODES, PoolSettings, SQLiteSettings


@dataclass(frozen=True)
class Settings:
    """What the app needs, whoever builds it (`baton serve`, tests, an embedding program). The
    fields that are options of `baton serve` have their help, bounds and variable in `OPTIONS`;
    their defaults are these."""

    # The issuer identifier (RFC 8414 §2); every endpoint URL in the metadata derives from it.
    # Default: http://<host>:<port>. Use https in production: session cookies are then `Secure`.
    issuer: str = "http://127.0.0.1:8000"
    # Lifetimes, leeway and retry policy (see baton.core.policy for their defaults).
    policy: Policy = field(default_factory=Policy)
    # Largest request body accepted; larger ones get 413 before they are read further.
    max_body_bytes: int = 64 * 1024
    # How often each server process purges expired data (seconds).
    purge_interval: int = 60
    # How long tokens, codes and dead grants are kept past their life, for audit (seconds).
    retention: int = 30 * DAY
    # "opaque" (bat_at_..., checked by introspection) or "jwt" (RFC 9068, checked locally).
    access_token_format: str = "opaque"
    # JWT `aud` when the client names no RFC 8707 resource. Default: the issuer.
    access_token_audience: str | None = None
    # The algorithm of the first signing key, created on the first start with JWTs.
    signing_alg: str = "ES256"
    # How often each process reloads the signing keys (seconds); keep it well below the
    # --publish-ahead of `baton keys rotate`.
    key_reload_interval: int = 30
    # Seals the private signing keys at rest (at least 32 characters); never stored.
    key_encryption_key: str | None = field(default=None, repr=False)
    # Signs the browser's session and device cookies (at least 32 characters); never stored in
    # the database. `baton serve` takes it from BATON_SESSION_KEY, else from --session-key-file
    # (generated there, 0600, on the first start). Without one, create_app makes a key for its
    # process alone. Every process and host serving one database should share it.
    session_key: str | None = field(default=None, repr=False)
    # Requests per second (bursts of twice that) at /token, /revoke and /introspect, per source
    # address (and at /authorize) and per client; 0 turns a limit off.
    rate_limit_address: float = 1000.0
    rate_limit_client: float = 1000.0
    # Sign-in attempts per second per source address (bursts of 20).
    rate_limit_login: float = 1.0
    # Redis for limits and lockouts shared by every process; without it, each process counts
    # for itself.
    redis_url: str | None = None
    # Reverse proxies whose `X-Forwarded-For` is believed (networks such as "10.0.0.0/8"). Empty
    # (the default): the header is never read, and a request's address is its TCP peer. See
    # baton.server.runtime.proxies.
    trusted_proxies: tuple[str, ...] = ()
    # /metrics: served behind `Authorization: Bearer <metrics_token>`, or without a token when
    # `metrics_public`; with neither it does not exist (404).
    # See baton.server.observability.metrics.
    metrics_token: str | None = field(default=None, repr=False)
    metrics_public: bool = False
    # Webhooks for security events (see baton.server.observability.delivery): where to POST
    # them, and the HMAC secret that signs them (from BATON_WEBHOOK_SECRET only; never on argv,
    # never logged).
    webhook_url: str | None = field(default=None, repr=False)
    webhook_secret: str | None = field(default=None, repr=False)
    # Retries: exponential from the base, capped, jittered; given up at the maximum age (s).
    webhook_backoff_base: int = 5
    webhook_backoff_cap: int = 3600
    webhook_max_age: int = 3 * DAY
    webhook_poll_interval: float = 1.0
    # The hot paths' short cuts around general code of uvicorn, Starlette and SQLAlchemy
    # (baton.server.fastpath). Off: every request takes the general way, for bisecting a bug.
    fast_paths: bool = True

    @property
    def default_audience(self) -> str:
        """`aud` of the tokens of a grant that holds no RFC 8707 resource."""
        return self.access_token_audience or self.issuer

    @property
    def secure_cookies(self) -> bool:
        return self.issuer.startswith("https://")


@dataclass(frozen=True)
class ServeConfig:
    """Everything a server process needs to build the app: settings, database and pool."""

    settings: Settings
    db: str = DEFAULT_URL
    pool: PoolSettings = field(default_factory=PoolSettings)
    sqlite: SQLiteSettings = field(default_factory=SQLiteSettings)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeConfig:
        raw = json.loads(text)
        settings = raw["settings"]
        policy = settings.pop("policy")
        settings["trusted_proxies"] = tuple(settings.get("trusted_proxies", ()))
        return cls(
            settings=Settings(
                policy=Policy(Lifetimes(**policy["lifetimes"]), RetryPolicy(policy["retry"])),
                **settings,
            ),
            db=raw["db"],
            pool=PoolSettings(**raw["pool"]),
            sqlite=SQLiteSettings(**raw["sqlite"]),
        )


class Lands(StrEnum):
    """Where a resolved option goes."""

    SETTINGS = "Settings"
    LIFETIMES = "Lifetimes"
    POLICY = "Policy"
    POOL = "PoolSettings"
    SQLITE = "SQLiteSettings"
    CONFIG = "ServeConfig"
    SERVE = "serve"  # the serve command alone: host, port, workers, logs, files


# The dataclass whose field default is an option's default (serve-only options declare theirs).
_HOMES: dict[Lands, type[Any]] = {
    Lands.SETTINGS: Settings,
    Lands.LIFETIMES: Lifetimes,
    Lands.POLICY: Policy,
    Lands.POOL: PoolSettings,
    Lands.SQLITE: SQLiteSettings,
    Lands.CONFIG: ServeConfig,
}

_DERIVED: Any = object()  # `Option.given`: no default declared here, read it from the dataclass


@dataclass(frozen=True)
class Option:
    """One option of `baton serve`: flag `--kebab-name`, variable `BATON_UPPER_NAME`, file key
    `snake_name`. `kind` is int, float, str, bool or tuple (a list of strings: comma-separated
    on the command line and in the environment, an array in the file)."""

    name: str
    kind: type[Any]
    help: str
    lands: Lands
    field: str = ""  # the field it fills, when not `name`
    given: Any = _DERIVED  # the default, for options whose home declares none
    minimum: int | None = None
    choices: tuple[str, ...] = ()
    scale: int = 1  # the field holds value * scale (days given, seconds kept)
    secret: bool = False  # masked by `config show`; in a file only if the file is private
    env_only: bool = False  # never on argv: no flag, only the environment or a private file
    in_file: bool = True
    is_path: bool = False  # a file's path (a directory is refused)
    default_text: str = ""  # the default, in words, where the value is computed or absent
    doc: str = ""  # the README's longer meaning; `help` when empty

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return "BATON_" + self.name.upper()

    @property
    def target(self) -> str:
        return self.field or self.name

    @property
    def default(self) -> Any:
        if self.given is not _DERIVED:
            return self.given
        home = _HOMES[self.lands]
        found = next(f for f in dataclasses.fields(home) if f.name == self.target)
        value = found.default
        if isinstance(value, Enum):
            return value.value
        return value // self.scale if self.scale != 1 else value


OPTIONS: tuple[Option, ...] = (
    Option(
        "config",
        str,
        "TOML file of these options, keyed by their snake_case names (access_ttl = 3600); "
        "a flag or environment variable wins over it.",
        Lands.SERVE,
        given=None,
        in_file=False,
        default_text="none",
        doc="TOML file of the options below, each keyed by its name in snake_case "
        '(`access_ttl = 3600`, `trusted_proxies = ["10.0.0.0/8"]`); a flag or environment '
        "variable wins over it. Secrets may be in it only if group and others cannot read it "
        "(mode 0600); see [Config file](#config-file)",
    ),
    Option(
        "host",
        str,
        "Address to listen on.",
        Lands.SERVE,
        given="127.0.0.1",
        doc="address to listen on",
    ),
    Option("port", int, "Port to listen on.", Lands.SERVE, given=8000, doc="port to listen on"),
    Option(
        "db",
        str,
        "Database URL (sqlite:///path or postgresql://...) or a SQLite file path.",
        Lands.CONFIG,
        doc="database URL, or a SQLite file path",
    ),
    Option(
        "issuer",
        str,
        "Issuer URL.",
        Lands.SETTINGS,
        given=None,
        default_text="`http://HOST:PORT`",
        doc="issuer identifier and base of every endpoint URL in the metadata; with `https://`, "
        "session cookies are `Secure`",
    ),
    Option(
        "leeway",
        int,
        "Seconds an exchanged refresh token and its access token stay valid for retries.",
        Lands.LIFETIMES,
        minimum=0,
        doc="seconds an exchanged refresh token and its companion access token stay valid for "
        "retries",
    ),
    Option(
        "access_ttl",
        int,
        "Access token lifetime, seconds.",
        Lands.LIFETIMES,
        minimum=1,
        doc="access token lifetime, seconds",
    ),
    Option(
        "refresh_idle_ttl",
        int,
        "Refresh token lifetime from its issue, seconds.",
        Lands.LIFETIMES,
        minimum=1,
        doc="refresh token lifetime from its own issue",
    ),
    Option(
        "refresh_absolute_ttl",
        int,
        "A grant's absolute lifetime, seconds.",
        Lands.LIFETIMES,
        minimum=1,
        doc="a grant's absolute lifetime: no token of it outlives this",
    ),
    Option(
        "retry_policy",
        str,
        "Answer to a refresh token presented again inside its leeway.",
        Lands.POLICY,
        field="retry",
        choices=tuple(p.value for p in RetryPolicy),
        doc="`replay`: the same child pair again; `fork`: a new sibling pair per retry, of which "
        "only the first refreshed continues; `strict`: no leeway, any second use is reuse; see "
        "[Retry policies](#retry-policies)",
    ),
    Option(
        "workers",
        int,
        "Server processes sharing the port.",
        Lands.SERVE,
        given=1,
        minimum=1,
        doc="server processes sharing the port (SQLite or PostgreSQL), each with a listening "
        "socket of its own (`SO_REUSEPORT`), so the kernel spreads connections over them",
    ),
    Option(
        "db_pool_size",
        int,
        "PostgreSQL connections kept per process (0: none, for PgBouncer).",
        Lands.POOL,
        field="size",
        minimum=0,
        doc="PostgreSQL connections kept per process; `0` for none (PgBouncer)",
    ),
    Option(
        "db_max_overflow",
        int,
        "PostgreSQL connections opened beyond the pool under bursts, per process.",
        Lands.POOL,
        field="max_overflow",
        minimum=0,
    ),
    Option(
        "sqlite_synchronous",
        str,
        "SQLite durability: full survives a power cut; normal only a crash (see README).",
        Lands.SQLITE,
        field="synchronous",
        choices=SYNCHRONOUS_MODES,
        doc="SQLite durability: `full` (an answered rotation survives a power cut), `normal` "
        "(survives a crash of the server, not of the machine), `off`; see "
        "[SQLite durability](#sqlite-durability)",
    ),
    Option(
        "purge_interval",
        int,
        "Seconds between purges of expired data.",
        Lands.SETTINGS,
        minimum=1,
        doc="seconds between purges of expired data",
    ),
    Option(
        "retention_days",
        int,
        "Days expired tokens, codes and dead grants are kept for audit.",
        Lands.SETTINGS,
        field="retention",
        scale=DAY,
        minimum=0,
        doc="days expired tokens, codes and dead grants are kept for audit before the purge "
        "deletes them",
    ),
    Option(
        "access_token_format",
        str,
        "opaque (checked by introspection) or jwt (RFC 9068, checked locally).",
        Lands.SETTINGS,
        choices=("opaque", "jwt"),
        doc="`opaque` (`bat_at_…`, checked by introspection) or `jwt` (RFC 9068, checked "
        "locally against the JWKS)",
    ),
    Option(
        "access_token_audience",
        str,
        "JWT aud when the client names no resource.",
        Lands.SETTINGS,
        default_text="the issuer",
        doc="`aud` of the tokens (opaque or JWT) of a client allowed no RFC 8707 resource (see "
        "[Resources](#resources-and-audiences-rfc-8707)); `serve` refuses one that is a "
        "registered resource server's URI, which would hand such tokens to that API",
    ),
    Option(
        "signing_alg",
        str,
        "Algorithm of the first signing key (EdDSA: the old name of Ed25519, RFC 9864).",
        Lands.SETTINGS,
        choices=tuple(ALGORITHM_CHOICES),
        doc="algorithm of the first signing key (`ES256`, `RS256`, `Ed25519`; `EdDSA`, its "
        "old name, is taken too), created on the first start with JWTs",
    ),
    Option(
        "key_encryption_key",
        str,
        "Secret (32+ characters) that seals the JWT signing keys at rest; prefer the "
        "environment variable.",
        Lands.SETTINGS,
        secret=True,
        default_text="none",
        doc="32+ character secret that seals the private signing keys in the database; required "
        "with `jwt`; prefer the environment variable",
    ),
    Option(
        "session_key_file",
        str,
        "File (mode 0600) holding the key that signs session cookies, generated on the first "
        "start; ignored when BATON_SESSION_KEY is set. Every host serving one database needs "
        "the same key.",
        Lands.SERVE,
        given=None,
        is_path=True,
        default_text="`DATABASE-session.key` beside a SQLite file; `./baton-session.key` (the "
        "working directory) for PostgreSQL",
        doc="file (mode 0600, refused if others may read it) holding the key that signs the "
        "session and device cookies; generated there on the first start, before any worker "
        "starts, so every worker shares it. Every host serving one database needs the same "
        "key: copy the file or set `BATON_SESSION_KEY`. Never stored in the database",
    ),
    Option(
        "session_key",
        str,
        "Key (32+ characters) that signs session cookies; wins over --session-key-file.",
        Lands.SETTINGS,
        secret=True,
        env_only=True,
        default_text="none (read from `--session-key-file`)",
        doc="32+ characters that sign the session and device cookies, shared by every host "
        "serving one database; wins over `--session-key-file`. Never on the command line",
    ),
    Option(
        "key_reload_interval",
        int,
        "Seconds between reloads of the signing keys (keep below keys rotate --publish-ahead).",
        Lands.SETTINGS,
        minimum=1,
        doc="seconds between reloads of the signing keys by each process (keep below `keys "
        "rotate --publish-ahead`)",
    ),
    Option(
        "rate_limit_address",
        float,
        "Requests/s per source address at /token, /revoke, /introspect, /authorize (0: off).",
        Lands.SETTINGS,
        minimum=0,
        doc="requests/s per source address at `/token`, `/revoke`, `/introspect` and "
        "`/authorize`, bursts of twice that; `0` turns it off",
    ),
    Option(
        "rate_limit_client",
        float,
        "Requests/s per client at /token, /revoke, /introspect (0: off).",
        Lands.SETTINGS,
        minimum=0,
        doc="the same per client",
    ),
    Option(
        "rate_limit_login",
        float,
        "Sign-in attempts/s per source address, bursts of 20 (0: off).",
        Lands.SETTINGS,
        minimum=0,
        doc="sign-in attempts/s per source address, bursts of 20",
    ),
    Option(
        "redis_url",
        str,
        "Redis for rate limits and lockouts shared by every process.",
        Lands.SETTINGS,
        default_text="none (each process counts alone)",
        doc="Redis shared by every process for rate limits and lockouts (without it each process "
        "counts alone)",
    ),
    Option(
        "trusted_proxies",
        tuple,
        "Comma-separated networks of reverse proxies whose X-Forwarded-For is believed, "
        "e.g. 10.0.0.0/8,127.0.0.1.",
        Lands.SETTINGS,
        default_text="none (the header is never read)",
        doc="comma-separated networks (`10.0.0.0/8,127.0.0.1`) of reverse proxies whose "
        "`X-Forwarded-For` is believed: only from a peer inside one, read right to left "
        "skipping trusted hops, each entry an IP address or the request is refused (400). "
        "Without it the header is never read and a request's address (rate limits, lockouts, "
        "logs, audit, webhooks) is its TCP peer",
    ),
    Option(
        "log_level",
        str,
        "Least severe log lines written.",
        Lands.SERVE,
        given="info",
        choices=("debug", "info", "warning", "error"),
        doc="one line per request, never a token or a query string",
    ),
    Option(
        "log_format",
        str,
        "json: one JSON object per line; console: readable lines, for development.",
        Lands.SERVE,
        given="json",
        choices=("json", "console"),
        doc="`json`: one JSON object per line with a request id; `console`: readable lines for "
        "development",
    ),
    Option(
        "metrics_token",
        str,
        "Serve /metrics to `Authorization: Bearer TOKEN`; prefer the environment variable.",
        Lands.SETTINGS,
        secret=True,
        default_text="none (no `/metrics`)",
        doc="serve `/metrics` to `Authorization: Bearer TOKEN`; prefer the environment variable",
    ),
    Option(
        "metrics_public",
        bool,
        "Serve /metrics without a token (only where the port is private).",
        Lands.SETTINGS,
        doc="serve `/metrics` without a token (only where the port is private)",
    ),
    Option(
        "webhook_url",
        str,
        "POST security events (reuse detected, grant revoked) here, signed with "
        "BATON_WEBHOOK_SECRET.",
        Lands.SETTINGS,
        default_text="none (no webhooks)",
        doc="POST security events here, signed with `BATON_WEBHOOK_SECRET`",
    ),
    Option(
        "webhook_secret",
        str,
        "HMAC secret (16+ characters) that signs the webhooks.",
        Lands.SETTINGS,
        secret=True,
        env_only=True,
        default_text="none",
        doc="HMAC secret (16+ characters) that signs the webhooks; required with "
        "`--webhook-url`. Never on the command line",
    ),
    Option(
        "fast_paths",
        bool,
        "The hot paths' short cuts around uvicorn's, Starlette's and SQLAlchemy's general code; "
        "off for bisecting a bug.",
        Lands.SETTINGS,
        doc="the hot paths' short cuts around the general code of uvicorn, Starlette and "
        "SQLAlchemy (`baton.server.fastpath`); `--no-fast-paths` sends every request the "
        "general way, to tell whether a bug lives in a short cut",
    ),
)

BY_NAME: dict[str, Option] = {option.name: option for option in OPTIONS}


# -- values: from a TOML file, and into the dataclasses ----------------------------------------


class Source(StrEnum):
    """Where a resolved value came from, strongest first."""

    FLAG = "flag"
    ENV = "env"
    FILE = "file"
    DEFAULT = "default"


class ConfigFileError(ValueError):
    """A config file Baton refuses; the message is one line naming the file and the key."""


_TYPE_NAMES = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    tuple: "an array of strings",
}


def _toml_type(value: Any) -> str:
    kinds: tuple[tuple[type[Any], str], ...] = (
        (bool, "a boolean"),  # before int: a bool is an int to Python, not to TOML
        (int, "an integer"),
        (float, "a number"),
        (str, "a string"),
        (list, "an array"),
        (dict, "a table"),
    )
    return next((name for kind, name in kinds if isinstance(value, kind)), type(value).__name__)


def check_value(option: Option, value: Any) -> Any:
    """A value from a file as the option's type, within its bounds; ValueError says why not.
    (Flags and environment variables are parsed by click, with the same bounds.)"""
    kind = option.kind
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif kind is tuple:
        ok = isinstance(value, str) or (
            isinstance(value, list) and all(isinstance(item, str) for item in value)
        )
        value = split_list(value) if ok else value
    else:
        ok = isinstance(value, str)
    if not ok:
        raise ValueError(f"expected {_TYPE_NAMES[kind]}, not {_toml_type(value)}")
    if option.minimum is not None and value < option.minimum:
        raise ValueError(f"{value!r} is below the minimum {option.minimum:g}")
    if option.choices and value not in option.choices:
        raise ValueError(f"{value!r} is not one of {', '.join(option.choices)}")
    return value


def split_list(value: str | Sequence[str]) -> tuple[str, ...]:
    """A list option's entries: comma-separated text, or a file's array (whose entries may also
    hold commas), stripped, empty ones dropped."""
    parts = value.split(",") if isinstance(value, str) else [p for v in value for p in v.split(",")]
    return tuple(part.strip() for part in parts if part.strip())


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The options a TOML config file sets, checked; ConfigFileError (one line naming the file
    and the key) for a file that is missing or not TOML, a key that is no option or is written
    in kebab-case, a value of the wrong type or out of bounds, and a secret in a file that group
    or others may read."""
    where = Path(path)
    try:
        with where.open("rb") as handle:
            raw = tomllib.load(handle)
        mode = os.stat(where).st_mode
    except OSError as exc:
        raise ConfigFileError(f"{where}: cannot read the config file: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(f"{where}: not valid TOML: {exc}") from None
    values: dict[str, Any] = {}
    for key, value in raw.items():
        option = BY_NAME.get(key)
        if option is None or not option.in_file:
            snake = key.replace("-", "_")
            if snake != key and snake in BY_NAME and BY_NAME[snake].in_file:
                problem = f"keys are snake_case: write {snake!r}"
            else:
                problem = "no such option (see `baton serve --help`)"
            raise ConfigFileError(f"{where}: {key}: {problem}")
        try:
            values[key] = check_value(option, value)
        except ValueError as exc:
            raise ConfigFileError(f"{where}: {key}: {exc}") from None
        if option.secret and mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigFileError(
                f"{where}: {key}: a secret in a file that group or others may read: "
                f"`chmod 600 {where}`, or set {option.env} instead"
            )
    return values


@dataclass(frozen=True)
class ServeOnly:
    """What the serve command itself uses: where it listens, how many processes, how it logs."""

    host: str
    port: int
    workers: int
    log_level: str
    log_format: str
    session_key_file: str | None
    config: str | None


def build(values: Mapping[str, Any]) -> tuple[ServeConfig, ServeOnly]:
    """Every option's resolved value (by name; lists as tuples, trusted proxies normalized)
    placed where it lands."""
    homes: dict[Lands, dict[str, Any]] = {lands: {} for lands in Lands}
    for option in OPTIONS:
        value = values[option.name]
        if option.scale != 1:
            value *= option.scale
        homes[option.lands][option.target] = value
    settings = homes[Lands.SETTINGS]
    serve = ServeOnly(**homes[Lands.SERVE])
    settings["issuer"] = (settings["issuer"] or f"http://{serve.host}:{serve.port}").rstrip("/")
    settings["metrics_token"] = settings["metrics_token"] or None
    policy = Policy(Lifetimes(**homes[Lands.LIFETIMES]), RetryPolicy(homes[Lands.POLICY]["retry"]))
    config = ServeConfig(
        Settings(policy=policy, **settings),
        pool=PoolSettings(**homes[Lands.POOL]),
        sqlite=SQLiteSettings(**homes[Lands.SQLITE]),
        **homes[Lands.CONFIG],
    )
    return config, serve


# -- the README's options table ------------------------------------------------------------------

TABLE_START = "<!-- options:start (generated by `python -m baton.config readme`) -->"
TABLE_END = "<!-- options:end -->"


def _default_cell(option: Option) -> str:
    value = option.default
    if option.default_text:
        return option.default_text
    if value is None or value == ():
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"`{value:g}`"
    if isinstance(value, int) and value >= DAY and value % DAY == 0:
        return f"`{value}` ({value // DAY} days)"
    return f"`{value}`"


def options_table() -> str:
    """The README's table of options, one row per option, in declaration order."""
    rows = ["| option | default | meaning |", "|---|---|---|"]
    for option in OPTIONS:
        if option.env_only:
            name = f"[`{option.env}`] (environment or config file only)"
        else:
            name = f"`{option.flag}` [`{option.env}`]"
        meaning = option.doc or option.help.rstrip(".")
        rows.append(f"| {name} | {_default_cell(option)} | {meaning} |")
    return "\n".join(rows) + "\n"


def with_table(readme: str) -> str:
    """The README with its options table (between the markers) regenerated."""
    head, found, rest = readme.partition(TABLE_START)
    _, found_end, tail = rest.partition(TABLE_END)
    if not (found and found_end):
        raise ValueError(f"the README has no {TABLE_START} ... {TABLE_END} markers")
    return f"{head}{TABLE_START}\n{options_table()}{TABLE_END}{tail}"


def main(argv: Sequence[str]) -> int:
    """`python -m baton.config readme [README.md]` rewrites the README's options table;
    `python -m baton.config table` prints it."""
    if argv[:1] == ["table"]:
        sys.stdout.write(options_table())
        return 0
    if argv[:1] == ["readme"] and len(argv) <= 2:
        path = Path(argv[1] if len(argv) == 2 else "README.md")
        text = path.read_text()
        updated = with_table(text)
        if updated != text:
            path.write_text(updated)
        print(f"{path}: options table {'rewritten' if updated != text else 'up to date'}")
        return 0
    print("usage: python -m baton.config table | readme [README.md]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Every option of `baton serve`, declared once, in the order of `--help`, `baton config show`
and the options table of docs/configuration.md.
"""

from __future__ import annotations

from baton.config.declaration import Lands, Option, Url
from baton.core.keys import ALGORITHM_CHOICES
from baton.core.policy import DAY, RetryPolicy
from baton.store.engines import SYNCHRONOUS_MODES

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
        "variable wins over it. Secrets (and URLs with a password) may be in it only if group and "
        "others cannot read it (mode 0600); see [Config file](#config-file)",
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
        url=Url.PASSWORD,
        doc="database URL, or a SQLite file path",
    ),
    Option(
        "issuer",
        str,
        "Issuer URL.",
        Lands.SETTINGS,
        given=None,
        default_text="`http://HOST:PORT`",
        doc="issuer identifier and base of every endpoint URL in the metadata: `https`, no query "
        "or fragment (RFC 8414 §2; `http` only on 127.0.0.1, [::1] or localhost), and required "
        "when `--host` is not a loopback address; with `https://`, session cookies are `Secure`",
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
        "SQLite durability: full survives a power cut; normal only a crash "
        "(see docs/configuration.md).",
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
        "[Resources](commands.md#resources-and-audiences-rfc-8707)); `serve` refuses one that is a "
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
        "id_token_lifetime",
        int,
        "OpenID Connect ID token lifetime, seconds (60 to 86400).",
        Lands.SETTINGS,
        minimum=60,
        maximum=86400,
        doc="lifetime of the ID tokens (OpenID Connect) in seconds, from 60 to a day; `keys "
        "rotate` keeps a retired key published at least this long",
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
        "login_url",
        str,
        "The product's own login app: /authorize sends the browser there with a "
        "login_challenge (a client may name its own).",
        Lands.SETTINGS,
        default_text="none (the built-in login page)",
        doc="the product's own login app (`https`, or `http` on loopback): `/authorize` sends "
        "the browser there with a one-time `login_challenge`, which the app accepts or rejects "
        "over the admin API ([Bring your own login](login.md)); a client's "
        "`--login-url` wins over it",
    ),
    Option(
        "consent_url",
        str,
        "The product's own consent app, sent a consent_challenge (a client may name its own).",
        Lands.SETTINGS,
        default_text="none (the built-in consent page)",
        doc="the product's own consent app: `/authorize` sends the browser there with a "
        "one-time `consent_challenge`; a client's `--consent-url` wins over it",
    ),
    Option(
        "challenge_ttl",
        int,
        "Seconds a login or consent challenge waits for the app's decision.",
        Lands.SETTINGS,
        minimum=30,
        maximum=3600,
        doc="seconds a login or consent challenge lives, from `/authorize` to the browser's "
        "return with the app's decision",
    ),
    Option(
        "theme_dir",
        str,
        "Folder whose templates/ and static/ files replace the built-in pages' ones.",
        Lands.SETTINGS,
        default_text="none (the built-in pages)",
        doc="a folder whose `templates/` and `static/` files take the place of the built-in "
        "ones of the same name, and whose `locale/` catalogs add or replace translations "
        "([Pages of your own](themes.md))",
    ),
    Option(
        "password_min_length",
        int,
        "Shortest password a built-in user may set.",
        Lands.SETTINGS,
        minimum=8,
        maximum=128,
        doc="the shortest password a built-in user may be given; a password on the bundled list "
        "of the most common ones is refused whatever its length",
    ),
    Option(
        "mfa_for_admins",
        bool,
        "Administrators must sign in with a second factor (TOTP).",
        Lands.SETTINGS,
        doc="every administrator must sign in with a second factor (TOTP, RFC 6238): one who "
        "has none enrols at the next sign-in",
    ),
    Option(
        "upstream_timeout",
        int,
        "Seconds an upstream provider has to answer each call (discovery, keys, token).",
        Lands.SETTINGS,
        minimum=1,
        maximum=60,
        doc="seconds an upstream provider ([Sign in with another provider]"
        "(upstream.md)) has to answer each call, its body included: "
        "discovery, its keys, the token exchange; a slower one gets a page that says so",
    ),
    Option(
        "client_metadata_documents",
        bool,
        "Accept an https client_id with a path as a client ID metadata document (fetched).",
        Lands.SETTINGS,
        doc="accept a client ID metadata document: an `https` `client_id` with a path is "
        "fetched (5 s, 5 KB, no redirect to another host, never a private, loopback or "
        "link-local address), validated, cached as its HTTP headers allow and used as a "
        "public client's registration ([MCP](mcp.md)); `--no-client-metadata-documents` refuses "
        "such clients",
    ),
    Option(
        "client_documents_trusted_hosts",
        tuple,
        "Comma-separated hosts whose client metadata documents are shown as verified.",
        Lands.SETTINGS,
        default_text="none (every document is shown as not verified)",
        doc="comma-separated hosts (`app.example.com`, or `*.example.com` for its subdomains) "
        'whose client metadata documents the consent page shows without the "not verified by '
        'this server" warning',
    ),
    Option(
        "client_documents_denied_hosts",
        tuple,
        "Comma-separated hosts whose client metadata documents are refused.",
        Lands.SETTINGS,
        default_text="none",
        doc="comma-separated hosts (`*.example.com` for subdomains) whose client metadata "
        "documents are refused without being fetched",
    ),
    Option(
        "client_documents_allow_private",
        bool,
        "Development only: fetch client metadata documents from private and loopback "
        "addresses (and http on loopback).",
        Lands.SETTINGS,
        doc="development only: fetch client metadata documents from private, loopback and "
        "link-local addresses, and over plain `http` from loopback",
    ),
    Option(
        "registration",
        str,
        "RFC 7591 dynamic client registration at /register: off, open, or token (an initial "
        "access token).",
        Lands.SETTINGS,
        choices=("off", "open", "token"),
        doc="RFC 7591 dynamic client registration at `/register`: `off` (404), `open` "
        "(anyone may register a client, rate limited), or `token` (only with the initial "
        "access token `--registration-token` as a bearer token)",
    ),
    Option(
        "registration_token",
        str,
        "Initial access token that --registration token requires (prefer the environment).",
        Lands.SETTINGS,
        secret=True,
        default_text="none",
        doc="the initial access token (RFC 7591 §3) that `--registration token` requires, 32+ "
        "characters; prefer the environment variable",
    ),
    Option(
        "registration_expiry",
        int,
        "Days after which a dynamic registration that no grant used is deleted.",
        Lands.SETTINGS,
        scale=DAY,
        minimum=1,
        doc="days after which a dynamically registered client that no grant ever used is deleted",
    ),
    Option(
        "dynamic_client_scopes",
        tuple,
        "Comma-separated scopes a dynamically registered or metadata-document client may get.",
        Lands.SETTINGS,
        default_text="none",
        doc="comma-separated scopes a client no operator registered (dynamic registration, "
        "metadata document) may be granted; what it asks for is narrowed to them (OpenID "
        "Connect scopes are always allowed while it is on)",
    ),
    Option(
        "dynamic_client_resources",
        tuple,
        "Comma-separated RFC 8707 resources such clients may ask for.",
        Lands.SETTINGS,
        default_text="every registered resource server",
        doc="comma-separated RFC 8707 resource URIs a client no operator registered may ask "
        "tokens for",
    ),
    Option(
        "scopes_supported",
        tuple,
        "Comma-separated scopes the metadata advertises in scopes_supported.",
        Lands.SETTINGS,
        default_text="the OpenID Connect scopes and --dynamic-client-scopes",
        doc="comma-separated scopes the metadata's `scopes_supported` names besides the OpenID "
        "Connect ones (while it is on) and `--dynamic-client-scopes`",
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
        url=Url.PASSWORD,
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
        "metrics_client_series",
        int,
        "Clients with their own series in the per-client metrics; the rest are `other`.",
        Lands.SETTINGS,
        minimum=0,
        doc="clients with their own series in the per-client integration metrics (those with "
        'the most signals); the others are summed under `client="other"`, so the label\'s '
        "cardinality stays bounded",
    ),
    Option(
        "signal_flush_interval",
        int,
        "Seconds between writes of the integration signals each process counted.",
        Lands.SETTINGS,
        minimum=1,
        doc="seconds between writes of the integration signals (stale access tokens, retries, "
        "what a report-only policy would refuse) each process counts in memory; a process that "
        "dies loses at most this long of them",
    ),
    Option(
        "signal_retention",
        int,
        "Days the integration signals are kept for reports and the console.",
        Lands.SETTINGS,
        scale=DAY,
        minimum=1,
        doc="days the integration signals are kept for `baton report enforcement`, the console "
        "and the admin API",
    ),
    Option(
        "clock_offset_file",
        str,
        "Rehearsals only: the server's clock runs ahead by the seconds in this file.",
        Lands.SETTINGS,
        default_text="none (the system clock)",
        doc="for rehearsing a scheduled policy change on a staging server, and for tests: the "
        "server's clock runs ahead of the system clock by the whole seconds written in this file "
        "(read again when it changes). Never on a production server",
    ),
    Option(
        "webhook_url",
        str,
        "POST security events (reuse detected, grant revoked) here, signed with "
        "BATON_WEBHOOK_SECRET.",
        Lands.SETTINGS,
        url=Url.ORIGIN,
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
    Option(
        "tracing",
        bool,
        "OpenTelemetry traces, exported over OTLP to OTEL_EXPORTER_OTLP_ENDPOINT; needs "
        "pip install 'baton-oauth[otel]'.",
        Lands.SETTINGS,
        doc="OpenTelemetry traces (requests, SQL statements, outgoing HTTP, each token exchange "
        "and the rules' decision; never a token or secret), exported over OTLP where the "
        "standard `OTEL_EXPORTER_OTLP_*` variables say ([Tracing](tracing.md)); needs "
        "`pip install 'baton-oauth[otel]'`",
    ),
)

BY_NAME: dict[str, Option] = {option.name: option for option in OPTIONS}

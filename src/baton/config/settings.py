"""What a server process is configured with: `Settings` (what the app needs, whoever builds it)
and `ServeConfig` (those settings with the database and its pool, the JSON each worker of
`baton serve` is handed). The options of `baton serve` that fill them are declared in
`baton.config.options`; the defaults are the fields' defaults here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from baton.core.policy import DAY, Lifetimes, Policy, RetryPolicy
from baton.store.engines import DEFAULT_URL, PoolSettings, SQLiteSettings


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
    # Lifetime of the ID tokens (seconds): an ID token proves a sign-in to the relying party
    # when it arrives, and grants nothing; an hour, as node-oidc-provider and most providers
    # issue them, leaves a relying party's clock skew and retries ample room. Bounded (60 s to a
    # day): the signing keys stay published this long after they retire (`keys rotate
    # --max-id-token-ttl`).
    id_token_lifetime: int = 3600
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
    # OpenTelemetry traces (baton.server.observability.tracing; the `otel` extra), exported over
    # OTLP where the standard OTEL_* variables say. Off: no OpenTelemetry module is imported.
    tracing: bool = False
    # Bring your own identity (docs/identity.md): the product's own login and consent apps,
    # handed each decision through a challenge (a client may name its own); None: the built-in
    # pages. A challenge lives this long (seconds) between /authorize and the app's decision.
    login_url: str | None = None
    consent_url: str | None = None
    challenge_ttl: int = 600
    # A folder whose templates/ and static/ files take the place of the built-in pages' ones.
    theme_dir: str | None = None
    # The password policy of built-in users: the shortest password accepted when one is set
    # (NIST SP 800-63B §3.1.1.2 asks for at least 8; 12 leaves guessing far behind), and never a
    # password on the bundled list of the most common ones.
    password_min_length: int = 12
    # Every administrator (the console's users) must sign in with a second factor (TOTP).
    mfa_for_admins: bool = False
    # Seconds an upstream provider ("Sign in with ...") has to answer each call, body included:
    # discovery, its keys, the token exchange. A browser waits this long at most.
    upstream_timeout: int = 10
    # Clients no operator registered (docs/mcp.md). A client ID metadata document
    # (draft-ietf-oauth-client-id-metadata-document): an https `client_id` with a path is
    # fetched and, valid, serves as a public client's registration. Its host is shown "not
    # verified" on the consent page unless trusted; a denied host's documents are refused; a
    # private, loopback or link-local address (and plain http on loopback) only with
    # `client_documents_allow_private`, for development.
    client_metadata_documents: bool = True
    client_documents_trusted_hosts: tuple[str, ...] = ()
    client_documents_denied_hosts: tuple[str, ...] = ()
    client_documents_allow_private: bool = False
    # RFC 7591 dynamic client registration at /register: "off", "open" (anyone), or "token"
    # (an initial access token, `registration_token`, in the Authorization header).
    registration: str = "off"
    registration_token: str | None = field(default=None, repr=False)
    # A registration that no grant ever used is deleted after this long (seconds).
    registration_expiry: int = 7 * DAY
    # The scopes a client no operator registered may be granted (what it asks is narrowed to
    # them), and the RFC 8707 resources it may ask for (empty: every registered resource server).
    dynamic_client_scopes: tuple[str, ...] = ()
    dynamic_client_resources: tuple[str, ...] = ()
    # Integration signals (issue 28, `baton.core.signals`): counted in memory by each process and
    # written every `signal_flush_interval` seconds, kept `signal_retention` seconds; the
    # per-client metrics give their own series to the `metrics_client_series` clients with the
    # most, the rest under `other`.
    signal_flush_interval: int = 10
    signal_retention: int = 30 * DAY
    metrics_client_series: int = 20
    # Rehearsals and tests: the clock runs ahead by the seconds in this file (None: system time).
    clock_offset_file: str | None = None
    # RFC 8414 `scopes_supported` beyond the OpenID Connect ones and `dynamic_client_scopes`.
    scopes_supported: tuple[str, ...] = ()

    @property
    def issuer_identifier(self) -> str:
        """The issuer identifier every OpenID Connect `iss` carries (ID tokens, logout tokens,
        discovery, the authorization response's `iss`, hints read back), in one spelling:
        without a trailing slash. OIDC Discovery §4.3: the `issuer` of the metadata "MUST be
        identical to the iss Claim value in ID Tokens issued from this Issuer"."""
        return self.issuer.rstrip("/")

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

"""The tables. Facts only: states are derived by `baton.core.rules` at the moment of a question.

Times are integer Unix seconds. Tokens, codes and client secrets appear only as SHA-256 digests.
The Alembic chain in `migrations/` creates exactly this schema (a test compares the two).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    false,
    text,
)

from baton.store.base import CLIENT_ID_LENGTH

metadata = MetaData()

# Unix seconds need 64 bits on PostgreSQL (its INTEGER ends in 2038). SQLite's INTEGER already
# is 64-bit, and only `INTEGER PRIMARY KEY` is its auto-incrementing row id.
Time = BigInteger
Id = BigInteger().with_variant(Integer(), "sqlite")


clients = Table(
    "clients",
    metadata,
    Column("id", String(CLIENT_ID_LENGTH), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("secret_digest", LargeBinary(32)),  # NULL for public clients
    Column("is_public", Boolean, nullable=False),
    Column("is_resource_server", Boolean, nullable=False, default=False),
    Column("redirect_uris", Text, nullable=False),  # JSON array
    Column("scope", Text, nullable=False),
    Column("created_at", Time, nullable=False),
    Column("disabled_at", Time),
    # RFC 8707: a resource server's own identifier URI (what its tokens carry as `aud`), and the
    # resources a client may ask tokens for (JSON array; NULL: none).
    Column("resource_uri", Text),
    Column("allowed_resources", Text),
    # A public client's remembered consent is honoured only when the operator opted in for it
    # (RFC 8252 §8.6): it cannot prove its identity otherwise.
    Column("remember_consent", Boolean, nullable=False, server_default=false()),
    # OAuth 2.1: PKCE for every client; an operator may opt a confidential client out.
    # Clients registered before migration 0006 keep PKCE optional until changed.
    Column("require_pkce", Boolean, nullable=False, server_default=false()),
    # OpenID Connect client metadata (OIDC Registration §2, Back-Channel Logout §2.2, RP-Initiated
    # Logout §3.1), and the browser origins allowed to call the token endpoints (JSON array;
    # NULL: the origins of the redirect URIs).
    Column("id_token_signed_response_alg", String(16)),  # NULL: RS256
    Column("subject_type", String(16), nullable=False, server_default="public"),
    Column("sector_identifier_uri", Text),
    Column("post_logout_redirect_uris", Text),  # JSON array
    Column("backchannel_logout_uri", Text),
    Column("backchannel_logout_session_required", Boolean, nullable=False, server_default=false()),
    Column("require_nonce", Boolean, nullable=False, server_default=false()),
    Column("allowed_origins", Text),
    # Bring your own identity: this client's own login and consent apps (NULL: the server's
    # `--login-url`/`--consent-url`, else the built-in pages), and its homepage, shown on the
    # consent page.
    Column("login_url", Text),
    Column("consent_url", Text),
    Column("client_uri", Text),
    # Deleted (`baton client delete`): disabled for good, the row kept so its grants and audit
    # rows keep their history and its id is never reused; never enabled or given a secret again.
    Column("deleted_at", Time),
    # Clients no operator registered (migration 0010): `registered_via` is "dynamic" (RFC 7591)
    # or "document" (a client ID metadata document, whose URL is the id); NULL for an operator's.
    # `registration` is the client metadata as registered or fetched (JSON object: RFC 7591 §2
    # members such as `contacts`, `logo_uri`, `application_type`); `registration_token_digest`
    # the RFC 7592 registration access token's SHA-256; `document_expires_at` when a metadata
    # document must be fetched again. `grant_types` (JSON array; NULL: every grant the client's
    # type allows), `token_endpoint_auth_method` (NULL: by the client's type) and `jwks_uri`
    # (`private_key_jwt`) are RFC 7591 §2 metadata the server enforces. `used_at`: when the
    # client was first used (a code issued for it, or a signed-in person asked to consent); the
    # expiry of unused dynamic registrations (`--registration-expiry`) spares a client with it.
    Column("registered_via", String(16)),
    Column("registration", Text),
    Column("registration_token_digest", LargeBinary(32)),
    Column("document_expires_at", Time),
    Column("grant_types", Text),
    Column("token_endpoint_auth_method", String(32)),
    Column("jwks_uri", Text),
    Column("used_at", Time),
    # Migration 0011 (issue 28): the client's own policy over the server's, with any change
    # scheduled for an instant (JSON: `baton.core.client_policy.ClientPolicy`; NULL: the
    # server's), and who to tell about it: the integrator's `contacts` (JSON array of e-mail
    # addresses) and `notify_url`, where signed notices are POSTed through the outbox.
    Column("policy", Text),
    Column("contacts", Text),
    Column("notify_url", Text),
    Index(
        "ix_clients_resource_uri",
        "resource_uri",
        unique=True,
        sqlite_where=text("resource_uri IS NOT NULL"),
        postgresql_where=text("resource_uri IS NOT NULL"),
    ),
)

users = Table(
    "users",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("username", String(200), nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("is_admin", Boolean, nullable=False, default=False),
    Column("created_at", Time, nullable=False),
    # OpenID Connect standard claims (Core §5.1): `email` scope's two, and the `profile` scope's
    # as a JSON object of the members set; `updated_at` is when any of them last changed.
    Column("email", String(320)),
    Column("email_verified", Boolean, nullable=False, server_default=false()),
    Column("profile", Text),
    Column("updated_at", Time),
    # Built-in users made complete: a disabled user cannot sign in; `password_changed_at` is the
    # last `set-password`. A user with no password (made by a login app or an upstream provider)
    # has `password_hash` NO_PASSWORD (`baton.passwords`), which nothing verifies against.
    Column("disabled_at", Time),
    Column("password_changed_at", Time),
    # TOTP second factor (RFC 6238): the shared secret, sealed with the key-encryption key; the
    # last time step accepted (a code is never accepted twice); and whether this user must use a
    # second factor (else only where the server requires it of administrators).
    Column("totp_secret", Text),
    Column("totp_last_step", BigInteger),
    Column("mfa_required", Boolean, nullable=False, server_default=false()),
    # Deleted: the personal data is gone and nobody signs in as this user again, but the row
    # and its username stay, so the name (the `sub` clients know) is never given to another
    # user (OIDC Core §2: a subject identifier is "never reassigned").
    Column("deleted_at", Time),
)

consents = Table(
    "consents",
    metadata,
    Column("user_id", Id, ForeignKey("users.id"), primary_key=True),
    Column("client_id", String(CLIENT_ID_LENGTH), ForeignKey("clients.id"), primary_key=True),
    Column("scope", Text, nullable=False),
    Column("updated_at", Time, nullable=False),
    Column("resources", Text),  # JSON array of the RFC 8707 resources consented to
    # A login app's `remember_for` (seconds from the decision); NULL: until revoked.
    Column("expires_at", Time),
    # A consent app's claims for the ID token and userinfo (JSON `{"id_token": {...},
    # "userinfo": {...}}`), given again when the remembered consent answers a later request.
    Column("claims", Text),
)

grants = Table(
    "grants",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("client_id", String(CLIENT_ID_LENGTH), ForeignKey("clients.id"), nullable=False),
    Column("user_id", Id, ForeignKey("users.id")),  # NULL for client_credentials
    Column("scope", Text, nullable=False),
    Column("created_at", Time, nullable=False),
    Column("expires_at", Time, nullable=False),
    Column("revoked_at", Time),
    Column("revoked_reason", String(32)),  # a RevocationCause
    Column("resources", Text),  # JSON array: the RFC 8707 resources the grant holds
    # OpenID Connect: the browser session the grant came from (`sid`) and the sign-in's facts
    # its ID tokens repeat (JSON `SignIn`); NULL for a plain OAuth grant.
    Column("sid", String(64)),
    Column("sign_in", Text),
    Index("ix_grants_client_id", "client_id"),
    Index("ix_grants_user_id", "user_id"),
    Index("ix_grants_expires_at", "expires_at"),
    Index("ix_grants_revoked_at", "revoked_at"),
)

authorization_codes = Table(
    "authorization_codes",
    metadata,
    Column("digest", LargeBinary(32), primary_key=True),
    Column("client_id", String(CLIENT_ID_LENGTH), ForeignKey("clients.id"), nullable=False),
    Column("user_id", Id, ForeignKey("users.id"), nullable=False),
    Column("redirect_uri", Text),
    Column("scope", Text, nullable=False),
    Column("code_challenge", String(64)),
    Column("created_at", Time, nullable=False),
    Column("expires_at", Time, nullable=False),
    Column("used_at", Time),
    Column("grant_id", String(64), ForeignKey("grants.id")),
    Column("resources", Text),  # JSON array: the RFC 8707 resources the user consented to
    # OpenID Connect: the request's `nonce`, the session and the sign-in (as on `grants`).
    Column("nonce", Text),
    Column("sid", String(64)),
    Column("sign_in", Text),
    Index("ix_authorization_codes_expires_at", "expires_at"),
    # The purge deletes a dead grant's codes, and the grant's foreign key looks for them, by
    # grant: without it each dead grant scanned every code (migration 0012).
    Index("ix_authorization_codes_grant_id", "grant_id"),
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("digest", LargeBinary(32), nullable=False, unique=True),
    Column("grant_id", String(64), ForeignKey("grants.id"), nullable=False),
    # No foreign key (migration 0012): deleting a refresh token would look for its children by
    # `parent_id`, which has no index (one would cost every rotation a write), so the purge of
    # a dead family scanned the whole table once per token. A child is written only by the
    # rotation that exchanged its parent, and a family is purged whole.
    Column("parent_id", Id),
    Column("generation", Integer, nullable=False),
    Column("issued_at", Time, nullable=False),
    Column("expires_at", Time, nullable=False),
    Column("exchanged_at", Time),
    Column("retire_at", Time),
    Column("revoked_at", Time),
    Column("sealed_response", LargeBinary),
    # The ID token issued with the successor, sealed like it (migration 0009: apart from the
    # pair, which Baton 0.1.0 reads during a rolling upgrade).
    Column("sealed_id_token", LargeBinary),
    # Under `fork`, the one child of this token whose chain continued (the first sibling that
    # was itself refreshed); any other sibling refreshed later is reuse.
    Column("continued_id", Id),
    # The `exp` of its companion access token (migration 0011; NULL in older rows): a refresh
    # after it is counted as a late refresh (`baton.core.signals`).
    Column("access_expires_at", Time),
    # When a retry inside its leeway first got a sibling pair (`fork`, migration 0011): its
    # children are one family of which at most one chain continues (rule 3b), whatever policy
    # the client has when they are refreshed. NULL: never forked from.
    Column("forked_at", Time),
    # A grant's family (the console, the purge) and the access tokens that may outlive its
    # revocation, found through their companions (see `baton.store.sql.lifecycle.revoke_grant`):
    # an access token never outlives its companion, so only refresh tokens not yet expired count.
    Index("ix_refresh_tokens_grant_id_expires_at", "grant_id", "expires_at"),
    # The purge of seals past their leeway scans only rows that still hold one.
    Index(
        "ix_refresh_tokens_sealed_retire_at",
        "retire_at",
        sqlite_where=text("sealed_response IS NOT NULL"),
        postgresql_where=text("sealed_response IS NOT NULL"),
    ),
)

access_tokens = Table(
    "access_tokens",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("digest", LargeBinary(32), nullable=False, unique=True),
    # No foreign key (migration 0012): deleting a grant would look for its access tokens by
    # grant, which only the unpaired ones are indexed by (below), so the purge scanned every
    # access token once per dead grant. An access token is written with its grant live (in the
    # grant's own transaction, or under the claim that finds it live), and purged before it.
    Column("grant_id", String(64), nullable=False),
    # The companion refresh token, issued in the same response; NULL for client_credentials.
    Column("refresh_token_id", Id, ForeignKey("refresh_tokens.id")),
    Column("generation", Integer, nullable=False),
    Column("scope", Text, nullable=False),
    Column("issued_at", Time, nullable=False),
    Column("expires_at", Time, nullable=False),
    Column("revoked_at", Time),
    # RFC 9068 `jti`: names the token in the revocation feed, whatever its format. 96 random
    # bits (RFC 7519 §4.1.7: a negligible probability of reuse) and never looked up, so it has
    # no index: a unique one cost every rotation a random B-tree insert (migration 0004).
    Column("jti", String(32)),
    Column("audience", Text),  # RFC 8707 resource indicator, when one was requested
    # Both lookups by owner also name `expires_at` (a grant's last expiry for the revocation
    # feed, a companion that outlives its death): in one index with the owner, so PostgreSQL's
    # planner never serves them from the `expires_at` index instead (migration 0004).
    # Each index below holds the rows the other leaves out, so a lookup of the ones without a
    # companion is never served from the companion's index (as "refresh_token_id IS NULL").
    Index(
        "ix_access_tokens_refresh_token_id_expires_at",
        "refresh_token_id",
        "expires_at",
        sqlite_where=text("refresh_token_id IS NOT NULL"),
        postgresql_where=text("refresh_token_id IS NOT NULL"),
    ),
    # By grant, only the access tokens without a companion (client_credentials); the others are
    # found through their companion refresh tokens. An index of every access token by grant
    # cost each rotation one more write at a random place in a B-tree (migration 0005).
    Index(
        "ix_access_tokens_unpaired_grant_id_expires_at",
        "grant_id",
        "expires_at",
        sqlite_where=text("refresh_token_id IS NULL"),
        postgresql_where=text("refresh_token_id IS NULL"),
    ),
    Index("ix_access_tokens_expires_at", "expires_at"),
)

security_events = Table(
    "security_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),  # a SecurityEventKind
    Column("grant_id", String(64)),
    Column("client_id", String(CLIENT_ID_LENGTH)),
    Column("subject", String(200)),
    Column("generation", Integer),
    Column("occurred_at", Time, nullable=False),
    Column("source_address", String(64)),
    Column("detail", Text),
    Index("ix_security_events_grant_id", "grant_id"),
)

# What integrations do that a stricter policy would break (`baton.core.signals`), counted per
# process and written in batches: one row per client, kind, reason, source and grant for each
# flush that saw any. `delays` is a JSON object {seconds: count} (`signals.delay_bucket`), so the
# report's percentiles are exact in a leeway's range. Never a token: ids and counts only.
client_signals = Table(
    "client_signals",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("client_id", String(CLIENT_ID_LENGTH), nullable=False),
    Column("kind", String(32), nullable=False),  # a SignalKind
    # '' rather than NULL in the row's key (`reason`, `grant_id`): NULLs are distinct in a
    # unique index, and a flush merges into the row of its key (`ux_client_signals_key`).
    Column("reason", String(32), nullable=False, server_default=""),  # a Refusal, or ''
    Column("source", String(16), nullable=False),  # a signals.Source
    # Only a `would_refuse` row names its grant (the share of grants a change would break);
    # the other kinds are counted per client, so their rows do not grow with the grants.
    Column("grant_id", String(64), nullable=False, server_default=""),
    Column("bucket", Time, nullable=False),  # the hour (Unix seconds) the row counts
    Column("first_at", Time, nullable=False),
    Column("last_at", Time, nullable=False),
    Column("count", Integer, nullable=False),
    Column("delays", Text),
    Index(
        "ux_client_signals_key",
        "client_id",
        "kind",
        "reason",
        "source",
        "grant_id",
        "bucket",
        unique=True,
    ),
    Index("ix_client_signals_client_id_last_at", "client_id", "last_at"),
    Index("ix_client_signals_last_at", "last_at"),
)

# Browser sessions, held server-side: the cookie carries a random id, the row its digest, so a
# read of the database cannot forge a session, and ending a row ends the session at once.
sessions = Table(
    "sessions",
    metadata,
    Column("digest", LargeBinary(32), primary_key=True),
    Column("user_id", Id, ForeignKey("users.id"), nullable=False),
    Column("created_at", Time, nullable=False),  # the sign-in: OIDC's auth_time
    Column("expires_at", Time, nullable=False),
    Column("ended_at", Time),  # sign-out, or "sign out everywhere"
    Column("source_address", String(64)),
    # OpenID Connect: the session's public id (`sid` of its ID tokens and logout tokens; the
    # cookie's secret never leaves the browser) and how the user signed in (`acr`, `amr`).
    Column("sid", String(64)),
    Column("acr", String(64)),
    Column("amr", Text),  # JSON array
    Index("ix_sessions_user_id", "user_id"),
    Index("ix_sessions_sid", "sid"),
    Index("ix_sessions_expires_at", "expires_at"),
)

server_secrets = Table(
    "server_secrets",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", LargeBinary, nullable=False),
)

# The revocation feed's outbox: written in the transaction that revokes (or schedules the death
# of) a token, so no event can be lost; read by every server process for /revocations.
revocation_events = Table(
    "revocation_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),  # a FeedEntryKind
    Column("grant_id", String(64), nullable=False),
    Column("jti", String(32)),
    Column("token_digest", LargeBinary(32)),
    Column("effective_at", Time, nullable=False),  # when the token(s) die
    Column("expires_at", Time, nullable=False),  # after this the entry no longer matters
    Column("created_at", Time, nullable=False),
    Index("ix_revocation_events_expires_at", "expires_at"),
)

# Signing keys for JWT access tokens (RFC 9068). A key is published in the JWKS from
# `created_at`, signs from `activates_at`, and leaves the JWKS at `retires_at`.
signing_keys = Table(
    "signing_keys",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("alg", String(16), nullable=False),
    Column("public_jwk", Text, nullable=False),
    Column("private_key", LargeBinary, nullable=False),  # PKCS#8, AES-GCM under the KEK
    Column("created_at", Time, nullable=False),
    Column("activates_at", Time, nullable=False),
    Column("retires_at", Time),
    # NULL: signs access tokens and ID tokens; "id_token": a key made for an ID token algorithm
    # no other key has, which never signs access tokens.
    Column("purpose", String(16)),
)

# Every action taken in the admin console, with who took it and when.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("actor", String(200), nullable=False),  # the admin's username
    Column("action", String(64), nullable=False),  # e.g. "client.create", "grant.revoke"
    Column("target_kind", String(32), nullable=False),
    Column("target_id", String(200), nullable=False),
    Column("detail", Text),  # JSON; never a secret
    Column("occurred_at", Time, nullable=False),
    Column("source_address", String(64)),
    Index("ix_audit_log_occurred_at", "occurred_at"),
)

# The webhook outbox: a row is written in the transaction that records the security event, so a
# delivery can be late but never lost; it is retried with backoff until the receiver takes it.
webhook_outbox = Table(
    "webhook_outbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("event_type", String(64), nullable=False),  # a WebhookEventType
    Column("payload", Text, nullable=False),  # JSON; never a token
    Column("created_at", Time, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Time, nullable=False),
    Column("delivered_at", Time),
    Column("last_error", Text),
    # NULL: the configured webhook; else a client's back-channel logout URI (OIDC Back-Channel
    # Logout 1.0), the payload then holding the logout token's claims.
    Column("destination", Text),
    Index(
        "ix_webhook_outbox_pending",
        "next_attempt_at",
        sqlite_where=text("delivered_at IS NULL"),
        postgresql_where=text("delivered_at IS NULL"),
    ),
)


# A login or consent decision handed to the product's own app (`--login-url`, `--consent-url`):
# the challenge (its SHA-256 digest here) names the authorization request; the app fetches it and
# accepts or rejects it over the admin API; the browser comes back to /authorize with the
# verifier that the decision issued. Bound to the browser that started it (`browser`, the digest
# of a cookie's value), single use (`used_at`) and short-lived (`expires_at`).
auth_challenges = Table(
    "auth_challenges",
    metadata,
    Column("digest", LargeBinary(32), primary_key=True),
    Column("kind", String(16), nullable=False),  # "login" or "consent"
    Column("client_id", String(CLIENT_ID_LENGTH), ForeignKey("clients.id"), nullable=False),
    Column("browser", LargeBinary(32), nullable=False),
    Column("request", Text, nullable=False),  # JSON: the authorization request, as carried
    Column("user_id", Id, ForeignKey("users.id")),  # consent: who is asked
    Column("created_at", Time, nullable=False),
    Column("expires_at", Time, nullable=False),
    Column("decided_at", Time),  # accepted or rejected
    Column("outcome", Text),  # JSON: what was accepted, or the OAuth error of a rejection
    Column("verifier", LargeBinary(32)),  # digest of the verifier the decision handed out
    Column("used_at", Time),  # the verifier came back to /authorize
    Index(
        "ix_auth_challenges_verifier",
        "verifier",
        unique=True,
        sqlite_where=text("verifier IS NOT NULL"),
        postgresql_where=text("verifier IS NOT NULL"),
    ),
    Index("ix_auth_challenges_expires_at", "expires_at"),
)

# Upstream OpenID Connect providers ("Sign in with ..."), and which upstream account is which
# local user: linked by the upstream's stable `sub`, never by e-mail alone.
upstream_providers = Table(
    "upstream_providers",
    metadata,
    Column("id", String(64), primary_key=True),  # a short name: the callback's path segment
    Column("name", String(200), nullable=False),  # shown on the login page
    Column("issuer", Text, nullable=False),
    Column("client_id", Text, nullable=False),
    Column("client_secret", Text),  # sealed with the key-encryption key; NULL: a public client
    Column("scope", Text, nullable=False),
    Column("link_by_email", Boolean, nullable=False, server_default=false()),
    Column("create_users", Boolean, nullable=False, server_default=false()),
    Column("created_at", Time, nullable=False),
    Column("disabled_at", Time),
)
upstream_links = Table(
    "upstream_links",
    metadata,
    Column("provider_id", String(64), ForeignKey("upstream_providers.id"), primary_key=True),
    Column("subject", String(255), primary_key=True),  # the upstream's `sub`
    Column("user_id", Id, ForeignKey("users.id"), nullable=False),
    Column("created_at", Time, nullable=False),
    Column("last_used_at", Time),
    Column("email", String(320)),  # as the upstream said at the last sign-in, for the console
    Index("ix_upstream_links_user_id", "user_id"),
)

# TOTP recovery codes: each a SHA-256 digest, good once.
recovery_codes = Table(
    "recovery_codes",
    metadata,
    Column("digest", LargeBinary(32), primary_key=True),
    Column("user_id", Id, ForeignKey("users.id"), nullable=False),
    Column("created_at", Time, nullable=False),
    Column("used_at", Time),
    Index("ix_recovery_codes_user_id", "user_id"),
)

# Each scope's human description, shown on the consent page (`baton scope describe`).
scopes = Table(
    "scopes",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("description", Text, nullable=False),
    Column("updated_at", Time, nullable=False),
)

# The `jti` of each client assertion accepted (RFC 7523 §3 item 7: "The authorization server
# MAY ensure that JWTs are not replayed by maintaining the set of used "jti" values for the
# length of time for which the JWT would be considered valid"), as the SHA-256 of client id and
# jti, kept until the assertion's `exp`; `private_key_jwt` refuses one seen before.
client_assertions = Table(
    "client_assertions",
    metadata,
    Column("digest", LargeBinary(32), primary_key=True),
    Column("expires_at", Time, nullable=False),
    Index("ix_client_assertions_expires_at", "expires_at"),
)

"""The store's vocabulary: the values its callers give it and get back, and its errors.

What each caller asks of the store is declared next to that caller, as a small protocol (the
token endpoint's `TokenLifecycle` in `baton.server.endpoints.stores`, webhook delivery's
`Outbox`, the metrics' `Stats`, the console's `AdminQueries`...); `baton.store.sql.SQLStore`
implements them all. These types are what both sides share.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from baton.core.challenges import State, state_at
from baton.core.client_policy import NO_POLICY, ClientPolicy
from baton.core.facts import AccessFacts, GrantFacts, RefreshFacts, SignIn
from baton.core.pairs import IssuedPair, MintedPair
from baton.core.policy import Policy
from baton.core.rules import CodeProblem, Reason
from baton.core.signals import Signal
from baton.core.watermark import Gap

# A client id is an operator's short name, a generated id, or (client ID metadata documents) an
# https URL. 64 until a release can widen it: changing a column's type invalidates the cached
# statement plans of a release still running (a rolling upgrade's 500s), so the widening waits
# for a release that retries such a unit of work (`baton.store.engines.postgresql`) to be the
# one running. A metadata document's URL longer than this is refused, with a clear error.
CLIENT_ID_LENGTH = 64


class RegisteredVia(StrEnum):
    """How a client no operator registered came to be (`clients.registered_via`)."""

    DYNAMIC = "dynamic"  # RFC 7591 dynamic client registration (/register)
    DOCUMENT = "document"  # a client ID metadata document: its https URL is the client id


@dataclass(frozen=True, slots=True)
class Client:
    id: str
    name: str
    secret_digest: bytes | None = field(repr=False)
    is_public: bool
    is_resource_server: bool
    redirect_uris: tuple[str, ...]
    scope: str
    created_at: int
    disabled_at: int | None = None
    # RFC 8707: a resource server's identifier URI; the resources this client may ask for.
    resource_uri: str | None = None
    allowed_resources: tuple[str, ...] = ()
    # Honour remembered consent for this public client (RFC 8252 §8.6: an operator's choice).
    remember_consent: bool = False
    # OAuth 2.1: PKCE required (new clients); an operator may opt a confidential client out.
    require_pkce: bool = True
    # OpenID Connect (Registration §2, RP-Initiated Logout §3.1, Back-Channel Logout §2.2).
    id_token_signed_response_alg: str = "RS256"
    subject_type: str = "public"  # or "pairwise" (Core §8.1)
    sector_identifier_uri: str | None = None
    post_logout_redirect_uris: tuple[str, ...] = ()
    backchannel_logout_uri: str | None = None
    backchannel_logout_session_required: bool = False
    require_nonce: bool = False  # refuse an `openid` request without a `nonce`
    # CORS: browser origins allowed to call the token endpoints; None: the redirect URIs'.
    allowed_origins: tuple[str, ...] | None = None
    # This client's own login and consent apps (None: the server's, else the built-in pages),
    # and its homepage (OIDC Registration `client_uri`), named on the consent page.
    login_url: str | None = None
    consent_url: str | None = None
    client_uri: str | None = None
    # Deleted (`baton client delete`): disabled for good, never enabled or given a secret again.
    deleted_at: int | None = None
    # A client no operator registered (`RegisteredVia`): RFC 7591 dynamic registration, or a
    # client ID metadata document (the id is the document's URL); None for an operator's.
    registered_via: str | None = None
    # Its client metadata as registered or fetched (RFC 7591 §2: `contacts`, `logo_uri`,
    # `application_type`, `tos_uri`, `policy_uri`, `software_id`, ...), shown and served back.
    registration: Mapping[str, Any] = field(default_factory=dict, hash=False)
    # When a metadata document's cached copy must be fetched again (None: not a document).
    document_expires_at: int | None = None
    # RFC 7591 §2 `grant_types` the client may use (None: every grant its type allows), its
    # `token_endpoint_auth_method` (None: `none` if public, else a client secret), and the
    # `jwks_uri` whose keys sign its `private_key_jwt` assertions (RFC 7523).
    grant_types: tuple[str, ...] | None = None
    token_endpoint_auth_method: str | None = None
    jwks_uri: str | None = None
    # Its own policy over the server's, with any change scheduled (`baton.core.client_policy`;
    # issue 28), and whom to tell about one: the integrator's e-mail `contacts` and the
    # `notify_url` signed notices are POSTed to (through the outbox).
    policy: ClientPolicy = NO_POLICY
    contacts: tuple[str, ...] = ()
    notify_url: str | None = None

    @property
    def loopback_by_name(self) -> bool:
        """A native app no operator registered: its `http://localhost` redirect URIs are
        accepted and matched on any port (`baton.core.redirects`: what MCP clients register)."""
        return (
            self.registered_via is not None
            and self.registration.get("application_type") == "native"
        )


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    password_hash: str = field(repr=False)
    is_admin: bool
    # OpenID Connect standard claims (Core §5.1): `email`, `email_verified`, and the `profile`
    # scope's members that are set (`name`, `given_name`, `locale`, ...); `updated_at` is when
    # any of them last changed.
    email: str | None = None
    email_verified: bool = False
    profile: dict[str, Any] = field(default_factory=dict, hash=False)
    updated_at: int | None = None
    # A disabled user cannot sign in, and their grants and sessions ended when disabled.
    disabled_at: int | None = None
    password_changed_at: int | None = None
    # A second factor: enrolled (a TOTP secret is set), and required of this user.
    totp_enabled: bool = False
    mfa_required: bool = False
    # Deleted (disabled too): the personal data is erased, but the row and its username stay,
    # so the name (a public `sub`) is never given to another user (OIDC Core §2).
    deleted_at: int | None = None


@dataclass(frozen=True, slots=True)
class Consent:
    """A user's recorded decision to let a client have `scope` at `resources` (RFC 8707): the
    last request the user allowed for that client. Nothing else counts as consent."""

    scope: frozenset[str]
    resources: frozenset[str]
    # A consent app's `remember_for`: the decision counts until then (None: until revoked).
    expires_at: int | None = None
    # A consent app's claims (`{"id_token": {...}, "userinfo": {...}}`), given again when this
    # remembered decision answers a later request; empty for the built-in page's.
    claims: dict[str, Any] = field(default_factory=dict, hash=False, compare=True)

    def covers(
        self, scope: frozenset[str], resources: tuple[str, ...], now: int | None = None
    ) -> bool:
        """The user already allowed all of this: its scope and its resources alike, and (at
        `now`) the decision has not expired."""
        if now is not None and self.expires_at is not None and now >= self.expires_at:
            return False
        return scope <= self.scope and self.resources.issuperset(resources)


@dataclass(frozen=True, slots=True)
class NewCode:
    digest: bytes = field(repr=False)
    client_id: str
    user_id: int
    redirect_uri: str | None
    scope: str
    code_challenge: str | None
    created_at: int
    expires_at: int
    resources: tuple[str, ...] = ()  # RFC 8707 resources the user consented to for this code
    # OpenID Connect: the request's `nonce`, the browser session's `sid` and the sign-in.
    nonce: str | None = None
    sid: str | None = None
    sign_in: SignIn | None = None
    # Record the client's first use (`clients.used_at`): only a dynamic registration's is read
    # (its expiry when unused), so the code of any other client skips that UPDATE.
    note_use: bool = True


@dataclass(frozen=True, slots=True)
class SecurityEvent:
    id: int
    kind: str  # a `SecurityEventKind`, as stored
    grant_id: str | None
    client_id: str | None
    subject: str | None
    generation: int | None
    occurred_at: int
    source_address: str | None
    detail: str | None


@dataclass(frozen=True, slots=True)
class GrantSummary:
    grant: GrantFacts
    generations: int  # refresh tokens issued so far
    last_issued_at: int | None


@dataclass(frozen=True, slots=True)
class RevocationEvent:
    """An entry of the revocation feed: which tokens die, when, and until when it matters."""

    id: int
    kind: str  # a `FeedEntryKind`, as stored: one access token, or every token of the grant
    grant_id: str
    jti: str | None
    token_digest: bytes | None
    effective_at: int
    expires_at: int
    created_at: int


class ClientDisabled(Exception):
    """The client was disabled after the request authenticated and before the store call that
    would have given it a new grant: nothing was done (the caller answers `invalid_client`)."""


class ResourceUriTaken(Exception):
    """Another client is already registered with this resource URI."""


class UserExists(Exception):
    """A user with this name exists already."""


class UsernameOfDeletedUser(UserExists):
    """The name belonged to a user who was deleted: it is never given to another user, as the
    `sub` derived from it is never reassigned (OIDC Core §2)."""


@dataclass(frozen=True, slots=True)
class FeedRead:
    """One look at the revocation feed (see `baton.core.watermark`): the events read after a cursor
    (at most the limit), with those that filled a gap given in, oldest first; the largest id
    read; the gaps at or below it that may still fill; whether the limit was reached."""

    events: list[RevocationEvent]
    read_to: int
    gaps: list[Gap]
    full: bool


Sealer = Callable[[bytes], bytes]
"""Seals a child pair (`IssuedPair.seal_payload`) and its ID token under a key only the
presented refresh token can derive (`baton.core.seal.sealer`)."""


@dataclass(frozen=True, slots=True)
class SignalCount:
    """One row of `client_signals`: the signals of one client, kind, reason, source and grant
    counted by one process between two flushes (`baton.server.runtime.signals`)."""

    client_id: str
    kind: str  # a `baton.core.signals.SignalKind`
    reason: str | None  # a `Refusal`, for `would_refuse`
    source: str  # a `baton.core.signals.Source`
    grant_id: str | None
    first_at: int
    last_at: int
    count: int
    delays: Mapping[int, int] = field(default_factory=dict, hash=False)  # {seconds: count}


@dataclass(frozen=True, slots=True)
class ExchangeAsk:
    """A refresh request, as far as the store needs it."""

    digest: bytes = field(repr=False)
    client_id: str
    scope: frozenset[str] | None  # a narrower scope for the new access token (RFC 6749 §6)
    now: int
    source_address: str | None
    # The pair to issue; its `resources` (RFC 8707) narrow the grant's, checked in the exchange.
    child: MintedPair
    seal: Sealer | None  # present under the `replay` policy
    # The client as it authenticated the request, when that was from the process's cache: the
    # exchange first confirms the client's row is unchanged (see `ClientChanged`).
    client: Client | None = None
    # The client's policy in force at `now` (`ClientPolicy.at`; issue 28), which decides the
    # exchange, the leeway it promises and the new pair's lifetimes; None: the store's own (a
    # caller that knows no client policy). `shadow`: the client's report-only policy, evaluated
    # beside it for the signals only (`baton.core.signals.exchange_signals`).
    policy: Policy | None = None
    shadow: Policy | None = None


@dataclass(frozen=True, slots=True)
class Issued:
    pair: IssuedPair
    retry: bool = False  # a sibling pair for a retry in the leeway (`fork`), not a rotation
    # The refresh token was kept, not exchanged (`Policy.rotate` False): `pair.refresh_token`
    # is None (the store never holds its plaintext) and the caller answers with the presented
    # one; `pair.refresh_expires_at` is its new (slid) idle expiry.
    kept: bool = False
    # What the exchange says about the client's integration (`baton.core.signals`), for the
    # caller to note (`SignalBook.note`); never written in the exchange's transaction, and no
    # part of the outcome (not compared).
    signals: tuple[Signal, ...] = field(default=(), compare=False)


@dataclass(frozen=True, slots=True)
class Replayed:
    sealed_response: bytes = field(repr=False)
    sealed_id_token: bytes | None = field(default=None, repr=False)
    signals: tuple[Signal, ...] = field(default=(), compare=False)


@dataclass(frozen=True, slots=True)
class Refused:
    reason: Reason
    revoked_grant: bool = False  # this refusal (a reuse) revoked the grant
    signals: tuple[Signal, ...] = field(default=(), compare=False)


@dataclass(frozen=True, slots=True)
class ScopeRefused:
    """The requested scope exceeds what the grant holds."""


@dataclass(frozen=True, slots=True)
class TargetRefused:
    """A `resource` the request named is not one the grant holds (RFC 8707 §2: `invalid_target`):
    a token is for the grant's resources or fewer, never more (RFC 9700 §2.3). Nothing was done."""


TARGET_REFUSED = TargetRefused()


@dataclass(frozen=True, slots=True)
class ClientChanged:
    """The client's row is no longer the one that authenticated the request: its secret was
    rotated, it was disabled, or it changed kind. Nothing was done; the caller authenticates the
    request again on a fresh read and asks again.

    A store call given the client a request authenticated as (`ExchangeAsk.client`,
    `SQLStore.find_token`, `SQLStore.revoke_token`) reads that client's row before it does anything,
    in the transaction of a write (in the statement that reads the token it asks about), and
    compares its secret digest, kind and `disabled_at` with the client's. That is what lets a
    server process authenticate against the clients it has cached and still refuse a client
    disabled, or a secret rotated, in any process, for every request that reaches the store
    after that change committed. (A request whose store call read the row just before the change
    committed is done, as it was when each request read the client first and worked after.)"""


CLIENT_CHANGED = ClientChanged()

ExchangeResult = Issued | Replayed | Refused | ScopeRefused | TargetRefused | ClientChanged


@dataclass(frozen=True, slots=True)
class CodeRefused:
    problem: CodeProblem
    revoked_grant: bool = False  # this refusal (a used code) revoked the grant it produced


RedeemResult = Issued | CodeRefused | TargetRefused


RevokeResult = Literal["grant", "access_token", "other_client", "nothing"]
"""What a revocation did; RFC 7009 answers 200 in every case but `other_client` (nothing was
done: the token is another client's, and §2.1 has the request refused)."""

TokenFacts = AccessFacts | RefreshFacts


NEVER = 2**62
"""`next_attempt_at` of a webhook outbox row whose delivery was given up."""


@dataclass(frozen=True, slots=True)
class SignedOut:
    """What a sign-out at the provider did (`baton.store.sql.logout`): sessions ended, grants
    revoked and kept (`offline_access`), clients sent a back-channel logout token."""

    sessions: int = 0
    revoked: tuple[str, ...] = ()  # grant ids
    kept: tuple[str, ...] = ()  # grant ids holding offline_access
    told: tuple[str, ...] = ()  # client ids


@dataclass(frozen=True, slots=True)
class Delivery:
    """A webhook outbox row leased to its sender (`Outbox.claim_deliveries`)."""

    id: int
    event_type: str  # a `WebhookEventType`, as stored
    payload: str
    attempts: int  # including the one now leased
    created_at: int
    # None: the configured webhook; else a client's back-channel logout URI, the payload then
    # the logout token's stored claims (signed at delivery).
    destination: str | None = None


# -- login and consent challenges (`baton.store.sql.challenges`) --------------------------------


@dataclass(frozen=True, slots=True)
class Challenge:
    """A challenge as stored: the request it carries and its decision, if any, as JSON."""

    digest: bytes
    kind: str
    client_id: str
    browser: bytes
    request: dict[str, Any]
    user_id: int | None
    created_at: int
    expires_at: int
    decided_at: int | None
    outcome: dict[str, Any] | None
    used_at: int | None

    def state(self, now: int) -> State:
        return state_at(self.expires_at, self.decided_at, self.used_at, now)


# A consent accept's `remember`: scope, resources, expiry (None: until revoked), the app's
# claims (`{"id_token": {...}, "userinfo": {...}}`).
Remembered = tuple[frozenset[str], tuple[str, ...], int | None, dict[str, Any]]
# Why a decision was not recorded (the API's 404, 409, 410), or a login accept refused (409).
ChallengeRefused = Literal[
    "unknown", "decided", "expired", "user_disabled", "user_deleted", "subject_not_delegated"
]
# Why a verifier was not honoured.
NotHonoured = Literal["unknown", "used", "expired", "browser", "kind", "client"]


# -- the second factor (`baton.store.sql.mfa`) and upstream providers (`baton.store.sql.upstream`)


@dataclass(frozen=True, slots=True)
class MfaState:
    """A user's second factor as the store holds it."""

    sealed_secret: str | None  # `baton.core.totp.seal_secret`'s text; None: not enrolled
    last_step: int | None
    recovery_codes_left: int


class UpstreamExists(Exception):
    """An upstream provider of that id is already configured."""

"""The words Baton stores, sends and counts, each declared once.

Security event kinds, webhook event types, revocation causes, revocation feed entry kinds and
OAuth error codes are written to the database, sent on the wire, in webhooks and as metric
labels. Each vocabulary is a `StrEnum` whose values are those exact strings, so a member can be
written wherever its string was (a member *is* a `str` equal to its value) and a misspelt member
fails at import or under mypy, where a misspelt string would have been stored silently.
`tests/core/test_vocabulary.py` pins each value to the schema, the docs and the RFCs, so a
renamed value fails loudly instead of changing what is stored or sent.

The refusal reasons of the rules (`rules.Reason`, `rules.CodeProblem`) live beside the rules
that decide them; they are `error_description` texts, not codes.
"""

from __future__ import annotations

from enum import StrEnum


class SecurityEventKind(StrEnum):
    """`security_events.kind`: what the console lists and the timeline marks."""

    REFRESH_TOKEN_REUSE = "refresh_token_reuse"  # an exchanged refresh token after its leeway
    CODE_REUSE = "code_reuse"  # an authorization code presented again (RFC 6749 §4.1.2)
    LOGIN_LOCKOUT = "login_lockout"  # sign-in closed after repeated failures
    LEEWAY_RETRY = "leeway_retry"  # an exchanged refresh token retried inside its leeway
    CLIENT_DISABLED = "client_disabled"  # an administrator disabled a client


REUSE_EVENT_KINDS = frozenset({SecurityEventKind.REFRESH_TOKEN_REUSE, SecurityEventKind.CODE_REUSE})
"""The security events that are a reuse detection, each announced by a `reuse_detected` webhook."""


class WebhookEventType(StrEnum):
    """`webhook_outbox.event_type`: the `type` of a webhook's body and its `Baton-Event-Type`."""

    REUSE_DETECTED = "reuse_detected"
    GRANT_REVOKED = "grant.revoked"


class RevocationCause(StrEnum):
    """`grants.revoked_reason`: why a grant was revoked (the `reason` of `grant.revoked`)."""

    REUSE = "reuse"  # reuse detection (rules 3b and 4)
    CODE_REUSE = "code_reuse"  # the grant's authorization code was replayed
    REVOKED = "revoked"  # its client's own revocation (RFC 7009)
    ADMIN = "admin"  # an administrator (`baton grants revoke`, the console)
    CLIENT_DISABLED = "client_disabled"  # its client was disabled
    # The user signed out at the provider (RP-Initiated Logout, `/logout`, "sign out
    # everywhere"): the session's grants without `offline_access` end with it (OIDC Core §11).
    LOGOUT = "logout"

    @property
    def metric_label(self) -> str:
        """The `cause` label of `baton_revocations_total`: the same word, except `rfc7009` for a
        client's own revocation (docs/observability.md's metrics table)."""
        return "rfc7009" if self is RevocationCause.REVOKED else self.value


REUSE_CAUSES = frozenset({RevocationCause.REUSE, RevocationCause.CODE_REUSE})
"""The causes that are a reuse detection: shown in red by the console."""

BACKCHANNEL_CAUSES = frozenset(
    {RevocationCause.REUSE, RevocationCause.CODE_REUSE, RevocationCause.ADMIN}
)
"""The causes whose revocation of an OpenID Connect grant tells its relying party at once with
a back-channel logout token (the logout itself sends its own; a client revoking its own token,
RFC 7009, knows already)."""

BACKCHANNEL_LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
"""The logout token's event (Back-Channel Logout 1.0 §2.4), and the `event_type` of its outbox
row, which is sent to the client's `backchannel_logout_uri` rather than the webhook."""


class PolicyNoticeEvent(StrEnum):
    """A notice to a client's `notify_url` (issue 28): the `event` claim of the signed notice
    and the `webhook_outbox.event_type` of its row, which is sent to that URL, never the
    webhook."""

    SCHEDULED = "policy.scheduled"  # a change of the client's policy was scheduled (or applied)
    CANCELLED = "policy.cancelled"  # the change that was scheduled will not happen


POLICY_NOTICE_TYPE = "baton-policy-notice+jwt"
"""The JWS header `typ` of a policy notice (RFC 8725 §3.11: explicit typing, so the notice can
never pass for an access token, an ID token or a logout token)."""


class FeedEntryKind(StrEnum):
    """`revocation_events.kind`: what one entry of the revocation feed kills (the `what` label of
    `baton_revocations_total`)."""

    ACCESS_TOKEN = "access_token"  # one access token
    GRANT = "grant"  # every token of the grant


class ErrorCode(StrEnum):
    """The `error` of an OAuth error response, as the RFCs spell it.

    RFC 6749 §5.2 (token endpoint) and §4.1.2.1 (authorization redirects), RFC 6750 §3.1
    (bearer-token challenges), RFC 7009 §2.2.1 (revocation), RFC 8707 §2 (resource
    indicators), RFC 7591 §3.2.2 (client registration) and OpenID Connect Core §3.1.2.6
    (authentication requests), plus `too_many_requests`, Baton's own answer to a rate limit
    (with a 429).
    """

    # RFC 6749 §5.2
    INVALID_REQUEST = "invalid_request"
    INVALID_CLIENT = "invalid_client"
    INVALID_GRANT = "invalid_grant"
    UNAUTHORIZED_CLIENT = "unauthorized_client"
    UNSUPPORTED_GRANT_TYPE = "unsupported_grant_type"
    INVALID_SCOPE = "invalid_scope"
    # RFC 6749 §4.1.2.1 (and server_error for any response)
    ACCESS_DENIED = "access_denied"
    UNSUPPORTED_RESPONSE_TYPE = "unsupported_response_type"
    SERVER_ERROR = "server_error"
    TEMPORARILY_UNAVAILABLE = "temporarily_unavailable"
    # RFC 6750 §3.1
    INVALID_TOKEN = "invalid_token"
    INSUFFICIENT_SCOPE = "insufficient_scope"
    # RFC 7009 §2.2.1
    UNSUPPORTED_TOKEN_TYPE = "unsupported_token_type"
    # RFC 8707 §2
    INVALID_TARGET = "invalid_target"
    # RFC 7591 §3.2.2 (dynamic client registration)
    INVALID_REDIRECT_URI = "invalid_redirect_uri"
    INVALID_CLIENT_METADATA = "invalid_client_metadata"
    # Baton's own: a rate limit (429 with Retry-After)
    TOO_MANY_REQUESTS = "too_many_requests"
    # OpenID Connect Core §3.1.2.6, the authentication request's redirects (Baton's own pages
    # never need `account_selection_required` nor `interaction_required`: a browser holds one
    # session; a login or consent app's rejection may send them, `baton.core.challenges`)
    LOGIN_REQUIRED = "login_required"
    CONSENT_REQUIRED = "consent_required"
    INTERACTION_REQUIRED = "interaction_required"
    ACCOUNT_SELECTION_REQUIRED = "account_selection_required"
    REQUEST_NOT_SUPPORTED = "request_not_supported"
    REQUEST_URI_NOT_SUPPORTED = "request_uri_not_supported"
    REGISTRATION_NOT_SUPPORTED = "registration_not_supported"


__all__ = [
    "BACKCHANNEL_CAUSES",
    "BACKCHANNEL_LOGOUT_EVENT",
    "POLICY_NOTICE_TYPE",
    "REUSE_CAUSES",
    "REUSE_EVENT_KINDS",
    "ErrorCode",
    "FeedEntryKind",
    "PolicyNoticeEvent",
    "RevocationCause",
    "SecurityEventKind",
    "WebhookEventType",
]

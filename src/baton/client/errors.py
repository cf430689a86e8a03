"""The exceptions the SDK raises."""

from __future__ import annotations


class ClientError(Exception):
    """Base class of every error raised by `baton.client`."""


class ReauthorizationRequired(ClientError):
    """The session is over: the user must authorize the client again.

    `reason` is the server's `error_description` when it gave one (Baton names the rule that
    fired, e.g. reuse detection), otherwise what the SDK saw. `error` is the server's error code
    (`invalid_grant`); None when the SDK itself ended the session: a token response was lost and
    the refresh token can no longer be retried without being taken for reuse.
    """

    def __init__(self, reason: str, error: str | None = None) -> None:
        super().__init__(f"reauthorization required: {reason}")
        self.reason = reason
        self.error = error


class TokenEndpointError(ClientError):
    """The token endpoint refused the request for a reason other than the grant (e.g.
    `invalid_client`), or kept failing until the retry window closed."""

    def __init__(self, message: str, error: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.error = error
        self.status = status


class AuthorizationServerUnavailable(TokenEndpointError):
    """The authorization server could not be reached, or said it could not process the refresh
    (503 `temporarily_unavailable`): the refresh token was never used, the stored pair is
    unchanged (no tombstone), and a later call may try again. Nothing for the user to do: it is
    an outage, not the end of the session."""


class LockLost(ClientError):
    """A store's lease expired (or was taken over) before the holder wrote: its write is refused
    (fencing), so a stale holder can never overwrite a newer pair."""


class AuthorizationFlowError(ClientError):
    """The authorization response was an error, or did not match the request (state, issuer)."""

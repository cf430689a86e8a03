"""The rotation rules, as pure functions from facts and an instant to a decision.

Rule numbers refer to the core issue (docs/lifecycle.md). The store applies a decision
inside the same transaction that read the facts, so a decision is never taken on stale state.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from baton.core.facts import AccessFacts, CodeFacts, RefreshFacts
from baton.core.pkce import verify_s256
from baton.core.policy import Policy, RetryPolicy
from baton.core.vocabulary import RevocationCause


class Reason(StrEnum):
    """Why a token was refused; the value is the `error_description` a client sees (rule 9)."""

    UNKNOWN = "unknown refresh token"
    IDLE_EXPIRED = "refresh token expired: idle lifetime exceeded"
    ABSOLUTE_EXPIRED = "refresh token expired: the grant reached its absolute lifetime"
    REVOKED = "refresh token was revoked"
    REUSED = (
        "refresh token was reused after its leeway: the grant has been revoked (reuse detected)"
    )
    SIBLING_CONTINUED = (
        "refresh token was reused: a sibling pair issued from the same token was refreshed "
        "first; the grant has been revoked (reuse detected)"
    )
    RETRY_AFTER_CONTINUED = (
        "refresh token was reused after a pair issued from it was refreshed: the grant has "
        "been revoked (reuse detected)"
    )
    GRANT_REVOKED_BY_REUSE = (
        "refresh token was revoked: its grant was revoked after reuse was detected"
    )


# -- refresh (rules 2, 3, 4, 6, 7) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rotate:
    """Rule 2: an active token is exchanged for a child pair.

    `continues`: under `fork`, the parent whose continuation this exchange claims (rule 3b):
    the store sets the parent's `continued_id` to this token with a conditional update in the
    same transaction, and decides again if another sibling claimed it first.
    """

    continues: int | None = None


@dataclass(frozen=True, slots=True)
class Replay:
    """Rule 3, `replay`: the child pair sealed at the exchange is returned again."""

    sealed_response: bytes
    sealed_id_token: bytes | None = None


@dataclass(frozen=True, slots=True)
class Fork:
    """Rule 3, `fork`: a fresh sibling pair is issued."""


@dataclass(frozen=True, slots=True)
class Reuse:
    """Rule 4 (and 3b): a token that can no longer be honoured; the whole grant dies."""

    reason: Reason = Reason.REUSED


@dataclass(frozen=True, slots=True)
class Reject:
    reason: Reason


RefreshDecision = Rotate | Replay | Fork | Reuse | Reject


def decide_refresh(
    token: RefreshFacts | None, client_id: str, now: int, policy: Policy
) -> RefreshDecision:
    """What presenting `token` at `now` gets, under `policy`: the client's policy in force at
    `now` (`ClientPolicy.at`), decided per exchange."""
    if token is None:
        return Reject(Reason.UNKNOWN)
    grant = token.grant
    # Rule 7: another client's token changes nothing, not even reuse detection, so a client
    # cannot revoke another client's grant by presenting its token. RFC 6749 §5.2: invalid_grant
    # covers a token "issued to another client"; it is answered exactly as an unknown token, so
    # the answer is no oracle for which tokens exist.
    if grant.client_id != client_id:
        return Reject(Reason.UNKNOWN)
    if grant.revoked_at is not None:
        if grant.revoked_reason == RevocationCause.REUSE:
            return Reject(Reason.GRANT_REVOKED_BY_REUSE)
        return Reject(Reason.REVOKED)
    if token.revoked_at is not None:
        return Reject(Reason.REVOKED)
    if now >= policy.grant_deadline(grant.created_at, grant.expires_at):
        return Reject(Reason.ABSOLUTE_EXPIRED)
    if token.exchanged_at is not None:
        assert token.retire_at is not None
        # RFC 6749 §10.4 keeps the exchanged token on record to detect reuse. Inside the
        # leeway a second use is a retry (a lost response, a concurrent refresher); from
        # `retire_at` on it is a replay. The leeway was promised at the exchange (`retire_at`,
        # zero under `strict`): a policy changed since then does not take it back.
        if now >= token.retire_at:
            return Reuse()
        # Rule 3b (`fork`): once one of its children has itself been refreshed, the family has
        # moved on: no pair issued from this token can continue any more, so a retry of it is
        # no lost response but a replay (a stolen copy), and it is refused as reuse.
        if token.continued_id is not None:
            return Reuse(Reason.RETRY_AFTER_CONTINUED)
        if policy.retry is not RetryPolicy.FORK and token.sealed_response is not None:
            return Replay(token.sealed_response, token.sealed_id_token)
        # `fork`, or a token exchanged under `fork` and retried after a switch to `replay` (or
        # to `strict`, inside a leeway promised before it).
        return Fork()
    # Rule 3b (`fork`): the siblings issued from one token are one family, and at most one of
    # their chains may continue: the first child that is itself refreshed. Any other child of
    # the same parent presented afterwards is reuse (RFC 9700 §4.14.2: the server cannot tell
    # which holder is legitimate, so it revokes the grant), as for a token past its leeway.
    if token.parent_continued_id is not None and token.parent_continued_id != token.id:
        return Reuse(Reason.SIBLING_CONTINUED)
    if now >= policy.refresh_deadline(token.issued_at, token.expires_at):
        return Reject(Reason.IDLE_EXPIRED)
    if token.parent_id is not None and (policy.retry is RetryPolicy.FORK or token.parent_forked):
        # The first child to be refreshed claims the parent's continuation (already ours when
        # `parent_continued_id == token.id`: the claim is idempotent): under `fork`, and after a
        # move away from it for a parent that was forked from, whose siblings must still not
        # both continue. A parent never forked from has one child: nothing to claim, and its
        # retry in the leeway stays a retry (`replay`).
        return Rotate(continues=token.parent_id)
    return Rotate()


REUSE_REASONS = frozenset({Reason.REUSED, Reason.SIBLING_CONTINUED, Reason.RETRY_AFTER_CONTINUED})
"""The refusals that are a reuse detection (rules 4 and 3b)."""

# -- OpenID Connect: which grants get a refresh token ---------------------------------------------

OPENID = "openid"
OFFLINE_ACCESS = "offline_access"


def issues_refresh_token(scope: frozenset[str]) -> bool:
    """Whether a grant of `scope` gets refresh tokens: a plain OAuth grant always (as before
    OpenID Connect); an OpenID Connect grant only when it holds `offline_access`.

    OIDC Core §11: offline_access "requests that an OAuth 2.0 Refresh Token be issued that can
    be used to obtain an Access Token that grants access to the End-User's UserInfo Endpoint
    even when the End-User is not present (not logged in)". Without it, a relying party's access
    lasts as long as its access token: the user signs in again (common decisions, issue 24).
    """
    return OPENID not in scope or OFFLINE_ACCESS in scope


# -- liveness, for introspection (rule 8) --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Liveness:
    active: bool
    revocation_at: int | None = None  # set while a live token is already scheduled to die


INACTIVE = Liveness(False)


def refresh_liveness(token: RefreshFacts, now: int, policy: Policy) -> Liveness:
    """Whether presenting this refresh token now would be honoured (rules 2 to 6), under the
    client's policy in force at `now`: `decide_refresh`'s answer, without deciding."""
    grant = token.grant
    if grant.revoked_at is not None or token.revoked_at is not None:
        return INACTIVE
    if now >= policy.grant_deadline(grant.created_at, grant.expires_at):
        return INACTIVE
    if token.exchanged_at is None:
        if token.parent_continued_id is not None and token.parent_continued_id != token.id:
            return INACTIVE  # a sibling's chain continued (rule 3b)
        deadline = policy.refresh_deadline(token.issued_at, token.expires_at)
        return Liveness(True) if now < deadline else INACTIVE
    if token.continued_id is not None:
        return INACTIVE  # a retry would be reuse once a child's chain continued (rule 3b)
    if token.in_leeway(now):
        return Liveness(True, token.retire_at)
    return INACTIVE


def access_liveness(token: AccessFacts, now: int) -> Liveness:
    """An access token lives until its `exp`, unless it, its grant or its companion dies first.

    Its companion refresh token dies at the end of its leeway once exchanged (rule 2), or at once
    when revoked; the access token dies with it.
    """
    if now >= token.expires_at or token.revoked_at is not None or not token.grant.live(now):
        return INACTIVE
    companion = token.companion
    if companion is None:
        return Liveness(True)
    if companion.revoked_at is not None:
        return INACTIVE
    if companion.retire_at is not None:
        if now >= companion.retire_at:
            return INACTIVE
        if companion.retire_at < token.expires_at:
            return Liveness(True, companion.retire_at)
    return Liveness(True)


# -- authorization codes (rule 1) ----------------------------------------------------------------


class CodeProblem(StrEnum):
    UNKNOWN = "unknown or expired authorization code"
    EXPIRED = "authorization code expired"
    REUSED = "authorization code was already used: the grant it produced has been revoked"
    REDIRECT_MISMATCH = "redirect_uri does not match the authorization request"
    VERIFIER_MISSING = "code_verifier is required: the authorization request used PKCE"
    VERIFIER_UNEXPECTED = "code_verifier given but the authorization request had no code_challenge"
    VERIFIER_MISMATCH = "code_verifier does not match the code_challenge"


@dataclass(frozen=True, slots=True)
class CodeRedemption:
    client_id: str
    redirect_uri: str | None
    code_verifier: str | None


def check_code(code: CodeFacts | None, ask: CodeRedemption, now: int) -> CodeProblem | None:
    """What is wrong with redeeming this code, or None; a used code is `REUSED` (§4.1.2)."""
    if code is None:
        return CodeProblem.UNKNOWN
    if code.client_id != ask.client_id:
        # RFC 6749 §5.2 (invalid_grant: "issued to another client"), answered as an unknown
        # code: no oracle for which codes exist, and nothing changes (not even replay detection).
        return CodeProblem.UNKNOWN
    if code.used_at is not None:
        return CodeProblem.REUSED
    if now >= code.expires_at:
        return CodeProblem.EXPIRED
    # RFC 6749 §4.1.3: redirect_uri is REQUIRED if it was included in the authorization
    # request, and the values MUST be identical.
    if code.redirect_uri is not None and ask.redirect_uri != code.redirect_uri:
        return CodeProblem.REDIRECT_MISMATCH
    if code.redirect_uri is None and ask.redirect_uri is not None:
        return CodeProblem.REDIRECT_MISMATCH
    if code.code_challenge is None:
        # RFC 9700 §2.1.1: reject a code_verifier when the request carried no code_challenge,
        # or a PKCE downgrade goes unnoticed.
        return CodeProblem.VERIFIER_UNEXPECTED if ask.code_verifier is not None else None
    if ask.code_verifier is None:
        return CodeProblem.VERIFIER_MISSING
    if not verify_s256(ask.code_verifier, code.code_challenge):
        return CodeProblem.VERIFIER_MISMATCH
    return None

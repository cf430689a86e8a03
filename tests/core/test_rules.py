"""The rotation rules of the core issue, each at its boundary instants.

Facts are built with the small factories below: a grant created at T0, a refresh token issued at
T0 and, where a test needs it, exchanged at T with `retire_at = T + LEEWAY`.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from baton.core.facts import AccessFacts, CodeFacts, CompanionFacts, GrantFacts, RefreshFacts
from baton.core.pkce import s256
from baton.core.policy import Lifetimes, Policy, RetryPolicy
from baton.core.rules import (
    INACTIVE,
    CodeProblem,
    CodeRedemption,
    Fork,
    Liveness,
    Reason,
    Reject,
    Replay,
    Reuse,
    Rotate,
    access_liveness,
    check_code,
    decide_refresh,
    refresh_liveness,
)
from baton.core.vocabulary import RevocationCause

T0 = 1_700_000_000
ACCESS_TTL = 3600
IDLE_TTL = 90 * 86_400
ABSOLUTE_TTL = 365 * 86_400
LEEWAY = 600
CLIENT = "cl_owner"
OTHER = "cl_other"
SEALED = b"\x00" * 12 + b"sealed child pair"
T = T0 + 1000  # when a token in these tests is exchanged

# The rules take the policy in force (`Policy`): the server's, each retry policy in turn.
REPLAY, FORK, STRICT = (Policy(retry=retry) for retry in RetryPolicy)
ALL_POLICIES = [REPLAY, FORK, STRICT]
LEEWAY_POLICIES = [REPLAY, FORK]


# -- factories -------------------------------------------------------------------------------------


def grant(**changes: object) -> GrantFacts:
    base = GrantFacts(
        id="grt_1",
        client_id=CLIENT,
        user_id=1,
        subject="alice",
        scope="read write",
        created_at=T0,
        expires_at=T0 + ABSOLUTE_TTL,
        revoked_at=None,
        revoked_reason=None,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def refresh(*, of: GrantFacts | None = None, **changes: object) -> RefreshFacts:
    base = RefreshFacts(
        id=1,
        grant=of or grant(),
        generation=0,
        issued_at=T0,
        expires_at=T0 + IDLE_TTL,
        exchanged_at=None,
        retire_at=None,
        revoked_at=None,
        sealed_response=None,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def exchanged(
    at: int = T,
    leeway: int = LEEWAY,
    sealed: bytes | None = SEALED,
    *,
    of: GrantFacts | None = None,
    **changes: object,
) -> RefreshFacts:
    return refresh(of=of, exchanged_at=at, retire_at=at + leeway, sealed_response=sealed, **changes)


def access(
    *,
    of: GrantFacts | None = None,
    companion: CompanionFacts | None = None,
    **changes: object,
) -> AccessFacts:
    base = AccessFacts(
        id=1,
        grant=of or grant(),
        generation=0,
        scope="read write",
        issued_at=T0,
        expires_at=T0 + ACCESS_TTL,
        revoked_at=None,
        companion=companion if companion is not None else CompanionFacts(None, None),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def code(**changes: object) -> CodeFacts:
    base = CodeFacts(
        client_id=CLIENT,
        user_id=1,
        redirect_uri="https://app.example/cb",
        scope="read",
        code_challenge=s256(VERIFIER),
        expires_at=T0 + 60,
        used_at=None,
        grant_id=None,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


VERIFIER = "v" * 43 + "-._~0123456789"
GOOD_ASK = CodeRedemption(CLIENT, "https://app.example/cb", VERIFIER)


# -- rule 2: an active token rotates ---------------------------------------------------------------


@pytest.mark.parametrize("policy", ALL_POLICIES)
@pytest.mark.parametrize("now", [T0, T0 + 1, T0 + IDLE_TTL - 1])
def test_active_token_rotates(policy: Policy, now: int) -> None:
    assert decide_refresh(refresh(), CLIENT, now, policy) == Rotate()


def test_unknown_token_is_rejected() -> None:
    for policy in ALL_POLICIES:
        assert decide_refresh(None, CLIENT, T0, policy) == Reject(Reason.UNKNOWN)


# -- rule 3: a retry inside the leeway -------------------------------------------------------------


@pytest.mark.parametrize("now", [T, T + 1, T + LEEWAY - 1])
def test_replay_inside_leeway_returns_the_sealed_pair(now: int) -> None:
    decision = decide_refresh(exchanged(), CLIENT, now, REPLAY)
    assert decision == Replay(SEALED)


def test_replay_without_a_seal_forks() -> None:
    # A token exchanged under `fork` (no seal kept) and retried after a switch to `replay`.
    token = exchanged(sealed=None)
    assert decide_refresh(token, CLIENT, T + LEEWAY - 1, REPLAY) == Fork()


@pytest.mark.parametrize("now", [T, T + 1, T + LEEWAY - 1])
@pytest.mark.parametrize("sealed", [SEALED, None])
def test_fork_inside_leeway_issues_a_sibling(now: int, sealed: bytes | None) -> None:
    assert decide_refresh(exchanged(sealed=sealed), CLIENT, now, FORK) == Fork()


@pytest.mark.parametrize("policy", LEEWAY_POLICIES)
def test_retry_is_judged_on_retire_at_not_on_the_configured_leeway(policy: Policy) -> None:
    # The leeway in force at the exchange is recorded in retire_at; a retry one second before it
    # is a retry, whatever the policy's leeway is now.
    token = exchanged(leeway=30)
    assert not isinstance(decide_refresh(token, CLIENT, T + 29, policy), Reuse)
    assert decide_refresh(token, CLIENT, T + 30, policy) == Reuse()


@pytest.mark.parametrize("policy", LEEWAY_POLICIES)
def test_retry_inside_leeway_is_served_even_after_idle_expiry(policy: Policy) -> None:
    # The leeway runs from the exchange: the token's own idle expiry does not cut it short.
    token = exchanged(expires_at=T + 10)
    assert isinstance(decide_refresh(token, CLIENT, T + 10, policy), Replay | Fork)


# -- rule 3b (`fork`): siblings are one family, one chain continues --------------------------------

PARENT = 7


def child(token_id: int, continued: int | None = None) -> RefreshFacts:
    """A child of PARENT (issued at T, by the exchange or by a retry under `fork`)."""
    return refresh(
        id=token_id,
        generation=1,
        issued_at=T,
        expires_at=T + IDLE_TTL,
        parent_id=PARENT,
        parent_continued_id=continued,
    )


def test_under_fork_the_first_child_refreshed_claims_its_parent() -> None:
    assert decide_refresh(child(2), CLIENT, T + 5, FORK) == Rotate(continues=PARENT)
    # A root pair has no parent: nothing to claim.
    assert decide_refresh(refresh(), CLIENT, T + 5, FORK) == Rotate()


@pytest.mark.parametrize("policy", [REPLAY, STRICT])
def test_a_child_of_a_forked_parent_claims_it_under_any_policy(policy: Policy) -> None:
    # A parent forked from (a retry got a sibling) heads one family whatever the policy that
    # refreshes its children later: the first claims it, so two siblings never both continue.
    forked = dataclasses.replace(child(2), parent_forked=True)
    assert decide_refresh(forked, CLIENT, T + 5, policy) == Rotate(continues=PARENT)
    # A parent never forked from has one child: nothing is claimed (its retry stays a retry).
    assert decide_refresh(child(2), CLIENT, T + 5, policy) == Rotate()


@pytest.mark.parametrize("policy", ALL_POLICIES)
@pytest.mark.parametrize("now", [T, T + LEEWAY - 1, T + LEEWAY, T + IDLE_TTL])
def test_a_sibling_presented_after_another_continued_is_reuse(policy: Policy, now: int) -> None:
    decision = decide_refresh(child(2, continued=3), CLIENT, now, policy)
    assert decision == Reuse(Reason.SIBLING_CONTINUED)
    assert refresh_liveness(child(2, continued=3), now, policy) == INACTIVE


def test_the_continued_child_itself_is_not_reuse() -> None:
    assert decide_refresh(child(3, continued=3), CLIENT, T + 5, FORK) == Rotate(continues=PARENT)
    assert refresh_liveness(child(3, continued=3), T + 5, FORK) == Liveness(True)


@pytest.mark.parametrize("now", [T, T + 1, T + LEEWAY - 1])
def test_a_retry_of_the_parent_once_a_child_continued_is_reuse(now: int) -> None:
    # Inside its leeway, a parent whose child has been refreshed: the family has moved on, so
    # the retry cannot be a lost response; a sibling issued now could never continue.
    parent = exchanged(id=PARENT, sealed=None, continued_id=3)
    decision = decide_refresh(parent, CLIENT, now, FORK)
    assert decision == Reuse(Reason.RETRY_AFTER_CONTINUED)
    assert refresh_liveness(parent, now, FORK) == INACTIVE
    # Before any child continued it is a retry, answered by a sibling.
    assert decide_refresh(exchanged(id=PARENT), CLIENT, now, FORK) == Fork()


@given(
    siblings=st.integers(min_value=1, max_value=8),
    order=st.lists(st.integers(min_value=0, max_value=7), min_size=1, max_size=20),
)
def test_at_most_one_sibling_chain_continues(siblings: int, order: list[int]) -> None:
    """Any order of refreshes of N siblings, applied as the store applies decisions: exactly
    the first sibling refreshed rotates; every later refresh of another sibling is reuse."""
    continued: int | None = None
    exchanged_ids: set[int] = set()
    rotated: list[int] = []
    for pick in order:
        sibling = 100 + pick % siblings
        token = child(sibling, continued=continued)
        if sibling in exchanged_ids:
            token = dataclasses.replace(token, exchanged_at=T + 1, retire_at=T + 1 + LEEWAY)
        decision = decide_refresh(token, CLIENT, T + 2, FORK)
        if isinstance(decision, Rotate):
            assert decision.continues == PARENT
            assert continued in (None, sibling)  # the store's conditional claim
            continued = sibling
            exchanged_ids.add(sibling)
            rotated.append(sibling)
        elif sibling != continued:
            assert continued is not None
            assert decision == Reuse(Reason.SIBLING_CONTINUED)
        else:
            assert isinstance(decision, Fork)  # the winner's own retry inside its leeway
    assert rotated == [100 + order[0] % siblings]


# -- rule 4: reuse after the leeway ----------------------------------------------------------------


@pytest.mark.parametrize("policy", LEEWAY_POLICIES)
@pytest.mark.parametrize("now", [T + LEEWAY, T + LEEWAY + 1, T + IDLE_TTL])
def test_exactly_at_retire_at_and_after_is_reuse(policy: Policy, now: int) -> None:
    assert decide_refresh(exchanged(), CLIENT, now, policy) == Reuse()


@pytest.mark.parametrize("policy", LEEWAY_POLICIES)
def test_one_second_before_retire_at_is_a_retry(policy: Policy) -> None:
    decision = decide_refresh(exchanged(), CLIENT, T + LEEWAY - 1, policy)
    assert decision == (Replay(SEALED) if policy.retry is RetryPolicy.REPLAY else Fork())


@pytest.mark.parametrize("now", [T, T + 1, T + LEEWAY - 1, T + LEEWAY])
def test_strict_any_second_use_is_reuse(now: int) -> None:
    # Under strict the store records retire_at == exchanged_at: any second use is reuse.
    assert decide_refresh(exchanged(leeway=0), CLIENT, now, STRICT) == Reuse()


# -- issue 28: a change of policy, and the tokens already out --------------------------------------


@pytest.mark.parametrize("now", [T, T + 1, T + LEEWAY - 1])
def test_a_leeway_promised_at_the_exchange_survives_a_switch_to_strict(now: int) -> None:
    # Exchanged under `replay` with a 600 s leeway; the client's policy is `strict` since
    # then: the retry is still honoured until the promised `retire_at`, replayed when sealed,
    # else with a sibling pair (nothing to replay).
    assert decide_refresh(exchanged(), CLIENT, now, STRICT) == Replay(SEALED)
    assert decide_refresh(exchanged(sealed=None), CLIENT, now, STRICT) == Fork()
    assert refresh_liveness(exchanged(), now, STRICT) == Liveness(True, T + LEEWAY)


def test_a_leeway_promised_under_strict_ends_at_its_promised_end() -> None:
    assert decide_refresh(exchanged(), CLIENT, T + LEEWAY, STRICT) == Reuse()
    assert refresh_liveness(exchanged(), T + LEEWAY, STRICT) == INACTIVE


def test_a_shorter_leeway_in_force_does_not_shorten_a_running_one() -> None:
    # The new policy's leeway (60 s) applies to exchanges after it: this one promised 600 s.
    short = Policy(Lifetimes(leeway=60), since=T + 1)
    assert decide_refresh(exchanged(), CLIENT, T + 61, short) == Replay(SEALED)
    assert decide_refresh(exchanged(), CLIENT, T + LEEWAY, short) == Reuse()


def test_a_policy_in_force_after_the_token_was_issued_caps_its_idle_lifetime() -> None:
    # Issued at T0 for 90 days; from T a client policy holds refresh tokens to 1000 s idle.
    capped = Policy(Lifetimes(refresh_idle_ttl=1000), since=T)
    token = refresh()
    assert decide_refresh(token, CLIENT, T0 + 999, capped) == Rotate()
    assert decide_refresh(token, CLIENT, T0 + 1000, capped) == Reject(Reason.IDLE_EXPIRED)
    assert refresh_liveness(token, T0 + 999, capped) == Liveness(True)
    assert refresh_liveness(token, T0 + 1000, capped) == INACTIVE


def test_a_policy_in_force_after_the_grant_was_created_caps_its_absolute_lifetime() -> None:
    capped = Policy(Lifetimes(refresh_absolute_ttl=2000), since=T)
    token = refresh(issued_at=T0 + 1500, expires_at=T0 + 1500 + IDLE_TTL)
    assert decide_refresh(token, CLIENT, T0 + 1999, capped) == Rotate()
    assert decide_refresh(token, CLIENT, T0 + 2000, capped) == Reject(Reason.ABSOLUTE_EXPIRED)
    assert refresh_liveness(token, T0 + 2000, capped) == INACTIVE


def test_a_longer_lifetime_in_force_later_never_extends_a_token() -> None:
    longer = Policy(
        Lifetimes(refresh_idle_ttl=IDLE_TTL * 2, refresh_absolute_ttl=ABSOLUTE_TTL * 2), since=T
    )
    token = refresh(expires_at=T0 + 500)
    assert decide_refresh(token, CLIENT, T0 + 500, longer) == Reject(Reason.IDLE_EXPIRED)
    late = refresh(of=grant(expires_at=T0 + 700), expires_at=T0 + 500)
    assert decide_refresh(late, CLIENT, T0 + 499, longer) == Rotate()
    assert refresh_liveness(late, T0 + 500, longer) == INACTIVE


def test_a_token_issued_after_since_is_judged_by_its_own_stamps_only() -> None:
    # Issued at T, when the policy (idle 1000 s) was already in force: its own `expires_at`
    # (stamped with the policy's lifetimes) decides, not `issued_at + idle` again.
    since = T - 10
    policy = Policy(Lifetimes(refresh_idle_ttl=1000, refresh_absolute_ttl=2000), since=since)
    g = grant(created_at=T, expires_at=T + 5000)
    token = refresh(of=g, issued_at=T, expires_at=T + 3000)
    assert decide_refresh(token, CLIENT, T + 2999, policy) == Rotate()
    assert decide_refresh(token, CLIENT, T + 3000, policy) == Reject(Reason.IDLE_EXPIRED)
    assert refresh_liveness(token, T + 2999, policy) == Liveness(True)


# -- rule 6: idle and absolute expiry --------------------------------------------------------------


@pytest.mark.parametrize("policy", ALL_POLICIES)
def test_idle_expiry_exactly_at_expires_at(policy: Policy) -> None:
    token = refresh(expires_at=T0 + 500)
    assert decide_refresh(token, CLIENT, T0 + 499, policy) == Rotate()
    assert decide_refresh(token, CLIENT, T0 + 500, policy) == Reject(Reason.IDLE_EXPIRED)
    assert decide_refresh(token, CLIENT, T0 + 501, policy) == Reject(Reason.IDLE_EXPIRED)


@pytest.mark.parametrize("policy", ALL_POLICIES)
def test_absolute_expiry_exactly_at_grant_expires_at(policy: Policy) -> None:
    g = grant(expires_at=T0 + 5000)
    # The token's idle expiry is capped by the grant: both fall at the same instant, and the
    # description names the absolute lifetime.
    token = refresh(of=g, issued_at=T0 + 4000, expires_at=T0 + 5000)
    assert decide_refresh(token, CLIENT, T0 + 4999, policy) == Rotate()
    assert decide_refresh(token, CLIENT, T0 + 5000, policy) == Reject(Reason.ABSOLUTE_EXPIRED)
    # Uncapped facts: the grant's expiry still wins.
    token = refresh(of=g, expires_at=T0 + 9000)
    assert decide_refresh(token, CLIENT, T0 + 5000, policy) == Reject(Reason.ABSOLUTE_EXPIRED)


@pytest.mark.parametrize("policy", ALL_POLICIES)
def test_absolute_expiry_ends_the_leeway_and_reuse_detection(policy: Policy) -> None:
    g = grant(expires_at=T + 100)
    token = exchanged(of=g)
    assert decide_refresh(token, CLIENT, T + 100, policy) == Reject(Reason.ABSOLUTE_EXPIRED)
    assert decide_refresh(token, CLIENT, T + LEEWAY, policy) == Reject(Reason.ABSOLUTE_EXPIRED)
    if policy.retry is not RetryPolicy.STRICT:
        assert not isinstance(decide_refresh(token, CLIENT, T + 99, policy), Reject)


# -- rule 7: another client changes nothing --------------------------------------------------------


@pytest.mark.parametrize("policy", ALL_POLICIES)
@pytest.mark.parametrize(
    "token",
    [
        refresh(),
        refresh(expires_at=T0),
        exchanged(),
        refresh(revoked_at=T0),
        refresh(of=grant(revoked_at=T0, revoked_reason=RevocationCause.REUSE)),
        refresh(of=grant(expires_at=T0)),
    ],
    ids=["active", "idle-expired", "exchanged", "revoked", "reuse-revoked", "grant-expired"],
)
def test_another_client_learns_nothing_and_changes_nothing(
    policy: Policy, token: RefreshFacts
) -> None:
    # Issue 21: answered exactly as an unknown token (no oracle), whatever the token's state.
    for now in (T0, T, T + LEEWAY - 1, T + LEEWAY, T + IDLE_TTL):
        assert decide_refresh(token, OTHER, now, policy) == Reject(Reason.UNKNOWN)
        assert decide_refresh(token, OTHER, now, policy) == decide_refresh(None, OTHER, now, policy)


@pytest.mark.parametrize("policy", ALL_POLICIES)
def test_another_client_learns_nothing_of_siblings(policy: Policy) -> None:
    for token in (child(2, continued=3), child(2), exchanged(continued_id=3)):
        assert decide_refresh(token, OTHER, T + 5, policy) == Reject(Reason.UNKNOWN)


# -- revocation as seen by a refresh (rules 4 and 5) -----------------------------------------------


@pytest.mark.parametrize("policy", ALL_POLICIES)
def test_revoked_grant_is_revoked(policy: Policy) -> None:
    g = grant(revoked_at=T0 + 1, revoked_reason="revoked")
    for token in (refresh(of=g), exchanged(of=g)):
        for now in (T0 + 1, T, T + LEEWAY - 1, T + LEEWAY):
            assert decide_refresh(token, CLIENT, now, policy) == Reject(Reason.REVOKED)


@pytest.mark.parametrize("policy", ALL_POLICIES)
def test_grant_revoked_by_code_reuse_is_plainly_revoked(policy: Policy) -> None:
    g = grant(revoked_at=T0 + 1, revoked_reason="code_reuse")
    assert decide_refresh(refresh(of=g), CLIENT, T0 + 2, policy) == Reject(Reason.REVOKED)


@pytest.mark.parametrize("policy", ALL_POLICIES)
def test_grant_revoked_by_reuse_says_so(policy: Policy) -> None:
    g = grant(revoked_at=T + LEEWAY, revoked_reason=RevocationCause.REUSE)
    for token in (refresh(of=g), exchanged(of=g), refresh(of=g, expires_at=T0)):
        decision = decide_refresh(token, CLIENT, T + LEEWAY, policy)
        assert decision == Reject(Reason.GRANT_REVOKED_BY_REUSE)
    # Revocation outranks expiry: the client learns why the family died.
    expired = grant(expires_at=T0 + 10, revoked_at=T0 + 5, revoked_reason=RevocationCause.REUSE)
    assert decide_refresh(refresh(of=expired), CLIENT, T0 + 10, policy) == Reject(
        Reason.GRANT_REVOKED_BY_REUSE
    )


@pytest.mark.parametrize("policy", ALL_POLICIES)
def test_revoked_token_is_revoked(policy: Policy) -> None:
    assert decide_refresh(refresh(revoked_at=T0), CLIENT, T0, policy) == Reject(Reason.REVOKED)
    token = exchanged(revoked_at=T + 1)
    assert decide_refresh(token, CLIENT, T + 1, policy) == Reject(Reason.REVOKED)


def test_reasons_are_distinct_and_name_their_rule() -> None:
    values = [reason.value for reason in Reason]
    assert len(set(values)) == len(values)
    assert "unknown" in Reason.UNKNOWN
    assert "idle" in Reason.IDLE_EXPIRED
    assert "absolute" in Reason.ABSOLUTE_EXPIRED
    assert "revoked" in Reason.REVOKED
    assert "leeway" in Reason.REUSED and "revoked" in Reason.REUSED
    assert "reuse" in Reason.GRANT_REVOKED_BY_REUSE


# -- rule 8: refresh token liveness ----------------------------------------------------------------


@pytest.mark.parametrize("policy", ALL_POLICIES)
def test_active_refresh_token_lives_until_its_idle_expiry(policy: Policy) -> None:
    token = refresh(expires_at=T0 + 500)
    assert refresh_liveness(token, T0, policy) == Liveness(True)
    assert refresh_liveness(token, T0 + 499, policy) == Liveness(True, None)
    assert refresh_liveness(token, T0 + 500, policy) == INACTIVE


@pytest.mark.parametrize("policy", LEEWAY_POLICIES)
def test_exchanged_refresh_token_lives_until_retire_at(policy: Policy) -> None:
    token = exchanged()
    assert refresh_liveness(token, T, policy) == Liveness(True, T + LEEWAY)
    assert refresh_liveness(token, T + LEEWAY - 1, policy) == Liveness(True, T + LEEWAY)
    assert refresh_liveness(token, T + LEEWAY, policy) == INACTIVE


def test_exchanged_refresh_token_is_dead_under_strict() -> None:
    assert refresh_liveness(exchanged(leeway=0), T, STRICT) == INACTIVE
    assert refresh_liveness(exchanged(leeway=0), T + 1, STRICT) == INACTIVE


@pytest.mark.parametrize("policy", ALL_POLICIES)
def test_refresh_liveness_follows_grant_and_revocation(policy: Policy) -> None:
    g = grant(expires_at=T0 + 300)
    assert refresh_liveness(refresh(of=g), T0 + 299, policy).active
    assert refresh_liveness(refresh(of=g), T0 + 300, policy) == INACTIVE
    revoked = grant(revoked_at=T0 + 1, revoked_reason="revoked")
    assert refresh_liveness(refresh(of=revoked), T0 + 1, policy) == INACTIVE
    assert refresh_liveness(exchanged(of=revoked), T + 1, policy) == INACTIVE
    assert refresh_liveness(refresh(revoked_at=T0), T0, policy) == INACTIVE


# -- rule 8: access token liveness and the companion -----------------------------------------------


def test_access_token_lives_until_exp_while_companion_is_active() -> None:
    token = access()
    assert access_liveness(token, T0) == Liveness(True)
    assert access_liveness(token, T0 + ACCESS_TTL - 1) == Liveness(True, None)
    assert access_liveness(token, T0 + ACCESS_TTL) == INACTIVE


def test_access_token_dies_at_companion_retire_at_before_its_exp() -> None:
    exchanged_at = T0 + 100
    token = access(companion=CompanionFacts(retire_at=exchanged_at + LEEWAY, revoked_at=None))
    retire = exchanged_at + LEEWAY
    assert retire < token.expires_at
    assert access_liveness(token, exchanged_at) == Liveness(True, retire)
    assert access_liveness(token, retire - 1) == Liveness(True, retire)
    assert access_liveness(token, retire) == INACTIVE
    assert access_liveness(token, token.expires_at - 1) == INACTIVE


def test_revocation_at_only_when_the_companion_retires_before_exp() -> None:
    exp = T0 + ACCESS_TTL
    # Retires exactly at exp: nothing earlier to announce.
    token = access(companion=CompanionFacts(retire_at=exp, revoked_at=None))
    assert access_liveness(token, exp - 1) == Liveness(True, None)
    assert access_liveness(token, exp) == INACTIVE
    # Retires after exp: exp is the end.
    token = access(companion=CompanionFacts(retire_at=exp + 1, revoked_at=None))
    assert access_liveness(token, exp - 1) == Liveness(True, None)
    assert access_liveness(token, exp) == INACTIVE
    # One second before exp: announced.
    token = access(companion=CompanionFacts(retire_at=exp - 1, revoked_at=None))
    assert access_liveness(token, exp - 2) == Liveness(True, exp - 1)
    assert access_liveness(token, exp - 1) == INACTIVE


def test_strict_exchange_kills_the_companion_access_token_at_once() -> None:
    token = access(companion=CompanionFacts(retire_at=T0 + 100, revoked_at=None))  # leeway 0
    assert access_liveness(token, T0 + 99) == Liveness(True, T0 + 100)
    assert access_liveness(token, T0 + 100) == INACTIVE


def test_access_token_dies_with_a_revoked_companion_grant_or_itself() -> None:
    assert access_liveness(access(companion=CompanionFacts(None, T0 + 5)), T0 + 5) == INACTIVE
    assert access_liveness(access(revoked_at=T0 + 5), T0 + 5) == INACTIVE
    revoked = grant(revoked_at=T0 + 5, revoked_reason="revoked")
    assert access_liveness(access(of=revoked), T0 + 5) == INACTIVE
    expired = grant(expires_at=T0 + 50)
    token = access(of=expired, expires_at=T0 + 50)
    assert access_liveness(token, T0 + 49).active
    assert access_liveness(token, T0 + 50) == INACTIVE


def test_client_credentials_token_without_companion() -> None:
    g = grant(user_id=None, subject=None)
    token = dataclasses.replace(access(of=g), companion=None)
    assert token.companion is None
    assert access_liveness(token, T0) == Liveness(True)
    assert access_liveness(token, T0 + ACCESS_TTL - 1) == Liveness(True, None)
    assert access_liveness(token, T0 + ACCESS_TTL) == INACTIVE
    assert access_liveness(dataclasses.replace(token, revoked_at=T0), T0 + 1) == INACTIVE
    dead = dataclasses.replace(token, grant=grant(revoked_at=T0, revoked_reason="revoked"))
    assert access_liveness(dead, T0 + 1) == INACTIVE


# -- rule 1: authorization codes -------------------------------------------------------------------


def test_good_code_has_no_problem() -> None:
    assert check_code(code(), GOOD_ASK, T0) is None
    assert check_code(code(), GOOD_ASK, T0 + 59) is None


def test_unknown_code() -> None:
    assert check_code(None, GOOD_ASK, T0) is CodeProblem.UNKNOWN


def test_code_of_another_client() -> None:
    ask = dataclasses.replace(GOOD_ASK, client_id=OTHER)
    # Answered as an unknown code (issue 21: no oracle), not even that the code was used.
    assert check_code(code(), ask, T0) is CodeProblem.UNKNOWN
    assert check_code(code(used_at=T0), ask, T0) is CodeProblem.UNKNOWN


def test_code_expires_exactly_at_expires_at() -> None:
    assert check_code(code(), GOOD_ASK, T0 + 59) is None
    assert check_code(code(), GOOD_ASK, T0 + 60) is CodeProblem.EXPIRED


def test_used_code_is_reuse_even_after_expiry() -> None:
    used = code(used_at=T0, grant_id="grt_1")
    assert check_code(used, GOOD_ASK, T0) is CodeProblem.REUSED
    assert check_code(used, GOOD_ASK, T0 + 3600) is CodeProblem.REUSED


@pytest.mark.parametrize(
    ("stored", "asked"),
    [
        ("https://app.example/cb", "https://app.example/cb/"),
        ("https://app.example/cb", "https://APP.example/cb"),
        ("https://app.example/cb", None),
        (None, "https://app.example/cb"),
    ],
)
def test_redirect_uri_must_match_exactly(stored: str | None, asked: str | None) -> None:
    ask = dataclasses.replace(GOOD_ASK, redirect_uri=asked)
    assert check_code(code(redirect_uri=stored), ask, T0) is CodeProblem.REDIRECT_MISMATCH


def test_no_redirect_uri_on_either_side() -> None:
    ask = dataclasses.replace(GOOD_ASK, redirect_uri=None)
    assert check_code(code(redirect_uri=None), ask, T0) is None


def test_verifier_missing() -> None:
    ask = dataclasses.replace(GOOD_ASK, code_verifier=None)
    assert check_code(code(), ask, T0) is CodeProblem.VERIFIER_MISSING


def test_pkce_downgrade_is_rejected() -> None:
    # No code_challenge in the authorization request, but a verifier at the token endpoint: an
    # attacker who stripped the challenge must not get through (RFC 9700 §2.1.1).
    assert check_code(code(code_challenge=None), GOOD_ASK, T0) is CodeProblem.VERIFIER_UNEXPECTED
    no_verifier = dataclasses.replace(GOOD_ASK, code_verifier=None)
    assert check_code(code(code_challenge=None), no_verifier, T0) is None


@pytest.mark.parametrize(
    "verifier",
    [
        "w" * 43,  # well-formed, another verifier
        VERIFIER[:-1],  # a prefix
        VERIFIER + "x",
        "",
    ],
)
def test_verifier_mismatch(verifier: str) -> None:
    ask = dataclasses.replace(GOOD_ASK, code_verifier=verifier)
    assert check_code(code(), ask, T0) is CodeProblem.VERIFIER_MISMATCH


def test_malformed_verifier_is_a_mismatch_even_if_its_hash_matches() -> None:
    short = "s" * 42  # RFC 7636 §4.1: at least 43 characters
    ask = dataclasses.replace(GOOD_ASK, code_verifier=short)
    assert check_code(code(code_challenge=s256(short)), ask, T0) is CodeProblem.VERIFIER_MISMATCH


def test_code_problem_precedence() -> None:
    everything_wrong = code(used_at=T0, expires_at=T0, redirect_uri="https://elsewhere/")
    ask = CodeRedemption(CLIENT, "https://app.example/cb", None)
    assert check_code(everything_wrong, ask, T0 + 100) is CodeProblem.REUSED
    expired_and_mismatched = code(expires_at=T0, redirect_uri="https://elsewhere/")
    assert check_code(expired_and_mismatched, ask, T0) is CodeProblem.EXPIRED

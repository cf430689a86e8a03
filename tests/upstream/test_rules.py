"""The pure rules of `baton.core.upstream`: what may be configured, what a discovery document
must say, which ID token claims make a sign-in, and the sealed client secret."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from baton.core.upstream import (
    Discovery,
    UpstreamError,
    UpstreamIdentity,
    check_discovery,
    check_id_token_claims,
    check_iss_parameter,
    check_issuer,
    check_provider_id,
    check_scope,
    may_link_by_email,
    may_link_user_by_email,
    open_secret,
    same_email,
    seal_secret,
    username_for,
)

ISSUER = "https://id.example.com"
NOW = 1_800_000_000
KEK = bytes(range(32))


def claims(**changes: Any) -> dict[str, Any]:
    base = {
        "iss": ISSUER,
        "sub": "248289761001",
        "aud": "baton",
        "exp": NOW + 300,
        "iat": NOW,
        "nonce": "n-0S6_WzA2Mj",
        "email": "jane@example.com",
        "email_verified": True,
        "amr": ["pwd", "otp"],
        "name": "Jane Doe",
    }
    return {k: v for k, v in (base | changes).items() if v is not None}


def check(found: dict[str, Any], nonce: str = "n-0S6_WzA2Mj") -> UpstreamIdentity:
    return check_id_token_claims(found, issuer=ISSUER, client_id="baton", nonce=nonce, now=NOW)


def test_good_claims_say_who_signed_in() -> None:
    identity = check(claims())
    assert identity.subject == "248289761001"
    assert (identity.email, identity.email_verified) == ("jane@example.com", True)
    assert identity.amr == ("pwd", "otp")
    assert identity.profile == {"name": "Jane Doe"}


def test_only_short_amr_values_are_kept() -> None:
    # They travel in the cookie of a pending second step and into the session: no megabytes.
    identity = check(claims(amr=["hwk", "x" * 33, "", 7, "pwd"]))
    assert identity.amr == ("hwk", "pwd")


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"iss": "https://id.example.com/"}, "issuer"),  # exact, not "the same URL"
        ({"iss": None}, "issuer"),
        ({"aud": "another"}, "not for this client"),
        ({"aud": None}, "audience"),
        ({"aud": ["baton", "another"]}, "no azp"),  # §3.1.3.7 (4)
        ({"aud": ["baton", "another"], "azp": "another"}, "another party"),
        ({"azp": "another"}, "another party"),  # (5): azp present, must be us
        ({"exp": NOW - 61}, "expired"),
        ({"exp": None}, "no exp"),
        ({"exp": True}, "no exp"),
        ({"iat": NOW + 61}, "future"),
        ({"nonce": "another"}, "nonce"),
        ({"nonce": None}, "nonce"),
        ({"sub": ""}, "subject"),
        ({"sub": 42}, "subject"),
        ({"sub": "x" * 256}, "subject"),
        ({"sub": "a\nb"}, "subject"),  # a link must be shown, searched and removed
    ],
)
def test_bad_claims_are_refused(changes: dict[str, Any], says: str) -> None:
    with pytest.raises(UpstreamError, match=says):
        check(claims(**changes))


def test_several_audiences_with_our_azp_are_accepted() -> None:
    assert check(claims(aud=["baton", "another"], azp="baton")).subject == "248289761001"


def test_the_skew_is_small_on_both_sides() -> None:
    assert check(claims(exp=NOW - 59, iat=NOW + 59)).subject
    with pytest.raises(UpstreamError):
        check(claims(exp=NOW - 60))


@given(st.text(min_size=1, max_size=80))
def test_only_our_nonce_passes(presented: str) -> None:
    ours = "our-nonce-value"
    if presented == ours:
        assert check(claims(nonce=presented), nonce=ours)
    else:
        with pytest.raises(UpstreamError):
            check(claims(nonce=presented), nonce=ours)


def test_email_verified_must_be_the_json_true() -> None:
    """A string "true" is not a verified e-mail (OIDC Core §5.1: a boolean)."""
    assert not check(claims(email_verified="true")).email_verified


@pytest.mark.parametrize(
    "issuer",
    [
        "https://id.example.com",
        "https://id.example.com/tenant/1",
        "http://127.0.0.1:9000",
        "http://localhost:8080",
        "http://[::1]:8000",
    ],
)
def test_issuers_that_may_be_configured(issuer: str) -> None:
    assert check_issuer(issuer) == issuer


@pytest.mark.parametrize(
    "issuer",
    [
        "http://id.example.com",
        "https://id.example.com?x=1",
        "https://id.example.com#f",
        "ftp://id.example.com",
        "https://",
        "id.example.com",
        "http://10.0.0.1",
    ],
)
def test_issuers_that_may_not(issuer: str) -> None:
    with pytest.raises(UpstreamError):
        check_issuer(issuer)


@given(st.text(max_size=80))
def test_provider_ids_are_safe_path_segments(provider_id: str) -> None:
    try:
        check_provider_id(provider_id)
    except UpstreamError:
        return
    assert provider_id.isascii() and "/" not in provider_id and "." not in provider_id
    assert provider_id == provider_id.lower() and 1 <= len(provider_id) <= 64


def test_the_scope_must_ask_for_openid() -> None:
    assert check_scope("openid  email") == "openid email"
    with pytest.raises(UpstreamError):
        check_scope("email profile")


def discovery(**changes: Any) -> dict[str, Any]:
    base = {
        "issuer": ISSUER,
        "authorization_endpoint": f"{ISSUER}/authorize",
        "token_endpoint": f"{ISSUER}/token",
        "jwks_uri": f"{ISSUER}/jwks",
        "id_token_signing_alg_values_supported": ["RS256", "HS256", "none"],
        "authorization_response_iss_parameter_supported": True,
    }
    return {k: v for k, v in (base | changes).items() if v is not None}


def test_a_discovery_document_gives_the_endpoints_and_safe_algorithms() -> None:
    found = check_discovery(discovery(), ISSUER)
    assert found.token_endpoint == f"{ISSUER}/token"
    assert found.algorithms == {"RS256"}  # never none, never an HMAC
    assert found.iss_parameter


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"issuer": ISSUER + "/"}, "issuer"),
        ({"issuer": "https://evil.example"}, "issuer"),
        ({"token_endpoint": "http://id.example.com/token"}, "https"),
        ({"jwks_uri": None}, "jwks_uri"),
        ({"id_token_signing_alg_values_supported": ["HS256", "none"]}, "no algorithm"),
        ({"code_challenge_methods_supported": ["plain"]}, "S256"),
    ],
)
def test_a_discovery_document_baton_refuses(changes: dict[str, Any], says: str) -> None:
    with pytest.raises(UpstreamError, match=says):
        check_discovery(discovery(**changes), ISSUER)


@pytest.mark.parametrize(
    "changes",
    [
        {"token_endpoint": "http://127.0.0.1:9100/internal"},
        {"jwks_uri": "http://localhost:2375/containers/json"},
        {"authorization_endpoint": "http://[::1]/authorize"},
    ],
)
def test_a_remote_issuer_may_not_point_at_this_hosts_loopback(changes: dict[str, Any]) -> None:
    # http on loopback is for an upstream itself on loopback (development), not a way for a
    # remote one to send Baton's token request (with the client secret) to a local service.
    with pytest.raises(UpstreamError, match="https"):
        check_discovery(discovery(**changes), ISSUER)


def test_a_loopback_issuer_may_use_loopback_endpoints() -> None:
    local = "http://127.0.0.1:8080"
    document = discovery(
        issuer=local,
        authorization_endpoint="http://localhost:8080/authorize",
        token_endpoint=f"{local}/token",
        jwks_uri=f"{local}/jwks",
    )
    assert check_discovery(document, local).token_endpoint == f"{local}/token"


def test_the_iss_parameter() -> None:
    """RFC 9207: equal when present; required when the upstream says it sends it."""
    says = Discovery(ISSUER, "a", "t", "j", frozenset({"RS256"}), iss_parameter=True)
    silent = Discovery(ISSUER, "a", "t", "j", frozenset({"RS256"}))
    check_iss_parameter(ISSUER, says)
    check_iss_parameter(None, silent)
    for iss, found in ((None, says), ("https://evil.example", silent), (ISSUER + "/", says)):
        with pytest.raises(UpstreamError):
            check_iss_parameter(iss, found)


def test_linking_by_email_needs_the_opt_in_and_a_verified_address() -> None:
    verified = UpstreamIdentity("s", "a@example.com", True)
    unverified = UpstreamIdentity("s", "a@example.com", False)
    assert may_link_by_email(True, verified)
    assert not may_link_by_email(False, verified)
    assert not may_link_by_email(True, unverified)
    assert not may_link_by_email(True, UpstreamIdentity("s", None, True))


def test_linking_a_local_user_by_email_needs_their_verified_address() -> None:
    assert may_link_user_by_email(email_verified=True, is_admin=False, linked_to_provider=False)
    # An unverified address may have been planted; an administrator is never linked by one; a
    # user with a link of this provider is not another account of it.
    for changes in ({"email_verified": False}, {"is_admin": True}, {"linked_to_provider": True}):
        facts = {"email_verified": True, "is_admin": False, "linked_to_provider": False} | changes
        assert not may_link_user_by_email(**facts)


def test_email_addresses_match_whatever_the_case() -> None:
    assert same_email("Ann@Corp.Example", "ann@corp.example")
    assert not same_email("ann@corp.example", "anne@corp.example")
    assert not same_email(None, "ann@corp.example")


@given(st.text(min_size=1, max_size=255))
def test_made_usernames_come_from_the_sub_alone(sub: str) -> None:
    name = username_for("gh", sub)
    assert name == username_for("gh", sub)  # deterministic: the same account, the same name
    assert name.startswith("gh-") and len(name) == 15
    assert all(c in "0123456789abcdef" for c in name[3:])
    assert username_for("gl", sub) != name


def test_the_sealed_secret_opens_only_with_its_key_and_provider() -> None:
    sealed = seal_secret(KEK, "github", "s3cret")
    assert "s3cret" not in sealed
    assert open_secret(KEK, "github", sealed) == "s3cret"
    for key, provider, text in (
        (bytes(32), "github", sealed),
        (KEK, "gitlab", sealed),  # moved to another provider's row
        (KEK, "github", sealed[:-2] + "AA"),
        (KEK, "github", "plaintext"),
    ):
        with pytest.raises(UpstreamError):
            open_secret(key, provider, text)


def test_the_upstream_timeout_option_reaches_every_upstream_call(tmp_path: Path) -> None:
    """`--upstream-timeout` is the deadline of each call the app makes to an upstream."""
    from starlette.requests import Request

    from baton.config.settings import Settings
    from baton.server.app import create_app
    from baton.server.endpoints.upstream import upstreams
    from baton.store.sql import SQLStore

    store = SQLStore.open(f"sqlite:///{tmp_path / 'baton.db'}")
    app = create_app(Settings(upstream_timeout=3), store)
    assert upstreams(Request({"type": "http", "app": app})).timeout == 3
    anyio.run(store.close)

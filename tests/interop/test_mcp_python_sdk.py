"""The `mcp` Python SDK's client (unmodified) and an MCP server of the same SDK protected by
Baton, against a real `baton serve` (issue 26, "How it is checked").

What ran is tests/interop/mcp_scenario.py (shared with the TypeScript SDK's module, so the
waits of both are spent once): the SDK's client in three modes, each its own client:
`document` (a client ID metadata document on loopback https is the client id), `registration`
(RFC 7591 at Baton's /register), `preregistered` (`baton client create --public`). Each test
checks one part of what the scenario recorded. A mode whose Baton feature is not built is an
expected failure that says so.
"""

from __future__ import annotations

import pytest

from tests.interop.mcp_harness import MCP_SCOPE, RETRY_AFTER
from tests.interop.mcp_scenario import (
    DOCUMENT_PATH,
    FEED_LATENCY,
    MODES,
    ROTATIONS,
    Journey,
    Scenario,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def record(mcp_scenario: Scenario) -> Scenario:
    return mcp_scenario


# -- the checks -----------------------------------------------------------------------------------


def expected_client_id(record: Scenario, journey: Journey) -> str:
    if journey.mode == "document":
        return record.world.document_url()
    if journey.mode == "preregistered":
        return record.world.baton.client("mcp-preregistered").client_id
    return journey.client.client_id  # what /register assigned


@pytest.mark.parametrize("mode", MODES)
def test_authorization_through_the_pages(record: Scenario, mode: str) -> None:
    """The SDK discovers Baton through the MCP server's RFC 9728 metadata, authorizes through
    the login and consent pages (PKCE, iss), and calls a tool with a token for the MCP server."""
    journey = record.journeys[mode]
    journey.passed("authorize")
    first = journey.first
    assert first is not None
    assert first["client_id"] == expected_client_id(record, journey)
    assert first["subject"] == "alice"
    assert MCP_SCOPE in first["scopes"]
    assert journey.audience == record.world.mcp.url  # RFC 8707: the token is for this server
    visit = journey.client.visits[0]
    assert visit.signed_in and visit.consent is not None, "login and consent pages were shown"
    assert visit.query.get("iss") == record.world.baton.issuer  # RFC 9207
    if mode == "document":
        # The consent page names the document's host and says no one vetted it.
        assert "localhost" in visit.consent
        assert "not verified" in visit.consent.lower()
        assert DOCUMENT_PATH in record.world.documents.fetches
    if mode == "registration":  # registered at Baton's own endpoint, as it advertises
        assert journey.client.storage.client_info.client_id == first["client_id"]
        assert record.world.advertised.get("registration_endpoint")


@pytest.mark.parametrize("mode", MODES)
def test_refresh_rotates_without_a_new_authorization(record: Scenario, mode: str) -> None:
    """Three tool calls after the short-lived access token expired: each refreshes (a new
    refresh token each time, the old one rotated out), the tool answers, the redirect handler is
    not called."""
    journey = record.journeys[mode]
    journey.passed("rotate")
    assert len(journey.after_rotations) == ROTATIONS
    assert all(a["client_id"] == journey.first["client_id"] for a in journey.after_rotations)  # type: ignore[index]
    history = journey.client.storage.history
    first_grant = history[: ROTATIONS + 1]
    refresh_tokens = [t.refresh_token for t in first_grant]
    access_tokens = [t.access_token for t in first_grant]
    assert len(set(refresh_tokens)) == ROTATIONS + 1, "every refresh rotated the refresh token"
    assert len(set(access_tokens)) == ROTATIONS + 1
    if journey.authorizations_before_revoke != 1:
        print("the client's tokens:", *journey.client.storage.log, sep="\n  ")
        print("the MCP server's answers:", *record.world.mcp.log, sep="\n  ")
    assert journey.authorizations_before_revoke == 1


@pytest.mark.parametrize("mode", MODES)
def test_revocation_reaches_the_mcp_server(record: Scenario, mode: str) -> None:
    """RFC 7009 at /revoke (the refresh token: the whole grant): the MCP server's verifier holds
    the grant as revoked within the feed's latency and refuses the access token (401); the
    SDK client then authorizes again through the pages."""
    journey = record.journeys[mode]
    journey.passed("reauthorize")
    assert journey.before_revoke == 200
    assert journey.revoke_status == 200
    assert journey.feed_latency is not None, f"no revocation event within {FEED_LATENCY} s"
    print(f"{mode}: the revocation reached the MCP server in {journey.feed_latency:.3f} s")
    assert journey.after_revoke == 401
    assert journey.reauthorized is not None
    assert journey.reauthorized["client_id"] == expected_client_id(record, journey)
    assert journey.client.authorizations == 2


@pytest.mark.parametrize("mode", MODES)
def test_baton_stopped_is_503_and_no_new_authorization(record: Scenario, mode: str) -> None:
    """Baton stopped: the MCP server answers 503 with Retry-After (not 401, which would send the
    client into an authorization against a server that is not there); the SDK client's call
    fails once its access token expired (its refresh finds no Baton), and it never calls its
    redirect handler again."""
    journey = record.journeys[mode]
    journey.passed("stop")
    bare = journey.stopped_bare
    assert bare is not None
    assert bare.status_code == 503, bare.text
    assert bare.headers.get("retry-after") == RETRY_AFTER
    assert "www-authenticate" not in bare.headers  # no challenge: the token may be good
    assert journey.stopped_expired is not None, "a call succeeded with Baton stopped"
    assert 401 not in journey.stopped_expired_answers
    assert journey.client.authorizations == journey.authorizations_at_stop


@pytest.mark.parametrize("mode", MODES)
def test_baton_stopped_a_valid_token_gets_503_through_the_sdk(record: Scenario, mode: str) -> None:
    """Baton stopped while the SDK client's access token is still good: the client sends it,
    the MCP server answers 503, the SDK's call fails, and no authorization starts."""
    journey = record.journeys[mode]
    journey.passed("stop")
    if not journey.stopped_fresh_answers:
        pytest.skip(
            "the machine took longer than the access token's second between the refresh and "
            "the call: the SDK judged its token expired and tried to refresh instead"
        )
    assert journey.stopped_fresh is not None, "the call succeeded with Baton stopped"
    assert 503 in journey.stopped_fresh_answers, journey.stopped_fresh_answers
    assert 401 not in journey.stopped_fresh_answers
    assert journey.client.authorizations == journey.authorizations_at_stop


def test_token_for_another_resource_is_refused(record: Scenario) -> None:
    """A token Baton issued for another API (its `aud`) is refused by the MCP server (401); the
    same client's token for the MCP server is accepted."""
    found = record.negatives
    assert found.failure is None, found.failure
    assert found.other_resource is not None and found.own_resource is not None
    assert found.other_resource.status_code == 401, found.other_resource.text
    assert "resource_metadata=" in found.other_resource.headers.get("www-authenticate", "")
    assert found.own_resource.status_code == 200, found.own_resource.text


def test_refresh_outside_the_grant_is_invalid_target(record: Scenario) -> None:
    """A refresh asking for a resource the grant does not hold (another registered API the
    client may ask for, or a stranger's) is invalid_target, and leaves the refresh token
    usable."""
    found = record.negatives
    assert found.failure is None, found.failure
    for answer in (found.refresh_other, found.refresh_attacker):
        assert answer is not None
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"] == "invalid_target"
    assert found.refresh_after is not None
    assert found.refresh_after.status_code == 200, found.refresh_after.text


def test_a_document_shaped_like_the_specifications_example(record: Scenario) -> None:
    """The MCP specification's example metadata document (a loopback redirect URI, no
    `application_type`) starts an authorization: the login page, not a page refusing the
    client. OpenID Connect Registration §2 forbids localhost only to web clients "using the
    OAuth Implicit Grant Type"; RFC 7591 and the metadata document draft have no
    application_type at all."""
    found = record.negatives
    assert found.failure is None, found.failure
    answer = found.example_document
    assert answer is not None
    assert answer.status_code in (200, 302, 303), answer.text[-1500:]
    assert "unknown client" not in answer.text


def test_a_document_client_may_ask_for_the_openid_connect_scopes(record: Scenario) -> None:
    """`--dynamic-client-scopes`: "OpenID Connect scopes are always allowed while it is on"
    (config/options.py), and the metadata lists them in scopes_supported, which the SDKs ask
    for (the Python SDK adds offline_access when it is listed, SEP-2207): a metadata document's
    client asking for `openid` with the operator's scope is sent to the login page, not back
    with invalid_scope."""
    found = record.negatives
    assert found.failure is None, found.failure
    answer = found.document_openid
    assert answer is not None
    location = answer.headers.get("location", "")
    assert "error=" not in location, location
    assert answer.status_code in (200, 302, 303), answer.text[-1500:]

"""The TypeScript MCP SDK's client (`@modelcontextprotocol/sdk` from npm, current 1.x,
unmodified) against an MCP server of the `mcp` Python SDK protected by Baton, on a real
`baton serve` (issue 26, "How it is checked").

What ran is tests/interop/mcp_scenario.py (shared with the Python SDK's module): three node
processes (mcp_typescript_client.mjs), one per mode: `document` (a client ID metadata document
on loopback https, the SDK's `clientMetadataUrl`), `registration` (the SDK registers at
Baton's /register, RFC 7591) and `preregistered` (`baton client create --public`). Each
authorizes through Baton's real login and consent pages (the scenario drives them when the
SDK's `redirectToAuthorization` prints the URL, and hands the redirect back), calls a tool,
then calls it again after each of two expiries of its short-lived access token: the MCP
server answers 401, the SDK refreshes (a new refresh token each time) and retries, without a
new authorization. Then Baton is stopped: the MCP server answers 503, the SDK's calls fail and it
starts no authorization. Without node and npm the tests are skipped, except in CI (CI=true).
"""

from __future__ import annotations

import pytest

from tests.interop.mcp_harness import MCP_SCOPE
from tests.interop.mcp_scenario import TS_DOCUMENT_PATH, TS_MODES, TS_ROTATIONS, Scenario, TsRun

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def record(mcp_scenario: Scenario) -> Scenario:
    if mcp_scenario.ts.unavailable is not None:
        raise mcp_scenario.ts.unavailable  # pytest's skip, or its failure in CI
    return mcp_scenario


def ran(record: Scenario, mode: str) -> TsRun:
    return record.ts.runs[mode]


@pytest.mark.parametrize("mode", TS_MODES)
def test_authorization_and_tool_call(record: Scenario, mode: str) -> None:
    """Discovery through the MCP server's RFC 9728 metadata, (registration at Baton's
    /register,) the login and consent pages, a tool call with a token for the MCP server (the
    adapter accepts only a token whose `aud` names it, and the SDK checks it again:
    `validate_token_resource`)."""
    run = ran(record, mode)
    done = run.done()
    first = run.first("called")
    assert first is not None and first["step"] == "first"
    answer = first["called"]
    assert answer["subject"] == "alice"
    assert MCP_SCOPE in answer["scopes"]
    if mode == "registration":
        assert done["registered"] is not None
        assert answer["client_id"] == done["registered"]
    elif mode == "document":  # the URL of its metadata document is its client id
        assert answer["client_id"] == record.world.documents.url(TS_DOCUMENT_PATH)
        assert TS_DOCUMENT_PATH in record.world.documents.fetches
    else:
        assert answer["client_id"] == record.world.baton.client("mcp-ts-preregistered").client_id


@pytest.mark.parametrize("mode", TS_MODES)
def test_refresh_rotates_without_a_new_authorization(record: Scenario, mode: str) -> None:
    """After each expiry the MCP server's 401 makes the SDK refresh: a new access and refresh
    token each time (the old refresh token rotated out), the call answered, one authorization."""
    run = ran(record, mode)
    done = run.done()
    calls = run.calls()
    assert [c["step"] for c in calls] == ["first"] + [
        f"rotation {i + 1}" for i in range(TS_ROTATIONS)
    ]
    saved = done["saved"]
    assert len(saved) == TS_ROTATIONS + 1, saved
    assert len({s["refresh"] for s in saved}) == TS_ROTATIONS + 1, "every refresh rotated"
    assert len({s["access"] for s in saved}) == TS_ROTATIONS + 1
    assert all(s["refresh"] for s in saved)
    assert done["authorizations"] == 1


@pytest.mark.parametrize("mode", TS_MODES)
def test_baton_stopped_no_new_authorization(record: Scenario, mode: str) -> None:
    """Baton stopped: both calls fail with the MCP server's 503 (never a 401, which would send
    the SDK into an authorization against a server that is not there), and the SDK's
    redirectToAuthorization is not called again."""
    run = ran(record, mode)
    done = run.done()
    stopped = run.first("stopped")
    assert stopped is not None
    for call in stopped["stopped"]:
        assert call["raised"] is not None, call
        assert call["code"] == 503, call
    assert done["authorizations"] == 1

"""`X-Forwarded-For` through a real `baton serve` (issue 21, M1): a client on loopback used to
choose its own address (uvicorn's `proxy_headers` believes any loopback peer), in the logs, the
security events and webhooks, and the lockouts. Now only `--trusted-proxies` makes it count."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.conftest import Server, ServerFactory, first_pair

pytestmark = pytest.mark.e2e

FORGED = "203.0.113.66"


def reuse_with(server: Server, forwarded: str) -> httpx.Response:
    """A refresh token used twice under `strict`: a reuse, recorded as a security event."""
    pair = first_pair(server)
    data = {"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]}
    headers = {"X-Forwarded-For": forwarded}
    with httpx.Client() as http:
        first = http.post(server.token_url, data=data, auth=server.client.basic, headers=headers)
        assert first.status_code == 200, first.text
        return http.post(server.token_url, data=data, auth=server.client.basic, headers=headers)


def recorded_sources(server: Server) -> list[str | None]:
    return [row[0] for row in server.sql("SELECT source_address FROM security_events")]


def logged_clients(server: Server) -> set[object]:
    return {
        line.get("client")
        for line in server.log_lines()
        if line.get("logger") == "baton.access" and line.get("path") == "/token"
    }


def test_by_default_a_forged_header_is_not_believed(baton_server: ServerFactory) -> None:
    server = baton_server(retry_policy="strict")
    reused = reuse_with(server, FORGED)
    assert reused.status_code == 400
    assert recorded_sources(server) == ["127.0.0.1"]
    assert logged_clients(server) == {"127.0.0.1"}
    assert FORGED not in server.stderr()


def test_a_trusted_proxy_names_the_client(baton_server: ServerFactory) -> None:
    server = baton_server(retry_policy="strict", trusted_proxies="127.0.0.1,10.0.0.0/8")
    reuse_with(server, f"198.51.100.1, {FORGED}, 10.9.8.7")
    assert recorded_sources(server) == [FORGED]
    assert FORGED in logged_clients(server)
    with httpx.Client() as http:
        refused = http.post(
            server.token_url,
            data={"grant_type": "client_credentials"},
            auth=server.client.basic,
            headers={"X-Forwarded-For": "evil-host, 10.0.0.1"},
        )
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_request"
    assert "evil" not in server.stderr()

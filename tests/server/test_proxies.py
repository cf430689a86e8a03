"""`X-Forwarded-For` (issue 21, M1): never read by default, even from a loopback peer; read right
to left, from trusted proxies only, with `--trusted-proxies`; garbage refused, never logged."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient

from baton.config import Settings
from baton.core.clock import FakeClock
from baton.core.policy import Policy
from baton.server.app import create_app
from baton.server.runtime.proxies import BadForwardedFor, client_address, parse_networks
from baton.store.sql import SQLStore
from tests.support import ISSUER, hidden_inputs, migrated_store, register_user

LOOPBACK = ("127.0.0.1", 40000)
FORGED = "203.0.113.66"


@contextmanager
def app_behind(
    tmp_path: Path, peer: tuple[str, int] = LOOPBACK, **settings: Any
) -> Iterator[tuple[TestClient, SQLStore]]:
    """The app, its requests arriving from `peer` (a loopback proxy by default)."""
    store = migrated_store(tmp_path / "baton.db", Policy())
    app = create_app(Settings(issuer=ISSUER, **settings), store, FakeClock())
    with TestClient(app, base_url=ISSUER, follow_redirects=False, client=peer) as http:
        yield http, store


def failed_logins(http: TestClient, forwarded: list[str]) -> list[int]:
    statuses = []
    for value in forwarded:
        page = http.get("/login")
        form = {**hidden_inputs(page.text), "username": "alice", "password": "wrong"}
        statuses.append(
            http.post("/login", data=form, headers={"X-Forwarded-For": value}).status_code
        )
    return statuses


def logged_clients(caplog: pytest.LogCaptureFixture) -> list[object]:
    return [
        r.msg.get("client")
        for r in caplog.records
        if r.name == "baton.access" and isinstance(r.msg, dict)
    ]


def test_by_default_a_forged_header_changes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="baton.access")
    with app_behind(tmp_path) as (http, store):
        register_user(store)
        # 25 wrong passwords, each "from" another address: the lockout (per account and
        # address) still sees one address and holds.
        statuses = failed_logins(http, [f"198.51.100.{i}" for i in range(25)])
        assert statuses[0] == 401
        assert statuses[-1] == 429
        # Not even garbage is looked at: the header is not read at all.
        assert http.get("/", headers={"X-Forwarded-For": "<script>"}).status_code == 200
    clients = logged_clients(caplog)
    assert clients and set(clients) == {"127.0.0.1"}


def test_trusted_proxy_gives_the_client_address(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="baton.access")
    with app_behind(tmp_path, trusted_proxies=("127.0.0.0/8", "10.0.0.0/8")) as (http, store):
        register_user(store)
        # Each request now comes from its own client address: no lockout per address between
        # them (more than the 5 one address may try; fewer than the 20 failures an account may
        # have from all addresses in an hour before the per-account throttle slows them).
        assert failed_logins(http, [f"198.51.100.{i}" for i in range(15)]) == [401] * 15
        # Right to left, skipping trusted hops; whatever the client wrote on the left is ignored.
        http.get("/", headers={"X-Forwarded-For": f"{FORGED}, 192.0.2.7, 10.1.2.3"})
    clients = logged_clients(caplog)
    assert clients[-1] == "192.0.2.7"
    assert FORGED not in clients


@pytest.mark.parametrize(
    "value",
    ["<script>alert(1)</script>", "unknown", "192.0.2.7, evil", "1.2.3.4:80", "", " , "],
)
def test_garbage_from_a_trusted_proxy_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, value: str
) -> None:
    caplog.set_level(logging.INFO)
    with app_behind(tmp_path, trusted_proxies=("127.0.0.1/32",)) as (http, _store):
        response = http.post(
            "/token", data={"grant_type": "client_credentials"}, headers={"X-Forwarded-For": value}
        )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert "X-Forwarded-For" in response.json()["error_description"]
    assert all(value not in str(r.msg) for r in caplog.records if value.strip(" ,"))


def test_an_untrusted_peer_is_never_believed(tmp_path: Path) -> None:
    with app_behind(tmp_path, peer=("192.0.2.1", 5000), trusted_proxies=("127.0.0.1/32",)) as (
        http,
        _store,
    ):
        # Not a trusted proxy: its header, garbage or not, is not read.
        assert http.get("/", headers={"X-Forwarded-For": "<garbage>"}).status_code == 200


def test_the_option_parses_networks_only() -> None:
    assert [str(n) for n in parse_networks("10.0.0.0/8, 127.0.0.1,::1")] == [
        "10.0.0.0/8",
        "127.0.0.1/32",
        "::1/128",
    ]
    assert parse_networks("") == ()
    with pytest.raises(ValueError, match="not an IP network"):
        parse_networks("10.0.0.0/8,proxy.internal")


NETWORKS = parse_networks("127.0.0.0/8,10.0.0.0/8,fd00::/8")


@given(entries=st.lists(st.text(max_size=20) | st.ip_addresses().map(str), max_size=6))
def test_the_address_is_an_ip_or_the_header_is_refused(entries: list[str]) -> None:
    header = ",".join(entries).encode("utf-8")
    try:
        found = client_address("127.0.0.1", [header], NETWORKS)
    except BadForwardedFor:
        return
    assert found is not None
    ipaddress.ip_address(found)  # never a free string

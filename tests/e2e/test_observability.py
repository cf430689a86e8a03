"""`baton serve --workers 2`: one scrape of /metrics sees both processes, the metric files go
away with the server, log lines are JSON, and a reuse reaches a webhook receiver signed."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from baton.core.clock import SystemClock
from tests.e2e.conftest import ServerFactory, first_pair
from tests.webhook_receiver import SECRET, Receiver, receiver

pytestmark = pytest.mark.e2e
__all__ = ["receiver"]  # a fixture

SCRAPE_TOKEN = "e2e-metrics-scrape-token"
REFRESHES = 40


def counter(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


def metric_dirs(temp: Path) -> set[Path]:
    return set(temp.glob("baton-metrics-*"))


def test_one_scrape_sees_every_worker_and_a_reuse_reaches_the_webhook(
    baton_server: ServerFactory,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    receiver.clock = SystemClock()
    monkeypatch.setenv("BATON_WEBHOOK_SECRET", SECRET)
    # The server's temporary directory is this test's own: any other `baton serve --workers`
    # on the machine (a parallel test, another run) makes and removes metric directories too.
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    dirs_before = metric_dirs(temp)
    server = baton_server(
        workers=2, retry_policy="strict", metrics_token=SCRAPE_TOKEN, webhook_url=receiver.url
    )
    assert metric_dirs(temp) - dirs_before, "a multiprocess directory for this run"
    pair = first_pair(server)
    token = pair["refresh_token"]
    # A fresh connection per request, so that both workers answer some.
    for _ in range(REFRESHES):
        response = httpx.post(
            server.token_url,
            data={"grant_type": "refresh_token", "refresh_token": token},
            auth=server.client.basic,
            headers={"Connection": "close"},
        )
        assert response.status_code == 200, response.text
        token = response.json()["refresh_token"]
    reused = httpx.post(
        server.token_url,
        data={"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]},
        auth=server.client.basic,
    )
    assert reused.json()["error"] == "invalid_grant"

    assert httpx.get(server.url + "/metrics").status_code == 401
    scrapes = [
        httpx.get(
            server.url + "/metrics",
            headers={"Authorization": f"Bearer {SCRAPE_TOKEN}", "Connection": "close"},
        ).text
        for _ in range(6)
    ]
    for text in scrapes:  # whichever worker answered, it reports the whole server
        assert counter(text, "baton_refresh_rotations_total") == REFRESHES
        assert counter(text, "baton_reuse_detections_total", kind="refresh_token") == 1
        assert counter(text, "baton_revocations_total", what="grant", cause="reuse") == 1
        ok = {"route": "/token", "method": "POST", "status": "200"}
        assert counter(text, "baton_http_requests_total", **ok) == REFRESHES + 1
        assert counter(text, "baton_active_grants") == 0

    deadline = time.monotonic() + 15
    while len(receiver.received) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    events = receiver.events()  # each signature verified
    assert sorted(e["type"] for e in events) == ["grant.revoked", "reuse_detected"]
    assert len({e["grant_id"] for e in events}) == 1

    lines = server.log_lines()
    access = [line for line in lines if line.get("logger") == "baton.access"]
    assert len({line["pid"] for line in access}) == 2, "both workers answered"
    assert all(line["request_id"] for line in access)
    server.stop()
    assert metric_dirs(temp) == dirs_before, "the metric files went with the server"

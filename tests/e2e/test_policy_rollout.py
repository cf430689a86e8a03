"""Rolling out a stricter leeway, report first (issue 28), with real processes end to end.

A `baton serve`, an API behind `baton.resource` (tests/e2e/rollout_api.py: JWT access tokens
checked locally, deaths learnt from the revocation feed, superseded uses reported to /token-use)
and two integrations:

- "Good app" uses the SDK (`baton.client`): after each refresh it calls the API with the new pair;
- "Lagging app" keeps calling the API with its old access token for two minutes after each
  refresh, as the integrations the issue's notice was written for did.

A tightening of both clients' leeway from the server's 600 s to 60 s is scheduled a day ahead,
report-only until then. The report (`baton report enforcement`) names the lagging app with its
stale uses, their delays after the exchange and what the new leeway would refuse, and not the
good one; nothing is refused. At `effective_at` enforcement starts: the lagging app's stale call
80 s after a refresh is refused by the API, while the good app sees no failure.

Time moves through `--clock-offset-file`: the server, the API and the SDK read the same shifted
clock (`OffsetFileClock`), so two minutes and a day pass in a second or two.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from baton.client import BearerAuth, MemoryStore, Refresher, TokenPair, store_pair
from baton.server.runtime.rehearsal import OffsetFileClock
from tests.client.conftest import CHILD_PYTHONPATH
from tests.e2e.conftest import (
    CLIENT_SCOPE,
    REDIRECT_URI,
    START_TIMEOUT,
    Credentials,
    Server,
    ServerFactory,
    cli_in_process,
    first_pair,
    free_port,
    spawn_uvicorn,
)

KEK = "the rollout rehearsal's key-encryption key, 32+ characters"
SUPERSEDED = "baton-token-superseded"
DAY = 86_400
NEW_LEEWAY = 60
# When the lagging app calls the API with its old access token, in seconds after its refresh:
# two inside the new leeway, two past it (never on its boundary, which the second it takes
# to act on could cross).
STALE_CALLS = (20, 50, 80, 120)
ROUNDS = 3


class Rehearsal:
    """The shared shifted clock: `advance` moves every process's time at once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        path.write_text("0")
        self.clock = OffsetFileClock(str(path))

    def advance(self, seconds: int) -> None:
        self.offset += seconds
        self.path.write_text(str(self.offset))
        # Each process looks at the file at most every 50 ms.
        time.sleep(0.12)

    def now(self) -> int:
        return int(time.time()) + self.offset


@contextmanager
def rollout_api(server: Server, rehearsal: Rehearsal, directory: Path) -> Iterator[str]:
    port = free_port()
    log = directory / "api.log"
    env = {
        **os.environ,
        "PYTHONPATH": CHILD_PYTHONPATH,
        "BATON_ISSUER": server.url,
        "BATON_RS_ID": server.resource_server.client_id,
        "BATON_RS_SECRET": server.resource_server.client_secret,
        "BATON_CLOCK_FILE": str(rehearsal.path),
    }
    process = spawn_uvicorn(["tests.e2e.rollout_api:app"], port, env, log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"the API exited:\n{log.read_text()}")
            try:
                httpx.get(url + "/hello")
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    pytest.fail(f"the API did not start:\n{log.read_text()}")
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except Exception:
            process.kill()


def refresh(server: Server, client: Credentials, refresh_token: str) -> dict[str, Any]:
    response = httpx.post(
        server.token_url,
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        auth=client.basic,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def call(api: str, access_token: str) -> httpx.Response:
    return httpx.get(api + "/hello", headers={"Authorization": f"Bearer {access_token}"})


def report(server: Server, rehearsal: Rehearsal) -> dict[str, Any]:
    out = cli_in_process(
        "report",
        "enforcement",
        "--db",
        str(server.db),
        "--all",
        "--since",
        "7d",
        "--json",
        "--clock-offset-file",
        str(rehearsal.path),
    )
    found: dict[str, Any] = json.loads(out)
    return found


def schedule(server: Server, client_id: str, effective_at: int) -> None:
    cli_in_process(
        "client",
        "policy",
        "set",
        client_id,
        "--db",
        str(server.db),
        "--leeway",
        str(NEW_LEEWAY),
        "--effective-at",
        str(effective_at),
        "--report-only",
    )


def test_a_stricter_leeway_is_measured_report_only_then_enforced_on_its_date(
    baton_server: ServerFactory, tmp_path: Path
) -> None:
    rehearsal = Rehearsal(tmp_path / "clock-offset")
    server = baton_server(
        key_encryption_key=KEK,
        access_token_format="jwt",
        clock_offset_file=str(rehearsal.path),
        signal_flush_interval=1,
    )
    made = json.loads(
        cli_in_process(
            "client",
            "create",
            "--db",
            str(server.db),
            "--name",
            "Lagging app",
            "--redirect-uri",
            REDIRECT_URI,
            "--scope",
            CLIENT_SCOPE,
            "--json",
        )
    )
    lagging = Credentials(made["client_id"], made["client_secret"])
    good = server.client
    effective_at = rehearsal.now() + DAY
    for client in (good, lagging):
        schedule(server, client.client_id, effective_at)

    # The good app: the SDK, on the rehearsal's clock.
    store = MemoryStore()
    sent = rehearsal.clock.time()
    store_pair(store, TokenPair.from_response(first_pair(server), sent))
    refresher = Refresher.discover(
        server.url, good.client_id, good.client_secret, store, clock=rehearsal.clock.time
    )
    auth = BearerAuth(refresher)
    superseded: list[object] = []
    auth.on_superseded(superseded.append)

    lagging_pair = first_pair(replace(server, client=lagging))

    with rollout_api(server, rehearsal, tmp_path) as api, httpx.Client(auth=auth) as sdk:

        def good_app_calls() -> None:
            response = sdk.get(api + "/hello")
            assert response.status_code == 200, response.text
            assert SUPERSEDED not in response.headers

        # -- report-only: a day before the change takes effect --------------------------------
        for _round in range(ROUNDS):
            refresher.refresh(refresher.pair())
            good_app_calls()
            old_access = lagging_pair["access_token"]
            lagging_pair = refresh(server, lagging, lagging_pair["refresh_token"])
            time.sleep(0.3)  # the feed's announcement reaches the API (milliseconds)
            elapsed = 0
            for at in STALE_CALLS:
                rehearsal.advance(at - elapsed)
                elapsed = at
                response = call(api, old_access)
                # Report-only never refuses: the server's 600 s leeway is still in force.
                assert response.status_code == 200, response.text
                assert response.headers[SUPERSEDED].startswith("dies-at=")
                good_app_calls()

        # -- the report names the lagging app, with its evidence -------------------------------
        deadline = time.monotonic() + 20
        while True:
            found = {entry["client_id"]: entry for entry in report(server, rehearsal)["clients"]}
            stale = found.get(lagging.client_id, {}).get("stale_access", {})
            if stale.get("count", 0) >= ROUNDS * len(STALE_CALLS) or time.monotonic() > deadline:
                break
            time.sleep(0.3)  # the API's reports (every 0.2 s) and the server's flush (1 s)
        entry = found[lagging.client_id]
        assert entry["stale_access"]["count"] == ROUNDS * len(STALE_CALLS), entry
        # The delays after the exchange, as the API saw them (a second of slack for the time a
        # step takes).
        assert abs(entry["stale_access"]["p50_delay_seconds"] - 50) <= 2, entry
        assert abs(entry["stale_access"]["p95_delay_seconds"] - 120) <= 2, entry
        refused = [at for at in STALE_CALLS if at >= NEW_LEEWAY]
        assert entry["would_refuse"]["count"] == ROUNDS * len(refused), entry
        assert entry["would_refuse_by_rule"]["leeway"]["count"] == ROUNDS * len(refused)
        assert entry["breaking_share"] == 1.0, entry
        assert entry["affected"] is True
        assert good.client_id not in found or not found[good.client_id]["affected"], found
        assert superseded == []  # the good app never held a superseded token

        # -- effective_at: enforcement starts ------------------------------------------------
        rehearsal.advance(effective_at - rehearsal.now() + 1)
        refresher.refresh(refresher.pair())
        good_app_calls()
        # A day later its access token has expired: a refresh gives it a live one to misuse.
        lagging_pair = refresh(server, lagging, lagging_pair["refresh_token"])
        old_access = lagging_pair["access_token"]
        lagging_pair = refresh(server, lagging, lagging_pair["refresh_token"])
        time.sleep(0.3)
        rehearsal.advance(20)
        assert call(api, old_access).status_code == 200  # inside the new 60 s leeway
        good_app_calls()
        rehearsal.advance(60)
        refused_call = call(api, old_access)
        assert refused_call.status_code == 401, refused_call.text
        assert 'error="invalid_token"' in refused_call.headers["www-authenticate"]
        good_app_calls()
        # The server agrees: the old token is dead at introspection too.
        assert server.introspect(old_access)["active"] is False
        # The lagging app's new pair works: only its stale use was refused.
        assert call(api, lagging_pair["access_token"]).status_code == 200

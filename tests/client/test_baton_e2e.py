"""The SDK against real `baton serve` processes: chaos, 8 processes x 8 threads on one file
store, in make test's serial phase (tests/conftest.py: "load"). Lost responses, kill -9 and 401
retries: test_sdk_recovery_e2e.py."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
from pathlib import Path

import pytest

from baton.client import FileStore
from tests.client.conftest import CHILD_PYTHONPATH, ROOT, ApiFactory
from tests.client.test_sdk_recovery_e2e import (
    grant_status,
    refresh_rows,
    refresher_for,
    seeded,
    worker_command,
)
from tests.e2e.conftest import ServerFactory

pytestmark = pytest.mark.e2e

CHAOS_SECONDS = float(os.environ.get("BATON_CHAOS_SECONDS", "15"))
CHAOS_PROCESSES = 8
CHAOS_THREADS = 8


def test_chaos_8_processes_x_8_threads_share_one_file_store(
    baton_server: ServerFactory, api: ApiFactory, tmp_path: Path
) -> None:
    server = baton_server(access_ttl=2, leeway=3)
    resource = api(server)
    store = FileStore(tmp_path / "shared" / "tokens.json")
    first = seeded(server, store)
    grant_id = server.introspect(first.access_token)["grant_id"]

    env = {**os.environ, "PYTHONPATH": CHILD_PYTHONPATH}
    workers = [
        subprocess.Popen(
            worker_command(
                "chaos",
                store,
                server,
                "--api",
                resource.url,
                "--threads",
                str(CHAOS_THREADS),
                "--duration",
                str(CHAOS_SECONDS),
            ),
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(CHAOS_PROCESSES)
    ]
    results = []
    for worker in workers:
        out, err = worker.communicate(timeout=CHAOS_SECONDS + 120)
        assert worker.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))

    requests_made = sum(r["requests"] for r in results)
    failed = sum(r["failed"] for r in results)
    rotations = sum(r["rotations"] for r in results)
    retried = sum(r["retried_401"] for r in results)
    problems = [p for r in results for p in r["refresh_failures"]]
    errors = [e for r in results for e in r["errors"]]
    rows = refresh_rows(server, grant_id)
    figures = (
        f"chaos: {CHAOS_PROCESSES} processes x {CHAOS_THREADS} threads, {CHAOS_SECONDS:g} s, "
        f"access TTL 2 s, leeway 3 s: {requests_made} requests, {failed} failed, "
        f"{rotations} refreshes by the SDK ({len(rows) - 1} generations at the server), "
        f"{retried} requests retried after a 401, {len(problems)} failed exchange attempts"
    )
    print("\n" + figures)
    assert failed == 0, (figures, errors[:10])
    assert problems == [], problems
    # Enough load and enough rotations for the test to mean something.
    assert requests_made > 20 * CHAOS_SECONDS, figures
    assert rotations >= CHAOS_SECONDS / 2, figures
    # Single flight: one exchange per generation, a chain with no sibling, and the SDK's count of
    # rotations is exactly the server's.
    assert len(rows) == rotations + 1, (figures, rows)
    assert [row[2] for row in rows] == list(range(len(rows)))
    assert all(child[1] == parent[0] for parent, child in itertools.pairwise(rows))
    # Never revoked by reuse detection, and the last pair works.
    assert grant_status(server, grant_id) == "active"
    assert server.sql("SELECT count(*) FROM security_events WHERE kind LIKE '%reuse'")[0][0] == 0
    final = store.load()
    assert final is not None and final.exchanging_since is None
    refresher, _, _ = refresher_for(server, store)
    last = refresher.refresh(final)  # the chain goes on from the stored pair
    assert server.introspect(last.access_token)["generation"] == len(rows)

"""A fast run of `make bench`'s own code path (bench/compare.py) against a real `baton serve`.

Baton alone, SQLite, a one-second run per workload (a few hundred requests in all): the harness
seeds it through `bench/peers/baton_peer.py`, starts `baton serve --workers 2`, drives wrk with
`bench/wrk/workload.lua` and writes the report. Every response must have passed the script's
checks (a refresh returns 200 with a pair never seen before). A second test shows the checks
can fail: a server that answers every refresh with the same pair is caught.

Needs wrk (Debian package `wrk`): skipped without it, except in CI, where it fails.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import pytest

from tests.bench import bench_module
from tests.node import in_ci

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def compare() -> ModuleType:
    if shutil.which("wrk") is None:
        if in_ci():
            pytest.fail("wrk is required in CI (apt-get install wrk)")
        pytest.skip("wrk is not installed (apt-get install wrk)")
    return bench_module("compare")


def test_a_short_run_against_baton_has_no_errors_and_fresh_pairs(
    compare: ModuleType, tmp_path: Path
) -> None:
    options = compare.Options(
        targets=["baton-sqlite"],
        duration=1,
        rounds=1,
        refresh_concurrency=[1, 4],
        warmup=1,
        revoke_rate_cap=1000,
        introspect_pool=50,
        install=False,
        # The pause (after a sync) between measured runs keeps one target's leftover writes out
        # of the next one's figures; nothing here compares figures: a token pause keeps its path.
        settle=0.05,
    )
    outcome = compare.benchmark(options)

    measured = {r.workload: r for r in outcome.results if r.round == 1}
    assert set(measured) == {"refresh c1", "refresh c4", "introspect c16", "revoke c16"}
    for result in outcome.results:
        assert result.errors == 0, (result.workload, result.sample)
        assert result.ok > 0, result.workload
    assert sum(r.ok for r in outcome.results) >= 100
    assert outcome.targets[0].peak_rss > 0
    assert all(t.process is not None and t.process.poll() is not None for t in outcome.targets)

    refresh = [r for r in outcome.results if r.workload == "refresh c4"]
    assert all(r.cpu_seconds is not None and r.cpu_seconds > 0 for r in refresh)

    report = compare.write_report(options, outcome, tmp_path / "RESULTS.md")
    assert "| refresh c4 | baton-sqlite |" in report
    # Issue 29's rows: this run has no c16 refresh and no peer, only the peak RSS is measured.
    assert "## Issue 29 targets" in report
    assert "| baton-sqlite refresh c16 p99 | not measured | < 10 ms | not measured |" in report
    assert "| baton-sqlite peak RSS under load (process tree) |" in report
    assert "Errors over the whole run (warm-up included): 0." in report


class _SamePairEveryTime(BaseHTTPRequestHandler):
    """A broken server: every refresh "succeeds" with one and the same pair."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = json.dumps({"access_token": "same-access", "refresh_token": "same-refresh"})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def broken_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SamePairEveryTime)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_the_checks_catch_a_server_that_repeats_a_pair(
    compare: ModuleType, broken_server: int, tmp_path: Path
) -> None:
    target = compare.Target(
        "broken", "broken", "baton", "memory", "test server", compare.BATON_PATHS
    )
    target.port = broken_server
    target.seeded = compare.Seeded("client", "secret", [("a1", "r1"), ("a2", "r2")])
    result = compare.run_wrk(
        shutil.which("wrk"),
        target,
        compare.Workload("refresh", 1),
        ["r1", "r2"],
        1,
        tmp_path,
        1,
        None,
    )
    assert result.ok == 1  # the first answer is new; every later one repeats it
    assert result.errors > 0
    assert result.sample.startswith("200 ")
    assert "<token>" in result.sample
    assert "same-refresh" not in result.sample  # the report never shows a token

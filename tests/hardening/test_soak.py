"""A short soak (`bench/soak.py`, which `make soak` runs for minutes): a real `baton serve`, mixed
traffic from eight workers for a few seconds, every token compared with the model through
introspection and in the database."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SOAK = Path(__file__).resolve().parents[2] / "bench" / "soak.py"


@pytest.mark.e2e
def test_a_short_soak_matches_the_model() -> None:
    # Six seconds of traffic with a one-second leeway: tokens outlive their leeway often enough
    # that every run sees reuse (6-8 grants revoked by it in a run, measured).
    args = ["--duration", "6", "--workers", "8", "--leeway", "1", "--access-ttl", "3"]
    args += ["--users", "2", "--clients", "2", "--json"]
    result = subprocess.run(
        [sys.executable, str(SOAK), *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    lines = result.stdout.strip().splitlines()
    assert lines, result.stderr
    figures = json.loads(lines[-1])
    assert result.returncode == 0, (figures.get("mismatch_details"), result.stderr[-2000:])
    assert figures["ok"] is True
    assert figures["server_errors_5xx"] == 0
    assert figures["mismatches"] == 0
    assert figures["transport_errors"] == {}
    # The traffic did what it is for: rotations, retries, reuse, revocations, and checks.
    answers = figures["answers"]
    for kind in ("code 200", "refresh 200", "refresh 400 invalid_grant", "revoke refresh 200"):
        assert answers.get(kind, 0) > 0, answers
    assert figures["grants_revoked"].get("reuse", 0) > 0, figures["grants_revoked"]
    assert figures["checks"]["matched"] > 1000, figures["checks"]

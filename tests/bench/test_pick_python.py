"""`bench/pick_python.py`: which CPython `make bench` runs the Python servers on."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.bench import bench_module


@pytest.fixture(scope="module")
def pick() -> ModuleType:
    return bench_module("pick_python")


def test_a_faster_interpreter_is_chosen_over_the_first(pick: ModuleType) -> None:
    found = [("python3", "3.11.7", 0.254), ("/usr/bin/python3.11", "3.11.2", 0.224)]
    assert pick.choose(found) == "/usr/bin/python3.11"


def test_a_tie_within_three_percent_goes_to_the_first(pick: ModuleType) -> None:
    found = [("python3", "3.11.7", 0.230), ("/usr/bin/python3.11", "3.11.2", 0.225)]
    assert pick.choose(found) == "python3"


def test_without_candidates_the_running_interpreter_is_kept(pick: ModuleType) -> None:
    assert pick.choose([]) == sys.executable


def test_the_probe_times_a_real_interpreter(pick: ModuleType) -> None:
    got = pick.timed(sys.executable)
    assert got is not None
    version, seconds = got
    assert version == ".".join(map(str, sys.version_info[:3]))
    assert 0 < seconds < 60


def test_an_interpreter_that_cannot_run_the_probe_is_left_out(
    pick: ModuleType, tmp_path: Path
) -> None:
    fake = tmp_path / "python3.11"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    assert pick.timed(str(fake)) is None


def test_the_report_marks_the_chosen_interpreter(pick: ModuleType) -> None:
    here = os.path.realpath(sys.executable)
    table = pick.report([(here, "3.11.2", 0.2)], here)
    assert f"| `{here}` | 3.11.2 | 200 ms | chosen |" in table

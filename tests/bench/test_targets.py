"""`make bench`'s issue 29 rows (bench/compare.py): from a run's medians to PASS/FAIL rows.

Pure: the medians are made up here, no server runs.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from tests.bench import bench_module


@pytest.fixture(scope="module")
def compare() -> ModuleType:
    return bench_module("compare")


def median(
    compare: ModuleType, per_second: float, p99: float = 5.0, cpu: float | None = None
) -> Any:
    return compare.Median(per_second, 1.0, p99, 0, 0, 3, cpu)


def by_goal(rows: list[Any]) -> dict[str, tuple[str, str, str]]:
    return {r.goal: (r.measured, r.threshold, r.verdict) for r in rows}


def test_a_run_meeting_every_target_passes_every_row(compare: ModuleType) -> None:
    table = {
        ("node", "refresh c16"): median(compare, 3000),
        ("node", "revoke c16"): median(compare, 4000),
        ("node", "introspect c16"): median(compare, 4000),
        ("baton-postgresql", "refresh c16"): median(compare, 3000, p99=19.9, cpu=299),
        ("baton-postgresql", "revoke c16"): median(compare, 4000),
        ("baton-postgresql", "introspect c16"): median(compare, 6000),
        ("baton-sqlite", "refresh c16"): median(compare, 4500, p99=9.9, cpu=250),
    }
    rss = {"baton-sqlite": 150 * 2**20, "baton-postgresql": 200 * 2**20}

    rows = compare.issue29_rows(table, rss)

    assert len(rows) == len(compare.ISSUE_29)
    assert [r.verdict for r in rows] == ["PASS"] * len(rows)
    found = by_goal(rows)
    assert found["baton-postgresql introspect c16 / node"] == ("1.500x", ">= 1.5x", "PASS")
    assert found["baton-sqlite refresh c16 / node"] == ("1.500x", ">= 1.5x", "PASS")
    assert found["baton-postgresql refresh c16 p99"] == ("19.90 ms", "< 20 ms", "PASS")
    assert found["baton-sqlite server CPU per refresh"] == ("250.0 us", "<= 300 us", "PASS")
    assert found["baton-postgresql peak RSS under load (process tree)"][0] == "200.0 MB"


def test_each_threshold_fails_just_past_it(compare: ModuleType) -> None:
    table = {
        ("node", "refresh c16"): median(compare, 1000),
        ("node", "revoke c16"): median(compare, 1000),
        ("node", "introspect c16"): median(compare, 1000),
        ("baton-postgresql", "refresh c16"): median(compare, 999, p99=20.0, cpu=301),
        ("baton-postgresql", "revoke c16"): median(compare, 999),
        ("baton-postgresql", "introspect c16"): median(compare, 1499),
        ("baton-sqlite", "refresh c16"): median(compare, 1499, p99=10.0, cpu=300.5),
    }
    rss = {"baton-sqlite": 201 * 2**20, "baton-postgresql": 390 * 2**20}

    rows = compare.issue29_rows(table, rss)

    assert [r.verdict for r in rows] == ["FAIL"] * len(rows)
    found = by_goal(rows)
    assert found["baton-sqlite refresh c16 p99"] == ("10.00 ms", "< 10 ms", "FAIL")
    # A ratio just short of its threshold does not read as equal to it.
    assert found["baton-sqlite refresh c16 / node"] == ("1.499x", ">= 1.5x", "FAIL")
    assert found["baton-postgresql peak RSS under load (process tree)"] == (
        "390.0 MB",
        "<= 200 MB",
        "FAIL",
    )


def test_a_target_or_peer_left_out_of_the_run_is_not_measured(compare: ModuleType) -> None:
    # SQLite only, without node: the ratios cannot be taken, PostgreSQL was not run at all.
    table = {("baton-sqlite", "refresh c16"): median(compare, 4000, p99=8, cpu=None)}

    rows = compare.issue29_rows(table, {"baton-sqlite": 120 * 2**20})

    found = by_goal(rows)
    assert found["baton-sqlite refresh c16 / node"][2] == "not measured"
    assert found["baton-sqlite refresh c16 p99"][2] == "PASS"
    assert found["baton-sqlite server CPU per refresh"][2] == "not measured"  # not sampled
    assert found["baton-sqlite peak RSS under load (process tree)"][2] == "PASS"
    assert all(v[2] == "not measured" for k, v in found.items() if "postgresql" in k)
    table_lines = compare.issue29_table(rows)
    assert table_lines[0] == "| target | measured | threshold | result |"
    assert "| baton-postgresql refresh c16 / node | not measured | >= 1.0x | not measured |" in (
        table_lines
    )


def test_cpu_per_request_sums_the_rounds(compare: ModuleType) -> None:
    def result(ok: int, cpu: float | None) -> Any:
        return compare.Result("t", "refresh c16", 1, ok, 1.0, 1.0, 2.0, 0, 0, "", cpu)

    assert compare.cpu_per_request_us([result(1000, 0.25), result(3000, 0.95)]) == 300.0
    assert compare.cpu_per_request_us([result(1000, 0.25), result(1000, None)]) is None

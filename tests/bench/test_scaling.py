"""bench/scaling.py: the database grown in bulk, and a tiny run of the whole curve.

The first test is fast and runs in the default suite: the filler rows have the shape the
store writes (one refresh and one access token per grant, unique 32-byte digests, live). The
second runs `scaling.py` end to end at 200 and 400 grants on SQLite and PostgreSQL against real
`baton serve` processes and wrk: marked `load` (run alone, after the rest of `make test`).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
from pathlib import Path
from types import ModuleType

import pytest

from tests.bench import bench_module
from tests.node import in_ci


@pytest.fixture(scope="module")
def scaling() -> ModuleType:
    return bench_module("scaling")


def test_the_filler_has_one_live_pair_per_grant_shaped_as_the_store_writes_it(
    scaling: ModuleType, tmp_path: Path
) -> None:
    compare = scaling.compare
    database = scaling.SQLiteDatabase(tmp_path / "grown.db")
    target = compare.all_targets()["baton-sqlite"]
    compare.seed_baton(target, database.url, 3)
    template = database.template()

    database.grow(1000, template)
    database.grow(2500, template)  # a second step adds to the first

    with sqlite3.connect(tmp_path / "grown.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # as the server runs
        assert conn.execute("SELECT count(*) FROM grants").fetchone()[0] == 2500
        counts = conn.execute(
            "SELECT count(*), count(DISTINCT digest), min(length(digest)), max(length(digest)),"
            " count(DISTINCT grant_id) FROM refresh_tokens"
        ).fetchone()
        assert counts == (2500, 2500, 32, 32, 2500)
        counts = conn.execute(
            "SELECT count(*), count(DISTINCT digest), min(length(digest)), count(DISTINCT"
            " refresh_token_id), min(length(jti)), max(length(jti)) FROM access_tokens"
        ).fetchone()
        assert counts == (2500, 2500, 32, 2500, 17, 17)
        # Every access token's companion is its grant's refresh token, every row alive, and
        # the refresh token notes its companion's `exp` as INSERT_REFRESH does.
        mismatched = conn.execute(
            "SELECT count(*) FROM access_tokens a JOIN refresh_tokens r"
            " ON r.id = a.refresh_token_id JOIN grants g ON g.id = r.grant_id"
            " WHERE a.grant_id != r.grant_id OR r.access_expires_at != a.expires_at"
            " OR r.exchanged_at IS NOT NULL OR g.revoked_at IS NOT NULL"
            " OR length(g.id) != 26 OR g.id NOT LIKE 'grt\\_%' ESCAPE '\\'"
        ).fetchone()[0]
        assert mismatched == 0
    _, depths = database.structure()
    assert set(depths) == {"refresh_tokens.digest", "access_tokens.digest", "grants.id"}
    assert all(depth is not None and depth >= 2 for depth in depths.values())


def test_a_kept_size_is_served_again_as_it_was_grown(scaling: ModuleType, tmp_path: Path) -> None:
    """`--keep DIR`: a grown size and its unused real tokens are kept, and a later run starts
    from a copy of them, whatever the run before it rotated."""
    compare = scaling.compare
    path = tmp_path / "work.db"
    database = scaling.SQLiteDatabase(path)
    target = compare.all_targets()["baton-sqlite"]
    compare.seed_baton(target, database.url, 4)
    database.grow(300, database.template())
    database.after_seed()
    target.seeded.take(2)  # the warm-up of an earlier size
    kept = scaling.KeptSizes(tmp_path / "kept")
    assert not kept.has(300)
    kept.save(300, path, target.seeded)
    assert kept.has(300)
    assert {oct(f.stat().st_mode & 0o777) for f in (tmp_path / "kept").iterdir()} == {"0o600"}

    with contextlib.closing(sqlite3.connect(path)) as conn:  # a run's rounds change the copy
        conn.execute("DELETE FROM access_tokens")
        conn.commit()
    Path(f"{path}-wal").write_bytes(b"left by a killed server")

    seeded = kept.restore(300, path)

    assert (seeded.client_id, seeded.pairs, seeded.taken) == (
        target.seeded.client_id,
        target.seeded.pairs,
        2,
    )
    assert seeded.take(1) == target.seeded.pairs[2:3]
    assert not Path(f"{path}-wal").exists()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT count(*) FROM access_tokens").fetchone()[0] == 300


@pytest.mark.load
@pytest.mark.e2e
def test_a_tiny_curve_on_both_databases(scaling: ModuleType, tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        if in_ci():
            pytest.fail("wrk is required in CI (apt-get install wrk)")
        pytest.skip("wrk is not installed (apt-get install wrk)")
    targets = "sqlite,postgresql"
    if not scaling.compare.postgres_available(scaling.compare.DEFAULT_POSTGRES):
        if in_ci():
            pytest.fail("PostgreSQL is required in CI")
        targets = "sqlite"
    out, data = tmp_path / "SCALING.md", tmp_path / "scaling.json"
    argv = ["--sizes", "200,400", "--targets", targets, "--duration", "1", "--rounds", "1"]
    argv += ["--warmup", "1", "--settle", "0.05", "--work", str(tmp_path)]
    argv += ["--out", str(out), "--json", str(data), "--no-plot"]

    assert scaling.main(argv) == 0  # no request failed

    found = json.loads(data.read_text())
    points = found["points"]
    kinds = ["SQLite", "PostgreSQL"] if "postgresql" in targets else ["SQLite"]
    assert [(p["database"], p["grants"]) for p in points] == [
        (kind, size) for kind in kinds for size in (200, 400)
    ]
    for point in points:
        assert point["per_second"] > 0 and point["errors"] == 0
        assert point["refresh_rows"] >= point["grants"]
        assert point["cpu_us"] is not None and point["cpu_us"] > 0
        assert point["db_bytes"] > 0
        assert all(depth is not None for depth in point["index_depth"].values())
        assert point["wal_bytes_per_exchange"] > 0
    assert len(found["verdicts"]) == len(kinds)
    report = out.read_text()
    assert "| SQLite | 400 |" in report
    assert all(v in report for v in found["verdicts"])

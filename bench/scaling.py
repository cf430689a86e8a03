"""Refresh exchanges as the database grows: `baton serve --workers 2`, 10k, 1M and 5M live grants.

    bench/.scratch/baton/bin/python bench/scaling.py [--sizes 10000,1000000,5000000]
        [--targets sqlite,postgresql] [--duration 10] [--rounds 3] [--concurrency 16]

For each database (a fresh SQLite file, a fresh PostgreSQL database) the grants are added in
steps, so the seeding is paid once per database: seed up to the first size, measure, add up to
the next, measure, and so on. Each grant has what the token endpoint keeps for it: its grant
row, its refresh token (unexchanged, live: kept for reuse detection) and its access token. The
tokens wrk presents are real (`bench/peers/baton_peer.py`, planned by `plan_pair`); the rest are
filler added with bulk SQL, shaped as the store writes them (`INSERT_REFRESH`, `INSERT_ACCESS`)
with unique digests of the real size (PostgreSQL: SHA-256 of a counter; SQLite: random blobs).

At each size: the server is started on the grown database, warmed up, the disk settled (sync,
and a PostgreSQL CHECKPOINT) and wrk drives refresh exchanges at c16 for `--rounds` runs of
`--duration` seconds (bench/compare.py's `run_wrk` and bench/wrk/workload.lua, every response
checked); the medians are reported. Beside them, what explains the time at that size: database
size, index depth, cache hits (PostgreSQL) or disk reads (SQLite), WAL bytes per exchange,
checkpoints and autovacuum runs in the measured window.

Writes a markdown table (`--out`, bench/SCALING.md), `--json` (bench/scaling.json) and a plot
(`--plot`, bench/scaling.png), and a PASS/FAIL line per database: the largest size within 20%
of the smallest (throughput at least 0.8x, p99 at most 1.2x). Exits 1 if a request failed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compare  # bench/ is not a package: found through the path set above
from rounds import tree_disk_reads

BENCH = compare.BENCH
TOLERANCE = 0.2  # the largest size within 20% of the smallest
SQLITE_STEP = 500_000  # filler grants per SQLite transaction
SQLITE_SEED_CACHE_KIB = 2_000_000  # the seeding connection's page cache, at most
POSTGRES_STEP = 1_000_000  # filler grants per PostgreSQL statement group
# Indexes whose keys arrive at random places (digests, grant ids), as pg_get_indexdef spells them.
RANDOM_KEY = "(digest)"
RANDOM_KEYS = (RANDOM_KEY, "(grant_id")
# The B-trees every refresh walks: (table, the one column of the index).
KEY_INDEXES = (("refresh_tokens", "digest"), ("access_tokens", "digest"), ("grants", "id"))


@dataclass
class Point:
    """One size of one database: what was measured and what explains it."""

    database: str
    grants: int
    refresh_rows: int
    seed_seconds: float  # adding the grants of this step, checkpoint/VACUUM ANALYZE included
    per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    rounds: list[dict[str, float]]
    cpu_us: float | None  # server process tree, per exchange
    db_bytes: int
    index_depth: dict[str, int | None]
    cache: str  # PostgreSQL: buffer hit ratio; SQLite: bytes read from disk per exchange
    wal_bytes_per_exchange: float | None
    wal_note: str
    wal_file_bytes: int | None  # SQLite: the WAL file's size after the rounds
    checkpoints: int | None
    autovacuums: int | None
    notes: list[str] = field(default_factory=list)


# -- seeding -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    """The values a real seeded grant holds; the filler repeats them (all rows live)."""

    client_id: str
    user_id: int
    scope: str
    created_at: int
    grant_expires_at: int
    refresh_expires_at: int
    access_expires_at: int


TEMPLATE_QUERY = (
    "SELECT g.client_id, g.user_id, g.scope, g.created_at, g.expires_at, r.expires_at,"
    " a.expires_at FROM grants g JOIN refresh_tokens r ON r.grant_id = g.id"
    " JOIN access_tokens a ON a.refresh_token_id = r.id ORDER BY r.id LIMIT 1"
)


def quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class Database:
    kind: str
    url: str
    # PostgreSQL: a backend's statistics are flushed at the latest as it exits, so the counters
    # after a run are read once the server (and its connections) stopped.
    read_after_stop = False

    def template(self) -> Template:
        raise NotImplementedError

    def count(self, table: str) -> int:
        raise NotImplementedError

    def sql(self, statement: str) -> list[list[str]]:
        """The rows `statement` returns, each value as text."""
        raise NotImplementedError

    def grow(self, grants: int, template: Template) -> None:
        raise NotImplementedError

    def after_seed(self) -> None:
        raise NotImplementedError

    def structure(self) -> tuple[int, dict[str, int | None]]:
        """Bytes on disk and the depth of each of KEY_INDEXES (levels, root to leaf)."""
        raise NotImplementedError

    def counters(self, session: int | None) -> dict[str, float]:
        raise NotImplementedError

    def explain(self, before: dict[str, float], after: dict[str, float], exchanges: int) -> Any:
        raise NotImplementedError

    def settle_url(self) -> str | None:
        return None

    def drop(self) -> None:
        pass


class SQLiteDatabase(Database):
    kind = "SQLite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = f"sqlite:///{path}"

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, isolation_level=None)

    def template(self) -> Template:
        with contextlib.closing(self._connect()) as conn:
            return Template(*conn.execute(TEMPLATE_QUERY).fetchone())

    def count(self, table: str) -> int:
        return int(self.sql(f"SELECT count(*) FROM {table}")[0][0])

    def sql(self, statement: str) -> list[list[str]]:
        with contextlib.closing(self._connect()) as conn:
            return [[str(value) for value in row] for row in conn.execute(statement)]

    def grow(self, grants: int, template: Template) -> None:
        """Adds filler grants up to `grants`, in big transactions without a journal or fsyncs
        (no server runs meanwhile; the WAL mode the server expects is restored after)."""
        t = template
        with contextlib.closing(self._connect()) as conn:
            conn.execute("PRAGMA journal_mode=DELETE")  # leaves WAL (checkpointed) first
            conn.execute("PRAGMA journal_mode=OFF")
            conn.execute("PRAGMA synchronous=OFF")
            # The indexes on random keys take inserts all over: a page cache holding them all
            # (only as large as they are: it fills as pages are read) keeps the seeding linear.
            conn.execute(f"PRAGMA cache_size=-{SQLITE_SEED_CACHE_KIB}")
            conn.execute("PRAGMA temp_store=MEMORY")
            have = conn.execute("SELECT count(*) FROM grants").fetchone()[0]
            while have < grants:
                step = min(SQLITE_STEP, grants - have)
                conn.execute("BEGIN")
                last_grant = conn.execute("SELECT coalesce(max(rowid), 0) FROM grants").fetchone()
                last_refresh = conn.execute(
                    "SELECT coalesce(max(id), 0) FROM refresh_tokens"
                ).fetchone()
                # Grant ids of the real length (random_id: "grt_" + 22 characters).
                conn.execute(
                    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
                    " INSERT INTO grants (id, client_id, user_id, scope, created_at, expires_at)"
                    " SELECT 'grt_' || substr(lower(hex(randomblob(11))), 1, 22), ?, ?, ?, ?, ?"
                    " FROM n",
                    (step, t.client_id, t.user_id, t.scope, t.created_at, t.grant_expires_at),
                )
                conn.execute(
                    "INSERT INTO refresh_tokens (digest, grant_id, parent_id, generation,"
                    " issued_at, expires_at, access_expires_at)"
                    " SELECT randomblob(32), id, NULL, 0, ?, ?, ? FROM grants WHERE rowid > ?"
                    " ORDER BY rowid",
                    (t.created_at, t.refresh_expires_at, t.access_expires_at, last_grant[0]),
                )
                conn.execute(
                    "INSERT INTO access_tokens (digest, grant_id, refresh_token_id, generation,"
                    " scope, issued_at, expires_at, jti, audience)"
                    " SELECT randomblob(32), grant_id, id, 0, ?, ?, ?,"
                    " substr(lower(hex(randomblob(9))), 1, 17), NULL"
                    " FROM refresh_tokens WHERE id > ? ORDER BY id",
                    (t.scope, t.created_at, t.access_expires_at, last_refresh[0]),
                )
                conn.execute("COMMIT")
                have += step
            conn.execute("PRAGMA journal_mode=WAL")

    def after_seed(self) -> None:
        with contextlib.closing(self._connect()) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def structure(self) -> tuple[int, dict[str, int | None]]:
        self.after_seed()  # the main file holds every page, for reading the B-trees below
        size = sum(
            p.stat().st_size
            for p in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm"))
            if p.exists()
        )
        depths: dict[str, int | None] = {}
        with contextlib.closing(self._connect()) as conn:
            for table, column in KEY_INDEXES:
                root = None
                for (index,) in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?",
                    (table,),
                ).fetchall():
                    columns = [r[2] for r in conn.execute(f"PRAGMA index_info('{index}')")]
                    if columns == [column]:
                        root = conn.execute(
                            "SELECT rootpage FROM sqlite_master WHERE name = ?", (index,)
                        ).fetchone()[0]
                depths[f"{table}.{column}"] = None if root is None else btree_depth(self.path, root)
        return size, depths

    def counters(self, session: int | None) -> dict[str, float]:
        found: dict[str, float] = {"wal_file": 0.0}
        wal = Path(f"{self.path}-wal")
        if wal.exists():
            found["wal_file"] = wal.stat().st_size
        if session is not None:
            found["read_bytes"] = tree_disk_reads(session)
            found["write_bytes"] = tree_io(session, b"write_bytes:")
        return found

    def explain(self, before: dict[str, float], after: dict[str, float], exchanges: int) -> Any:
        per = max(exchanges, 1)
        read = (after["read_bytes"] - before["read_bytes"]) / per
        written = (after["write_bytes"] - before["write_bytes"]) / per
        cache = f"{read:,.0f} B read from disk per exchange"
        note = "SQLite WAL bytes: write_bytes of the server's processes (the WAL and checkpoints)"
        return cache, written, note, None, None


def tree_io(session: int, key: bytes) -> int:
    """A counter of /proc/<pid>/io summed over a session's processes."""
    total = 0
    for pid, _ in compare.session_processes(session):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/io", "rb") as io:
            for line in io:
                if line.startswith(key):
                    total += int(line.split()[1])
    return total


def btree_depth(path: Path, root: int) -> int:
    """Levels of the SQLite B-tree at page `root`, root to leaf, read from the file (following
    each interior page's right-most child: a B-tree's leaves are all at one depth)."""
    with path.open("rb") as f:
        header = f.read(100)
        page_size = int.from_bytes(header[16:18], "big")
        page_size = 65536 if page_size == 1 else page_size
        page, depth = root, 1
        while True:
            f.seek((page - 1) * page_size)
            data = f.read(page_size)
            offset = 100 if page == 1 else 0
            if data[offset] in (0x0A, 0x0D):  # leaf index, leaf table
                return depth
            if data[offset] not in (0x02, 0x05):
                raise ValueError(f"page {page} of {path} is not a B-tree page")
            page = int.from_bytes(data[offset + 8 : offset + 12], "big")
            depth += 1


class PostgresDatabase(Database):
    kind = "PostgreSQL"
    read_after_stop = True
    rebuild_indexes = True

    def __init__(self, admin: str, name: str) -> None:
        self.admin, self.name = admin, name
        self.url = compare.create_database(admin, name)
        self.notes: list[str] = []

    def sql(self, statement: str) -> list[list[str]]:
        done = compare.run(
            ["psql", self.url, "-qAt", "-v", "ON_ERROR_STOP=1", "-F", "\t", "-c", statement],
            capture_output=True,
            env=compare.QUIET_PSQL,
        )
        return [line.split("\t") for line in done.stdout.splitlines() if line]

    def template(self) -> Template:
        row = self.sql(TEMPLATE_QUERY)[0]
        return Template(row[0], int(row[1]), row[2], *[int(v) for v in row[3:]])

    def count(self, table: str) -> int:
        return int(self.sql(f"SELECT count(*) FROM {table}")[0][0])

    def grow(self, grants: int, template: Template) -> None:
        """Adds filler grants up to `grants` with INSERT ... SELECT generate_series: grant ids
        from MD5 and digests from SHA-256 of a counter (unique, and at random places in the
        indexes, as real ones are)."""
        t = template
        have = self.count("grants")
        if have >= grants:
            return
        rebuild = self.rebuild_indexes and grants - have >= have
        dropped = self._drop_indexes() if rebuild else []
        # The rows are consistent by construction: the foreign keys' per-row triggers are
        # skipped (`replica`, for a superuser only), which halves the time of the inserts.
        superuser = self.sql("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        replica = "SET session_replication_role = replica; " if superuser == [["t"]] else ""
        while have < grants:
            step = min(POSTGRES_STEP, grants - have)
            first, last = have + 1, have + step
            grant_id = "'grt_' || substr(md5('g' || i), 1, 22)"
            self.sql(
                f"{replica}BEGIN;"
                f" CREATE TEMP TABLE mark AS SELECT coalesce(max(id), 0) AS id FROM refresh_tokens;"
                " INSERT INTO grants (id, client_id, user_id, scope, created_at, expires_at)"
                f" SELECT {grant_id}, {quote(t.client_id)}, {t.user_id}, {quote(t.scope)},"
                f" {t.created_at}, {t.grant_expires_at} FROM generate_series({first}, {last}) i;"
                " INSERT INTO refresh_tokens (digest, grant_id, parent_id, generation, issued_at,"
                " expires_at, access_expires_at)"
                f" SELECT sha256(convert_to('r' || i, 'UTF8')), {grant_id}, NULL, 0,"
                f" {t.created_at}, {t.refresh_expires_at}, {t.access_expires_at}"
                f" FROM generate_series({first}, {last}) i;"
                " INSERT INTO access_tokens (digest, grant_id, refresh_token_id, generation, scope,"
                " issued_at, expires_at, jti, audience)"
                " SELECT sha256(convert_to('a' || id, 'UTF8')), grant_id, id, 0,"
                f" {quote(t.scope)}, {t.created_at}, {t.access_expires_at},"
                " substr(md5('j' || id), 1, 17), NULL"
                " FROM refresh_tokens WHERE id > (SELECT id FROM mark) ORDER BY id;"
                " COMMIT;"
            )
            have += step
        if dropped:
            self.sql("SET maintenance_work_mem = '512MB';" + "".join(f" {d};" for d in dropped))

    def _drop_indexes(self) -> list[str]:
        """Drops the secondary indexes and unique constraints of the three tables (not their
        primary keys, which foreign keys need) and returns the statements that recreate them.

        An index rebuilt by CREATE INDEX is packed (leaves 90% full) where one grown by inserts
        at random places settles near 70% (a split leaves two half-full pages): the indexes on
        random keys (digests, grant ids) are rebuilt 70% full, then their fillfactor reset to
        the default, so their size and depth are those of a server that grew them."""
        tables = "('grants'::regclass, 'refresh_tokens'::regclass, 'access_tokens'::regclass)"
        constraints = self.sql(
            "SELECT conrelid::regclass, quote_ident(conname), pg_get_constraintdef(oid)"
            f" FROM pg_constraint WHERE contype = 'u' AND conrelid IN {tables}"
        )
        indexes = self.sql(
            "SELECT indexrelid::regclass, pg_get_indexdef(indexrelid) FROM pg_index"
            f" WHERE indrelid IN {tables} AND NOT indisprimary AND indexrelid NOT IN"
            " (SELECT conindid FROM pg_constraint WHERE contype IN ('u', 'p'))"
        )
        drops = [f"ALTER TABLE {t} DROP CONSTRAINT {name}" for t, name, _ in constraints]
        drops += [f"DROP INDEX {name}" for name, _ in indexes]
        self.sql("".join(f"{d}; " for d in drops))
        grown = " WITH (fillfactor = 70)"
        creates: list[str] = []
        for table, name, definition in constraints:
            random_key = RANDOM_KEY in definition
            creates.append(
                f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}"
                + (grown if random_key else "")
            )
            if random_key:
                creates.append(f"ALTER INDEX {name} RESET (fillfactor)")
        for name, definition in indexes:
            if not any(key in definition for key in RANDOM_KEYS):
                creates.append(definition)
                continue
            head, where, predicate = definition.partition(" WHERE ")
            creates += [
                f"{head}{grown}{where}{predicate}",
                f"ALTER INDEX {name} RESET (fillfactor)",
            ]
        return creates

    def after_seed(self) -> None:
        self.sql("VACUUM ANALYZE")
        self.sql("CHECKPOINT")

    def _index_names(self) -> dict[str, str | None]:
        names: dict[str, str | None] = {}
        for table, column in KEY_INDEXES:
            rows = self.sql(
                "SELECT i.relname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
                " JOIN pg_class t ON t.oid = x.indrelid JOIN pg_attribute a"
                " ON a.attrelid = t.oid AND a.attnum = x.indkey[0]"
                f" WHERE t.relname = {quote(table)} AND a.attname = {quote(column)}"
                " AND x.indnatts = 1 AND x.indpred IS NULL"
            )
            names[f"{table}.{column}"] = rows[0][0] if rows else None
        return names

    def structure(self) -> tuple[int, dict[str, int | None]]:
        size = int(self.sql(f"SELECT pg_database_size({quote(self.name)})")[0][0])
        depths: dict[str, int | None] = {}
        how = self._depth_function()
        for key, index in self._index_names().items():
            if index is None or how is None:
                depths[key] = None
                continue
            # tree_level / level: levels above the leaves (0: the root is a leaf).
            depths[key] = int(self.sql(how.format(quote(index)))[0][0]) + 1
        return size, depths

    def _depth_function(self) -> str | None:
        for extension, query in (
            ("pgstattuple", "SELECT tree_level FROM pgstatindex({})"),
            ("pageinspect", "SELECT level FROM bt_metap({})"),
        ):
            with contextlib.suppress(subprocess.CalledProcessError):
                self.sql(f"CREATE EXTENSION IF NOT EXISTS {extension}")
                return query
        note = "index depth not measured: neither pgstattuple nor pageinspect could be created"
        if note not in self.notes:
            self.notes.append(note)
        return None

    def counters(self, session: int | None) -> dict[str, float]:
        row = self.sql(
            "SELECT d.blks_hit, d.blks_read, pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0'),"
            " b.checkpoints_timed + b.checkpoints_req,"
            " (SELECT coalesce(sum(autovacuum_count + autoanalyze_count), 0)"
            " FROM pg_stat_user_tables"
            " WHERE relname IN ('grants', 'refresh_tokens', 'access_tokens'))"
            " FROM pg_stat_database d, pg_stat_bgwriter b"
            f" WHERE d.datname = {quote(self.name)}"
        )[0]
        keys = ("hit", "read", "wal", "checkpoints", "autovacuums")
        return {k: float(v) for k, v in zip(keys, row, strict=True)}

    def explain(self, before: dict[str, float], after: dict[str, float], exchanges: int) -> Any:
        hit = after["hit"] - before["hit"]
        read = after["read"] - before["read"]
        ratio = hit / (hit + read) if hit + read else 1.0
        cache = f"{ratio:.4f} buffer hits ({read:,.0f} blocks read)"
        wal = (after["wal"] - before["wal"]) / max(exchanges, 1)
        checkpoints = int(after["checkpoints"] - before["checkpoints"])
        autovacuums = int(after["autovacuums"] - before["autovacuums"])
        note = "PostgreSQL WAL bytes: pg_current_wal_lsn, the whole cluster's"
        return cache, wal, note, checkpoints, autovacuums

    def settle_url(self) -> str | None:
        return self.url

    def drop(self) -> None:
        compare.drop_database(self.admin, self.name)


class KeptSizes:
    """`--keep DIR`: each size of the SQLite database, as grown and before any exchange, with the
    real tokens still unused (`sqlite-<size>.db`, `sqlite-<size>.json`). A later run serves a
    copy of it rather than growing it again (80 s at 5 M), so that two commits, checked out in
    turn, are measured on the same database: how the checkpointer's flushes were compared
    (docs/performance.md). Each run starts from the kept state, whatever the last one rotated."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder

    def database(self, size: int) -> Path:
        return self.folder / f"sqlite-{size}.db"

    def tokens(self, size: int) -> Path:
        return self.folder / f"sqlite-{size}.json"

    def has(self, size: int) -> bool:
        return self.database(size).exists() and self.tokens(size).exists()

    def save(self, size: int, path: Path, seeded: compare.Seeded) -> None:
        # A client secret and live tokens: readable by this user only, as the server's files.
        for kept in (self.database(size), self.tokens(size)):
            kept.touch(mode=0o600)
            kept.chmod(0o600)
        shutil.copyfile(path, self.database(size))  # after_seed left no WAL beside it
        self.tokens(size).write_text(json.dumps(asdict(seeded)) + "\n")

    def restore(self, size: int, path: Path) -> compare.Seeded:
        for suffix in ("-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        shutil.copyfile(self.database(size), path)
        data = json.loads(self.tokens(size).read_text())
        pairs = [(a, r) for a, r in data["pairs"]]
        return compare.Seeded(data["client_id"], data["client_secret"], pairs, data["taken"])


# -- the run -----------------------------------------------------------------------------------


@dataclass
class Options:
    sizes: list[int]
    targets: list[str]
    duration: float = 10.0
    rounds: int = 3
    concurrency: int = 16
    warmup: float = 2.0
    workers: int = compare.WORKERS
    settle: float = 1.0
    postgres: str = compare.DEFAULT_POSTGRES
    work: Path | None = None
    keep: Path | None = None  # SQLite: each grown size kept here, and served again from a copy


def log(message: str) -> None:
    print(f"[scaling {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def real_grants_needed(options: Options) -> int:
    """The real pairs wrk presents: 2c first tokens per run (warm-up and rounds), per size."""
    return len(options.sizes) * (options.rounds + 1) * 2 * options.concurrency


def measure_database(kind: str, options: Options, work: Path, wrk: str) -> list[Point]:
    database: Database
    if kind == "postgresql":
        database = PostgresDatabase(options.postgres, f"bench_scaling_{os.getpid()}")
    else:
        database = SQLiteDatabase(work / "scaling.db")
    target = compare.all_targets(options.workers)[f"baton-{kind}"]
    points: list[Point] = []
    try:
        real = real_grants_needed(options)
        if real > options.sizes[0]:
            raise SystemExit(f"error: the smallest size must hold the {real} real grants wrk uses")
        kept = KeptSizes(options.keep) if options.keep and kind == "sqlite" else None
        template: Template | None = None
        for size in options.sizes:
            if kept is not None and isinstance(database, SQLiteDatabase) and kept.has(size):
                log(f"{database.kind}: {size:,} grants from a copy of {kept.database(size)}")
                target.seeded = kept.restore(size, database.path)
                template, seed_seconds = None, 0.0
            else:
                if target.seeded is None:
                    log(f"{database.kind}: migrating and seeding {real} real grants")
                    compare.seed_baton(target, database.url, real)
                log(f"{database.kind}: growing to {size:,} grants")
                started = time.monotonic()
                template = template or database.template()
                database.grow(size, template)
                database.after_seed()
                seed_seconds = time.monotonic() - started
                if kept is not None and isinstance(database, SQLiteDatabase):
                    assert target.seeded is not None
                    kept.save(size, database.path, target.seeded)
            log(f"{database.kind}: {size:,} grants in {seed_seconds:.1f} s; measuring")
            points.append(measure(database, target, size, seed_seconds, options, work, wrk))
    finally:
        compare.stop(target.process)
        database.drop()
    return points


def measure(
    database: Database,
    target: compare.Target,
    size: int,
    seed_seconds: float,
    options: Options,
    work: Path,
    wrk: str,
) -> Point:
    db_bytes, depths = database.structure()
    refresh_rows = database.count("refresh_tokens")
    workload = compare.Workload("refresh", options.concurrency)
    compare.serve_baton(target, database.url, work)
    assert target.process is not None
    try:
        compare.wait_for_port(target.port, target.process)
        tokens = compare.tokens_for(target, workload, 0)
        warm = compare.run_wrk(wrk, target, workload, tokens, options.warmup, work, 0, None)
        compare.settle(options.settle, database.settle_url())
        session = target.process.pid
        before = database.counters(session)
        results = []
        for number in range(1, options.rounds + 1):
            tokens = compare.tokens_for(target, workload, 0)
            result = compare.run_wrk(
                wrk, target, workload, tokens, options.duration, work, number, None
            )
            results.append(result)
            log(
                f"{database.kind} {size:,}: round {number} {result.per_second:,.0f}/s"
                f" p99 {result.p99_ms:.1f} ms errors {result.errors}"
            )
        after = database.counters(session)
    finally:
        compare.stop(target.process)
    if database.read_after_stop:
        after = database.counters(None)
    exchanges = sum(r.ok for r in results)
    cache, wal, wal_note, checkpoints, autovacuums = database.explain(before, after, exchanges)
    median = compare.medians(compare.Outcome([target], results, {}, datetime.datetime.now(), 0))
    m = median[(target.name, workload.name)]
    return Point(
        database=database.kind,
        grants=size,
        refresh_rows=refresh_rows,
        seed_seconds=round(seed_seconds, 1),
        per_second=m.per_second,
        p50_ms=m.p50_ms,
        p99_ms=m.p99_ms,
        errors=m.errors + warm.errors,
        rounds=[{"per_second": r.per_second, "p99_ms": r.p99_ms} for r in results],
        cpu_us=m.cpu_us,
        db_bytes=db_bytes,
        index_depth=depths,
        cache=cache,
        wal_bytes_per_exchange=wal,
        wal_note=wal_note,
        wal_file_bytes=int(after["wal_file"]) if "wal_file" in after else None,
        checkpoints=checkpoints,
        autovacuums=autovacuums,
        notes=list(getattr(database, "notes", [])),
    )


def verdicts(points: list[Point]) -> list[str]:
    """Per database: the largest size's figures within TOLERANCE of the smallest's."""
    lines = []
    for kind in dict.fromkeys(p.database for p in points):
        mine = sorted((p for p in points if p.database == kind), key=lambda p: p.grants)
        small, large = mine[0], mine[-1]
        rate = large.per_second / small.per_second if small.per_second else 0.0
        p99 = large.p99_ms / small.p99_ms if small.p99_ms else float("inf")
        passed = rate >= 1 - TOLERANCE and p99 <= 1 + TOLERANCE
        lines.append(
            f"{kind}: {large.grants:,} grants against {small.grants:,}: throughput {rate:.2f}x,"
            f" p99 {p99:.2f}x (within {TOLERANCE:.0%}: >= {1 - TOLERANCE:.2f}x and"
            f" <= {1 + TOLERANCE:.2f}x): {'PASS' if passed else 'FAIL'}"
        )
    return lines


def report(options: Options, points: list[Point], started: datetime.datetime) -> str:
    def depth(p: Point) -> str:
        return " / ".join("?" if v is None else str(v) for v in p.index_depth.values())

    def opt(value: float | None, fmt: str) -> str:
        return "n/a" if value is None else format(value, fmt)

    def wal_file(p: Point) -> str:
        return "" if p.wal_file_bytes is None else f" (WAL file {p.wal_file_bytes / 2**20:,.0f} MB)"

    lines = [
        "# Refresh exchanges as the database grows",
        "",
        f"Written by `bench/scaling.py` on {started:%Y-%m-%d %H:%M} UTC, git {compare._git_head()},"
        f" {os.cpu_count()} cores: `baton serve --workers {options.workers}`, wrk refresh"
        f" c{options.concurrency}, {options.rounds} round(s) of {options.duration:g} s per size"
        " (medians); every grant live with its refresh and access token.",
        "",
        "| database | grants | refresh rows | refresh/s | p50 ms | p99 ms | CPU us/exchange"
        " | errors | DB size MB | index depth (refresh digest / access digest / grant id)"
        " | cache | WAL bytes/exchange | checkpoints | autovacuums | seeding s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---:|---:|",
    ]
    for p in points:
        lines.append(
            f"| {p.database} | {p.grants:,} | {p.refresh_rows:,} | {p.per_second:,.0f} |"
            f" {p.p50_ms:.1f} | {p.p99_ms:.1f} | {opt(p.cpu_us, ',.0f')} | {p.errors} |"
            f" {p.db_bytes / 2**20:,.0f} | {depth(p)} | {p.cache} |"
            f" {opt(p.wal_bytes_per_exchange, ',.0f')}{wal_file(p)} | {opt(p.checkpoints, 'd')} |"
            f" {opt(p.autovacuums, 'd')} | {p.seed_seconds:.1f} |"
        )
    notes = sorted({p.wal_note for p in points} | {n for p in points for n in p.notes})
    lines += ["", *[f"- {n}" for n in notes], "", *verdicts(points), ""]
    return "\n".join(lines)


def short(number: int) -> str:
    for unit, name in ((1_000_000, "M"), (1_000, "k")):
        if number >= unit:
            return f"{number / unit:g}{name}"
    return str(number)


def plot(points: list[Point], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (rate, p99) = plt.subplots(1, 2, figsize=(10, 4.2))
    for kind in dict.fromkeys(p.database for p in points):
        mine = sorted((p for p in points if p.database == kind), key=lambda p: p.grants)
        xs = [p.grants for p in mine]
        (line,) = rate.plot(xs, [p.per_second for p in mine], "-o", label=kind)
        p99.plot(xs, [p.p99_ms for p in mine], "-o", label=kind, color=line.get_color())
        # The bounds the largest size must stay within: 20% of the smallest's figures.
        bound = {"color": line.get_color(), "linestyle": ":", "linewidth": 1}
        rate.axhline(mine[0].per_second * (1 - TOLERANCE), **bound)
        p99.axhline(mine[0].p99_ms * (1 + TOLERANCE), **bound)
    sizes = sorted({p.grants for p in points})
    for axes, label in ((rate, "refresh exchanges/s (median)"), (p99, "p99 latency, ms")):
        axes.set_xscale("log")
        axes.set_xticks(sizes, [short(n) for n in sizes])
        axes.minorticks_off()
        axes.set_xlabel("live grants")
        axes.set_ylabel(label)
        axes.set_ylim(bottom=0)
        axes.grid(True, which="both", alpha=0.3)
        axes.legend()
    figure.suptitle(
        f"baton serve --workers 2, refresh c16, {os.cpu_count()} cores"
        " (dotted: 20% from the smallest size)"
    )
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    plt.close(figure)


def run(options: Options) -> tuple[list[Point], datetime.datetime]:
    started = datetime.datetime.now(datetime.UTC)
    wrk = compare.ensure_wrk()
    points: list[Point] = []
    with tempfile.TemporaryDirectory(prefix="baton-scaling-", dir=options.work) as tmp:
        for kind in options.targets:
            if kind == "postgresql" and not compare.postgres_available(options.postgres):
                raise SystemExit(f"error: PostgreSQL unreachable at {options.postgres}")
            points += measure_database(kind, options, Path(tmp), wrk)
    return points, started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sizes", default="10000,1000000,5000000", help="live grants per step")
    parser.add_argument("--targets", default="sqlite,postgresql", help="sqlite, postgresql")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per round [10]")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per size; medians [3]")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per size")
    parser.add_argument("--workers", type=int, default=compare.WORKERS)
    parser.add_argument("--settle", type=float, default=1.0, help="quiet seconds after a sync")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("BATON_BENCH_POSTGRES", compare.DEFAULT_POSTGRES),
        help="PostgreSQL admin URL; the bench database is created and dropped there",
    )
    parser.add_argument("--work", type=Path, help="where the SQLite file goes [a temporary dir]")
    parser.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="SQLite: keep each grown size in DIR and, on later runs, serve a copy of it",
    )
    parser.add_argument("--out", type=Path, default=BENCH / "SCALING.md")
    parser.add_argument("--json", type=Path, default=BENCH / "scaling.json")
    parser.add_argument("--plot", type=Path, default=BENCH / "scaling.png")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    targets = [t for t in args.targets.split(",") if t]
    if set(targets) - {"sqlite", "postgresql"}:
        parser.error("--targets: sqlite, postgresql")
    sizes = sorted({int(s) for s in args.sizes.split(",") if s})
    options = Options(
        sizes=sizes,
        targets=targets,
        duration=args.duration,
        rounds=args.rounds,
        concurrency=args.concurrency,
        warmup=args.warmup,
        workers=args.workers,
        settle=args.settle,
        postgres=args.postgres,
        work=args.work,
        keep=args.keep,
    )
    if options.rounds < 1 or options.duration < 1:
        parser.error("--rounds and --duration must be at least 1")
    points, started = run(options)
    text = report(options, points, started)
    args.out.write_text(text)
    args.json.write_text(
        json.dumps(
            {
                "started": started.isoformat(),
                "options": {k: str(v) for k, v in asdict(options).items()},
                "points": [asdict(p) for p in points],
                "verdicts": verdicts(points),
            },
            indent=2,
        )
        + "\n"
    )
    if not args.no_plot:
        plot(points, args.plot)
    print(text)
    log(f"wrote {args.out}, {args.json}" + ("" if args.no_plot else f" and {args.plot}"))
    return 1 if any(p.errors for p in points) else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# Refresh exchanges per second at concurrency 16, in one run: SQLite and PostgreSQL, with 1 and
# 2 server processes each. Every configuration gets a fresh database and its own server.
#   bash bench/backends.sh            (PostgreSQL from BATON_BENCH_POSTGRES, default the local one)
set -euo pipefail
cd "$(dirname "$0")/.."
PG_ADMIN=${BATON_BENCH_POSTGRES:-postgresql://postgres@127.0.0.1:5432/postgres}
DURATION=${DURATION:-10}
PORT=${PORT:-8790}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS baton_bench WITH (FORCE)" || true; rm -rf "$work"' EXIT

printf '| database | workers | exchanges/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|---|\n'
for backend in sqlite postgresql; do
  for workers in 1 2; do
    if [ "$backend" = sqlite ]; then
      db="sqlite:///$work/baton-$workers.db"
    else
      psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS baton_bench WITH (FORCE)" -c "CREATE DATABASE baton_bench"
      db="${PG_ADMIN%/*}/baton_bench"
    fi
    .venv/bin/baton db upgrade --db "$db" >/dev/null
    .venv/bin/baton serve --db "$db" --port "$PORT" --workers "$workers" --log-level warning \
      >"$work/serve.log" 2>&1 &
    server=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/.well-known/oauth-authorization-server" >/dev/null && break; sleep 0.1; done
    .venv/bin/python bench/refresh_load.py --url "http://127.0.0.1:$PORT" --db "$db" \
      --concurrency 16 --duration "$DURATION" --json >"$work/result.json"
    python3 - "$backend" "$workers" "$work/result.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[3]))
print(f"| {sys.argv[1]} | {sys.argv[2]} | {r['exchanges_per_second']:.0f} | {r['latency_ms']['p50']:.1f} | {r['latency_ms']['p99']:.1f} | {r['errors']} |")
PY
    kill "$server"; wait "$server" 2>/dev/null || true
  done
done

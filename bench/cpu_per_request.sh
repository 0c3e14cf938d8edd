#!/usr/bin/env bash
# Server CPU time per request (user+system, from /proc), which stays steady when a
# shared machine makes requests/s swing. Alternates configurations over rounds.
# usage: bench/cpu_per_request.sh   (after bench/run.sh has built and seeded shop_bench)
set -euo pipefail
cd "$(dirname "$0")/.."
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DB_URL="${PG_URL%/*}/shop_bench"
ROUNDS=${ROUNDS:-3}
PORT=8092
BIN=target/release/shopgraph
export JWT_SECRET=bench-secret-bench-secret-bench-secret RUST_LOG=warn SEED_DEMO=false
TICKS=$(getconf CLK_TCK)
OUT=$(mktemp -d)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run() { # label body expect -- env...
  local label=$1 body=$2 expect=$3; shift 3
  env "$@" DATABASE_URL="$DB_URL" BIND_ADDR="127.0.0.1:$PORT" "$BIN" serve >"$OUT/log" 2>&1 &
  local pid=$!
  until curl -fs "http://127.0.0.1:$PORT/health/ready" >/dev/null 2>&1; do sleep 0.05; done
  printf '%s' "$body" >"$OUT/body.json"
  curl -fs "http://127.0.0.1:$PORT/graphql" -H 'content-type: application/json' -d "$body" >/dev/null
  local before after line requests
  before=$(cpu_ticks "$pid")
  line=$(wrk -t2 -c32 -d5s --timeout 10s -s bench/graphql.lua "http://127.0.0.1:$PORT" -- "$OUT/body.json" "$expect" | grep '^RESULT')
  after=$(cpu_ticks "$pid")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  requests=$(echo "$line" | grep -o 'requests=[0-9]*' | cut -d= -f2)
  echo "$label|$(echo "($after - $before) * 1000000 / $TICKS / $requests" | bc -l | xargs printf '%.1f')|$line"
}

TYPENAME='{"query":"{ __typename }"}'
PRODUCTS='{"query":"{ products(first: 20) { edges { node { id name price stock category { name } } } } }"}'
for round in $(seq 1 "$ROUNDS"); do
  run "typename, limiter off" "$TYPENAME" '"Query"' RATE_LIMIT_ENABLED=false
  run "typename, limiter on" "$TYPENAME" '"Query"' RATE_LIMIT_ENABLED=true RATE_LIMIT_PER_MINUTE=1000000000 RATE_LIMIT_BURST=1000000
  run "cached products, limiter off" "$PRODUCTS" '"edges"' RATE_LIMIT_ENABLED=false
  run "cached products, limiter on" "$PRODUCTS" '"edges"' RATE_LIMIT_ENABLED=true RATE_LIMIT_PER_MINUTE=1000000000 RATE_LIMIT_BURST=1000000
done

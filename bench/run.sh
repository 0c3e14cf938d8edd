#!/usr/bin/env bash
# Cache and checkout benchmarks on PostgreSQL (+ Redis), written to BENCHMARKS.md.
# usage: bench/run.sh            (needs the local PostgreSQL and Redis of .ci/run)
# env:   DURATION (default 10s), CONNECTIONS (default 32), PG_URL, REDIS_URL,
#        READS_ONLY=1 (skip checkout), BENCH_OUT (default BENCHMARKS.md)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
DB_URL="${PG_URL%/*}/shop_bench"
PORT=8090
OUT=$(mktemp -d)
SERVER_PID=

if ! command -v wrk >/dev/null || ! command -v bc >/dev/null; then
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk bc
fi
cargo build --release -q
BIN=target/release/shopgraph
export JWT_SECRET=bench-secret-bench-secret-bench-secret
export RATE_LIMIT_ENABLED=false RUST_LOG=warn SEED_DEMO=false DB_MAX_CONNECTIONS=16

stop_server() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=; fi
}
trap stop_server EXIT

start_server() { # env assignments for the server
  stop_server
  env "$@" DATABASE_URL="$DB_URL" BIND_ADDR="127.0.0.1:$PORT" "$BIN" serve >"$OUT/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$PORT/health/ready" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "server did not start" >&2; cat "$OUT/server.log" >&2; exit 1
}

gql() { # token body
  curl -fs "http://127.0.0.1:$PORT/graphql" -H 'content-type: application/json' ${1:+-H "authorization: Bearer $1"} -d "$2"
}

# name, body, expected substring, token
ROWS=()
measure() {
  local name=$1 body=$2 expect=$3 token=${4:-}
  printf '%s' "$body" >"$OUT/body.json"
  gql "$token" "$body" >/dev/null # warm the cache (a miss) before timing
  local line
  line=$(wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --timeout 10s --latency -s bench/graphql.lua "http://127.0.0.1:$PORT" -- "$OUT/body.json" "$expect" "$token" | grep '^RESULT')
  echo "$name: $line"
  ROWS+=("$name|$line")
}

echo "== database: 10 000 products, 1 000 customers, 33 334 orders (~100 000 order lines)"
psql "$PG_URL" -qc "DROP DATABASE IF EXISTS shop_bench" -qc "CREATE DATABASE shop_bench" >/dev/null
DATABASE_URL="$DB_URL" "$BIN" seed --products 10000 --customers 1000 --orders 33334 >/dev/null
LINES=$(psql "$DB_URL" -Atc "SELECT count(*) FROM order_items")
CUSTOMER=$("$BIN" token --tenant default --sub 1 --role CUSTOMER)
STAFF=$("$BIN" token --tenant default --sub bench --role STAFF)

TYPENAME='{"query":"{ __typename }"}'
PRODUCTS='{"query":"{ products(first: 20) { edges { node { id name price stock category { name } } } } }"}'
CART='{"query":"{ cart { itemCount total items { quantity lineTotal product { name price } } } }"}'
TOP='{"query":"{ topProducts(limit: 10) { product { name } unitsSold revenue } }"}'
SALES='{"query":"{ salesStats(granularity: MONTH) { orders revenue refunds averageTicket series { period orders revenue refunds } revenueByPaymentMethod { method revenue } } }"}'

start_server CACHE_ENABLED=true
for p in $(seq 1 10); do
  gql "$CUSTOMER" "{\"query\":\"mutation { addToCart(productId: \\\"$p\\\") { itemCount } }\"}" >/dev/null
done
measure '{ __typename }' "$TYPENAME" '"Query"'
measure 'products(first: 20), in-process cache' "$PRODUCTS" '"edges"'
measure 'cart, in-process cache' "$CART" '"itemCount":10' "$CUSTOMER"
measure 'topProducts, in-process cache' "$TOP" '"unitsSold"'
measure 'salesStats, in-process cache' "$SALES" '"averageTicket"' "$STAFF"

start_server CACHE_ENABLED=true RATE_LIMIT_ENABLED=true RATE_LIMIT_PER_MINUTE=1000000000 RATE_LIMIT_BURST=1000000
measure '{ __typename }, rate limiter on' "$TYPENAME" '"Query"'
measure 'products(first: 20), in-process cache, rate limiter on' "$PRODUCTS" '"edges"'

start_server CACHE_ENABLED=false
measure 'products(first: 20), uncached' "$PRODUCTS" '"edges"'
measure 'cart, uncached' "$CART" '"itemCount":10' "$CUSTOMER"
measure 'topProducts, uncached' "$TOP" '"unitsSold"'
measure 'salesStats, uncached' "$SALES" '"averageTicket"' "$STAFF"

start_server CACHE_ENABLED=true REDIS_URL="$REDIS_URL" CACHE_KEY_PREFIX="bench$$"
measure '{ __typename } (Redis run)' "$TYPENAME" '"Query"'
measure 'products(first: 20), Redis cache' "$PRODUCTS" '"edges"'
measure 'cart, Redis cache' "$CART" '"itemCount":10' "$CUSTOMER"
RSS_KB=$(ps -o rss= -p "$SERVER_PID" | tr -d ' ')
stop_server

CHECKOUT_ROWS=()
if [ "${READS_ONLY:-0}" = 1 ]; then
  echo "READS_ONLY=1: skipping checkout throughput"
else
echo "== checkout throughput"
psql "$DB_URL" -qc "UPDATE products SET stock = 1000000" >/dev/null
for workers in 4 16 32; do
  psql "$DB_URL" -qc "TRUNCATE order_items, orders, payments, stock_movements, saga_steps, sagas, idempotency_records RESTART IDENTITY CASCADE" >/dev/null
  start_server WORKER_CONCURRENCY="$workers" REDIS_URL="$REDIS_URL" CACHE_KEY_PREFIX="bench$$"
  PLACE='{"query":"mutation { placeOrder(input: {items: [{productId: \"7\", quantity: 1}, {productId: \"8\", quantity: 2}], paymentMethod: CARD, paymentToken: \"tok_visa\"}) { id status } }"}'
  printf '%s' "$PLACE" >"$OUT/body.json"
  start=$(date +%s.%N)
  # Queue depth every 250 ms while the burst runs and drains (load leveling made visible).
  (
    while true; do
      psql "$DB_URL" -Atc "SELECT to_char(clock_timestamp(), 'HH24:MI:SS.MS'), count(*) FILTER (WHERE status = 'PENDING'), count(*) FILTER (WHERE status = 'COMPLETED') FROM sagas"
      sleep 0.25
    done
  ) >"$OUT/depth-$workers.txt" 2>/dev/null &
  SAMPLER=$!
  burst=$(wrk -t2 -c"$CONNECTIONS" -d"$DURATION" -s bench/graphql.lua "http://127.0.0.1:$PORT" -- "$OUT/body.json" '"PENDING"' "$CUSTOMER" | grep '^RESULT')
  while [ "$(psql "$DB_URL" -Atc "SELECT count(*) FROM sagas WHERE status NOT IN ('COMPLETED','COMPENSATED','FAILED')")" != 0 ]; do sleep 0.1; done
  end=$(date +%s.%N)
  kill "$SAMPLER"; wait "$SAMPLER" 2>/dev/null || true
  stats=$(psql "$DB_URL" -Atc "SELECT count(*) FILTER (WHERE status='COMPLETED'), count(*) FILTER (WHERE status<>'COMPLETED'), round((percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM updated_at - created_at)) * 1000)::numeric, 1), round((percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM updated_at - created_at)) * 1000)::numeric, 1) FROM sagas")
  oversold=$(psql "$DB_URL" -Atc "SELECT count(*) FROM products WHERE stock < 0")
  IFS='|' read -r completed other p50 p99 <<<"$stats"
  rate=$(echo "$completed / ($end - $start)" | bc -l | xargs printf '%.0f')
  peak=$(cut -d'|' -f2 "$OUT/depth-$workers.txt" | sort -n | tail -1)
  echo "workers=$workers: accepted $burst; completed=$completed other=$other in $(echo "$end - $start" | bc -l | xargs printf '%.1f') s = $rate/s; checkout->COMPLETED p50=${p50} ms p99=${p99} ms; peak queue depth=$peak; oversold products=$oversold"
  CHECKOUT_ROWS+=("$workers|$burst|$completed|$other|$rate|$p50|$p99|$peak|$oversold")
  cp "$OUT/depth-$workers.txt" "$OUT/depth-last.txt"
done
stop_server
fi

field() { echo "$1" | grep -o "$2=[0-9.]*" | cut -d= -f2; }
{
  echo "# Benchmarks"
  echo
  echo "Reproduce with \`bench/run.sh\` (PostgreSQL and Redis local, as \`.ci/run\` starts them)."
  echo "Date: $(date -u +%Y-%m-%d). Machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -sr)."
  echo "Client and server share the machine. Load: wrk, $CONNECTIONS connections, $DURATION per run,"
  echo "every response body checked (\`bad\` counts non-200s, bodies without the expected data, and errors)."
  echo "Database: PostgreSQL, 10 000 products, 1 000 customers, $LINES order lines; the cart holds 10 lines."
  echo
  echo "## Reads: cache-aside"
  echo
  echo "| query | requests/s | p50 ms | p99 ms | requests | bad |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: |"
  for row in "${ROWS[@]}"; do
    name=${row%%|*}; line=${row#*|}
    echo "| $name | $(field "$line" rps) | $(field "$line" p50_ms) | $(field "$line" p99_ms) | $(field "$line" requests) | $(field "$line" bad) |"
  done
  echo
  echo "Resident memory of the server after the Redis runs: $((RSS_KB / 1024)) MB."
  echo
  echo "## Checkout (PostgreSQL, Redis events)"
  echo
  echo "A $DURATION burst of \`placeOrder\` at $CONNECTIONS connections, then the time until the queue drains."
  echo
  echo "| workers | accepted/s | completed | not completed | completed/s (burst start to drain) | checkout→COMPLETED p50 ms | p99 ms | peak queue depth | products below 0 |"
  echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  for row in "${CHECKOUT_ROWS[@]}"; do
    IFS='|' read -r w burst completed other rate p50 p99 peak oversold <<<"$row"
    echo "| $w | $(field "$burst" rps) | $completed | $other | $rate | $p50 | $p99 | $peak | $oversold |"
  done
  echo
  if [ -f "$OUT/depth-last.txt" ]; then
    echo "Queue depth (PENDING) and completed sagas every 250 ms during the last run:"
    echo
    echo '```'
    echo "time | queued | completed"
    cat "$OUT/depth-last.txt"
    echo '```'
  fi
} >"${BENCH_OUT:-BENCHMARKS.md}.new"
mv "${BENCH_OUT:-BENCHMARKS.md}.new" "${BENCH_OUT:-BENCHMARKS.md}"
echo "wrote BENCHMARKS.md"

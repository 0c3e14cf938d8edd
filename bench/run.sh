#!/usr/bin/env bash
# Cache and checkout benchmarks on PostgreSQL (+ Redis), written to bench/last-run.md.
# usage: bench/run.sh            (needs the local PostgreSQL and Redis of .ci/run)
# Also runs bench/invalidation.sh and bench/stats_load.sh (issue 11's figures) unless
# READS_ONLY or REDIS_ONLY is set.
# env:   DURATION (default 10s), CONNECTIONS (default 32), PG_URL, REDIS_URL,
#        READS_ONLY=1 (skip checkout), REDIS_ONLY=1 (only the Redis-cache reads),
#        BENCH_OUT (default bench/last-run.md)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
DB_URL="${PG_URL%/*}/shop_bench"
PORT=8090
OUT=$(mktemp -d)
RESULTS=${BENCH_OUT:-bench/last-run.md}

source bench/lib.sh
trap stop_server EXIT
ensure_tools

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

# The customer's cart: products 1 to 10, one each.
fill_cart() {
  for p in $(seq 1 10); do
    gql "$CUSTOMER" "{\"query\":\"mutation { addToCart(productId: \\\"$p\\\") { itemCount } }\"}" >/dev/null
  done
}

TYPENAME='{"query":"{ __typename }"}'
PRODUCTS='{"query":"{ products(first: 20) { edges { node { id name price stock category { name } } } } }"}'
CART='{"query":"{ cart { itemCount total items { quantity lineTotal product { name price } } } }"}'
TOP='{"query":"{ topProducts(limit: 10) { product { name } unitsSold revenue } }"}'
SALES='{"query":"{ salesStats(granularity: MONTH) { orders revenue refunds averageTicket series { period orders revenue refunds } revenueByPaymentMethod { method revenue } } }"}'

if [ "${REDIS_ONLY:-0}" = 1 ]; then
  echo "REDIS_ONLY=1: only the Redis cache runs (and no checkout)"
else
  start_server CACHE_ENABLED=true
  fill_cart
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

fi

start_server CACHE_ENABLED=true REDIS_URL="$REDIS_URL" CACHE_KEY_PREFIX="bench$$"
if [ "${REDIS_ONLY:-0}" = 1 ]; then
  fill_cart
fi
measure '{ __typename } (Redis run)' "$TYPENAME" '"Query"'
measure 'products(first: 20), Redis cache' "$PRODUCTS" '"edges"'
measure 'cart, Redis cache' "$CART" '"itemCount":10' "$CUSTOMER"
RSS_KB=$(ps -o rss= -p "$SERVER_PID" | tr -d ' ')
stop_server

if [ "${READS_ONLY:-0}" = 1 ] || [ "${REDIS_ONLY:-0}" = 1 ]; then
  echo "skipping checkout throughput"
  : >"$OUT/checkout.md"
else
  DURATION="$DURATION" CONNECTIONS="$CONNECTIONS" PG_URL="$PG_URL" REDIS_URL="$REDIS_URL" bench/checkout.sh >"$OUT/checkout.md"
fi

if [ "${READS_ONLY:-0}" = 1 ] || [ "${REDIS_ONLY:-0}" = 1 ]; then
  : >"$OUT/scale.md"
else
  {
    echo "## Cache at scale"
    echo
    echo "\`bench/invalidation.sh\`: invalidation time and Redis memory against the number of entries."
    echo
    SKIP_BUILD=1 BIN="$BIN" bash bench/invalidation.sh
    echo
    SKIP_BUILD=1 BIN="$BIN" PG_URL="$PG_URL" REDIS_URL="$REDIS_URL" bash bench/stats_load.sh
  } >"$OUT/scale.md"
fi

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
  cat "$OUT/checkout.md"
  echo
  cat "$OUT/scale.md"
} >"$RESULTS"
echo "wrote $RESULTS (BENCHMARKS.md quotes its tables)"

#!/usr/bin/env bash
# Statistics while checkouts complete: cached topProducts and salesStats read at 32
# connections while paced checkouts (about RATE per second) complete on the same server,
# PostgreSQL + Redis, 10 000 products and ~100 000 order lines; and the uncached cost of
# each at concurrency 1. Prints a markdown section on stdout (progress on stderr).
# usage: bench/stats_load.sh   env: DURATION (10s), RATE (500), PG_URL, REDIS_URL
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
RATE=${RATE:-500}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
DB_URL="${PG_URL%/*}/shop_stats_bench"
PORT=8093
OUT=$(mktemp -d)
source bench/lib.sh
CHECKOUT_PID=
cleanup() {
  if [ -n "$CHECKOUT_PID" ]; then kill "$CHECKOUT_PID" 2>/dev/null || true; wait "$CHECKOUT_PID" 2>/dev/null || true; fi
  stop_server
}
trap cleanup EXIT
ensure_tools >&2

echo "== statistics database: 10 000 products, 1 000 customers, 33 334 orders" >&2
psql "$PG_URL" -qc "DROP DATABASE IF EXISTS shop_stats_bench" -qc "CREATE DATABASE shop_stats_bench" >/dev/null
DATABASE_URL="$DB_URL" "$BIN" seed --products 10000 --customers 1000 --orders 33334 >/dev/null
psql "$DB_URL" -qc "UPDATE products SET stock = 1000000" -qc "VACUUM ANALYZE" >/dev/null
LINES=$(psql "$DB_URL" -Atc "SELECT count(*) FROM order_items")
CUSTOMER=$("$BIN" token --tenant default --sub 1 --role CUSTOMER)
STAFF=$("$BIN" token --tenant default --sub bench --role STAFF)
TOP='{"query":"{ topProducts(limit: 10) { product { name } unitsSold revenue } }"}'
SALES='{"query":"{ salesStats(granularity: MONTH) { orders revenue refunds averageTicket series { period orders revenue refunds } revenueByPaymentMethod { method revenue } topProducts { unitsSold } } }"}'
PLACE='{"query":"mutation { placeOrder(input: {items: [{productId: \"7\", quantity: 1}, {productId: \"8\", quantity: 2}], paymentMethod: CARD, paymentToken: \"tok_visa\"}) { id status } }"}'
printf '%s' "$TOP" >"$OUT/top.json"
printf '%s' "$SALES" >"$OUT/sales.json"
printf '%s' "$PLACE" >"$OUT/place.json"

read_rps() { # body-file expected [token] [connections]
  local c=${4:-32}
  wrk -t"$(( c < 2 ? 1 : 2 ))" -c"$c" -d"$DURATION" -s bench/graphql.lua "http://127.0.0.1:$PORT" -- "$1" "$2" "${3:-}" | grep '^RESULT'
}
completed() { psql "$DB_URL" -Atc "SELECT count(*) FROM sagas WHERE status = 'COMPLETED'"; }

ROWS=()
echo "== uncached, concurrency 1" >&2
start_server CACHE_ENABLED=false WORKER_CONCURRENCY=0
for what in top sales; do
  if [ $what = top ]; then line=$(read_rps "$OUT/top.json" '"unitsSold"' "" 1); else line=$(read_rps "$OUT/sales.json" '"averageTicket"' "$STAFF" 1); fi
  ROWS+=("| $what, uncached, 1 connection, no checkouts | $(field "$line" rps) | $(field "$line" p50_ms) | $(field "$line" p99_ms) | — | $(field "$line" bad) |")
done

echo "== cached: 1 connection, then 32 connections while checkouts complete" >&2
start_server CACHE_ENABLED=true REDIS_URL="$REDIS_URL" CACHE_KEY_PREFIX="benchst$$" WORKER_CONCURRENCY=4
for what in top sales; do
  if [ $what = top ]; then line=$(read_rps "$OUT/top.json" '"unitsSold"' "" 1); else line=$(read_rps "$OUT/sales.json" '"averageTicket"' "$STAFF" 1); fi
  ROWS+=("| $what, cached (Redis), 1 connection, no checkouts | $(field "$line" rps) | $(field "$line" p50_ms) | $(field "$line" p99_ms) | — | $(field "$line" bad) |")
done
# RATE checkouts a second, one every INTERVAL ms; 40 connections fill the slots as long
# as a checkout answers within 40 intervals (80 ms at 500/s).
INTERVAL=$(echo "1000 / $RATE" | bc -l)
for what in top sales; do
  wrk -t1 -c40 -d600s -s bench/paced.lua "http://127.0.0.1:$PORT" -- "$OUT/place.json" '"PENDING"' "$CUSTOMER" "$INTERVAL" >/dev/null 2>&1 &
  CHECKOUT_PID=$!
  sleep 3
  # Autovacuum is off on these machines. The seed leaves the saga tables empty, so once
  # checkouts fill them the planner would still take them for empty and scan
  # `saga_steps` in full for every batch of sagas. A running shop's autoanalyze keeps
  # the statistics current; this ANALYZE stands in for it.
  psql "$DB_URL" -qc "ANALYZE" >/dev/null
  before=$(completed); start=$(date +%s.%N)
  if [ $what = top ]; then line=$(read_rps "$OUT/top.json" '"unitsSold"'); else line=$(read_rps "$OUT/sales.json" '"averageTicket"' "$STAFF"); fi
  end=$(date +%s.%N); after=$(completed)
  kill "$CHECKOUT_PID"; wait "$CHECKOUT_PID" 2>/dev/null || true; CHECKOUT_PID=
  rate=$(echo "($after - $before) / ($end - $start)" | bc -l | xargs printf '%.0f')
  ROWS+=("| $what, cached (Redis), 32 connections | $(field "$line" rps) | $(field "$line" p50_ms) | $(field "$line" p99_ms) | $rate | $(field "$line" bad) |")
done
stop_server

cat <<MD
### Statistics while checkouts complete

$(date -u +%Y-%m-%d), $(nproc) cores, PostgreSQL + Redis on loopback, $LINES order lines,
\`bench/stats_load.sh\` (DURATION=$DURATION, RATE=$RATE). The checkout load and the reads
share the machine's cores with the server, PostgreSQL and Redis.

| reads | req/s | p50 ms | p99 ms | checkouts completed/s meanwhile | bad |
| --- | ---: | ---: | ---: | ---: | ---: |
$(printf '%s\n' "${ROWS[@]}")
MD

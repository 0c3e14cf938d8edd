#!/usr/bin/env bash
# Checkout throughput on PostgreSQL with Redis events. Prints a markdown section on
# stdout (progress on stderr); bench/run.sh includes it in BENCHMARKS.md.
# usage: bench/checkout.sh   env: DURATION (10s), CONNECTIONS (32), PG_URL, REDIS_URL,
#        WORKERS ("1 2 4": worker counts for the drain runs), BATCH (64)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
WORKERS=${WORKERS:-1 2 4}
BATCH=${BATCH:-64}
DB_URL="${PG_URL%/*}/shop_checkout_bench"
PORT=8091
OUT=$(mktemp -d)
source bench/lib.sh
WORKER_PID=
cleanup() {
  stop_server
  if [ -n "$WORKER_PID" ]; then kill "$WORKER_PID" 2>/dev/null || true; wait "$WORKER_PID" 2>/dev/null || true; fi
}
trap cleanup EXIT
ensure_tools >&2

echo "== checkout database: 10 000 products, 1 000 customers" >&2
psql "$PG_URL" -qc "DROP DATABASE IF EXISTS shop_checkout_bench" -qc "CREATE DATABASE shop_checkout_bench" >/dev/null
DATABASE_URL="$DB_URL" "$BIN" seed --products 10000 --customers 1000 --orders 0 >/dev/null
CUSTOMER=$("$BIN" token --tenant default --sub 1 --role CUSTOMER)
PLACE='{"query":"mutation { placeOrder(input: {items: [{productId: \"7\", quantity: 1}, {productId: \"8\", quantity: 2}], paymentMethod: CARD, paymentToken: \"tok_visa\"}) { id status } }"}'
printf '%s' "$PLACE" >"$OUT/body.json"
export REDIS_URL CACHE_KEY_PREFIX="benchco$$"

# Each run keeps the history of the runs before it (as a shop's tables do) and starts
# from a vacuumed, analyzed database, as autovacuum leaves one (it is off on the CI
# machine's PostgreSQL). Runs count the sagas from id $FIRST on.
FIRST=1
reset() {
  psql "$DB_URL" -qc "UPDATE products SET stock = 1000000 WHERE id IN (7, 8)" -qc "VACUUM ANALYZE" >/dev/null
  FIRST=$(psql "$DB_URL" -Atc "SELECT coalesce(max(id), 0) + 1 FROM sagas")
}
unfinished() { psql "$DB_URL" -Atc "SELECT count(*) FROM sagas WHERE status NOT IN ('COMPLETED','COMPENSATED','FAILED')"; }
wait_drained() { while [ "$(unfinished)" != 0 ]; do sleep 0.1; done; }
burst() { wrk -t2 -c"$CONNECTIONS" -d"$DURATION" -s bench/graphql.lua "http://127.0.0.1:$PORT" -- "$OUT/body.json" '"PENDING"' "$CUSTOMER" | grep '^RESULT'; }
# completed|other|p50 ms|p99 ms (checkout accepted -> terminal)|stock conserved|products below 0
outcome() {
  psql "$DB_URL" -Atc "SELECT count(*) FILTER (WHERE status='COMPLETED'), count(*) FILTER (WHERE status<>'COMPLETED'),
      round((percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM updated_at - created_at)) * 1000)::numeric, 1),
      round((percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM updated_at - created_at)) * 1000)::numeric, 1),
      (SELECT sum(1000000 - stock) FROM products WHERE id IN (7, 8))
        = (SELECT coalesce(sum(i.quantity), 0) FROM order_items i JOIN orders o ON o.id = i.order_id WHERE o.saga_id >= $FIRST),
      (SELECT count(*) FROM products WHERE stock < 0)
    FROM sagas WHERE id >= $FIRST"
}
seconds() { echo "$2 - $1" | bc -l; }

# 0. Warm-up, not reported: a history of sagas, so that the first run does not start
#    from the statistics of empty tables.
reset
start_server WORKER_CONCURRENCY=4 WORKER_BATCH_SIZE="$BATCH"
DURATION=3s burst >/dev/null
wait_drained
stop_server

# 1. Drain: an API-only server accepts a backlog; then a worker process drains it.
DRAIN_ROWS=()
for workers in $WORKERS; do
  reset
  start_server WORKER_CONCURRENCY=0
  accepted=$(burst)
  stop_server
  backlog=$(unfinished)
  start=$(date +%s.%N)
  env WORKER_CONCURRENCY="$workers" WORKER_BATCH_SIZE="$BATCH" DATABASE_URL="$DB_URL" "$BIN" worker >"$OUT/worker.log" 2>&1 &
  WORKER_PID=$!
  wait_drained
  end=$(date +%s.%N)
  kill "$WORKER_PID"; wait "$WORKER_PID" 2>/dev/null || true; WORKER_PID=
  IFS='|' read -r completed other _ _ conserved oversold <<<"$(outcome)"
  rate=$(echo "$completed / $(seconds "$start" "$end")" | bc -l | xargs printf '%.0f')
  echo "drain workers=$workers batch=$BATCH: backlog=$backlog completed=$completed other=$other in $(seconds "$start" "$end" | xargs printf '%.2f') s = $rate/s conserved=$conserved oversold=$oversold" >&2
  DRAIN_ROWS+=("$workers|$(field "$accepted" rps)|$backlog|$completed|$other|$(seconds "$start" "$end" | xargs printf '%.2f')|$rate|$conserved|$oversold")
done

# 2. Burst with in-process workers: accepting and completing at once.
workers=${WORKERS##* }
reset
start_server WORKER_CONCURRENCY="$workers" WORKER_BATCH_SIZE="$BATCH"
(
  while true; do
    psql "$DB_URL" -Atc "SELECT to_char(clock_timestamp(), 'HH24:MI:SS.MS'), count(*) FILTER (WHERE status = 'PENDING'), count(*) FILTER (WHERE status = 'COMPLETED') FROM sagas"
    sleep 0.25
  done
) >"$OUT/depth.txt" 2>/dev/null &
SAMPLER=$!
start=$(date +%s.%N)
accepted=$(burst)
wait_drained
end=$(date +%s.%N)
kill "$SAMPLER"; wait "$SAMPLER" 2>/dev/null || true
stop_server
IFS='|' read -r completed other p50 p99 conserved oversold <<<"$(outcome)"
rate=$(echo "$completed / $(seconds "$start" "$end")" | bc -l | xargs printf '%.0f')
peak=$(cut -d'|' -f2 "$OUT/depth.txt" | sort -n | tail -1)
echo "burst workers=$workers: accepted $accepted; completed=$completed in $(seconds "$start" "$end" | xargs printf '%.1f') s = $rate/s p50=$p50 p99=$p99 peak=$peak" >&2

echo "## Checkout (PostgreSQL, Redis events)"
echo
echo "Every checkout is \`placeOrder\` of 3 units of two products (the same two for every"
echo "order: the hottest rows possible), card payment; workers claim batches of $BATCH."
echo "Figures from \`bench/checkout.sh\`; each run starts from a vacuumed, analyzed database"
echo "(autovacuum is off on this machine's PostgreSQL) that keeps the earlier runs' sagas."
echo
echo "### Worker throughput: draining a backlog"
echo
echo "An API-only server (\`WORKER_CONCURRENCY=0\`) accepts a $DURATION burst at $CONNECTIONS connections; then one"
echo "\`shopgraph worker\` process drains the backlog alone."
echo
echo "| workers | accepted/s | backlog | completed | not completed | drain s | completed/s | stock = units ordered | products below 0 |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |"
for row in "${DRAIN_ROWS[@]}"; do
  IFS='|' read -r d_workers d_accepted d_backlog d_completed d_other d_secs d_rate d_conserved d_oversold <<<"$row"
  echo "| $d_workers | $d_accepted | $d_backlog | $d_completed | $d_other | $d_secs | **$d_rate** | $d_conserved | $d_oversold |"
done
echo
echo "### Burst with in-process workers (load leveling)"
echo
echo "\`serve\` with $workers workers takes a $DURATION burst at $CONNECTIONS connections while it works; completed/s"
echo "counts from the burst's start until the queue is empty."
echo
echo "| accepted/s | completed | not completed | completed/s | checkout→terminal p50 ms | p99 ms | peak queue depth | stock = units ordered | products below 0 |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |"
echo "| $(field "$accepted" rps) | $completed | $other | **$rate** | $p50 | $p99 | $peak | $conserved | $oversold |"
echo
echo "Queue depth (PENDING) and completed sagas every 250 ms:"
echo
echo '```'
echo "time | queued | completed"
cat "$OUT/depth.txt"
echo '```'

#!/usr/bin/env bash
# Latency of requests the cache does not answer, against the SQL they run (issue 12):
# concurrency-1 p50/p99 and 32-connection req/s of an uncached product page, a cart of
# 10 lines with products and categories, and addToCart returning itemCount or the whole
# cart, cache off and on (Redis); then the SQL floor: pgbench -M prepared replaying the
# statements the server ran for each request (taken from PostgreSQL's own log, with
# log_min_duration_statement = 0 on this scratch database), at 1 and 32 clients; then
# the ratios. Prints a markdown section on stdout (progress on stderr).
# usage: bench/latency.sh   env: DURATION (10s), CONNECTIONS (32), PG_URL, REDIS_URL,
#        PG_LOG (the cluster's log file), BIN (default target/release/shopgraph)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
PG_LOG=${PG_LOG:-$(ls -t /var/log/postgresql/postgresql-*.log | head -1)}
DB_NAME=shop_latency_bench
DB_URL="${PG_URL%/*}/$DB_NAME"
PORT=8094
OUT=$(mktemp -d)
source bench/lib.sh
BIN=${LATENCY_BIN:-$BIN}
trap stop_server EXIT
ensure_tools >&2

# Customer 1's cart holds products 1-10 (read); customers 901-1000 hold 9991-10000 each,
# and the adds go round those 1 000 lines (a line holds at most 10 000 units).
echo "== database: 10 000 products, 1 000 customers" >&2
seed_cart_fixture
CUSTOMER=$("$BIN" token --tenant default --sub 1 --role CUSTOMER)
for c in $(seq 901 1000); do "$BIN" token --tenant default --sub "$c" --role CUSTOMER; done >"$OUT/adders"
WRITER=$("$BIN" token --tenant default --sub 1000 --role CUSTOMER)
reset() { psql "$DB_URL" -qc "VACUUM ANALYZE" >/dev/null; } # autovacuum is off here

PRODUCTS='{"query":"{ products(first: 20) { edges { node { id name price stock category { name } } } } }"}'
CART='{"query":"{ cart { itemCount total items { quantity product { name category { name } } } } }"}'
ADD_COUNT='{"query":"mutation { addToCart(productId: \"%d\") { itemCount } }"}'
ADD_CART='{"query":"mutation { addToCart(productId: \"%d\") { itemCount total items { quantity product { name category { name } } } } }"}'
printf '%s' "$PRODUCTS" >"$OUT/products.json"
printf '%s' "$CART" >"$OUT/cart.json"
printf '%s' "$ADD_COUNT" >"$OUT/add_count.json"
printf '%s' "$ADD_CART" >"$OUT/add_cart.json"
NAMES=(products cart add_count add_cart)
declare -A TITLE=(
  [products]='`products(first: 20) { … category { name } }`'
  [cart]='`cart { itemCount total items { quantity product { name category { name } } } }`, 10 lines'
  [add_count]='`addToCart` returning `itemCount`'
  [add_cart]='`addToCart` returning the cart (items, products, categories)'
)
declare -A EXPECT=([products]='"edges"' [cart]='"itemCount":10' [add_count]='"itemCount"' [add_cart]='"category"')

run_wrk() { # name connections
  local name=$1 c=$2 threads=$(( $2 < 2 ? 1 : 2 ))
  case $name in
    products) wrk -t$threads -c"$c" -d"$DURATION" --timeout 10s -s bench/graphql.lua "http://127.0.0.1:$PORT" -- "$OUT/$name.json" "${EXPECT[$name]}" ;;
    cart) wrk -t$threads -c"$c" -d"$DURATION" --timeout 10s -s bench/graphql.lua "http://127.0.0.1:$PORT" -- "$OUT/$name.json" "${EXPECT[$name]}" "$CUSTOMER" ;;
    add_*) wrk -t$threads -c"$c" -d"$DURATION" --timeout 10s -s bench/rotating.lua "http://127.0.0.1:$PORT" -- "$OUT/$name.json" "${EXPECT[$name]}" "$OUT/adders" 9991 10 ;;
  esac | grep '^RESULT'
}
one_request() { # name: the request once (adds: customer 1000, product 9999)
  local name=$1
  case $name in
    products) gql "" "$PRODUCTS" ;;
    cart) gql "$CUSTOMER" "$CART" ;;
    add_*) local body; body=$(cat "$OUT/$name.json"); gql "$WRITER" "${body//%d/9999}" ;;
  esac >/dev/null
}

# 1. The statements each request runs, from PostgreSQL's log (cache off, after a warm-up
#    request). The adds are replayed for customer :c (901-1000) and product :p.
echo "== capturing each request's statements" >&2
psql "$DB_URL" -qc "ALTER DATABASE $DB_NAME SET log_min_duration_statement = 0" >/dev/null
start_server CACHE_ENABLED=false WORKER_CONCURRENCY=0
for name in "${NAMES[@]}"; do
  one_request "$name"
  from=$(stat -c %s "$PG_LOG")
  one_request "$name"
  {
    case $name in add_*) printf '\\set c random(901, 1000)\n\\set p random(9991, 10000)\n' ;; esac
    tail -c +"$((from + 1))" "$PG_LOG" | grep -a "@$DB_NAME \|^	" | python3 bench/floor.py 1000=c 9999=p
  } >"$OUT/$name.sql"
  echo "-- $name: $(grep -vc '^\\' "$OUT/$name.sql") statements" >&2
done
stop_server
psql "$DB_URL" -qc "ALTER DATABASE $DB_NAME RESET log_min_duration_statement" >/dev/null

declare -A C1 C32
for cache in off on; do
  if [ $cache = off ]; then
    start_server CACHE_ENABLED=false WORKER_CONCURRENCY=0
  else
    start_server CACHE_ENABLED=true REDIS_URL="$REDIS_URL" CACHE_KEY_PREFIX="benchlat$$" WORKER_CONCURRENCY=0
  fi
  for name in "${NAMES[@]}"; do
    for c in 1 "$CONNECTIONS"; do
      reset
      one_request "$name"
      line=$(run_wrk "$name" "$c")
      echo "$name, cache $cache, $c connection(s): $line" >&2
      if [ "$c" = 1 ]; then C1[$name.$cache]=$line; else C32[$name.$cache]=$line; fi
    done
  done
done
stop_server

# 2. The floor: the same statements through pgbench.
declare -A FLOOR_P50 FLOOR_P99 FLOOR_TPS
for name in "${NAMES[@]}"; do
  reset
  rm -rf "$OUT/pgb" && mkdir "$OUT/pgb"
  (cd "$OUT/pgb" && pgbench -n -M prepared -f "$OUT/$name.sql" -c 1 -j 1 -T "${DURATION%s}" -l "$DB_URL" >"$OUT/pgbench.out" 2>&1) ||
    { cat "$OUT/pgbench.out" >&2; exit 1; }
  sort -n -k3,3 <(cat "$OUT"/pgb/pgbench_log.*) | awk '{ v[NR] = $3 } END {
      printf "%.3f %.3f\n", v[int(NR * 0.5) + 1] / 1000, v[int(NR * 0.99) + 1] / 1000 }' >"$OUT/pct"
  read -r FLOOR_P50[$name] FLOOR_P99[$name] <"$OUT/pct"
  reset
  pgbench -n -M prepared -f "$OUT/$name.sql" -c "$CONNECTIONS" -j 2 -T "${DURATION%s}" "$DB_URL" >"$OUT/pgbench.out" 2>&1 ||
    { cat "$OUT/pgbench.out" >&2; exit 1; }
  FLOOR_TPS[$name]=$(sed -n 's/^tps = \([0-9.]*\) (without.*/\1/p' "$OUT/pgbench.out" | xargs printf '%.0f')
  echo "floor $name: p50 ${FLOOR_P50[$name]} ms, p99 ${FLOOR_P99[$name]} ms, ${FLOOR_TPS[$name]} tps" >&2
done

ratio() { echo "$1 / $2" | bc -l | xargs printf '%.2f'; }
cat <<MD
### Latency against the SQL floor

$(date -u +%Y-%m-%d), $(nproc) cores, $(git rev-parse --short HEAD 2>/dev/null || echo '?'), release build, PostgreSQL + Redis on
loopback, \`bench/latency.sh\` (DURATION=$DURATION). wrk with 1 connection, then
$CONNECTIONS; every response checked (\`bad\`). Cache on = Redis (the whole-response
cache answers reads; adds invalidate). Floor = pgbench -M prepared of the statements the
server ran for that request, taken from PostgreSQL's log, parameters as literals
(adds: customer and product drawn at random, as the load does), 1 client (p50/p99 of
its per-transaction log) and $CONNECTIONS clients (tps). Vacuumed before every run.

| request | cache | p50 ms | p99 ms | bad | req/s at $CONNECTIONS | bad | SQL floor p50 / p99 ms | floor tps at $CONNECTIONS | p50 / floor | req/s / tps |
| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
$(for name in "${NAMES[@]}"; do for cache in off on; do
  a=${C1[$name.$cache]}; b=${C32[$name.$cache]}
  echo "| ${TITLE[$name]} | $cache | $(field "$a" p50_ms) | $(field "$a" p99_ms) | $(field "$a" bad) | $(field "$b" rps) | $(field "$b" bad) | ${FLOOR_P50[$name]} / ${FLOOR_P99[$name]} | ${FLOOR_TPS[$name]} | $(ratio "$(field "$a" p50_ms)" "${FLOOR_P50[$name]}")× | $(ratio "$(field "$b" rps)" "${FLOOR_TPS[$name]}")× |"
done; done)

Statements per request (the floor's scripts):
$(for name in "${NAMES[@]}"; do echo; echo "- ${TITLE[$name]}:"; echo; echo '```sql'; cat "$OUT/$name.sql"; echo '```'; done)
MD

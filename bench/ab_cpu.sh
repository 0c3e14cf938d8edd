#!/usr/bin/env bash
# CPU per request of two or more builds, alternated round by round on one database, so a
# shared machine's drift falls on all of them alike. For each run: req/s, the server's
# CPU µs per request (its user+system ticks from /proc) and the whole machine's busy µs
# per request (/proc/stat), and the CPU the hypervisor stole meanwhile.
#   LOAD=add_cart: addToCart returning the cart at 32 connections, cache off (issue 12);
#   LOAD=add_count / cart / products / typename: addToCart returning itemCount, customer
#     1's cart of 10 lines with products and categories, the first 20 products with their
#     categories (bench/latency.sh's page), `{ __typename }` (no statement): the same;
#   LOAD=checkout: placeOrder paced at RATE/s, cache on, 4 workers; per completed checkout.
# usage: bench/ab_cpu.sh BIN [BIN...]   env: ROUNDS (3), LOAD (add_cart), RATE (500),
#        SECONDS_PER_RUN (5), PG_URL, REDIS_URL
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: $0 BIN [BIN...]" >&2; exit 2; }
ROUNDS=${ROUNDS:-3}
LOAD=${LOAD:-add_cart}
RATE=${RATE:-500}
RUN=${SECONDS_PER_RUN:-5}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
DB_NAME=shop_ab_cpu_bench
DB_URL="${PG_URL%/*}/$DB_NAME"
PORT=8097
OUT=$(mktemp -d)
source bench/lib.sh
LOAD_PID=
cleanup() {
  if [ -n "$LOAD_PID" ]; then kill "$LOAD_PID" 2>/dev/null || true; wait "$LOAD_PID" 2>/dev/null || true; fi
  stop_server
}
trap cleanup EXIT
SKIP_BUILD=1 ensure_tools >&2
BIN=$1
TICK_US=$(( 1000000 / $(getconf CLK_TCK) ))
busy_ticks() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8; exit}' /proc/stat; }
steal_ticks() { awk '/^cpu /{print $9; exit}' /proc/stat; }

seed_cart_fixture
for c in $(seq 901 1000); do "$BIN" token --tenant default --sub "$c" --role CUSTOMER; done >"$OUT/adders"
CUSTOMER=$("$BIN" token --tenant default --sub 1 --role CUSTOMER)
printf '%s' '{"query":"mutation { addToCart(productId: \"%d\") { itemCount total items { quantity product { name category { name } } } } }"}' >"$OUT/add_cart.json"
printf '%s' '{"query":"mutation { addToCart(productId: \"%d\") { itemCount } }"}' >"$OUT/add_count.json"
printf '%s' '{"query":"{ cart { itemCount total items { quantity product { name category { name } } } } }"}' >"$OUT/cart.json"
printf '%s' '{"query":"{ products(first: 20) { edges { node { id name price stock category { name } } } } }"}' >"$OUT/products.json"
printf '%s' '{"query":"{ __typename }"}' >"$OUT/typename.json"
printf '%s' '{"query":"mutation { placeOrder(input: {items: [{productId: \"7\", quantity: 1}, {productId: \"8\", quantity: 2}], paymentMethod: CARD, paymentToken: \"tok_visa\"}) { id status } }"}' >"$OUT/place.json"
completed() { psql "$DB_URL" -Atc "SELECT count(*) FROM sagas WHERE status = 'COMPLETED'"; }

echo "| round | build | req/s | server µs | machine µs | steal ms |"
echo "| ---: | --- | ---: | ---: | ---: | ---: |"
for round in $(seq 1 "$ROUNDS"); do
  for build in "$@"; do
    BIN=$build
    case $LOAD in
      add_cart | add_count | cart | products | typename) start_server CACHE_ENABLED=false WORKER_CONCURRENCY=0 ;;
      checkout) start_server CACHE_ENABLED=true REDIS_URL="$REDIS_URL" CACHE_KEY_PREFIX="benchab$$" WORKER_CONCURRENCY=4 ;;
      *) echo "LOAD is add_cart, add_count, cart, products, typename or checkout" >&2; exit 2 ;;
    esac
    psql "$DB_URL" -qc "VACUUM ANALYZE" >/dev/null
    if [ "$LOAD" = checkout ]; then
      wrk -t1 -c40 -d600s -s bench/paced.lua "http://127.0.0.1:$PORT" -- "$OUT/place.json" '"PENDING"' "$CUSTOMER" "$(echo "1000 / $RATE" | bc -l)" >/dev/null 2>&1 &
      LOAD_PID=$!
      sleep 3
      psql "$DB_URL" -qc "ANALYZE" >/dev/null # the saga tables were empty: see stats_load.sh
    fi
    server0=$(cpu_ticks "$SERVER_PID"); busy0=$(busy_ticks); steal0=$(steal_ticks); done0=$(completed); start=$(date +%s.%N)
    case $LOAD in
      checkout) sleep "$RUN"; n=$(( $(completed) - done0 )) ;;
      *)
        case $LOAD in
          add_*) line=$(wrk -t2 -c32 -d"${RUN}s" --timeout 10s -s bench/rotating.lua "http://127.0.0.1:$PORT" -- "$OUT/$LOAD.json" '"itemCount"' "$OUT/adders" 9991 10) ;;
          cart) line=$(wrk -t2 -c32 -d"${RUN}s" --timeout 10s -s bench/graphql.lua "http://127.0.0.1:$PORT" -- "$OUT/cart.json" '"itemCount":10' "$CUSTOMER") ;;
          products) line=$(wrk -t2 -c32 -d"${RUN}s" --timeout 10s -s bench/graphql.lua "http://127.0.0.1:$PORT" -- "$OUT/products.json" '"stock"') ;;
          typename) line=$(wrk -t2 -c32 -d"${RUN}s" --timeout 10s -s bench/graphql.lua "http://127.0.0.1:$PORT" -- "$OUT/typename.json" '"__typename"') ;;
        esac
        line=$(echo "$line" | grep '^RESULT')
        [ "$(field "$line" bad)" = 0 ] || { echo "bad answers: $line" >&2; exit 1; }
        n=$(field "$line" requests) ;;
    esac
    server1=$(cpu_ticks "$SERVER_PID"); busy1=$(busy_ticks); steal1=$(steal_ticks); end=$(date +%s.%N)
    if [ -n "$LOAD_PID" ]; then kill "$LOAD_PID"; wait "$LOAD_PID" 2>/dev/null || true; LOAD_PID=; fi
    [ "$n" -gt 0 ] || { echo "nothing completed" >&2; exit 1; }
    echo "| $round | $(basename "$build") | $(echo "$n / ($end - $start)" | bc -l | xargs printf '%.0f') | $(( (server1 - server0) * TICK_US / n )) | $(( (busy1 - busy0) * TICK_US / n )) | $(( (steal1 - steal0) * TICK_US / 1000 )) |"
  done
done

#!/usr/bin/env bash
# Instructions the server executes per uncached request (issue 12), counted by callgrind:
# `products(first: 20)`, a 10-line cart and addToCart returning the cart, on
# bench/latency.sh's data, cache off. Prints, per request kind, the whole process's
# instructions per request (with what runs beside the requests) and the request path's
# (hyper's connection future, inclusive), then the parts named below.
# usage: bench/uncached_instructions.sh   env: REQUESTS (100), BIN (target/release/shopgraph)
set -euo pipefail
cd "$(dirname "$0")/.."
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DB_NAME=shop_uncached_cg
DB_URL="${PG_URL%/*}/$DB_NAME"
REQUESTS=${REQUESTS:-100}
PORT=8096
OUT=$(mktemp -d)
source bench/lib.sh
BIN=${CG_BIN:-$BIN}
trap stop_server EXIT
command -v valgrind >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q valgrind; }

seed_cart_fixture
psql "$DB_URL" -qc "VACUUM ANALYZE" >/dev/null
{ "$BIN" token --tenant default --sub 1 --role CUSTOMER
  for c in $(seq 901 1000); do "$BIN" token --tenant default --sub "$c" --role CUSTOMER; done; } >"$OUT/tokens"

CACHE_ENABLED=false WORKER_CONCURRENCY=0 DATABASE_URL="$DB_URL" BIND_ADDR="127.0.0.1:$PORT" \
  valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.out" "$BIN" serve >"$OUT/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 600); do curl -fs "http://127.0.0.1:$PORT/health/ready" >/dev/null 2>&1 && break; sleep 0.2; done
PARTS=('Dispatcher<D,Bs,I,T> as core::future::future::Future>::poll$' 'execute_once::\{\{closure\}\}$'
  'parse::executable::parse_query$' 'validation::check_rules$' 'Selector<S>::all::\{\{closure\}\}$'
  'from_query_result$' 'prepare_select_statement$' 'serde_json::ser::to_vec$' 'ResponseOrder::apply$'
  'jsonwebtoken::decoding::decode$' 'RecordLayer::(decrypt_incoming|encrypt_outgoing)$')
for kind in products cart add_cart; do
  python3 bench/uncached_requests.py "$PORT" 30 "$kind" "$OUT/tokens"
  callgrind_control --zero "$SERVER_PID" >/dev/null
  python3 bench/uncached_requests.py "$PORT" "$REQUESTS" "$kind" "$OUT/tokens"
  callgrind_control --dump="$kind" "$SERVER_PID" >/dev/null
  dump=$(grep -l "^desc: Trigger: .*$kind" "$OUT"/cg.out* | head -1)
  echo "== $kind ($dump)"
  python3 bench/callgrind_parts.py "$dump" "$REQUESTS" 15 "${PARTS[@]}"
done

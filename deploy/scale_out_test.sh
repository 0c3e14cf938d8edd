#!/usr/bin/env bash
# The scale-out test, on loopback: nginx (deploy/nginx/shopgraph.conf, as installed) in
# front of 3 API instances (`serve --no-worker`), 2 `worker` processes and the simulated
# payment provider they share, on PostgreSQL (a database of its own) and Redis (a key
# prefix of its own). deploy/scale_out/load.mjs drives a mixed load through nginx, stops
# one instance gracefully (out of nginx, then SIGTERM) and kills another with SIGKILL
# mid-load, restarts both, and reports per phase. Then this script checks the database: every saga terminal, stock
# conserved (stock taken = units in orders), none below zero; and which Redis keys have
# no TTL (the ones docker-compose's volatile-ttl eviction never evicts).
#
# Fails when: any client error while the instance stops gracefully, more errors after
# the SIGKILL than requests in flight on the killed instance, a subscription that never
# saw its saga finish, a restarted instance that gets no traffic, a saga not terminal,
# stock not conserved, or a server panic.
#
# usage: deploy/scale_out_test.sh     env: PG_URL, REDIS_URL, SHOPGRAPH_BIN (default:
#   $CARGO_TARGET_DIR/debug/shopgraph, built if missing), BEFORE/KILL/AFTER seconds of
#   those phases (10/5/10), KEEP=1 keeps the work directory (logs, report),
#   GRACEFUL=drain (default: out of nginx first, then SIGTERM, as Kubernetes and
#   OPERATIONS.md do a planned stop) or GRACEFUL=sigterm (SIGTERM alone: the instance
#   drains for its SHUTDOWN_DELAY_SECS=5, while nginx's idle upstream connections
#   (keepalive_timeout 4s) run out; nginx OSS never polls readiness, so a connection it
#   opens just as the listener closes can still be reset: see OPERATIONS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
BIN=${SHOPGRAPH_BIN:-${CARGO_TARGET_DIR:-target}/debug/shopgraph}
DB="shop_scaleout_$$"
DB_URL="${PG_URL%/*}/$DB"
PREFIX="scaleout$$"
PORTS=(18301 18302 18303)
NGINX_PORT=18300
GATEWAY_PORT=18309
work=$(mktemp -d)
pids=()

# Everything this script started, by PID; the database and the Redis prefix.
cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -f "$work/nginx.pid" ]; then kill "$(cat "$work/nginx.pid")" 2>/dev/null || true; fi
  psql "$PG_URL" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  redis-cli -u "$REDIS_URL" --scan --pattern "$PREFIX:*" | xargs -r -n 500 redis-cli -u "$REDIS_URL" DEL >/dev/null || true
  if [ "${KEEP:-0}" = 1 ] || [ "$status" != 0 ]; then
    echo "work directory (logs, report): $work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

wait_for() {
  local what=$1; shift
  for _ in $(seq 1 100); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "$what did not come up" >&2
  return 1
}

command -v nginx >/dev/null || { echo "nginx is missing (apt-get install nginx)" >&2; exit 1; }
if [ ! -x "$BIN" ]; then cargo build -q --bin shopgraph; fi

echo "== database $DB, Redis prefix $PREFIX"
psql "$PG_URL" -qc "CREATE DATABASE $DB" >/dev/null
export JWT_SECRET
JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
DATABASE_URL="$DB_URL" SEED_DEMO=false "$BIN" seed --products 200 --customers 60 >"$work/seed.log" 2>&1
# Enough stock that no request fails for want of it: stock is checked, not exhausted.
psql "$DB_URL" -qc "UPDATE products SET stock = 100000" >/dev/null
initial_stock=$(psql "$DB_URL" -Atc "SELECT sum(stock) FROM products")
products=$(psql "$DB_URL" -Atc "SELECT string_agg('\"' || id || '\"', ',') FROM products WHERE active")
mint() { "$BIN" token --tenant default --sub "$1" --role CUSTOMER --hours 2; }
tokens() { local from=$1 to=$2 list=""; for id in $(seq "$from" "$to"); do list+="${list:+,}\"$(mint "$id")\""; done; echo "[$list]"; }

common_env() {
  cat <<JSON
    "DATABASE_URL": "$DB_URL",
    "REDIS_URL": "$REDIS_URL",
    "CACHE_KEY_PREFIX": "$PREFIX",
    "JWT_SECRET": "$JWT_SECRET",
    "SEED_DEMO": "false",
    "DB_MAX_CONNECTIONS": "8",
    "PAYMENT_GATEWAY_URL": "http://127.0.0.1:$GATEWAY_PORT",
    "SHUTDOWN_DELAY_SECS": "5",
    "RUST_LOG": "info"
JSON
}

echo "== the payment provider and 2 workers"
BIND_ADDR="127.0.0.1:$GATEWAY_PORT" PAYMENT_LATENCY_MS=200 "$BIN" gateway >"$work/gateway.log" 2>&1 &
pids+=($!)
wait_for "the payment provider" curl -fs "http://127.0.0.1:$GATEWAY_PORT/v1/ledger"
for i in 1 2; do
  env DATABASE_URL="$DB_URL" REDIS_URL="$REDIS_URL" CACHE_KEY_PREFIX="$PREFIX" JWT_SECRET="$JWT_SECRET" \
    DB_MAX_CONNECTIONS=8 PAYMENT_GATEWAY_URL="http://127.0.0.1:$GATEWAY_PORT" INSTANCE_ID="worker-$i" \
    WORKER_CONCURRENCY=2 "$BIN" worker >"$work/worker-$i.log" 2>&1 &
  pids+=($!)
done

echo "== nginx on 127.0.0.1:$NGINX_PORT (deploy/nginx/shopgraph.conf) in front of ${PORTS[*]}"
mkdir -p "$work/nginx/shopgraph" "$work/nginx/temp"
cp deploy/nginx/shopgraph.conf "$work/nginx/"
for port in "${PORTS[@]}"; do
  # The passive health check as shipped in deploy/nginx/shopgraph/upstreams.conf.
  echo "server 127.0.0.1:$port max_fails=2 fail_timeout=5s;"
done >"$work/nginx/shopgraph/upstreams.conf"
echo "listen 127.0.0.1:$NGINX_PORT;" >"$work/nginx/shopgraph/listen.conf"
cat >"$work/nginx/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 4096; }
http {
  log_format timing '\$msec \$request_time "\$upstream_addr" \$status \$request_method \$uri';
  access_log $work/nginx-access.log timing;
  client_body_temp_path $work/nginx/temp/body;
  proxy_temp_path $work/nginx/temp/proxy;
  fastcgi_temp_path $work/nginx/temp/fastcgi;
  uwsgi_temp_path $work/nginx/temp/uwsgi;
  scgi_temp_path $work/nginx/temp/scgi;
  include $work/nginx/shopgraph.conf;
}
CONF
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf"
wait_for nginx test -s "$work/nginx.pid"

cat >"$work/config.json" <<JSON
{
  "binary": "$BIN",
  "base": "http://127.0.0.1:$NGINX_PORT",
  "ports": [${PORTS[0]}, ${PORTS[1]}, ${PORTS[2]}],
  "env": {
$(common_env),
    "TRUSTED_PROXIES": "127.0.0.1",
    "RATE_LIMIT_ENABLED": "false"
  },
  "products": [$products],
  "tokens": {
    "subscribers": $(tokens 1 20),
    "cartEditors": $(tokens 21 24),
    "shoppers": $(tokens 25 28)
  },
  "seconds": { "before": ${BEFORE:-10}, "settle": 3, "kill": ${KILL:-5}, "after": ${AFTER:-10} },
  "graceful": "${GRACEFUL:-drain}",
  "nginx": {
    "prefix": "$work/nginx",
    "conf": "$work/nginx/nginx.conf",
    "pidFile": "$work/nginx.pid",
    "upstreams": "$work/nginx/shopgraph/upstreams.conf"
  },
  "logDir": "$work",
  "nginxLog": "$work/nginx-access.log",
  "report": "$work/report.json"
}
JSON

echo "== load: before, SIGTERM (graceful), SIGKILL (kill), restart, after"
driver_status=0
node --experimental-websocket --no-warnings deploy/scale_out/load.mjs "$work/config.json" || driver_status=$?
[ -f "$work/report.json" ] || { echo "the driver wrote no report" >&2; exit 1; }

echo "== sagas terminal, stock conserved"
unfinished() { psql "$DB_URL" -Atc "SELECT count(*) FROM sagas WHERE status NOT IN ('COMPLETED','COMPENSATED','FAILED')"; }
deadline=$((SECONDS + 60))
while [ "$(unfinished)" != 0 ] && [ $SECONDS -lt $deadline ]; do sleep 0.5; done
IFS='|' read -r sagas completed compensated failed open <<<"$(psql "$DB_URL" -Atc "SELECT count(*),
    count(*) FILTER (WHERE status = 'COMPLETED'), count(*) FILTER (WHERE status = 'COMPENSATED'),
    count(*) FILTER (WHERE status = 'FAILED'),
    count(*) FILTER (WHERE status NOT IN ('COMPLETED','COMPENSATED','FAILED')) FROM sagas")"
IFS='|' read -r final_stock ordered negative <<<"$(psql "$DB_URL" -Atc "SELECT
    (SELECT sum(stock) FROM products),
    (SELECT coalesce(sum(i.quantity), 0) FROM order_items i JOIN orders o ON o.id = i.order_id WHERE o.status <> 'CANCELLED'),
    (SELECT count(*) FROM products WHERE stock < 0)")"
taken=$((initial_stock - final_stock))

# Keys without a TTL: what a volatile-* eviction policy never evicts (docker-compose.yml).
no_ttl=$(redis-cli -u "$REDIS_URL" --scan --pattern "$PREFIX:*" | while read -r key; do
  [ "$(redis-cli -u "$REDIS_URL" TTL "$key")" = -1 ] && echo "$key"; done || true)
keys_total=$(redis-cli -u "$REDIS_URL" --scan --pattern "$PREFIX:*" | wc -l)

panics=$(cat "$work"/api-*.log "$work"/worker-*.log | grep -c "panicked" || true)

node -e '
const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
console.log("phase     seconds  requests  errors  ok/s");
for (const [name, p] of Object.entries(r.phases)) {
  if (!p.requests && name === "drain") continue;
  console.log(`${name.padEnd(9)} ${String(p.seconds ?? "-").padStart(7)} ${String(p.requests).padStart(9)} ${String(p.errors).padStart(7)} ${String(p.okPerSecond ?? "-").padStart(5)}`);
  for (const [kind, n] of Object.entries(p.kinds)) console.log(`            ${n} x ${kind}`);
}
console.log(`graceful stop: ${r.graceful === "drain" ? "out of nginx, then SIGTERM" : "SIGTERM alone"}`);
console.log(`SIGTERM: exited after ${r.gracefulExit.afterMs} ms (code ${r.gracefulExit.code}, signal ${r.gracefulExit.signal})`);
console.log(`SIGKILL: ${r.inFlightAtKill} request(s) in flight on the killed instance (nginx log)`);
console.log(`served by the restarted instances (200s from 5 s after the restart): ${JSON.stringify(r.servedAfterRestart)}`);
const s = r.subscriptions;
console.log(`subscriptions: ${s.total}, saw their saga finish: ${s.finished}, reconnected: ${s.reconnected}, of which finished: ${s.reconnectedFinished}, unfinished: ${s.unfinished}`);
console.log(`sockets: ${r.sockets.opened} opened, ${r.sockets.closedUnexpectedly} closed under them, close codes ${JSON.stringify(r.sockets.closeCodes)}`);
for (const f of r.failures) console.log(`FAIL: ${f}`);
' "$work/report.json"
echo "sagas: $sagas ($completed completed, $compensated compensated, $failed failed, $open not terminal)"
echo "stock: $taken units taken, $ordered units in orders, $negative products below zero"
echo "Redis: $keys_total keys under $PREFIX, without TTL: $(echo "$no_ttl" | grep -c . || true) ($(echo "$no_ttl" | sed "s/^$PREFIX://" | tr '\n' ' '))"
echo "server panics: $panics"

status=$driver_status
[ "$open" = 0 ] || { echo "FAIL: $open saga(s) not terminal" >&2; status=1; }
[ "$taken" = "$ordered" ] || { echo "FAIL: stock not conserved ($taken taken, $ordered ordered)" >&2; status=1; }
[ "$negative" = 0 ] || { echo "FAIL: $negative product(s) below zero" >&2; status=1; }
[ "$panics" = 0 ] || { echo "FAIL: a server panicked" >&2; status=1; }
if echo "$no_ttl" | grep . | grep -vq ':seq$'; then
  echo "FAIL: keys without a TTL other than the tenants' sequences (volatile-ttl could not evict them; would it matter?)" >&2
  status=1
fi
[ "$status" = 0 ] && echo "scale-out test: passed" || echo "scale-out test: FAILED" >&2
exit "$status"

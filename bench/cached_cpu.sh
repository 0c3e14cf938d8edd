#!/usr/bin/env bash
# Server and Redis CPU per cached read, for builds alternated round by round: each
# build gets a database of its own (seeded by itself, so builds with other migrations
# compare too), a fresh key prefix and one filled entry, then wrk reads it at 32
# connections. µs = the process's user+system ticks from /proc ÷ requests.
# usage: bench/cached_cpu.sh BIN [BIN...]   env: ROUNDS (2), BODY (products page),
#        EXPECT ('"edges"'), SECONDS_PER_RUN (5), PG_URL, REDIS_URL
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: $0 BIN [BIN...]" >&2; exit 2; }
ROUNDS=${ROUNDS:-2}
RUN=${SECONDS_PER_RUN:-5}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
BODY=${BODY:-'{"query":"{ products(first: 20) { edges { node { id name price stock category { name } } } } }"}'}
EXPECT=${EXPECT:-'"edges"'}
PORT=8098
OUT=$(mktemp -d)
source bench/lib.sh
trap stop_server EXIT
SKIP_BUILD=1 ensure_tools >&2
printf '%s' "$BODY" >"$OUT/body.json"
TICK_US=$(( 1000000 / $(getconf CLK_TCK) ))
REDIS_PID=$(redis-cli -u "$REDIS_URL" info server | awk -F: '/^process_id/{print $2}' | tr -d '\r')

i=0
for build in "$@"; do
  i=$((i + 1))
  psql "$PG_URL" -qc "DROP DATABASE IF EXISTS shop_cached_cpu_$i" -qc "CREATE DATABASE shop_cached_cpu_$i" >/dev/null
  DATABASE_URL="${PG_URL%/*}/shop_cached_cpu_$i" "$build" seed --products 10000 --customers 1000 --orders 0 >/dev/null
done

echo "| round | build | req/s | server µs | Redis µs |"
echo "| ---: | --- | ---: | ---: | ---: |"
for round in $(seq 1 "$ROUNDS"); do
  i=0
  for build in "$@"; do
    i=$((i + 1))
    BIN=$build DB_URL="${PG_URL%/*}/shop_cached_cpu_$i"
    start_server CACHE_ENABLED=true REDIS_URL="$REDIS_URL" CACHE_KEY_PREFIX="benchcpu$$-$round-$i" WORKER_CONCURRENCY=0
    gql "" "$BODY" >/dev/null # the miss that fills the entry
    server0=$(cpu_ticks "$SERVER_PID"); redis0=$(cpu_ticks "$REDIS_PID")
    line=$(wrk -t2 -c32 -d"${RUN}s" --timeout 10s -s bench/graphql.lua "http://127.0.0.1:$PORT" -- "$OUT/body.json" "$EXPECT" | grep '^RESULT')
    server1=$(cpu_ticks "$SERVER_PID"); redis1=$(cpu_ticks "$REDIS_PID")
    stop_server
    [ "$(field "$line" bad)" = 0 ] || { echo "bad answers: $line" >&2; exit 1; }
    n=$(field "$line" requests)
    echo "| $round | $(basename "$build") | $(field "$line" rps) | $(echo "($server1 - $server0) * $TICK_US / $n" | bc -l | xargs printf '%.1f') | $(echo "($redis1 - $redis0) * $TICK_US / $n" | bc -l | xargs printf '%.1f') |"
  done
done
i=0
for _ in "$@"; do i=$((i + 1)); psql "$PG_URL" -qc "DROP DATABASE IF EXISTS shop_cached_cpu_$i" >/dev/null; done

#!/usr/bin/env bash
# What keeping the selection-set order costs: requests/s and server CPU per request of
# two builds (without and with the ordering), alternated round by round on one database
# (PostgreSQL, in-process cache), medians over the rounds.
# usage: bench/order_cost.sh BEFORE_BINARY AFTER_BINARY
# env:   ROUNDS (5), RUN (5s per measurement), PG_URL
set -euo pipefail
cd "$(dirname "$0")/.."
BEFORE=$1
AFTER=$2
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DB_URL="${PG_URL%/*}/shop_order_bench"
ROUNDS=${ROUNDS:-5}
RUN=${RUN:-5s}
PORT=8093
OUT=$(mktemp -d)
source bench/lib.sh
trap stop_server EXIT
TICKS=$(getconf CLK_TCK)
source bench/cost_cases.sh

psql "$PG_URL" -qc "DROP DATABASE IF EXISTS shop_order_bench" -qc "CREATE DATABASE shop_order_bench" >/dev/null
DATABASE_URL="$DB_URL" "$AFTER" seed --products 2000 --customers 10 >/dev/null


# "rps µs-cpu-per-request" of one binary on one query
run() {
  local bin=$1 body=$2 expect=$3
  BIN=$bin start_server CACHE_ENABLED=true
  printf '%s' "$body" >"$OUT/body.json"
  gql "" "$body" >/dev/null && gql "" "$body" >/dev/null # learn, then store the response
  local before after line
  before=$(cpu_ticks "$SERVER_PID")
  line=$(wrk -t2 -c32 -d"$RUN" --timeout 10s -s bench/graphql.lua "http://127.0.0.1:$PORT" -- "$OUT/body.json" "$expect" | grep '^RESULT')
  after=$(cpu_ticks "$SERVER_PID")
  stop_server
  [ "$(field "$line" bad)" = 0 ] || { echo "bad responses: $line" >&2; exit 1; }
  echo "$(field "$line" rps) $(echo "($after - $before) * 1000000 / $TICKS / $(field "$line" requests)" | bc -l | xargs printf '%.2f')"
}

declare -A RPS CPU
for round in $(seq 1 "$ROUNDS"); do
  for q in "${QUERIES[@]}"; do
    for build in before after; do
      bin=$BEFORE; [ "$build" = after ] && bin=$AFTER
      read -r rps us < <(run "$bin" "${BODY[$q]}" "${EXPECT[$q]}")
      RPS[$q.$build]="${RPS[$q.$build]:-} $rps"
      CPU[$q.$build]="${CPU[$q.$build]:-} $us"
      echo "round $round $q $build: $rps req/s, $us µs CPU/request" >&2
    done
  done
done

echo "| query | req/s before | after | change | µs CPU/request before | after | change |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
for q in "${QUERIES[@]}"; do
  rb=$(echo "${RPS[$q.before]}" | median); ra=$(echo "${RPS[$q.after]}" | median)
  cb=$(echo "${CPU[$q.before]}" | median); ca=$(echo "${CPU[$q.after]}" | median)
  echo "| ${LABEL[$q]} | $rb | $ra | $(pct "$rb" "$ra") | $cb | $ca | $(pct "$cb" "$ca") |"
done
for q in "${QUERIES[@]}"; do
  for build in before after; do
    echo "- $q, $build: req/s${RPS[$q.$build]}; µs CPU${CPU[$q.$build]}"
  done
done

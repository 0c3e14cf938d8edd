#!/usr/bin/env bash
# What a sign-in costs, and what a flood of them does to catalog reads.
#  1. signIn at concurrency 2 (every answer a session): requests/s, and server CPU per
#     sign-in (user+system from /proc, so a loaded machine does not inflate it).
#  2. Uncached catalog reads (products(first: 20) with categories) at concurrency 8,
#     alone, then while a second wrk floods signIn at concurrency 8. Argon2 runs on one
#     core fewer than the machine has, so the reads keep the rest.
# Rounds alternate alone/flooded; medians over the rounds.
# usage: bench/signin.sh        env: PG_URL, ROUNDS (3), RUN (10s)
set -euo pipefail
cd "$(dirname "$0")/.."
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DB_URL="${PG_URL%/*}/shop_signin_bench"
ROUNDS=${ROUNDS:-3}
RUN=${RUN:-10s}
PORT=8093
OUT=$(mktemp -d)
source bench/lib.sh
BIN=${CARGO_TARGET_DIR:-target}/release/shopgraph
trap stop_server EXIT
ensure_tools >&2
TICKS=$(getconf CLK_TCK)
export CACHE_ENABLED=false SIGNIN_MAX_FAILURES=1000000 SIGNIN_IP_PER_MINUTE=1000000

psql "$PG_URL" -qc "DROP DATABASE IF EXISTS shop_signin_bench" -qc "CREATE DATABASE shop_signin_bench" >/dev/null
DATABASE_URL="$DB_URL" "$BIN" seed --products 1000 --customers 100 >/dev/null
start_server
gql "" '{"query":"mutation { signUp(input: {email: \"bench@example.com\", name: \"Bench\", password: \"correct horse battery\"}) { accessToken } }"}' >/dev/null
printf '%s' '{"query":"mutation { signIn(email: \"bench@example.com\", password: \"correct horse battery\") { accessToken } }"}' >"$OUT/signin.json"
printf '%s' '{"query":"{ products(first: 20) { edges { node { id name price category { name } } } } }"}' >"$OUT/read.json"

wrk_run() { # body-file expect connections
  wrk -t1 -c"$3" -d"$RUN" --timeout 10s -s bench/graphql.lua "http://127.0.0.1:$PORT" -- "$1" "$2" | grep '^RESULT'
}
checked() { [ "$(field "$1" bad)" = 0 ] || { echo "bad responses: $1" >&2; exit 1; }; echo "$1"; }

declare -a SIGNIN_RPS SIGNIN_CPU ALONE FLOODED FLOOD_RPS
for round in $(seq 1 "$ROUNDS"); do
  before=$(cpu_ticks "$SERVER_PID")
  line=$(checked "$(wrk_run "$OUT/signin.json" accessToken 2)")
  after=$(cpu_ticks "$SERVER_PID")
  SIGNIN_RPS+=("$(field "$line" rps)")
  SIGNIN_CPU+=("$(echo "($after - $before) * 1000 / $TICKS / $(field "$line" requests)" | bc -l)")
  line=$(checked "$(wrk_run "$OUT/read.json" edges 8)")
  ALONE+=("$(field "$line" rps)")
  wrk_run "$OUT/signin.json" accessToken 8 >"$OUT/flood.txt" &
  flood=$!
  line=$(checked "$(wrk_run "$OUT/read.json" edges 8)")
  wait "$flood"
  FLOODED+=("$(field "$line" rps)")
  FLOOD_RPS+=("$(field "$(checked "$(cat "$OUT/flood.txt")")" rps)")
  echo "round $round: signIn ${SIGNIN_RPS[-1]} req/s, ${SIGNIN_CPU[-1]} ms CPU each; reads alone ${ALONE[-1]} req/s, flooded ${FLOODED[-1]} req/s (flood ${FLOOD_RPS[-1]} signIn/s)" >&2
done

alone=$(echo "${ALONE[@]}" | median)
flooded=$(echo "${FLOODED[@]}" | median)
echo "| measure | median of $ROUNDS rounds |"
echo "| --- | ---: |"
echo "| signIn at concurrency 2, req/s | $(echo "${SIGNIN_RPS[@]}" | median) |"
echo "| server CPU per signIn, ms | $(echo "${SIGNIN_CPU[@]}" | median | xargs printf '%.1f') |"
echo "| catalog reads alone (c=8), req/s | $alone |"
echo "| catalog reads during a signIn flood (c=8), req/s | $flooded |"
echo "| signIn/s during the flood | $(echo "${FLOOD_RPS[@]}" | median) |"
echo "| change of the reads under the flood | $(pct "$alone" "$flooded") |"

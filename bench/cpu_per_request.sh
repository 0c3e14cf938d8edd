#!/usr/bin/env bash
# Server CPU time per request (user+system, from /proc), which stays steady when a
# shared machine makes requests/s swing: the cost of the rate limiter and of the query
# limits. Configurations alternate within each round; medians over the rounds.
# usage: bench/cpu_per_request.sh   (after bench/run.sh has built and seeded shop_bench)
# env:   ROUNDS (5), RUN (4s per measurement)
set -euo pipefail
cd "$(dirname "$0")/.."
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DB_URL="${PG_URL%/*}/shop_bench"
ROUNDS=${ROUNDS:-5}
RUN=${RUN:-4s}
PORT=8092
OUT=$(mktemp -d)
source bench/lib.sh
trap stop_server EXIT
ensure_tools >&2
TICKS=$(getconf CLK_TCK)


# µs of server CPU per request for one configuration: query-name body expect -- env...
run() {
  local body=$1 expect=$2; shift 2
  start_server "$@"
  printf '%s' "$body" >"$OUT/body.json"
  gql "" "$body" >/dev/null
  local before after line
  before=$(cpu_ticks "$SERVER_PID")
  line=$(wrk -t2 -c32 -d"$RUN" --timeout 10s -s bench/graphql.lua "http://127.0.0.1:$PORT" -- "$OUT/body.json" "$expect" | grep '^RESULT')
  after=$(cpu_ticks "$SERVER_PID")
  stop_server
  [ "$(field "$line" bad)" = 0 ] || { echo "bad responses: $line" >&2; exit 1; }
  echo "($after - $before) * 1000000 / $TICKS / $(field "$line" requests)" | bc -l | xargs printf '%.2f'
}

source bench/cost_cases.sh
declare -A SAMPLES
for round in $(seq 1 "$ROUNDS"); do
  for q in "${QUERIES[@]}"; do
    for c in "${CONFIGS[@]}"; do
      # shellcheck disable=SC2086
      us=$(run "${BODY[$q]}" "${EXPECT[$q]}" ${ENV[$c]} $LIMITER CACHE_ENABLED=true)
      SAMPLES[$q.$c]="${SAMPLES[$q.$c]:-} $us"
      echo "round $round $q $c: $us µs" >&2
    done
  done
done

echo "| query | neither, µs CPU/request | rate limiter | query limits | both | limiter cost | limits cost | both |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for q in "${QUERIES[@]}"; do
  none=$(echo "${SAMPLES[$q.none]}" | median)
  limiter=$(echo "${SAMPLES[$q.limiter]}" | median)
  limits=$(echo "${SAMPLES[$q.limits]}" | median)
  both=$(echo "${SAMPLES[$q.both]}" | median)
  echo "| ${LABEL[$q]} | $none | $limiter | $limits | $both | $(pct "$none" "$limiter") | $(pct "$none" "$limits") | $(pct "$none" "$both") |"
done
echo
echo "Medians of $ROUNDS rounds, $RUN of wrk at 32 connections each; every sample:"
echo
for q in "${QUERIES[@]}"; do
  for c in "${CONFIGS[@]}"; do echo "- $q, $c:${SAMPLES[$q.$c]}"; done
done

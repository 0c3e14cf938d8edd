#!/usr/bin/env bash
# Instructions the server executes per request, counted by valgrind's callgrind: the
# same figure run after run whatever else the machine does, so a cost of a few percent
# shows (CPU time per request swings ±20 % here). Measures the rate limiter and the
# query limits, each on and off. Prints a markdown table.
# usage: bench/instructions_per_request.sh   (after bench/run.sh has seeded shop_bench)
# env:   REQUESTS (1000 per measurement)
set -euo pipefail
cd "$(dirname "$0")/.."
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DB_URL="${PG_URL%/*}/shop_bench"
REQUESTS=${REQUESTS:-1000}
PORT=8095
OUT=$(mktemp -d)
source bench/lib.sh
trap stop_server EXIT
command -v valgrind >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q valgrind; }

source bench/cost_cases.sh
declare -A IR
for c in "${CONFIGS[@]}"; do
  rm -f "$OUT"/cg.out*
  # shellcheck disable=SC2086
  env ${ENV[$c]} $LIMITER WORKER_CONCURRENCY=0 \
    DATABASE_URL="$DB_URL" BIND_ADDR="127.0.0.1:$PORT" \
    valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.out" "$BIN" serve >"$OUT/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 600); do curl -fs "http://127.0.0.1:$PORT/health/ready" >/dev/null 2>&1 && break; sleep 0.2; done
  for q in "${QUERIES[@]}"; do
    printf '%s' "${BODY[$q]}" >"$OUT/body.json"
    python3 bench/requests.py "$PORT" "$OUT/body.json" "${EXPECT[$q]}" 50
    callgrind_control --zero "$SERVER_PID" >/dev/null
    python3 bench/requests.py "$PORT" "$OUT/body.json" "${EXPECT[$q]}" "$REQUESTS"
    callgrind_control --dump="$q" "$SERVER_PID" >/dev/null
    dump=$(grep -l "^desc: Trigger: .*$q" "$OUT"/cg.out* | head -1)
    total=$(grep -E '^(summary|totals):' "$dump" | head -1 | awk '{print $2}')
    IR[$q.$c]=$((total / REQUESTS))
    echo "$c $q: ${IR[$q.$c]} instructions/request" >&2
  done
  stop_server
done

echo "| query | neither, instructions/request | rate limiter | query limits | both | limiter cost | limits cost | both |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for q in "${QUERIES[@]}"; do
  n=${IR[$q.none]}; r=${IR[$q.limiter]}; l=${IR[$q.limits]}; b=${IR[$q.both]}
  echo "| ${LABEL[$q]} | $n | $r | $l | $b | $(pct "$n" "$r") | $(pct "$n" "$l") | $(pct "$n" "$b") |"
done
echo
echo "$REQUESTS sequential requests per measurement on one keep-alive connection, counted"
echo "from after 50 warm-up requests; \`bench/instructions_per_request.sh\`."

#!/usr/bin/env bash
# The tail of single writes: RUNS five-second runs of `addToCart` returning `itemCount`
# at concurrency 1 (cache on, Redis), each on a vacuumed database, and the p99 of each.
# Some runs used to show a p99 of 40-70 ms, ten times the rest (issue #12); this counts
# the runs over SPIKE_MS, and the CPU time the hypervisor took from this machine during
# each run (steal, from /proc/stat): on a shared VM that is where such spikes come
# from. Prints a markdown line on stdout (progress on stderr).
# usage: bench/add_p99.sh   env: RUNS (12), SPIKE_MS (20), PG_URL, REDIS_URL, ADD_P99_BIN
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-12}
SPIKE_MS=${SPIKE_MS:-20}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
DB_NAME=shop_add_p99_bench
DB_URL="${PG_URL%/*}/$DB_NAME"
PORT=8095
OUT=$(mktemp -d)
source bench/lib.sh
BIN=${ADD_P99_BIN:-$BIN}
trap stop_server EXIT
ensure_tools >&2

seed_cart_fixture
for c in $(seq 901 1000); do "$BIN" token --tenant default --sub "$c" --role CUSTOMER; done >"$OUT/adders"
printf '%s' '{"query":"mutation { addToCart(productId: \"%d\") { itemCount } }"}' >"$OUT/add.json"
start_server CACHE_ENABLED=true REDIS_URL="$REDIS_URL" CACHE_KEY_PREFIX="benchp99$$" WORKER_CONCURRENCY=0
steal_ms() { awk '/^cpu /{print $9 * 10}' /proc/stat; } # USER_HZ is 100
P99S=()
STEALS=()
for run in $(seq 1 "$RUNS"); do
  psql "$DB_URL" -qc "VACUUM ANALYZE" >/dev/null
  stolen=$(steal_ms)
  line=$(wrk -t1 -c1 -d5s --timeout 10s -s bench/rotating.lua "http://127.0.0.1:$PORT" -- "$OUT/add.json" '"itemCount"' "$OUT/adders" 9991 10 | grep '^RESULT')
  [ "$(field "$line" bad)" = 0 ] || { echo "run $run: bad answers: $line" >&2; exit 1; }
  stolen=$(( $(steal_ms) - stolen ))
  P99S+=("$(field "$line" p99_ms)")
  STEALS+=("$stolen")
  echo "run $run: $line steal_ms=$stolen" >&2
done
spikes=$(printf '%s\n' "${P99S[@]}" | awk -v s="$SPIKE_MS" '$1 > s' | wc -l)
echo "| $(git rev-parse --short HEAD) | ${P99S[*]} | $(printf '%s\n' "${P99S[@]}" | median) | $spikes of $RUNS over $SPIKE_MS ms | ${STEALS[*]} |"

#!/usr/bin/env bash
# Invalidation time and Redis memory against the number of cached entries (issue #11).
#
# A private redis-server is filled with N entries of one tenant in the server's own
# format (each tagged `all`, its module and its product, as a products page is), then
# the release server answers `invalidateCache` (the whole tenant) and
# `invalidateCache(tag: "product:7")` ten times each. Printed: the mutation's latency as
# the client sees it (curl), how long the invalidation script held Redis (SLOWLOG, in
# microseconds: nothing else runs on Redis meanwhile), and Redis' used memory. Last, a
# million entries with a 10 s TTL show what memory comes back once they expire.
#
#   bash bench/invalidation.sh            N = 1 000, 100 000, 1 000 000
#   COUNTS="1000 10000" bash bench/invalidation.sh
set -euo pipefail
cd "$(dirname "$0")/.."
COUNTS=${COUNTS:-"1000 100000 1000000"}
REDIS_PORT=${REDIS_PORT:-6391}
PORT=${PORT:-18091}
OUT=$(mktemp -d)
DB_URL="sqlite://$OUT/shop.db?mode=rwc"
PREFIX=bench
source bench/lib.sh
ensure_tools

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$OUT" --logfile "$OUT/redis.log" --daemonize yes --pidfile "$OUT/redis.pid"
rcli() { redis-cli -p "$REDIS_PORT" "$@"; }
cleanup() {
  stop_server
  if [ -f "$OUT/redis.pid" ]; then kill "$(cat "$OUT/redis.pid")" 2>/dev/null || true; fi
}
trap cleanup EXIT
for _ in $(seq 1 50); do rcli ping >/dev/null 2>&1 && break; sleep 0.1; done

start_server REDIS_URL="redis://127.0.0.1:$REDIS_PORT" CACHE_KEY_PREFIX="$PREFIX" \
  DATA_DIR="$OUT" WORKER_CONCURRENCY=0
ADMIN=$(DATA_DIR="$OUT" DATABASE_URL="$DB_URL" "$BIN" token --tenant default --sub 1 --role ADMIN)

# N entries as the server stores them: `fill|tags\n{json}`, one hour (or $2 ms) to live,
# and the per-tag counts the store script keeps.
fill() {
  python3 - "$1" "$PREFIX" "${2:-3600000}" <<'EOF' | rcli --pipe >/dev/null
import sys
n, prefix, ttl_ms = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def cmd(*args):
    out = [f"*{len(args)}\r\n"]
    for a in args:
        b = a.encode()
        out.append(f"${len(b)}\r\n{a}\r\n")
    return "".join(out)
w = sys.stdout.write
value = '{"data":{"products":{"totalCount":1,"edges":[{"node":{"id":"7","name":"Mug","price":"7.50"}}]}}}'
for i in range(n):
    tags = f"all,module:products,product:{i % 10000}"
    w(cmd("SET", f"{prefix}:t:default:products:products:{i:016x}", f"0|{tags}\n{value}", "PX", ttl_ms))
w(cmd("SET", f"{prefix}:t:default:tagcount:all", str(n), "EX", "3700"))
w(cmd("SET", f"{prefix}:t:default:tagcount:module:products", str(n), "EX", "3700"))
EOF
}

invalidate() { # arguments of invalidateCache, as GraphQL
  local body
  body=$(printf '{"query":"mutation { invalidateCache%s }"}' "$1")
  curl -fs -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$PORT/graphql" \
    -H 'content-type: application/json' -H "authorization: Bearer $ADMIN" -d "$body"
}

summary() { # label, then values on stdin: median and max
  sort -n | awk -v label="$1" '{ v[NR] = $1 } END { printf "%s median %s max %s\n", label, v[int((NR + 1) / 2)], v[NR] }'
}

printf '| entries | used memory | invalidateCache() ms (median / max) | held Redis µs (max) | invalidateCache(tag) ms (median / max) |\n'
printf '| ---: | ---: | ---: | ---: | ---: |\n'
for n in $COUNTS; do
  rcli flushdb >/dev/null
  fill "$n"
  memory=$(rcli info memory | sed -n 's/^used_memory_human://p' | tr -d '\r')
  rcli config set slowlog-log-slower-than 0 >/dev/null
  rcli slowlog reset >/dev/null
  whole=$(for _ in $(seq 1 10); do invalidate ""; done | summary whole)
  tag=$(for _ in $(seq 1 10); do invalidate '(tag: \"product:7\")'; done | summary tag)
  # Each slow-log entry prints its id, time, duration (µs), then the command's words:
  # the longest EVALSHA (only the invalidation script runs here) held Redis that long.
  held=$(rcli slowlog get 1000 | awk 'toupper($0) == "EVALSHA" && prev > worst { worst = prev } { prev = $0 } END { print worst + 0 }')
  rcli config set slowlog-log-slower-than 10000 >/dev/null
  to_ms() { awk '{ printf "%.2f / %.2f", $3 * 1000, $5 * 1000 }'; }
  printf '| %s | %s | %s | %s | %s |\n' "$n" "$memory" "$(echo "$whole" | to_ms)" "$held" "$(echo "$tag" | to_ms)"
done

# Memory is bounded by the entries' TTLs: a million entries with 10 s to live, the whole
# tenant invalidated (which deletes none of them), then Redis' own expiry.
n=${EXPIRY_COUNT:-1000000}
rcli flushdb >/dev/null
empty=$(rcli info memory | sed -n 's/^used_memory_human://p' | tr -d '\r')
fill "$n" 10000
full=$(rcli info memory | sed -n 's/^used_memory_human://p' | tr -d '\r')
invalidate "" >/dev/null
filled_at=$(date +%s)
for _ in $(seq 1 600); do
  [ "$(rcli dbsize)" -le 10 ] && break
  sleep 0.5
done
echo
echo "$n entries with a 10 s TTL: used memory $empty empty, $full filled; $(rcli dbsize) keys and" \
  "$(rcli info memory | sed -n 's/^used_memory_human://p' | tr -d '\r') used $(( $(date +%s) - filled_at )) s after the fill"

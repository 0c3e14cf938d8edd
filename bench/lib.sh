# Shared by the bench scripts (sourced): tools, the release binary (BIN overrides it),
# one server at a time.
# Needs PG_URL, DB_URL, PORT and OUT set by the caller.
BIN=${BIN:-target/release/shopgraph}
SERVER_PID=
export JWT_SECRET=bench-secret-bench-secret-bench-secret
export RATE_LIMIT_ENABLED=false RUST_LOG=warn SEED_DEMO=false DB_MAX_CONNECTIONS=16

ensure_tools() {
  if ! command -v wrk >/dev/null || ! command -v bc >/dev/null; then
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk bc
  fi
  [ -n "${SKIP_BUILD:-}" ] || cargo build --release -q
}

stop_server() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=; fi
}

start_server() { # env assignments for the server
  stop_server
  env "$@" DATABASE_URL="$DB_URL" BIND_ADDR="127.0.0.1:$PORT" "$BIN" serve >"$OUT/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$PORT/health/ready" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "server did not start" >&2; cat "$OUT/server.log" >&2; exit 1
}

gql() { # token body
  curl -fs "http://127.0.0.1:$PORT/graphql" -H 'content-type: application/json' ${1:+-H "authorization: Bearer $1"} -d "$2"
}

# A field of wrk's RESULT line: field "$line" rps
field() { echo "$1" | grep -o "$2=[0-9.]*" | cut -d= -f2; }

# Server CPU ticks (user + system) of a process: cpu_ticks PID
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# The median of the numbers on stdin (space- or line-separated).
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

# The change from $1 to $2, in percent: "+1.2 %".
pct() { echo "($2 - $1) * 100 / $1" | bc -l | xargs printf '%+.1f %%'; }

# $DB_NAME afresh: 10 000 products, 1 000 customers; customer 1's cart holds products
# 1-10 (the cart read), customers 901-1000 hold 9991-10000 each (what the adds go round).
seed_cart_fixture() {
  psql "$PG_URL" -qc "DROP DATABASE IF EXISTS $DB_NAME" -qc "CREATE DATABASE $DB_NAME" >/dev/null
  DATABASE_URL="$DB_URL" "$BIN" seed --products 10000 --customers 1000 --orders 0 >/dev/null
  psql "$DB_URL" -q >/dev/null <<'SQL'
UPDATE products SET stock = 1000000, active = true;
INSERT INTO carts (customer_id, tenant_id, updated_at)
  SELECT id, tenant_id, now() FROM customers WHERE id = 1 OR id > 900 ON CONFLICT DO NOTHING;
DELETE FROM cart_items WHERE customer_id = 1 OR customer_id > 900;
INSERT INTO cart_items (tenant_id, customer_id, product_id, quantity, added_at)
  SELECT c.tenant_id, c.id, p.id, 1, now() FROM customers c
  JOIN products p ON (c.id = 1 AND p.id <= 10) OR (c.id > 900 AND p.id > 9990);
SQL
}

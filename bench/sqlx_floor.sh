#!/usr/bin/env bash
# What a round trip costs below the server: the products loader's statement for one id,
# at 32 connections, through sqlx alone (bench/sqlx_floor, the server's vendored sqlx,
# a pool of 16) and through pgbench -M prepared; for each, the client's CPU per
# statement (sqlx only) and the whole machine's (/proc/stat). Compare with the server's
# CPU per statement from bench/ab_cpu.sh (issue 12). Needs the database that
# bench/ab_cpu.sh seeds (shop_ab_cpu_bench: products 9991-10000).
# usage: bench/sqlx_floor.sh   env: ROUNDS (2), PG_URL
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-2}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DB_URL="${PG_URL%/*}/shop_ab_cpu_bench"
OUT=$(mktemp -d)
(cd bench/sqlx_floor && cargo build --release -q)
FLOOR=bench/sqlx_floor/target/release/sqlx-floor
busy_ticks() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8; exit}' /proc/stat; }
printf '%s\n' '\set p random(9991, 10000)' \
  "SELECT id, tenant_id, sku, name, description, price_cents, stock, category_id, active, created_at, updated_at FROM products WHERE tenant_id = 'default' AND id = :p;" >"$OUT/one.sql"
echo "| round | client | statements/s | client µs per statement | machine µs per statement |"
echo "| ---: | --- | ---: | ---: | ---: |"
for round in $(seq 1 "$ROUNDS"); do
  before=$(busy_ticks)
  line=$("$FLOOR" "$DB_URL" 5 32)
  after=$(busy_ticks)
  n=$(echo "$line" | grep -o 'statements=[0-9]*' | cut -d= -f2)
  echo "| $round | sqlx | $(( n / 5 )) | $(echo "$line" | grep -o 'cpu_us_per_statement=[0-9]*' | cut -d= -f2) | $(( (after - before) * 10000 / n )) |"
  before=$(busy_ticks)
  tps=$(pgbench -n -M prepared -f "$OUT/one.sql" -c 32 -j 2 -T 5 "$DB_URL" 2>/dev/null | sed -n 's/^tps = \([0-9.]*\) (without.*/\1/p')
  after=$(busy_ticks)
  echo "| $round | pgbench | $(printf '%.0f' "$tps") | — | $(echo "($after - $before) * 10000 / ($tps * 5)" | bc) |"
done

#!/usr/bin/env bash
# Rebuilds the playground into a temporary directory and compares it byte for
# byte with the committed dist/. Exit 1 when they differ (dist/ is stale: run
# ./build.sh and commit dist/). Installs node_modules with `npm ci` if missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

if [ ! -d dist ]; then
  echo "check-dist: playground/dist/ is missing; run playground/build.sh and commit dist/" >&2
  exit 1
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi

tmp="$(mktemp -d "${TMPDIR:-/tmp}/playground-dist.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

npx --no-install vite build --outDir "$tmp/dist" --emptyOutDir >"$tmp/build.log" 2>&1 || {
  cat "$tmp/build.log" >&2
  echo "check-dist: vite build failed" >&2
  exit 1
}

if ! diff -r "$tmp/dist" dist >"$tmp/diff.txt" 2>&1; then
  echo "check-dist: playground/dist/ differs from a fresh build of the sources:" >&2
  head -n 40 "$tmp/diff.txt" | cut -c1-200 >&2
  echo "check-dist: run playground/build.sh and commit playground/dist/" >&2
  exit 1
fi
echo "check-dist: playground/dist/ matches a fresh build ($(find dist -type f | wc -l) files)"

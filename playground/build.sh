#!/usr/bin/env bash
# Installs the locked dependencies and rebuilds dist/ (committed, so that
# `cargo build` needs no npm). Run after changing anything under playground/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
npm ci --no-audit --no-fund
npm run build

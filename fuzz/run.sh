#!/usr/bin/env bash
# Builds the fuzz targets and runs each for a bounded time, from the committed corpus
# (fuzz/corpus/<target>, minimized) and the inputs of past crashes
# (fuzz/regressions/<target>, never minimized away). New inputs go to a temporary
# directory, so a run leaves the repository clean; any crash, panic or timeout fails the
# run, with its input kept in fuzz/artifacts/<target>/ to reproduce, fix, and add to
# fuzz/regressions/<target>/ besides a unit test.
#
#   bash fuzz/run.sh                 every target, FUZZ_SECONDS (45) each
#   bash fuzz/run.sh document_limits one target
#   bash fuzz/run.sh --keep          then fold the new inputs into fuzz/corpus, minimized
#
# Built with the toolchain in use (stable is enough) and no sanitizer: the code is safe
# Rust (unsafe is forbidden), so what there is to find is panics, overflows (debug
# assertions are on), slow inputs and broken invariants, and libFuzzer finds those
# without AddressSanitizer's nightly flags and its slower build and runs.
set -euo pipefail
cd "$(dirname "$0")"

seconds=${FUZZ_SECONDS:-45}
keep=0
targets=()
for arg in "$@"; do
  case "$arg" in
    --keep) keep=1 ;;
    -*) echo "usage: $0 [--keep] [target...]" >&2; exit 2 ;;
    *) targets+=("$arg") ;;
  esac
done
if [ ${#targets[@]} = 0 ]; then
  targets=(http_post_body http_get_params document_limits domain_parsers)
fi

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

triple=$(rustc -vV | sed -n 's/^host: //p')
# A target directory of its own (not CARGO_TARGET_DIR): the instrumented build shares
# nothing with the server's.
target_dir=${FUZZ_TARGET_DIR:-$PWD/target}
build=(-s none --target "$triple" --target-dir "$target_dir")
started=$SECONDS
cargo fuzz build "${build[@]}"
echo "fuzz build: $(( SECONDS - started )) s"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
# Documents a client may send are bounded by the body limit; 4 KiB reaches every
# construct while keeping each run fast.
options=(-max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048
  -print_final_stats=1)
failed=()
printf '%-16s %11s %7s %7s %7s %7s %7s\n' target executions inputs corpus new crashes seconds \
  >"$scratch/summary"
for target in "${targets[@]}"; do
  bin="$target_dir/$triple/release/$target"
  mkdir -p "corpus/$target" "artifacts/$target" "$scratch/$target"
  inputs=("corpus/$target")
  if [ -d "regressions/$target" ]; then inputs+=("regressions/$target"); fi
  before=$(find "${inputs[@]}" -type f | wc -l)
  committed=$(find "corpus/$target" -type f | wc -l)
  touch "$scratch/$target.start"
  echo "== fuzz $target: $seconds s from $before inputs"
  t0=$SECONDS
  status=0
  "$bin" "${options[@]}" -artifact_prefix="artifacts/$target/" \
    "$scratch/$target" "${inputs[@]}" >"$scratch/$target.log" 2>&1 || status=$?
  elapsed=$(( SECONDS - t0 ))
  executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$scratch/$target.log" | tail -n 1)
  corpus=$(grep -oE 'corp: [0-9]+' "$scratch/$target.log" | tail -n 1 | grep -oE '[0-9]+' || true)
  new=$(find "$scratch/$target" -type f | wc -l)
  crashes=$(find "artifacts/$target" -type f -newer "$scratch/$target.start" | wc -l)
  printf '%-16s %11s %7s %7s %7s %7s %7s\n' "$target" "${executions:-?}" "$before" \
    "${corpus:-?}" "$new" "$crashes" "$elapsed" >>"$scratch/summary"
  if [ "$status" != 0 ] || [ "$crashes" != 0 ]; then
    failed+=("$target")
    echo "fuzz $target FAILED (exit $status):" >&2
    grep -vE '^#[0-9]+|^INFO:|^stat::' "$scratch/$target.log" | tail -n 60 >&2
    for artifact in $(find "artifacts/$target" -type f -newer "$scratch/$target.start"); do
      echo "input $artifact (base64): $(base64 -w0 "$artifact")" >&2
      echo "reproduce: cargo fuzz run -s none $target fuzz/$artifact" >&2
    done
  fi
  if [ "$keep" = 1 ] && [ "$status" = 0 ]; then
    # A fresh minimal corpus from the committed one and the new inputs, replacing the
    # committed one. Like `cargo fuzz cmin`, but a set cover over edges alone (not hit
    # counts) keeps it to a hundred or two small files instead of a thousand.
    merged="$scratch/$target.merged"
    mkdir -p "$merged"
    "$bin" -set_cover_merge=1 -use_counters=0 -max_len=4096 -timeout=10 "$merged" \
      "corpus/$target" "$scratch/$target" >"$scratch/$target.merge.log" 2>&1
    rm -rf "corpus/$target"
    mv "$merged" "corpus/$target"
    echo "corpus/$target: $committed -> $(find "corpus/$target" -type f | wc -l) inputs"
  fi
done
echo
echo "(inputs: committed corpus and regressions; corpus: what libFuzzer kept of them and"
echo " of what it found; new: inputs it found that reach new code)"
cat "$scratch/summary"
echo "fuzzing: $(( SECONDS - started )) s in all"
if [ ${#failed[@]} != 0 ]; then
  echo "fuzzing found crashes in: ${failed[*]}" >&2
  exit 1
fi

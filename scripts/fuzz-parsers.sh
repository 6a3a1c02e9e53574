#!/usr/bin/env bash
# Runs each `cargo fuzz` target in fuzz/ (bearer tokens, the payment
# webhook's signature header, request bodies) for SECONDS seconds each, and
# fails on the first crash (its input is kept in fuzz/artifacts/). Needs
# cargo-fuzz (`cargo install --locked cargo-fuzz`) and a C++ compiler for
# libFuzzer. Only stable Rust here: RUSTC_BOOTSTRAP lets cargo-fuzz pass its
# unstable flags, and without a nightly there is no AddressSanitizer
# (`--sanitizer none`); Rust's own checks (bounds, overflow: debug assertions
# are on) still turn bugs into crashes.
#
#   scripts/fuzz-parsers.sh 60        # a minute per target
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds=${1:?usage: scripts/fuzz-parsers.sh SECONDS}
export RUSTC_BOOTSTRAP=1
for target in $(cargo fuzz list); do
  echo "== $target: ${seconds}s"
  # Corpora stay in fuzz/corpus/<target> (ignored by git) between runs.
  log=$(mktemp)
  status=0
  cargo fuzz run --sanitizer none "$target" -- -max_total_time="$seconds" -print_final_stats=1 \
    >"$log" 2>&1 || status=$?
  grep -E '^(Done [0-9]+ runs|stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ +(INITED|DONE)|.*panicked at|SUMMARY|Test unit written|artifact_prefix)' "$log" || true
  if [ "$status" -ne 0 ]; then
    tail -40 "$log"
    rm -f "$log"
    echo "$target crashed" >&2
    exit 1
  fi
  rm -f "$log"
done
echo "no target crashed"

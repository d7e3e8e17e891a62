#!/usr/bin/env bash
# Runs every fuzz target for SECONDS seconds (default 60), from the
# committed seeds, all at once: one libFuzzer process uses one core, so one
# after another would leave the other cores idle for four times as long.
# After the tests' build: the differential target runs the CLI and a
# component it built. Needs a nightly toolchain and `cargo install cargo-fuzz`.
#
# Each target's output goes to corpus/<target>.log; a target that fails
# (a crash, a leak, a timeout) has its log printed, and the script exits 1.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
targets=(config jsonl_request answer differential)
# The differential target's two routers: the Rust example router (built by
# the tests) against the documentation's Python router, run without Synapse
# by the CLI the tests built (fuzz_targets/differential.rs says why a child
# process).
root="$(cd .. && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
export DIFFERENTIAL_BIN="$target/debug/presence-router"
export DIFFERENTIAL_COMPONENT="$target/guests/wasm32-wasip2/release/example_router.wasm"
export DIFFERENTIAL_AGAINST="python:example_presence_router.ExamplePresenceRouter"
export DIFFERENTIAL_PYTHON_PATH="$root/synapse-module/e2e"
export DIFFERENTIAL_CONFIG='{"always_send_to_users": ["@alice:example.com", "@watcher:remote.org"], "blacklisted_users": ["@mallory:example.com"]}'
for built in "$DIFFERENTIAL_BIN" "$DIFFERENTIAL_COMPONENT"; do
  [[ -f "$built" ]] || { echo "fuzz: $built is missing: build the tests first (cargo test --no-run)" >&2; exit 1; }
done
# Built once, before the runs start (they would wait on each other's build).
cargo +nightly fuzz build -O
pids=()
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target"
  cargo +nightly fuzz run -O "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 \
    >"corpus/$target.log" 2>&1 &
  pids+=($!)
done
failed=()
for i in "${!targets[@]}"; do
  if ! wait "${pids[$i]}"; then
    failed+=("${targets[$i]}")
  fi
done
for target in "${targets[@]}"; do
  # The final stats: runs and coverage, for the log of whoever ran this.
  echo "fuzz: $target: $(grep -E '^stat::number_of_executed_units' "corpus/$target.log" || echo 'no stats')"
done
if ((${#failed[@]})); then
  for target in "${failed[@]}"; do
    echo "fuzz: $target failed; its output (fuzz/corpus/$target.log):" >&2
    cat "corpus/$target.log" >&2
  done
  exit 1
fi

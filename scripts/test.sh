#!/usr/bin/env bash
# Sets up a fresh machine and runs every check and test. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo fmt --all -- --check
# The test crate's build script builds every guest component first.
cargo clippy --workspace --all-targets -- -D warnings
for guests in examples/routers/rust tests/guests; do
  (cd "$guests" && cargo fmt --all -- --check &&
    cargo clippy --target wasm32-wasip2 --target-dir "$OLDPWD/target/guests" -- -D warnings)
done
cargo test --workspace
# The Synapse module: its Python tests, and a real Synapse on loopback with
# wasm routers (builds the wheel into a pinned virtualenv under target/).
bash synapse-module/e2e/run.sh -q

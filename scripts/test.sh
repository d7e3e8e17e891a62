#!/usr/bin/env bash
# Sets up a fresh machine and runs every check and test. CI runs exactly this.
# Prints the time each phase took at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/phases.sh

lint() {
  cargo fmt --all -- --check
  cargo clippy --workspace --all-targets -- -D warnings
  # The binary that routes, without `authoring` (the line above builds the
  # CLI's tests, which turn it on). With the whole workspace, so that its
  # dependencies are those already checked: `-p presence-router` alone
  # would unify other features and check wasmtime again.
  cargo clippy --workspace --bins -- -D warnings
  # The guests are built for wasm32-wasip2, outside the workspace.
  for guests in examples/routers/rust tests/guests; do
    (cd "$guests" && cargo fmt --all -- --check &&
      cargo clippy --target wasm32-wasip2 --target-dir "$OLDPWD/target/guests" -- -D warnings)
  done
}

phase setup bash scripts/setup.sh
phase lint lint
# Everything the tests run, compiled once: the test binaries, the CLI, the
# guests (the tests crate's build script) and the Synapse module's library.
phase build cargo test --workspace --no-run
phase "Rust tests" cargo test --workspace
# The Synapse module: its Python tests, and a real Synapse on loopback with
# wasm routers (the wheel is built from the workspace's target directory).
phase "Synapse tests" bash synapse-module/e2e/run.sh -q

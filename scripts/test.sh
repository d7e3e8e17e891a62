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

# Everything the tests run, compiled once (the test binaries, the CLI, the
# guests by the tests crate's build script, the Synapse module's library),
# while the toolchains, services and Synapse download and install: the
# build wants both cores, the installs mostly wait on the network. The
# build needs only the Rust steps of the setup; the other steps' scripts
# check their toolchain directories with the ownership crate's binary,
# built by those first steps (a cargo run would wait for the build's lock).
setup_and_build() {
  local build status=0
  bash scripts/setup.sh --rust
  cargo test --workspace --no-run --quiet &
  build=$!
  PRESENCE_ROUTER="${CARGO_TARGET_DIR:-$PWD/target}/debug/presence-router-ownership" \
    bash scripts/setup.sh || status=$?
  wait "$build" || status=$?
  return "$status"
}

phase "setup, build" setup_and_build
phase lint lint
phase "Rust tests" cargo test --workspace
# The Synapse module: its Python tests, and a real Synapse on loopback with
# wasm routers (the wheel is built from the workspace's target directory).
phase "Synapse tests" bash synapse-module/e2e/run.sh -q

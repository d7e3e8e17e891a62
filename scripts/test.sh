#!/usr/bin/env bash
# Sets up a fresh machine and runs every check and test. CI runs exactly this.
# Prints the time each phase took at the end.
#
# The machine has two cores and CI a time limit, so no work is done twice
# and nothing waits that need not: the workspace is compiled once, clippy's
# lints included, while the toolchains install; then the Rust tests, the
# Synapse tests and the remaining checks run side by side.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/phases.sh

# Rust's components and the wasm32-wasip2 target: what the build needs.
phase "setup (Rust)" bash scripts/setup.sh --rust

# Clippy's lints (`cargo clippy --all-targets -- -D warnings`) on this
# workspace's own crates, as `cargo clippy` runs them: clippy-driver in
# place of rustc for the workspace's crates, here while they are compiled
# for the tests, instead of a second pass of its own over every dependency.
# A lint fails the build. Every cargo command below runs with this, so that
# none recompiles what another compiled.
RUSTC_WORKSPACE_WRAPPER="$(rustup which clippy-driver)"
export RUSTC_WORKSPACE_WRAPPER
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
# The Synapse module's native library is an extension module, not linked to
# a libpython, in every build (synapse-module/e2e/run.sh says why).
export PYO3_BUILD_EXTENSION_MODULE=1

# Everything the tests run, compiled once (the test binaries, benchmarks and
# examples, the CLI, the guests by the tests crate's build script), while
# the toolchains, services and Synapse download and install: the build
# wants both cores, the installs mostly wait on the network. The other
# setup steps' scripts check their toolchain directories with the ownership
# crate's binary, which `setup.sh --rust` built (a cargo run would wait for
# the build's lock). Then what the Synapse tests import (the module, the
# CLI without `authoring`, the JavaScript and Python example routers).
setup_and_build() {
  local build status=0
  cargo test --workspace --all-targets --no-run --quiet &
  build=$!
  PRESENCE_ROUTER="${CARGO_TARGET_DIR:-$PWD/target}/debug/presence-router-ownership" \
    bash scripts/setup.sh || status=$?
  wait "$build" || status=$?
  ((status)) && return "$status"
  bash synapse-module/e2e/run.sh --prepare-only
}

# What clippy in the build does not see: formatting, and the guests, built
# for wasm32-wasip2 outside the workspace.
other_checks() {
  cargo fmt --all -- --check
  for guests in examples/routers/rust tests/guests; do
    (cd "$guests" && cargo fmt --all -- --check &&
      cargo clippy --target wasm32-wasip2 --target-dir "$OLDPWD/target/guests" -- -D warnings)
  done
}

# The Rust tests in the foreground; the Synapse module's tests (its Python
# tests, and a real Synapse on loopback with wasm routers) and the other
# checks beside them, each into a log printed when it ends. The tests hold
# on a busy machine by design (no test depends on wall-clock luck).
tests() {
  local logs=target/test-logs status=0 synapse checks
  mkdir -p "$logs"
  rm -f "$logs/times"
  {
    timed "Synapse tests" env E2E_PREPARED=1 bash synapse-module/e2e/run.sh -q &&
      timed "wheel test" wheel_test
  } >"$logs/synapse.log" 2>&1 &
  synapse=$!
  timed "other checks" other_checks >"$logs/checks.log" 2>&1 &
  checks=$!
  timed "Rust tests" cargo test --workspace || status=$?
  wait "$checks" || { echo "=== the other checks failed:" >&2; status=1; }
  echo "=== other checks ($logs/checks.log):" >&2
  cat "$logs/checks.log" >&2
  wait "$synapse" || { echo "=== the Synapse tests failed:" >&2; status=1; }
  echo "=== Synapse tests ($logs/synapse.log):" >&2
  cat "$logs/synapse.log" >&2
  echo "=== side by side, each:" >&2
  cat "$logs/times" >&2
  return "$status"
}

# The module as an operator installs it: its manylinux_2_28 wheel for this
# machine, built as a release builds it but unoptimised (build_wheel.sh
# --test), installed into a virtualenv of its own of every CPython 3.10 to
# 3.13 here, with no Rust on PATH, under a real Synapse. The release script
# builds and tests the optimised wheels of both architectures.
wheel_test() {
  local wheel
  wheel="$(bash synapse-module/build_wheel.sh "$(uname -m)" target/wheels/test --test | tail -1)"
  bash synapse-module/e2e/wheel_test.sh "$wheel"
}

# `timed NAME COMMAND...`: runs it, and adds how long it took to the
# tests' times (each of the jobs that run side by side).
timed() {
  local name="$1" start status=0
  shift
  start=$(date +%s)
  strictly "$@" || status=$?
  printf '  %-14s %6d s wall%s\n' "$name" $(($(date +%s) - start)) \
    "$( ((status)) && echo "  (failed: exit $status)")" >>target/test-logs/times
  return "$status"
}

phase "setup, build" setup_and_build
phase tests tests

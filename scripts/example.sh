#!/usr/bin/env bash
# Builds the example router (examples/routers/rust/) into a component, and
# routes the example batch through it with the CLI.
#
# Installs one thing, and only if it is missing: Rust's wasm32-wasip2 target
# (rustup). Nothing else: the example needs no C toolchain, database or
# Node/Python, which scripts/setup.sh installs for scripts/test.sh's tests.
# The CLI is built without the router authors' commands (`new`, `bindgen`,
# `componentize`) and the code generators they compile.
set -euo pipefail
cd "$(dirname "$0")/.."
installed_targets="$(rustup target list --installed 2>/dev/null || true)"
if grep -qx wasm32-wasip2 <<<"$installed_targets"; then
  echo "example: Rust's wasm32-wasip2 target is installed; installing nothing" >&2
elif command -v rustup >/dev/null; then
  echo "example: installing Rust's wasm32-wasip2 target (rustup target add wasm32-wasip2)" >&2
  rustup target add wasm32-wasip2
else
  echo "example: Rust's wasm32-wasip2 target is missing and there is no rustup to add it: install Rust with rustup (https://rustup.rs)" >&2
  exit 1
fi
cargo build --release --target wasm32-wasip2 \
  --manifest-path examples/routers/rust/Cargo.toml --target-dir target/guests
# Release, not dev: from a fresh clone it takes less CPU time (the dev
# profile optimises every dependency too: Cargo.toml), and it is the binary
# to route with.
cargo build --release -p presence-router
cli="${CARGO_TARGET_DIR:-target}/release/presence-router"
"$cli" check --config examples/config.yaml
"$cli" route --config examples/config.yaml < examples/batch.jsonl

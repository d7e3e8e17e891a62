#!/usr/bin/env bash
# Installs what ./build.sh needs: Rust's wasm32-wasip2 target (with rustup),
# and says what it found and what it installed.
#
#     ./setup.sh [--check]   # --check: install nothing, say what is missing
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
setup_start "$@"
if ! command -v cargo >/dev/null; then
  echo "$0: cargo is missing: install Rust with rustup (https://rustup.rs), then run this again" >&2
  exit 1
fi
if rust_target_ready; then
  found "Rust's wasm32-wasip2 target"
elif [ -n "$check_only" ]; then
  missing "Rust's wasm32-wasip2 target"
elif ! command -v rustup >/dev/null; then
  echo "$0: Rust's wasm32-wasip2 target is missing, and there is no rustup to add it: install Rust with rustup (https://rustup.rs)" >&2
  exit 1
else
  rustup target add wasm32-wasip2 >&2
  installed "Rust's wasm32-wasip2 target"
fi
setup_end

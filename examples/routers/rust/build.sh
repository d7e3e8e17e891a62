#!/usr/bin/env bash
# Builds this router (src/lib.rs) into a component:
#
#     ./build.sh [OUT_DIR]   # -> build/example_router.wasm, or OUT_DIR/example_router.wasm
#
# Needs cargo and Rust's wasm32-wasip2 target, which ./setup.sh adds;
# installs nothing (exit status 3 when something is missing). cargo rebuilds
# only what changed (CARGO_TARGET_DIR, if set, is where it works). Prints
# the component's path last.
component=example_router.wasm
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
start_build "$@"
if ! command -v cargo >/dev/null; then
  missing_toolchain "cargo is missing" "install Rust with rustup (https://rustup.rs)"
fi
rust_target_ready || missing_toolchain "Rust's wasm32-wasip2 target is not installed"
# The cdylib of a wasm32-wasip2 build is a component. Release: every
# instruction is paid in fuel.
cargo build --release --target wasm32-wasip2 >&2
# Wherever cargo builds (CARGO_TARGET_DIR, a .cargo/config.toml), it says.
target_dir="$(cargo metadata --format-version 1 --no-deps |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
built_wasm="$target_dir/wasm32-wasip2/release/$component"
if [ ! -f "$built_wasm" ]; then
  echo "$0: cargo built no $built_wasm" >&2
  exit 1
fi
# Copied, then renamed: a homeserver watching the file never sees half of it.
cp "$built_wasm" "$out.partial"
mv "$out.partial" "$out"
echo "$out"

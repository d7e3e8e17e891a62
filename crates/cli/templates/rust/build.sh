#!/usr/bin/env bash
# Builds this router ({{name}}, in Rust) into a component:
#
#     ./build.sh [OUT_DIR]   # -> OUT_DIR/{{component}} (default: build/)
#
# Needs Rust from rustup (https://rustup.rs): adds the wasm32-wasip2 target
# when it is missing. cargo rebuilds only what changed (CARGO_TARGET_DIR,
# if set, is where it works). Prints the component's path last.
{{prelude}}
if ! command -v cargo >/dev/null; then
  echo "$0: cargo is missing: install Rust with rustup (https://rustup.rs)" >&2
  exit 1
fi
if command -v rustup >/dev/null &&
  ! rustup target list --installed | grep -qx wasm32-wasip2; then
  rustup target add wasm32-wasip2 >&2
fi
# The cdylib of a wasm32-wasip2 build is a component. Release: every
# instruction is paid in fuel.
cargo build --release --target wasm32-wasip2 >&2
# Wherever cargo builds (CARGO_TARGET_DIR, a .cargo/config.toml), it says.
target_dir="$(cargo metadata --format-version 1 --no-deps |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
built_wasm="$target_dir/wasm32-wasip2/release/{{snake}}.wasm"
if [ ! -f "$built_wasm" ]; then
  echo "$0: cargo built no $built_wasm" >&2
  exit 1
fi
# Copied, then renamed: a homeserver watching the file never sees half of it.
cp "$built_wasm" "$out.partial"
mv "$out.partial" "$out"
echo "$out"

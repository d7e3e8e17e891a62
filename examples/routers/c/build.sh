#!/usr/bin/env bash
# Builds the C example router into a component:
#   examples/routers/c/build.sh OUT_DIR   ->   OUT_DIR/example_router_c.wasm
#
# Needs Debian's clang 19 for wasm32-wasi (scripts/setup.sh installs it;
# this script names what is missing, and installs it only when run as root
# with PRESENCE_ROUTER_INSTALL_PACKAGES=1), builds the workspace's
# presence-router-guest-build (bindings, componentizing), and skips the
# build when none of its inputs changed since the last one. Prints the
# component's path last.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 OUT_DIR" >&2
  exit 2
fi
mkdir -p "$1"
out_dir="$(cd "$1" && pwd)"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
cd "$here"
# One build at a time (the shared work directory): lock this
# script itself, so no lock file is left around.
if command -v flock >/dev/null; then
  exec 9<"$here/build.sh"
  flock 9
fi
out="$out_dir/example_router_c.wasm"
# Intermediate files, beside the output but not as *.wasm in OUT_DIR itself
# (the tests' build script takes every *.wasm there for a guest).
work="$out_dir/example_router_c.build"

# shellcheck source=../crates/guest-build/wasi-clang.sh
source "$root/crates/guest-build/wasi-clang.sh"
need_debian_packages "${WASI_CLANG_PACKAGES[@]}"
guest_build_tool

# The component depends on the router, this script, the WIT, the tool and
# the compiler; when none changed and the component is there, it is up to
# date.
hash() { sha256sum "$@" | sha256sum | cut -d' ' -f1; }
mapfile -t tool_inputs < <(guest_build_inputs)
inputs_stamp="$out.inputs"
inputs_hash="$( (hash src/*.c src/*.h build.sh "$root"/wit/*.wit \
  "$root/crates/guest-build/wasi-clang.sh" "${tool_inputs[@]}"; "$WASI_CC" --version) | sha256sum | cut -d' ' -f1)"
if [ -f "$out" ] && [ -f "$inputs_stamp" ] && [ "$(cat "$inputs_stamp")" = "$inputs_hash" ]; then
  echo "$out is up to date" >&2
  echo "$out"
  exit 0
fi
rm -f "$inputs_stamp"
rm -rf "$work"
mkdir -p "$work"

# The bindings: presence_router.{h,c} and the object that embeds the world
# in the module for the componentizer.
"$GUEST_BUILD" bindgen --lang c --wit "$root/wit" --out "$work/bindings"

# -O2 for speed: every instruction is paid in fuel. Strict warnings on our
# code, not on the generated bindings.
cflags=(--target=wasm32-wasi -O2 -std=c17)
warnings=(-Wall -Wextra -Wpedantic -Wconversion -Werror)
"$WASI_CC" "${cflags[@]}" "${warnings[@]}" -I "$work/bindings" -c src/router.c -o "$work/router.o"
"$WASI_CC" "${cflags[@]}" "${warnings[@]}" -c src/config.c -o "$work/config.o"
"$WASI_CC" "${cflags[@]}" -c "$work/bindings/presence_router.c" -o "$work/bindings.o"
# Linked as a reactor: no main; `_initialize` runs the C runtime's
# constructors once per instance, then the host calls the exports.
# --strip-debug keeps the name section, so a trap's backtrace names the
# function.
"$WASI_CC" "${cflags[@]}" -mexec-model=reactor -Wl,--strip-debug -o "$work/module.wasm" \
  "$work/router.o" "$work/config.o" "$work/bindings.o" \
  "$work/bindings/presence_router_component_type.o"

"$GUEST_BUILD" componentize --module "$work/module.wasm" --out "$out"
echo "$inputs_hash" >"$inputs_stamp"
echo "$out"

#!/usr/bin/env bash
# Builds the C++ example router into a component:
#   examples/routers/cpp/build.sh OUT_DIR   ->   OUT_DIR/example_router_cpp.wasm
#
# and, from the same sources without src/post_return_fix.cpp, the component
# that leaks everything it returns, kept for the test kit's leak test:
# OUT_DIR/example_router_cpp_leaky.wasm.
#
# Needs Debian's clang 19 and libc++ for wasm32-wasi (scripts/setup.sh
# installs them; this script names what is missing, and installs it only
# when run as root with PRESENCE_ROUTER_INSTALL_PACKAGES=1), builds the
# workspace's presence-router-guest-build (bindings, componentizing), and
# skips the build when none of its inputs changed since the last one.
# Prints the component's path last.
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
out="$out_dir/example_router_cpp.wasm"
leaky="$out_dir/example_router_cpp_leaky.wasm"
# Intermediate files, beside the output but not as *.wasm in OUT_DIR itself
# (the tests' build script takes every *.wasm there for a guest).
work="$out_dir/example_router_cpp.build"

# shellcheck source=../crates/guest-build/wasi-clang.sh
source "$root/crates/guest-build/wasi-clang.sh"
need_debian_packages "${WASI_CLANG_PACKAGES[@]}" "${WASI_CLANG_CXX_PACKAGES[@]}"
guest_build_tool

# The components depend on the router, this script, the WIT, the tool and
# the compiler; when none changed and both are there, they are up to date.
hash() { sha256sum "$@" | sha256sum | cut -d' ' -f1; }
mapfile -t tool_inputs < <(guest_build_inputs)
inputs_stamp="$out.inputs"
inputs_hash="$( (hash src/* build.sh "$root"/wit/*.wit \
  "$root/crates/guest-build/wasi-clang.sh" "${tool_inputs[@]}"; "$WASI_CXX" --version) | sha256sum | cut -d' ' -f1)"
if [ -f "$out" ] && [ -f "$leaky" ] && [ -f "$inputs_stamp" ] &&
  [ "$(cat "$inputs_stamp")" = "$inputs_hash" ]; then
  echo "$out is up to date" >&2
  echo "$out"
  exit 0
fi
rm -f "$inputs_stamp"
rm -rf "$work"
mkdir -p "$work"

# The bindings: presence_router_cpp.h, presence_router.cpp, wit.h and the
# object that embeds the world in the module for the componentizer.
"$GUEST_BUILD" bindgen --lang cpp --wit "$root/wit" --out "$work/bindings"

# C++23 (the bindings use std::expected). wasi's libc++ is built without
# exceptions or RTTI. -O2 for speed: every instruction is paid in fuel.
# Strict warnings on our code, not on the generated bindings.
cxxflags=(--target=wasm32-wasi -O2 -std=c++23 -fno-exceptions -fno-rtti -I "$work/bindings")
warnings=(-Wall -Wextra -Wpedantic -Wconversion -Werror)
for source in router config post_return_fix; do
  "$WASI_CXX" "${cxxflags[@]}" "${warnings[@]}" -c "src/$source.cpp" -o "$work/$source.o"
done
# Two leaks of wit-bindgen-cpp 0.60's bindings, both found by `presence-router
# test`, and fixed here for example_router_cpp.wasm only (the leaky build
# keeps the bindings as generated):
# - its post-return functions are exported under names the canonical ABI
#   does not look for: src/post_return_fix.cpp exports the right ones;
# - `get-users-for-states` copies the states the host lowered into a
#   wit::vector of its own and never frees the host's array (64 bytes a
#   state, every call). The fix frees it once the router has answered: the
#   copy owns everything else (each string is moved into it, not copied).
#   It is inserted after the one line that calls the router, and the build
#   fails if that line is not there exactly once (another wit-bindgen).
call='auto result6 = exports::presence_router::GetUsersForStates(std::move(_result5));'
awk -v call="$call" '
  { print }
  index($0, call) { print "  if (arg1 > 0) free(arg0);  // the host'"'"'s array of states"; n++ }
  END { exit n != 1 }' "$work/bindings/presence_router.cpp" >"$work/bindings/presence_router_fixed.cpp" ||
  { echo "$0: the generated presence_router.cpp has changed: review the fixes above" >&2; exit 1; }
"$WASI_CXX" "${cxxflags[@]}" -c "$work/bindings/presence_router.cpp" -o "$work/bindings.o"
"$WASI_CXX" "${cxxflags[@]}" -c "$work/bindings/presence_router_fixed.cpp" -o "$work/bindings_fixed.o"
objects=("$work/router.o" "$work/config.o" "$work/bindings/presence_router_component_type.o")
# Linked as a reactor: no main; `_initialize` runs the constructors once per
# instance, then the host calls the exports. --strip-debug keeps the name
# section, so a trap's backtrace names the function.
link() { "$WASI_CXX" "${cxxflags[@]}" -mexec-model=reactor -Wl,--strip-debug "$@"; }

# The leaking build first: its post-returns are missing on purpose.
link -o "$work/leaky.wasm" "${objects[@]}" "$work/bindings.o"
echo "$0: the leaky build, warned about as it should be:" >&2
"$GUEST_BUILD" componentize --module "$work/leaky.wasm" --out "$leaky" --allow-missing-post-return
link -o "$work/module.wasm" "${objects[@]}" "$work/bindings_fixed.o" "$work/post_return_fix.o"
"$GUEST_BUILD" componentize --module "$work/module.wasm" --out "$out"
echo "$inputs_hash" >"$inputs_stamp"
echo "$out"

#!/usr/bin/env bash
# Builds this router (src/*.cpp) into a component:
#
#     ./build.sh [OUT_DIR]   # -> build/example_router.wasm, or OUT_DIR/example_router.wasm
#
# Needs Debian's clang 19 and libc++ for wasm32-wasi, which ./setup.sh
# installs, and presence-router (PRESENCE_ROUTER, or the one on PATH), which
# writes the C++ bindings of wit/ and makes the component; installs nothing
# (exit status 3 when something is missing). Skips the build when none of
# its inputs changed since the last one. Prints the component's path last.
component=example_router.wasm
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
start_build "$@"
# Intermediate files, beside the component.
work="$out_dir/${component%.wasm}.d"
use_debian_packages "${WASI_CLANG_PACKAGES[@]}" "${WASI_CLANG_CXX_PACKAGES[@]}"
WASI_CXX=clang++-19
use_presence_router
up_to_date "$( (hash src/* build.sh lib.sh wit/*.wit "$PRESENCE_ROUTER"; "$WASI_CXX" --version) |
  sha256sum | cut -d' ' -f1)"
rm -rf "$work"
mkdir -p "$work"

# The bindings: presence_router_cpp.h, presence_router.cpp, wit.h and the
# object that embeds the world in the module for the componentizer.
"$PRESENCE_ROUTER" bindgen --lang cpp --wit wit --out "$work/bindings"

# Two leaks of wit-bindgen-cpp 0.60's bindings, fixed here:
# - its post-return functions are exported under names the canonical ABI
#   does not look for: src/post_return_fix.cpp exports the right ones
#   (without them, componentize refuses the module);
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
  { echo "$0: the generated presence_router.cpp has changed: review the fixes in this script" >&2; exit 1; }

# C++23 (the bindings use std::expected). wasi's libc++ is built without
# exceptions or RTTI. -O2 for speed: every instruction is paid in fuel.
# Strict warnings on your code, not on the generated bindings.
cxxflags=(--target=wasm32-wasi -O2 -std=c++23 -fno-exceptions -fno-rtti -I src -I "$work/bindings")
warnings=(-Wall -Wextra -Wpedantic -Wconversion -Werror)
objects=()
for source in src/*.cpp; do
  object="$work/$(basename "$source" .cpp).o"
  "$WASI_CXX" "${cxxflags[@]}" "${warnings[@]}" -c "$source" -o "$object"
  objects+=("$object")
done
"$WASI_CXX" "${cxxflags[@]}" -c "$work/bindings/presence_router_fixed.cpp" -o "$work/bindings.o"
# Linked as a reactor: no main; `_initialize` runs the constructors once per
# instance, then the host calls the exports. --strip-debug keeps the name
# section, so a trap's backtrace names the function.
"$WASI_CXX" "${cxxflags[@]}" -mexec-model=reactor -Wl,--strip-debug -o "$work/module.wasm" \
  "${objects[@]}" "$work/bindings.o" "$work/bindings/presence_router_component_type.o"

# Refuses a module whose exports would leak what they return (no
# post-return functions).
"$PRESENCE_ROUTER" componentize --module "$work/module.wasm" --out "$out"
built

#!/usr/bin/env bash
# Builds this router (src/*.c) into a component:
#
#     ./build.sh [OUT_DIR]   # -> build/example_router.wasm, or OUT_DIR/example_router.wasm
#
# Needs Debian's clang 19 for wasm32-wasi, which ./setup.sh installs, and
# presence-router (PRESENCE_ROUTER, or the one on PATH), which writes the C
# bindings of wit/ and makes the component; installs nothing (exit status 3
# when something is missing). Skips the build when none of its inputs
# changed since the last one. Prints the component's path last.
component=example_router.wasm
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
start_build "$@"
# Intermediate files, beside the component.
work="$out_dir/${component%.wasm}.d"
use_debian_packages "${WASI_CLANG_PACKAGES[@]}"
WASI_CC=clang-19
use_presence_router
up_to_date "$( (hash src/* build.sh lib.sh wit/*.wit "$PRESENCE_ROUTER"; "$WASI_CC" --version) |
  sha256sum | cut -d' ' -f1)"
rm -rf "$work"
mkdir -p "$work"

# The bindings: presence_router.{h,c} (the canonical ABI glue, whose
# post-return functions free what the exports return) and the object that
# embeds the world in the module for the componentizer.
"$PRESENCE_ROUTER" bindgen --lang c --wit wit --out "$work/bindings"

# -O2 for speed: every instruction is paid in fuel. Strict warnings on your
# code, not on the generated bindings.
cflags=(--target=wasm32-wasi -O2 -std=c17)
warnings=(-Wall -Wextra -Wpedantic -Wconversion -Werror)
objects=()
for source in src/*.c; do
  object="$work/$(basename "$source" .c).o"
  "$WASI_CC" "${cflags[@]}" "${warnings[@]}" -I src -I "$work/bindings" -c "$source" -o "$object"
  objects+=("$object")
done
"$WASI_CC" "${cflags[@]}" -c "$work/bindings/presence_router.c" -o "$work/bindings.o"
# Linked as a reactor: no main; `_initialize` runs the C runtime's
# constructors once per instance, then the host calls the exports.
# --strip-debug keeps the name section, so a trap's backtrace names the
# function.
"$WASI_CC" "${cflags[@]}" -mexec-model=reactor -Wl,--strip-debug -o "$work/module.wasm" \
  "${objects[@]}" "$work/bindings.o" "$work/bindings/presence_router_component_type.o"

# Refuses a module whose exports would leak what they return (no
# post-return functions).
"$PRESENCE_ROUTER" componentize --module "$work/module.wasm" --out "$out"
built

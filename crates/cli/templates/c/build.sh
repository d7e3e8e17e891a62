#!/usr/bin/env bash
# Builds this router ({{name}}, src/*.c) into a component:
#
#     ./build.sh [OUT_DIR]   # -> OUT_DIR/{{component}} (default: build/)
#
# Needs Debian's clang 19 for wasm32-wasi: it names what is missing and the
# apt-get command that installs it (run as root with
# PRESENCE_ROUTER_INSTALL_PACKAGES=1, it runs that command itself).
# presence-router writes the C bindings of wit/ and makes the component.
# Skips the build when none of its inputs changed since the last one.
# Prints the component's path last.
{{prelude}}
# Intermediate files, beside the component.
work="$out_dir/{{snake}}.d"
{{debian_packages}}
need_debian_packages "${WASI_CLANG_PACKAGES[@]}"
WASI_CC=clang-19
{{presence_router_tool}}
up_to_date "$( (hash src/* build.sh wit/*.wit; "$WASI_CC" --version; "$PRESENCE_ROUTER" --version) |
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

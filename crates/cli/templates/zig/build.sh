#!/usr/bin/env bash
# Builds this router ({{name}}, router.zig) into a component:
#
#     ./build.sh [OUT_DIR]   # -> OUT_DIR/{{component}} (default: build/)
#
# Needs python3 (3.10 or later) with venv and pip: the Zig that
# requirements.txt pins (PyPI's `ziglang`) is installed into a virtualenv,
# .toolchain/zig (or PRESENCE_ROUTER_TOOLCHAINS/zig), made once and reused,
# reinstalled when requirements.txt changes. presence-router writes the C
# bindings of wit/ and makes the component. Skips the build when none of its
# inputs changed since the last one. Prints the component's path last.
{{prelude}}
# Intermediate files, beside the component.
work="$out_dir/{{snake}}.d"
{{toolchains}}
{{venv}}
venv="$toolchains/zig"
need_venv "$venv"
zig=("$venv/bin/python" -m ziglang)
# Zig caches what it compiled once (its libc, compiler_rt, translate-c):
# beside the toolchain, not in the user's home.
export ZIG_GLOBAL_CACHE_DIR="$toolchains/zig-cache"
# What it compiled goes into the router: someone else's cache is refused too.
if [ -e "$ZIG_GLOBAL_CACHE_DIR" ] || [ -L "$ZIG_GLOBAL_CACHE_DIR" ]; then
  need_trusted_dir "$ZIG_GLOBAL_CACHE_DIR"
fi
export ZIG_LOCAL_CACHE_DIR="$ZIG_GLOBAL_CACHE_DIR"
{{presence_router_tool}}
up_to_date "$( (hash router.zig requirements.txt build.sh wit/*.wit; "${zig[@]}" version; "$PRESENCE_ROUTER" --version) |
  sha256sum | cut -d' ' -f1)"
rm -rf "$work"
mkdir -p "$work"

# The C bindings: presence_router.{h,c} (the canonical ABI glue, whose
# post-return functions free what the exports return) and the object that
# embeds the world in the module for the componentizer.
"$PRESENCE_ROUTER" bindgen --lang c --wit wit --out "$work/bindings"
# Zig reads C headers through translate-c: router.zig imports the result as
# the module `wit`.
"${zig[@]}" translate-c -target wasm32-wasi -lc "$work/bindings/presence_router.h" \
  >"$work/presence_router.zig"
# A wasip1 reactor (no main; the host calls the exports), linked with
# wasi-libc, whose malloc and free the bindings use. --stack: Zig's default
# of 16 MiB would be linear memory every instance pays for; 1 MiB is what
# Rust and C guests get. ReleaseFast: every instruction is paid in fuel.
# -fstrip: the debug information would make the component 1.6 MB instead of
# 0.2 MB.
"${zig[@]}" build-exe -target wasm32-wasi -mexec-model=reactor -O ReleaseFast -fstrip -lc \
  --stack 1048576 --name router -femit-bin="$work/module.wasm" \
  -I "$work/bindings" "$work/bindings/presence_router.c" \
  "$work/bindings/presence_router_component_type.o" \
  --dep wit -Mroot=router.zig -Mwit="$work/presence_router.zig" >&2

# Refuses a module whose exports would leak what they return (no
# post-return functions).
"$PRESENCE_ROUTER" componentize --module "$work/module.wasm" --out "$out"
built

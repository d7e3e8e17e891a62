#!/usr/bin/env bash
# Builds this router (router.zig) into a component:
#
#     ./build.sh [OUT_DIR]   # -> build/example_router.wasm, or OUT_DIR/example_router.wasm
#
# Needs the Zig that ./setup.sh installs (the virtualenv .toolchain/zig, or
# PRESENCE_ROUTER_TOOLCHAINS/zig) and presence-router (PRESENCE_ROUTER, or
# the one on PATH), which writes the C bindings of wit/ and makes the
# component; installs nothing (exit status 3 when something is missing).
# Skips the build when none of its inputs changed since the last one.
# Prints the component's path last.
component=example_router.wasm
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
start_build "$@"
# Intermediate files, beside the component.
work="$out_dir/${component%.wasm}.d"
use_venv zig
zig=("$toolchains/zig/bin/python" -m ziglang)
# Zig caches what it compiled once (its libc, compiler_rt, translate-c):
# beside the toolchain, not in the user's home. What it compiled goes into
# the router: someone else's cache is refused too.
export ZIG_GLOBAL_CACHE_DIR="$toolchains/zig-cache"
trusted_if_there "$ZIG_GLOBAL_CACHE_DIR"
export ZIG_LOCAL_CACHE_DIR="$ZIG_GLOBAL_CACHE_DIR"
use_presence_router
up_to_date "$( (hash router.zig requirements.txt build.sh lib.sh wit/*.wit "$PRESENCE_ROUTER"; "${zig[@]}" version) |
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
# No -fstrip: it would drop the function names too, which backtraces and
# `presence-router profile` show; `componentize` drops the debug
# information (1.4 MB of it) and keeps the names.
"${zig[@]}" build-exe -target wasm32-wasi -mexec-model=reactor -O ReleaseFast -lc \
  --stack 1048576 --name router -femit-bin="$work/module.wasm" \
  -I "$work/bindings" "$work/bindings/presence_router.c" \
  "$work/bindings/presence_router_component_type.o" \
  --dep wit -Mroot=router.zig -Mwit="$work/presence_router.zig" >&2

# Refuses a module whose exports would leak what they return (no
# post-return functions).
"$PRESENCE_ROUTER" componentize --module "$work/module.wasm" --out "$out"
built

#!/usr/bin/env bash
# Builds the Zig example router (router.zig) into a component:
#
#     examples/routers/zig/build.sh OUT_DIR   # -> OUT_DIR/example_router_zig.wasm
#
# Needs python3 (3.10 or later) with venv and pip, and cargo: the pinned Zig
# (requirements.txt: PyPI's `ziglang`) is installed into a virtualenv under
# target/toolchains/zig/, made once and reused, reinstalled when
# requirements.txt changes; the workspace's presence-router-guest-build
# writes the C bindings and makes the component. Skips the build when none
# of its inputs changed since the last one. Prints the component's path
# last.
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
# One build at a time (the virtualenv and the work directory are shared):
# lock this script itself, so no lock file is left around.
if command -v flock >/dev/null; then
  exec 9<"$here/build.sh"
  flock 9
fi
out="$out_dir/example_router_zig.wasm"
# Intermediate files, beside the output but not as *.wasm in OUT_DIR itself
# (the tests' build script takes every *.wasm there for a guest).
work="$out_dir/example_router_zig.d"

toolchains="$root/target/toolchains"
venv="$toolchains/zig"
stamp="$venv/.requirements.txt"
# The virtualenv's programs run as you, and what Zig compiled goes into the
# router: never from a directory someone else could change.
# shellcheck source=../crates/guest-build/trusted-dir.sh
source "$root/crates/guest-build/trusted-dir.sh"
mkdir -p "$toolchains"
need_trusted_dir "$toolchains"
for dir in "$venv" "$toolchains/zig-cache"; do
  if [ -e "$dir" ] || [ -L "$dir" ]; then
    need_trusted_dir "$dir"
  fi
done
if [ ! -x "$venv/bin/python" ] || ! cmp -s requirements.txt "$stamp"; then
  echo "$0: installing $(grep -v '^#' requirements.txt) into $venv" >&2
  python3 -m venv "$venv"
  need_trusted_dir "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.txt
  cp requirements.txt "$stamp"
fi
zig=("$venv/bin/python" -m ziglang)
# Zig caches what it compiled once (its libc, compiler_rt, translate-c):
# keep that in target/ too, not in the user's home.
export ZIG_GLOBAL_CACHE_DIR="$toolchains/zig-cache"
export ZIG_LOCAL_CACHE_DIR="$ZIG_GLOBAL_CACHE_DIR"

# shellcheck source=../crates/guest-build/wasi-clang.sh
source "$root/crates/guest-build/wasi-clang.sh"
guest_build_tool

# The component depends on the router, this script, the WIT, the tool and
# the compiler; when none changed and the component is there, it is up to
# date.
hash() { sha256sum "$@" | sha256sum | cut -d' ' -f1; }
inputs_hash="$( (hash router.zig requirements.txt build.sh "$root"/wit/*.wit \
  $(guest_build_inputs); "${zig[@]}" version) | sha256sum | cut -d' ' -f1)"
inputs_stamp="$out.inputs"
if [ -f "$out" ] && [ -f "$inputs_stamp" ] && [ "$(cat "$inputs_stamp")" = "$inputs_hash" ]; then
  echo "$out is up to date" >&2
  echo "$out"
  exit 0
fi
rm -f "$inputs_stamp"
rm -rf "$work"
mkdir -p "$work"

# The C bindings: presence_router.{h,c} (the canonical ABI glue, whose
# post-return functions free what the exports return) and the object that
# embeds the world in the module for the componentizer.
"$GUEST_BUILD" bindgen --lang c --wit "$root/wit" --out "$work/bindings"
# Zig reads C headers through translate-c (it has no @cImport any more):
# router.zig imports the result as the module `wit`.
"${zig[@]}" translate-c -target wasm32-wasi -lc "$work/bindings/presence_router.h" \
  >"$work/presence_router.zig"
# A wasip1 reactor (no main; the host calls the exports), linked with
# wasi-libc, whose malloc and free the bindings use. --stack: Zig's default
# of 16 MiB would be linear memory every instance pays for; 1 MiB is what
# Rust and C guests get. ReleaseFast: every instruction is paid in fuel (it
# takes half the fuel of ReleaseSmall per state). -fstrip: the debug
# information would make the component 1.6 MB instead of 0.2 MB.
"${zig[@]}" build-exe -target wasm32-wasi -mexec-model=reactor -O ReleaseFast -fstrip -lc \
  --stack 1048576 --name router -femit-bin="$work/module.wasm" \
  -I "$work/bindings" "$work/bindings/presence_router.c" \
  "$work/bindings/presence_router_component_type.o" \
  --dep wit -Mroot=router.zig -Mwit="$work/presence_router.zig" >&2

"$GUEST_BUILD" componentize --module "$work/module.wasm" --out "$out"
echo "$inputs_hash" >"$inputs_stamp"
echo "$out"

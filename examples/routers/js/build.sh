#!/usr/bin/env bash
# Builds the JavaScript example router into a component:
#   examples/routers/js/build.sh OUT_DIR   ->   OUT_DIR/example_router_js.wasm
#
# Needs only node (20+) and npm: installs the pinned toolchain from
# package-lock.json when node_modules is missing or stale, and skips the
# build (about 25 s) when none of its inputs changed since the last one.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 OUT_DIR" >&2
  exit 2
fi
mkdir -p "$1"
out_dir="$(cd "$1" && pwd)"
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
# One build at a time (parallel test builds would otherwise run `npm ci`
# over each other): lock this script itself, so no lock file is left around.
if command -v flock >/dev/null; then
  exec 9<"$here/build.sh"
  flock 9
fi
out="$out_dir/example_router_js.wasm"
root="$(cd "$here/../../.." && pwd)"

hash() { sha256sum "$@" | sha256sum | cut -d' ' -f1; }

# The toolchain's programs run as you: never from a directory someone else
# could change.
# shellcheck source=../crates/guest-build/trusted-dir.sh
source "$root/crates/guest-build/trusted-dir.sh"
if [ -e node_modules ] || [ -L node_modules ]; then
  need_trusted_dir node_modules
fi
# The toolchain: reinstall exactly what the lockfile says whenever it changed
# (or node_modules is missing or half-installed). The stamp is written only
# after `npm ci` succeeded.
lock_stamp="node_modules/.build-sh-lock"
lock_hash="$(hash package.json package-lock.json)"
if [ ! -f "$lock_stamp" ] || [ "$(cat "$lock_stamp")" != "$lock_hash" ]; then
  npm ci --no-audit --no-fund --loglevel=error >&2
  need_trusted_dir node_modules
  echo "$lock_hash" >"$lock_stamp"
fi

# The component depends on the router, the build script, the WIT and the
# toolchain; when none changed and the component is there, it is up to date.
inputs_stamp="$out.inputs"
inputs_hash="$(hash router.js build.mjs package-lock.json "$root"/wit/*.wit)"
if [ -f "$out" ] && [ -f "$inputs_stamp" ] && [ "$(cat "$inputs_stamp")" = "$inputs_hash" ]; then
  echo "$out is up to date" >&2
  exit 0
fi
rm -f "$inputs_stamp"
node build.mjs "$out_dir" >&2
echo "$inputs_hash" >"$inputs_stamp"

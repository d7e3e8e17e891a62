#!/usr/bin/env bash
# Builds the Python example router (app.py) into a component:
#
#     examples/routers/python/build.sh OUT_DIR   # -> OUT_DIR/example_router_python.wasm
#
# Needs only python3 (3.10 or later) with venv and pip: the pinned
# componentize-py (requirements.txt) is installed into a virtualenv under
# target/toolchains/componentize-py/, made once and reused; it is
# reinstalled when requirements.txt changes.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 OUT_DIR" >&2
  exit 2
fi
mkdir -p "$1"
out="$(cd "$1" && pwd)/example_router_python.wasm"

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
venv="$root/target/toolchains/componentize-py"
stamp="$venv/.requirements.txt"

# The virtualenv's programs run as you: never from a directory someone else
# could change.
# shellcheck source=../crates/guest-build/trusted-dir.sh
source "$root/crates/guest-build/trusted-dir.sh"
mkdir -p "$root/target/toolchains"
need_trusted_dir "$root/target/toolchains"
if [ -e "$venv" ] || [ -L "$venv" ]; then
  need_trusted_dir "$venv"
fi
if [ ! -x "$venv/bin/componentize-py" ] || ! cmp -s "$here/requirements.txt" "$stamp"; then
  python3 -m venv "$venv"
  need_trusted_dir "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -r "$here/requirements.txt"
  cp "$here/requirements.txt" "$stamp"
fi

# The component depends on the router, the toolchain and the WIT: when none
# changed since the last build and the component is there, it is up to date
# (a build takes seconds, and its output differs every time, which would
# make the runtime compile it again).
cd "$here"
hash() { sha256sum "$@" | sha256sum | cut -d' ' -f1; }
inputs_stamp="$out.inputs"
inputs_hash="$(hash app.py requirements.txt build.sh "$root"/wit/*.wit)"
if [ -f "$out" ] && [ -f "$inputs_stamp" ] && [ "$(cat "$inputs_stamp")" = "$inputs_hash" ]; then
  echo "$out is up to date" >&2
  exit 0
fi
rm -f "$inputs_stamp"
# The bindings (wit_world, componentize_py_types) are generated into the
# component from ../wit on every build; -p . finds app.py. Written beside
# the output and renamed, so an interrupted build leaves no half component.
"$venv/bin/componentize-py" -d "$root/wit" -w presence-router \
  componentize app -p . -o "$out.tmp"
mv "$out.tmp" "$out"
echo "$inputs_hash" >"$inputs_stamp"

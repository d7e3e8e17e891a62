#!/usr/bin/env bash
# Installs what a fresh machine lacks to build guests and run the checks.
# Idempotent: cheap to run again.
set -euo pipefail
rustup target add wasm32-wasip2
rustup component add rustfmt clippy
# The JavaScript and Python example routers are built by the tests' build
# script with toolchains their build.sh scripts install (npm ci; a virtualenv
# under target/toolchains): only node, npm and python3 must be on the machine.
for tool in node npm python3; do
  if ! command -v "$tool" >/dev/null; then
    echo "setup: $tool is missing: install Node.js 20+ (node, npm) and Python 3.10+ (python3 with venv and pip)" >&2
    exit 1
  fi
done
python3 -c 'import venv, ensurepip' 2>/dev/null || {
  echo "setup: python3 lacks venv/ensurepip (Debian: apt install python3-venv)" >&2
  exit 1
}
root="$(cd "$(dirname "$0")/.." && pwd)"
missing=()
# The C and C++ example routers are built with Debian's clang 19 for
# wasm32-wasi; their build.sh only check for it (they install nothing
# unasked), so it is installed here. wasi-clang.sh names the packages.
# shellcheck source=../crates/guest-build/wasi-clang.sh
source "$root/crates/guest-build/wasi-clang.sh"
for pkg in "${WASI_CLANG_PACKAGES[@]}" "${WASI_CLANG_CXX_PACKAGES[@]}"; do
  if [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" != "install ok installed" ]]; then
    missing+=("$pkg")
  fi
done
# The Synapse end-to-end test with workers (synapse-module/e2e/test_workers.py)
# runs its own PostgreSQL cluster and Redis server on loopback, from Debian's
# packages; it starts and stops them itself (nothing is started here).
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
command -v redis-server >/dev/null || missing+=(redis-server)
if ((${#missing[@]})); then
  if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null; then
    echo "setup: ${missing[*]} missing: install them (Debian: apt-get install ${missing[*]})" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}" >&2
  # Debian starts a package's service on install; these are started by the
  # tests alone, on loopback ports of their own, and stopped by them: tell
  # invoke-rc.d not to (unless the machine already has such a policy).
  policy=/usr/sbin/policy-rc.d
  made_policy=
  if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && made_policy=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
  if [[ -n "$made_policy" ]]; then rm -f "$policy"; fi
fi

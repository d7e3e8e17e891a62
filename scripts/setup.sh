#!/usr/bin/env bash
# Installs everything a test of this repository needs, and ends with what
# it installed and what it found. Idempotent: cheap to run again. Nothing
# else installs anything: build scripts, build.rs and the tests only say
# what is missing, naming this script.
#
#   bash scripts/setup.sh            # as root, to install Debian packages
#   bash scripts/setup.sh --check    # install nothing; exit 3 if anything is missing
#   bash scripts/setup.sh --rust     # only what the workspace's build needs (the
#                                    # first steps below), so that it can start
#                                    # while the rest installs
#
# - Rust's wasm32-wasip2 target (the Rust example router's setup.sh),
#   rustfmt and clippy;
# - each example router's toolchain, by its own setup.sh, into
#   target/toolchains: componentize-js, componentize-py, Zig and Go
#   (virtualenvs), Debian's clang 19 for wasm32-wasi with libc++;
# - PostgreSQL and Redis (Debian's), for the Synapse test with workers;
# - the virtualenv with a pinned Synapse for the Synapse module's tests
#   (synapse-module/e2e/setup.sh), and one per CPython 3.10 to 3.13 this
#   machine has, for the wheel test (synapse-module/e2e/wheel_test.sh);
# - maturin, zig and auditwheel, which build and check the module's
#   manylinux wheels (scripts/release-requirements.txt), in a virtualenv.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

rust_only=
case "${1:-}" in
  "") check=() ;;
  --check) check=(--check) ;;
  --rust) check=() rust_only=1 ;;
  *)
    echo "usage: $0 [--check | --rust]" >&2
    exit 2
    ;;
esac

# The `found: ...`, `installed: ...` and `missing: ...` lines of each step.
summary=()
failed=()
# Runs a step, keeping its lines for the summary (and passing any other
# output on). A step that fails is named at the end; the others still run.
step() {
  local name="$1" output status=0 line
  shift
  output="$("$@")" || status=$?
  while IFS= read -r line; do
    case "$line" in
      found:* | installed:* | missing:*) summary+=("$line") ;;
      ?*) echo "$line" ;;
    esac
  done <<<"$output"
  if [ "$status" -ne 0 ] && [ "$status" -ne 3 ]; then
    failed+=("$name (status $status)")
  fi
}

rust_components() {
  local component
  if ! command -v rustup >/dev/null; then
    echo "setup: rustup is missing: install Rust with rustup (https://rustup.rs)" >&2
    return 1
  fi
  for component in rustfmt clippy; do
    if rustup component list --installed | grep -q "^$component"; then
      echo "found: Rust's $component"
    elif [ ${#check[@]} -gt 0 ]; then
      echo "missing: Rust's $component"
    else
      rustup component add "$component" >&2
      echo "installed: Rust's $component"
    fi
  done
}

# The Synapse end-to-end test with workers (synapse-module/e2e/test_workers.py)
# runs its own PostgreSQL cluster and Redis server on loopback, from Debian's
# packages; it starts and stops them itself (nothing is started here).
services() {
  local absent=()
  if compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
    echo "found: PostgreSQL"
  else
    absent+=(postgresql)
  fi
  if command -v redis-server >/dev/null; then
    echo "found: Redis"
  else
    absent+=(redis-server)
  fi
  ((${#absent[@]})) || return 0
  if [ ${#check[@]} -gt 0 ]; then
    echo "missing: Debian's ${absent[*]}"
    return 0
  fi
  if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null; then
    echo "setup: ${absent[*]} missing: install them as root (apt-get install ${absent[*]}), or run this as root" >&2
    return 1
  fi
  echo "setup: installing ${absent[*]}" >&2
  # Debian starts a package's service on install; these are started by the
  # tests alone, on loopback ports of their own, and stopped by them: tell
  # invoke-rc.d not to (unless the machine already has such a policy).
  local policy=/usr/sbin/policy-rc.d made_policy=
  if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
  fi
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${absent[@]}" >/dev/null
  if [[ -n "$made_policy" ]]; then rm -f "$policy"; fi
  echo "installed: Debian's ${absent[*]}"
}

# What builds and checks the module's wheels (synapse-module/build_wheel.sh),
# pinned in scripts/release-requirements.txt; current while that file is.
release_tools() {
  local venv="$root/target/toolchains/release-venv" what="maturin, zig and auditwheel (scripts/release-requirements.txt)"
  if [[ -x "$venv/bin/maturin" ]] && cmp -s "$venv/.requirements.stamp" scripts/release-requirements.txt; then
    echo "found: $what"
  elif [ ${#check[@]} -gt 0 ]; then
    echo "missing: $what"
  else
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
      -r scripts/release-requirements.txt >&2
    cp scripts/release-requirements.txt "$venv/.requirements.stamp"
    echo "installed: $what"
  fi
}

step "Rust's components" rust_components
# Every example router's toolchain, where the tests build them
# (tests/src/example_routers.rs) and e2e/run.sh too.
export PRESENCE_ROUTER_TOOLCHAINS="$root/target/toolchains"
step "examples/routers/rust/setup.sh" bash examples/routers/rust/setup.sh "${check[@]}"
# The other examples' setup.sh check their toolchain directory with the
# CLI's `trusted-dir` (the one ownership rule): here the ownership crate's
# own binary of that command, which builds in seconds, so that setup need
# not wait for the CLI (and wasmtime) to build.
if [ -z "${PRESENCE_ROUTER:-}" ]; then
  cargo build --quiet -p presence-router-ownership --bin presence-router-ownership
  export PRESENCE_ROUTER="${CARGO_TARGET_DIR:-$root/target}/debug/presence-router-ownership"
fi
if [ -z "$rust_only" ]; then
  for example in js python c cpp zig go; do
    step "examples/routers/$example/setup.sh" bash "examples/routers/$example/setup.sh" "${check[@]}"
  done
  step "PostgreSQL and Redis" services
  step "synapse-module/e2e/setup.sh" bash synapse-module/e2e/setup.sh "${check[@]}"
  step "the release tools" release_tools
  step "synapse-module/e2e/wheel_test.sh --prepare" bash synapse-module/e2e/wheel_test.sh --prepare "${check[@]}"
fi

echo
if [ -n "$rust_only" ]; then
  echo "setup: what the workspace's build needs:"
else
  echo "setup: what the tests need:"
fi
for kind in installed found missing; do
  for line in "${summary[@]}"; do
    case "$line" in
      "$kind:"*) echo "  $line" ;;
    esac
  done
done
if ((${#failed[@]})); then
  echo "setup: failed (see above): ${failed[*]}" >&2
  exit 1
fi
for line in "${summary[@]}"; do
  case "$line" in
    missing:*) exit 3 ;;
  esac
done

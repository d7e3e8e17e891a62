#!/usr/bin/env bash
# Installs a built wheel of the module as an operator does, and runs a real
# Synapse with it: for each CPython from 3.10 to 3.13 this machine has, a
# virtualenv of its own holding only the pinned Synapse and the tests'
# packages (made by setup.sh, kept under target/wheel-test while its
# requirements are unchanged; a clean checkout, as in CI, makes it new),
# the wheel installed into it with `pip install --no-deps`, and pytest run
# with no Rust toolchain on PATH and an empty compiled-component cache (the
# wheel's own wasmtime compiles the routers). The tests check that the
# module imported is the wheel's, then route presence through a real
# Synapse on loopback.
#
#   synapse-module/e2e/wheel_test.sh WHEEL [PYTHON_VERSION ...]   # default: 3.10 3.11 3.12 3.13
#   synapse-module/e2e/wheel_test.sh --prepare [--check]   # only the virtualenvs (scripts/setup.sh)
#
# A version this machine lacks is named and skipped; none at all fails, and
# with WHEEL_TEST_EVERY_PYTHON=1 (scripts/release.sh) so does any missing.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
ALL_VERSIONS=(3.10 3.11 3.12 3.13)

# The interpreter of one CPython version: on PATH, or pyenv's.
find_python() {
  local candidate
  for candidate in "python$1" "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$1".*/bin/"python$1"; do
    if "$candidate" -c 'import sys, venv' >/dev/null 2>&1; then
      command -v "$candidate" 2>/dev/null || echo "$candidate"
      return 0
    fi
  done
  return 1
}

# PATH with no Rust toolchain on it: what the operator's machine has.
no_rust_path() {
  local dir kept=()
  IFS=: read -r -a dirs <<<"$PATH"
  for dir in "${dirs[@]}"; do
    [[ -z "$dir" || -x "$dir/cargo" || -x "$dir/rustc" || "$dir" == *pyenv/shims* ]] && continue
    kept+=("$dir")
  done
  (IFS=:; echo "${kept[*]}")
}

# The virtualenv of each CPython this machine has, made or found by
# setup.sh (which prints a `found:`, `installed:` or `missing:` line).
if [[ "${1:-}" == --prepare ]]; then
  status=0
  for v in "${ALL_VERSIONS[@]}"; do
    if python="$(find_python "$v")"; then
      # setup.sh's 3 (missing, under --check) never hides another failure.
      PYTHON="$python" SYNAPSE_VENV="$REPO/target/wheel-test/venv-$v" \
        bash "$HERE/setup.sh" ${2:+"$2"} |
        sed "s/^\([a-z]*:\) Synapse/\1 CPython $v's wheel-test virtualenv: Synapse/" ||
        { rc=$?; ((status == 0 || status == 3)) && status=$rc; }
    fi
  done
  exit "$status"
fi

if [[ $# -lt 1 || ! -f "$1" ]]; then
  echo "usage: $0 WHEEL [PYTHON_VERSION ...] (no wheel at '${1:-}')" >&2
  exit 2
fi
wheel="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
shift
versions=("$@")
((${#versions[@]})) || versions=("${ALL_VERSIONS[@]}")
version="$(bash "$REPO/scripts/version.sh")"

tested=() skipped=() failed=()
for v in "${versions[@]}"; do
  if ! python="$(find_python "$v")"; then
    skipped+=("$v")
    continue
  fi
  venv="$REPO/target/wheel-test/venv-$v"
  PYTHON="$python" SYNAPSE_VENV="$venv" bash "$HERE/setup.sh" >/dev/null
  # Only the wheel: no build, no .pth of the checkout's build.
  rm -f "$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"/wasm_presence_router_e2e.pth
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
    --force-reinstall "$wheel"
  echo "wheel_test: CPython $v ($python): $(basename "$wheel")" >&2
  cache="$(mktemp -d)"
  if (cd "$REPO/synapse-module" && env PATH="$venv/bin:$(no_rust_path)" \
    E2E_WHEEL_VERSION="$version" E2E_WHEEL_VENV="$venv" E2E_CACHE_DIR="$cache" \
    "$venv/bin/python" -m pytest -q e2e/test_wheel.py); then
    tested+=("$v")
  else
    failed+=("$v")
  fi
  rm -rf "$cache"
done
echo "wheel_test: passed on CPython ${tested[*]:-none}${skipped:+; not on this machine: ${skipped[*]}}${failed:+; FAILED on ${failed[*]}}" >&2
((${#failed[@]} == 0 && ${#tested[@]} > 0)) &&
  [[ -z "${WHEEL_TEST_EVERY_PYTHON:-}" || ${#skipped[@]} -eq 0 ]]

#!/usr/bin/env bash
# Builds the Synapse module and the guest components, puts the module on the
# path of the e2e virtualenv (with a pinned Synapse) that `bash
# scripts/setup.sh` made, and runs the module's tests and the end-to-end
# tests against a real Synapse on loopback. Installs no toolchain: without
# the virtualenv (or with a stale one) it stops, naming `bash
# scripts/setup.sh`.
#
#   synapse-module/e2e/run.sh [pytest arguments]
#   synapse-module/e2e/run.sh --prepare-only
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
cd "$REPO"

VENV="${SYNAPSE_VENV:-$REPO/target/toolchains/synapse-venv}"
if ! bash "$HERE/setup.sh" --check >/dev/null; then
  echo "run.sh: the Synapse virtualenv ($VENV) is missing or stale: run \`bash scripts/setup.sh\`" >&2
  exit 1
fi
# What the tests import and run, prepared once (`--prepare-only` stops
# there; E2E_PREPARED=1 skips it, for scripts/test.sh, which prepares while
# nothing else builds):
# - the guests (example router, Synapse test router, hostile corpus: the
#   tests crate's build script), the CLI (the record-and-diff test runs
#   `presence-router diff`; the example routers' builds below run its
#   `trusted-dir`) and the module's native library, built as the whole
#   workspace, so that dependencies are those `cargo test --workspace`
#   compiled: maturin builds the one package alone, whose features differ,
#   and would compile wasmtime again;
# - the example router in JavaScript and Python (test_e2e.py's `wasm-js` and
#   `wasm-python` forms), each by its own build.sh (skipped when nothing
#   changed), with the toolchains scripts/setup.sh installed;
# - the module itself, as maturin lays out its wheel (the Python package
#   with the native library as `_native.abi3.so`), in target/e2e-module,
#   which a .pth file puts on the virtualenv's path in place of any wheel
#   installed there. (An operator's `pip install ./synapse-module` builds a
#   release wheel with maturin.)
prepare() {
  # As maturin builds an extension module: not linked to a libpython (the
  # interpreter that loads it provides one). scripts/test.sh exports it for
  # every build, so that pyo3 is not rebuilt between them.
  export PYO3_BUILD_EXTENSION_MODULE=1
  cargo build --quiet --workspace
  export PRESENCE_ROUTER="${CARGO_TARGET_DIR:-$REPO/target}/debug/presence-router"
  local language
  for language in js python; do
    PRESENCE_ROUTER_TOOLCHAINS="$REPO/target/toolchains" \
      bash "examples/routers/$language/build.sh" "target/guests/$language" >/dev/null || {
      echo "run.sh: the $language example router cannot be built (a missing toolchain: \`bash scripts/setup.sh\`)" >&2
      exit 1
    }
  done
  local stage="$REPO/target/e2e-module" next
  next="$(mktemp -d "$REPO/target/e2e-module.XXXXXX")"
  cp -R synapse-module/python/wasm_presence_router "$next/"
  find "$next" -name __pycache__ -prune -exec rm -rf {} +
  cp "${CARGO_TARGET_DIR:-$REPO/target}/debug/lib_native.so" \
    "$next/wasm_presence_router/_native.abi3.so"
  rm -rf "$stage"
  mv "$next" "$stage"
  "$VENV/bin/python" -m pip uninstall --quiet --disable-pip-version-check --yes \
    wasm-presence-router 2>/dev/null || true
  local site
  site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  echo "$stage" >"$site/wasm_presence_router_e2e.pth"
}

case "${1:-}" in
  --prepare-only)
    prepare
    exit 0
    ;;
esac
if [ -z "${E2E_PREPARED:-}" ]; then
  prepare
fi
cd synapse-module
"$VENV/bin/python" -m pytest "$@"

#!/usr/bin/env bash
# Builds the Synapse module's wheel and the guest components, puts the wheel
# into the e2e virtualenv (with a pinned Synapse) that `bash scripts/setup.sh`
# made, and runs the module's tests and the end-to-end tests against a real
# Synapse on loopback. Installs no toolchain: without the virtualenv (or
# with a stale one) it stops, naming `bash scripts/setup.sh`.
#
#   synapse-module/e2e/run.sh [pytest arguments]
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
cd "$REPO"

VENV="${SYNAPSE_VENV:-$REPO/target/toolchains/synapse-venv}"
if ! bash "$HERE/setup.sh" --check >/dev/null; then
  echo "run.sh: the Synapse virtualenv ($VENV) is missing or stale: run \`bash scripts/setup.sh\`" >&2
  exit 1
fi
# The guests (example router, Synapse test router, hostile corpus: the tests
# crate's build script) and the CLI (for the record-and-diff test,
# `presence-router diff`, and for the example routers' builds below: it
# checks their toolchain directory). Built as the whole workspace, so that
# dependencies have the features `cargo test --workspace` compiled them with:
# one package alone (`-p`) would unify other features and compile wasmtime
# again.
cargo build --quiet --workspace
export PRESENCE_ROUTER="${CARGO_TARGET_DIR:-$REPO/target}/debug/presence-router"
# The example router in JavaScript and Python (test_e2e.py's `wasm-js` and
# `wasm-python` forms), each by its own build.sh, with the toolchains
# scripts/setup.sh installed; a build skips when nothing changed.
for language in js python; do
  PRESENCE_ROUTER_TOOLCHAINS="$REPO/target/toolchains" \
    bash "examples/routers/$language/build.sh" "target/guests/$language" >/dev/null || {
    echo "run.sh: the $language example router cannot be built (a missing toolchain: \`bash scripts/setup.sh\`)" >&2
    exit 1
  }
done
# The dev profile shares the workspace's compiled wasmtime (an operator's
# `pip install ./synapse-module` builds the release profile).
# A directory of its own: two runs at once (a developer's and a helper's)
# must not delete each other's wheel.
mkdir -p "$REPO/target/wheels"
WHEELS="$(mktemp -d "$REPO/target/wheels/e2e.XXXXXX")"
trap 'rm -rf "$WHEELS"' EXIT
"$VENV/bin/maturin" build --quiet -m synapse-module/Cargo.toml --out "$WHEELS"
# The module under test, into the virtualenv (no dependency: those are the
# virtualenv's own).
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
  --force-reinstall --no-deps "$WHEELS"/wasm_presence_router-*.whl
cd synapse-module
"$VENV/bin/python" -m pytest "$@"

#!/usr/bin/env bash
# Builds the Synapse module's wheel and the guest components, installs the
# wheel into the e2e virtualenv (with a pinned Synapse), and runs the module's
# tests and the end-to-end tests against a real Synapse on loopback.
#
#   synapse-module/e2e/run.sh [pytest arguments]
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
cd "$REPO"

VENV="$(bash "$HERE/setup.sh")"
# The guests (example router, Synapse test router, hostile corpus) are built
# by the tests crate's build script.
cargo build --quiet -p presence-router-tests
# The CLI, for the record-and-diff test (`presence-router diff`).
cargo build --quiet -p presence-router
# The dev profile shares the workspace's compiled wasmtime (an operator's
# `pip install ./synapse-module` builds the release profile).
# A directory of its own: two runs at once (a developer's and a helper's)
# must not delete each other's wheel.
mkdir -p "$REPO/target/wheels"
WHEELS="$(mktemp -d "$REPO/target/wheels/e2e.XXXXXX")"
trap 'rm -rf "$WHEELS"' EXIT
"$VENV/bin/maturin" build --quiet -m synapse-module/Cargo.toml --out "$WHEELS"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
  --force-reinstall --no-deps "$WHEELS"/wasm_presence_router-*.whl
cd synapse-module
"$VENV/bin/python" -m pytest "$@"

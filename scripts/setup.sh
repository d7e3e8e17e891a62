#!/usr/bin/env bash
# Installs what a fresh machine lacks to build guests and run the checks.
# Idempotent: cheap to run again.
set -euo pipefail
rustup target add wasm32-wasip2
rustup component add rustfmt clippy

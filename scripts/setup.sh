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

#!/usr/bin/env bash
# Sets up a fresh machine, builds the example router (examples/routers/rust/) into a
# component, and routes the example batch through it with the CLI.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --target wasm32-wasip2 \
  --manifest-path examples/routers/rust/Cargo.toml --target-dir target/guests
cargo build -p presence-router
./target/debug/presence-router check --config examples/config.yaml
./target/debug/presence-router route --config examples/config.yaml < examples/batch.jsonl

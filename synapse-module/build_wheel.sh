#!/usr/bin/env bash
# Builds the module's abi3 wheel for manylinux_2_28 on one architecture and
# checks its tag with auditwheel; prints the wheel's path last.
#
#   synapse-module/build_wheel.sh ARCH OUT_DIR [--test]
#
# ARCH is x86_64 or aarch64. maturin links the extension with zig against
# glibc 2.28's symbols, whatever glibc this machine has, and cross-links
# aarch64 (docs/releases.md says why). A release is built so
# (scripts/release.sh).
#
# `--test` builds the tests' wheel (scripts/test.sh), for this machine's
# architecture: in the dev profile, for this machine's target and with the
# tests' build's environment, so that cargo finds what that build compiled
# and compiles only the module again; only its final link is zig's, to
# glibc 2.28's symbols (zig-cc-glibc-2.28), as a release's is. The wheel is
# the one a release makes, but for optimisation (the dev profile's). maturin, zig and auditwheel come from
# target/toolchains/release-venv (scripts/setup.sh).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
TOOLS="$REPO/target/toolchains/release-venv"
if [[ $# -lt 2 || ($1 != x86_64 && $1 != aarch64) ]]; then
  echo "usage: $0 x86_64|aarch64 OUT_DIR [--test]" >&2
  exit 2
fi
arch="$1"
mkdir -p "$2"
out="$(cd "$2" && pwd)"
build=(--release --zig --target "$arch-unknown-linux-gnu")
link=()
if [[ "${3:-}" == --test ]]; then
  if [[ "$(uname -m)" != "$arch" ]]; then
    echo "$0: --test builds for this machine's architecture ($(uname -m)), not $arch" >&2
    exit 2
  fi
  build=(--profile dev)
  link=(-- -C "linker=$HERE/zig-cc-glibc-2.28")
fi
if [[ ! -x "$TOOLS/bin/maturin" ]]; then
  echo "$0: $TOOLS is missing: run \`bash scripts/setup.sh\`" >&2
  exit 3
fi
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$REPO/Cargo.toml" | head -1)"
wheel="$out/wasm_presence_router-$version-cp310-abi3-manylinux_2_28_$arch.whl"
rm -f "$wheel"
(cd "$REPO" && PATH="$TOOLS/bin:$PATH" maturin build --quiet "${build[@]}" \
  --compatibility manylinux_2_28 -m synapse-module/Cargo.toml --out "$out" "${link[@]}" >&2)
[[ -f "$wheel" ]] || { echo "$0: maturin made no $wheel" >&2; exit 1; }
# auditwheel reads the wheel's ELF files: the glibc symbol versions and the
# libraries they need must fit the tag the wheel carries.
report="$("$TOOLS/bin/auditwheel" show "$wheel")"
if ! grep -q "\"manylinux_2_28_$arch\"" <<<"$report"; then
  echo "$0: auditwheel does not find $wheel consistent with manylinux_2_28_$arch:" >&2
  echo "$report" >&2
  exit 1
fi
echo "build_wheel: $(basename "$wheel"): auditwheel finds it consistent with manylinux_2_28_$arch" >&2
echo "$wheel"

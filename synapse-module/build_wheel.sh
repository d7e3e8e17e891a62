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
# `--test` builds the tests' wheel (scripts/test.sh) as a release's is, but
# in the unoptimised `wheel-test` profile (Cargo.toml says why) and in a
# target directory of its own. maturin, zig and auditwheel come from
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
if [[ "${3:-}" == --test ]]; then
  build=(--profile wheel-test --zig --target "$arch-unknown-linux-gnu")
  export CARGO_TARGET_DIR="$REPO/target/wheel-test-build"
  unset RUSTC_WORKSPACE_WRAPPER
fi
if [[ ! -x "$TOOLS/bin/maturin" ]]; then
  echo "$0: $TOOLS is missing: run \`bash scripts/setup.sh\`" >&2
  exit 3
fi
version="$(bash "$REPO/scripts/version.sh")"
wheel="$out/wasm_presence_router-$version-cp310-abi3-manylinux_2_28_$arch.whl"
rm -f "$wheel"
(cd "$REPO" && PATH="$TOOLS/bin:$PATH" maturin build --quiet "${build[@]}" \
  --compatibility manylinux_2_28 -m synapse-module/Cargo.toml --out "$out" >&2)
[[ -f "$wheel" ]] || { echo "$0: maturin made no $wheel" >&2; exit 1; }
# auditwheel reads the wheel's ELF files: the glibc symbol versions and the
# libraries they need must fit the tag the wheel carries.
report="$("$TOOLS/bin/auditwheel" show "$wheel")"
if ! grep -q "\"manylinux_2_28_$arch\"" <<<"$report"; then
  echo "$0: auditwheel does not find $wheel consistent with manylinux_2_28_$arch:" >&2
  echo "$report" >&2
  exit 1
fi
# A libc symbol zig's glibc 2.28 lacks could be linked with no version, and
# auditwheel does not see those: every undefined symbol must carry a
# version, but CPython's (the interpreter provides them) and weak ones.
unpacked="$(mktemp -d)"
"$TOOLS/bin/python" -m zipfile -e "$wheel" "$unpacked"
unversioned="$(readelf --dyn-syms -W "$unpacked"/wasm_presence_router/_native*.so |
  awk '$7 == "UND" && $5 != "WEAK" && $8 != "" && $8 !~ /@/ && $8 !~ /^_?Py/ { print $8 }')"
rm -rf "$unpacked"
if [[ -n "$unversioned" ]]; then
  echo "$0: $wheel needs symbols with no version (not in glibc 2.28?): $unversioned" >&2
  exit 1
fi
echo "build_wheel: $(basename "$wheel"): auditwheel finds it consistent with manylinux_2_28_$arch" >&2
echo "$wheel"

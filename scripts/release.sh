#!/usr/bin/env bash
# Builds every artefact of a release into OUT_DIR, checks each, and prints
# what it made (docs/releases.md says what each is for):
#
#   bash scripts/release.sh OUT_DIR
#
# - the Synapse module: abi3 wheels for manylinux_2_28 on x86_64 and
#   aarch64 (maturin, linking with zig against glibc 2.28's symbols), each
#   checked by `auditwheel show` for its tag, and an sdist;
# - the `presence-router` CLI, static musl binaries for x86_64 and aarch64,
#   stripped: `presence-router-<target>`; each runs `check`, `route` and
#   `test` on the example in a directory outside the repository (aarch64's
#   under qemu-user where this machine has it);
# - the crates an embedder or author takes from crates.io, packaged and
#   each built from its package alone (`cargo package`);
# - this release's example router in Rust, C, C++ and Zig, the components
#   a later release's compatibility test keeps (tests/compat/<version>/);
# - then the x86_64 wheel installed into a fresh virtualenv of every CPython
#   3.10 to 3.13 here, with no Rust on PATH, routing through a real Synapse
#   (synapse-module/e2e/wheel_test.sh), and the aarch64 wheel imported and
#   used under qemu-user where this machine can.
#
# Installs what it needs and lacks: Rust's musl and aarch64 targets
# (rustup) and cargo-zigbuild; the rest (scripts/release-requirements.txt
# in target/toolchains/release-venv, the example routers' toolchains, the
# wheel test's Synapse virtualenvs) comes from scripts/setup.sh. Takes long (every artefact
# compiles wasmtime for its own target): it is not part of scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
if [[ $# -ne 1 ]]; then
  echo "usage: $0 OUT_DIR" >&2
  exit 2
fi
mkdir -p "$1"
out="$(cd "$1" && pwd)"
source scripts/phases.sh

version="$(bash scripts/version.sh)"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
tools="$repo/target/toolchains/release-venv"
# Each phase runs in a shell of its own (phases.sh): what they share is
# exported, lists as words.
# The crates an embedder or author takes from crates.io, and those they need.
crates="presence-router-model presence-router-ownership presence-router-runtime
  presence-router-testkit presence-router-guest-build presence-router"
cli_targets="x86_64-unknown-linux-musl aarch64-unknown-linux-musl"
wheel_arches="x86_64 aarch64"
export repo out version target_dir tools crates cli_targets wheel_arches

install_tools() {
  local have target status=0
  have="$(rustup target list --installed)"
  for target in $cli_targets aarch64-unknown-linux-gnu wasm32-wasip2; do
    grep -qx "$target" <<<"$have" || rustup target add "$target"
  done
  # The release virtualenv, the example routers' toolchains, the Synapse
  # virtualenvs of the wheel test.
  bash scripts/setup.sh >&2
  [[ -x "$repo/target/toolchains/cargo-zigbuild/bin/cargo-zigbuild" ]] ||
    cargo install --quiet --locked cargo-zigbuild@0.24.1 --root "$repo/target/toolchains/cargo-zigbuild"
  # qemu-user and an arm64 CPython, where this machine can have them (3:
  # it cannot; the aarch64 artefacts are then checked as files alone).
  bash synapse-module/e2e/aarch64_wheel_test.sh --prepare || status=$?
  ((status == 0 || status == 3))
  # The guests the checks route with: the example router among them.
  cargo build --quiet -p presence-router-tests
}

# One version for every artefact: the workspace's, which the crates
# inherit and the wheel takes; the crates' requirements on each other, the
# changelog and the CLI's --version say the same.
versions() {
  local wrong
  wrong="$(sed -n 's/^presence-router-[a-z-]* = {.*version = "\([^"]*\)".*/\1/p' Cargo.toml | grep -vx "$version" || true)"
  [[ -z "$wrong" ]] || { echo "release: Cargo.toml's presence-router-* requirements are not $version: $wrong" >&2; return 1; }
  grep -q "^## \[$version\] - " CHANGELOG.md ||
    { echo "release: CHANGELOG.md has no section for $version" >&2; return 1; }
  grep -q 'dynamic = \["version"\]' synapse-module/pyproject.toml ||
    { echo "release: synapse-module/pyproject.toml must take its version from Cargo (dynamic)" >&2; return 1; }
}

wheels() {
  local arch
  for arch in $wheel_arches; do
    bash synapse-module/build_wheel.sh "$arch" "$out" >/dev/null
  done
  PATH="$tools/bin:$PATH" maturin sdist -m synapse-module/Cargo.toml --out "$out" >&2
  sdist_is_self_contained
}

wheel_of() {
  local wheel="$out/wasm_presence_router-$version-cp310-abi3-manylinux_2_28_$1.whl"
  [[ -f "$wheel" ]] || { echo "release: no $wheel" >&2; return 1; }
  echo "$wheel"
}

# The sdist stands alone: everything the module's crates include (the WIT
# among them) is inside it, and it resolves, with no network, to exactly
# the versions the wheels were built with (cargo prunes its lock file to
# the module's own dependencies; every one left is in the workspace's).
sdist_is_self_contained() {
  local sdist="$out/wasm_presence_router-$version.tar.gz" work status=0
  work="$(mktemp -d)"
  tar -xzf "$sdist" -C "$work"
  (cd "$work/wasm_presence_router-$version" &&
    test -f crates/runtime/wit/presence-router.wit &&
    cp Cargo.lock "$work/shipped.lock" &&
    cargo metadata --offline --format-version 1 >/dev/null &&
    "$tools/bin/python" - "$repo/Cargo.lock" "$work/shipped.lock" Cargo.lock <<'EOF_PY'
import sys, tomllib
workspace, shipped, resolved = ({(p["name"], p["version"]) for p in tomllib.load(open(path, "rb"))["package"]}
                                for path in sys.argv[1:])
for name, pinned in (("the workspace's lock", workspace), ("the sdist's own lock", shipped)):
    extra = sorted(resolved - pinned)
    if extra:
        sys.exit(f"release: the sdist resolves to versions not in {name}: {extra}")
EOF_PY
  ) || status=$?
  rm -rf "$work"
  return "$status"
}

# cargo-zigbuild links each with zig's musl (and compiles what C the
# dependencies' build scripts have with zig's cc): static, stripped.
cli() {
  local target binary
  for target in $cli_targets; do
    CARGO_PROFILE_RELEASE_STRIP=symbols PATH="$tools/bin:$PATH" \
      "$repo/target/toolchains/cargo-zigbuild/bin/cargo-zigbuild" zigbuild --quiet \
      --release --locked --target "$target" -p presence-router
    binary="$out/presence-router-$target"
    cp "$target_dir/$target/release/presence-router" "$binary"
    file "$binary" | grep -q 'statically linked\|static-pie linked' || {
      echo "release: $binary is not static: $(file "$binary")" >&2
      return 1
    }
    file "$binary" | grep -q ', stripped' || {
      echo "release: $binary is not stripped: $(file "$binary")" >&2
      return 1
    }
  done
  cli_routes_the_example "$out/presence-router-x86_64-unknown-linux-musl"
  file "$out/presence-router-aarch64-unknown-linux-musl" | grep -q 'ARM aarch64'
  if command -v qemu-aarch64-static >/dev/null; then
    cli_routes_the_example "$(command -v qemu-aarch64-static)" \
      "$out/presence-router-aarch64-unknown-linux-musl"
  else
    echo "release: no qemu-user here: the aarch64 CLI is checked as a static aarch64 ELF only" >&2
  fi
}

# `check`, `route` and `test` of the example, in a directory holding only
# the example's files, with no Rust on PATH: what an operator who downloaded
# the binary does.
cli_routes_the_example() {
  local work status=0
  work="$(mktemp -d)"
  cp "$target_dir/guests/wasm32-wasip2/release/example_router.wasm" "$work/" || return 1
  sed 's|component: .*|component: example_router.wasm|' examples/config.yaml >"$work/config.yaml"
  cp examples/batch.jsonl "$work/"
  cp tests/conformance/example-router.yaml "$work/cases.yaml"
  # One chain: on the left of `||`, a subshell runs with `-e` off.
  (
    cd "$work" &&
      export PATH=/usr/bin:/bin HOME="$work" &&
      ! command -v cargo >/dev/null && ! command -v rustc >/dev/null &&
      "$@" --version | grep -qx "presence-router $version" &&
      "$@" check --config config.yaml &&
      "$@" route --config config.yaml <batch.jsonl >routed.jsonl &&
      grep -q '"@alice:example.com"' routed.jsonl &&
      "$@" test --component example_router.wasm --cases cases.yaml \
        --config-json '{"always_send_to_users": ["@alice:example.com", "@watcher:remote.org"], "blacklisted_users": ["@mallory:example.com"]}'
  ) >&2 || status=$?
  rm -rf "$work"
  return "$status"
}

# Each crate packaged, and built from its package with the others'
# packages in place of crates.io (cargo does this for a set of packages).
crates() {
  local args=() crate
  for crate in $crates; do args+=(-p "$crate"); done
  # With the CLI's `authoring` (its `new` includes the example routers'
  # files): every file the package's code reads is in the package.
  cargo package --quiet --locked "${args[@]}" --features presence-router/authoring
  for crate in $crates; do
    cp "$target_dir/package/$crate-$version.crate" "$out/"
  done
}

# The example router in the languages whose components a later release's
# compatibility test keeps, built by each project's own build.sh.
routers() {
  mkdir -p "$out/routers"
  local language built
  for language in rust c cpp zig; do
    built="$(PRESENCE_ROUTER="$target_dir/debug/presence-router-tests-guest-build" \
      PRESENCE_ROUTER_TOOLCHAINS="$repo/target/toolchains" \
      bash "examples/routers/$language/build.sh" "$target_dir/release-routers/$language" | tail -1)"
    cp "$built" "$out/routers/example_router-$language.wasm"
    if (($(stat -c %s "$built") > 200 * 1024)); then
      echo "release: the $language example router is over 200 KB: $built" >&2
      return 1
    fi
  done
  [[ -d "tests/compat/$version" ]] || echo "release: tests/compat/$version is missing: copy $out/routers/example_router-{rust,c,cpp,zig}.wasm there as {rust,c,cpp,zig}.wasm" >&2
}

wheel_x86_64() {
  # The guests the real-Synapse test routes with.
  cargo build --quiet -p presence-router-tests
  WHEEL_TEST_EVERY_PYTHON=1 bash synapse-module/e2e/wheel_test.sh "$(wheel_of x86_64)"
}

wheel_aarch64() {
  local status=0
  bash synapse-module/e2e/aarch64_wheel_test.sh "$(wheel_of aarch64)" || status=$?
  # 3: this machine cannot run arm64 code; auditwheel has checked the wheel.
  ((status == 0 || status == 3))
}

summary() {
  (cd "$out" && sha256sum -- *.whl *.tar.gz presence-router-*-linux-musl *.crate routers/*.wasm >SHA256SUMS)
  echo "release $version in $out:"
  local file
  for file in "$out"/*.whl "$out"/*.tar.gz "$out"/presence-router-*-linux-musl "$out"/*.crate "$out"/routers/*.wasm "$out"/SHA256SUMS; do
    printf '  %10s  %s\n' "$(stat -c %s "$file")" "${file#"$out"/}"
  done
}

# What an earlier run left in OUT_DIR is not listed as this release's.
rm -rf "$out"/wasm_presence_router-* "$out"/presence-router-* "$out"/*.crate "$out"/routers "$out"/SHA256SUMS
phase version versions
phase tools install_tools
phase wheels wheels
phase cli cli
phase crates crates
phase routers routers
phase "wheel x86_64" wheel_x86_64
phase "wheel aarch64" wheel_aarch64
summary

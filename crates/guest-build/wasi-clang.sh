# Sourced by the build.sh of the guests compiled with clang for wasm32-wasi
# (examples/routers/c, examples/routers/cpp). Needs `root` (the repository) set.
# Defines:
#
#   need_debian_packages PKG...  stops, naming what is missing and the
#                                command that installs it (scripts/setup.sh
#                                installs them); installs them itself only
#                                when asked (below)
#   WASI_CC, WASI_CXX            clang 19 for --target=wasm32-wasi
#   guest_build_tool             sets GUEST_BUILD to presence-router-guest-build
#   guest_build_inputs           the files the tool is built from (for stamps)

# Debian's clang 19 with the wasi-libc sysroot (a 2022 snapshot, wasip1
# only: modules are wasip1 reactors, made components by the tool). Only the
# `wasm32-wasi` triple finds its headers and libraries (not wasm32-wasip1).
WASI_CLANG_PACKAGES=(clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32)
# C++ adds wasi's libc++.
WASI_CLANG_CXX_PACKAGES=(libc++-19-dev-wasm32 libc++abi-19-dev-wasm32)
WASI_CC=clang-19
WASI_CXX=clang++-19

# A build script never installs system packages unasked: apt-get as root
# changes the whole machine. PRESENCE_ROUTER_INSTALL_PACKAGES=1 (as root)
# lets it.
need_debian_packages() {
  local missing=() pkg
  for pkg in "$@"; do
    if [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" != "install ok installed" ]; then
      missing+=("$pkg")
    fi
  done
  if [ ${#missing[@]} -eq 0 ]; then
    return 0
  fi
  if [ "${PRESENCE_ROUTER_INSTALL_PACKAGES:-}" != 1 ] || [ "$(id -u)" != 0 ] ||
    ! command -v apt-get >/dev/null; then
    echo "$0: missing Debian packages: ${missing[*]}" >&2
    echo "$0: install them as root: apt-get install ${missing[*]}" >&2
    echo "$0: (or run this script as root with PRESENCE_ROUTER_INSTALL_PACKAGES=1 to let it run apt-get)" >&2
    exit 1
  fi
  echo "$0: installing ${missing[*]}" >&2
  # The package lists of a fresh machine are empty or stale.
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
}

# The tool's sources: a change in them (a new wit-bindgen, say) means the
# bindings, and so the component, may change.
guest_build_inputs() {
  find "$root/crates/guest-build" -name target -prune -o -type f \
    \( -name '*.rs' -o -name Cargo.toml \) -print | sort
}

# The tests' build script hands its own executable in
# PRESENCE_ROUTER_GUEST_BUILD (it links the tool's library: a nested cargo
# would wait on its lock of target/). Run by hand, the tool is built with
# the workspace's dev profile, whose dependencies are already optimised.
guest_build_tool() {
  if [ -n "${PRESENCE_ROUTER_GUEST_BUILD:-}" ]; then
    GUEST_BUILD="$PRESENCE_ROUTER_GUEST_BUILD"
    return 0
  fi
  if ! command -v cargo >/dev/null; then
    echo "$0: cargo is missing: the build needs presence-router-guest-build (crates/guest-build)" >&2
    exit 1
  fi
  cargo build --quiet --manifest-path "$root/Cargo.toml" -p presence-router-guest-build >&2
  GUEST_BUILD="${CARGO_TARGET_DIR:-$root/target}/debug/presence-router-guest-build"
}

# Debian's clang 19 with the wasi-libc sysroot (a 2022 snapshot, wasip1
# only: the module is a wasip1 reactor, made a component by presence-router).
# Only the `wasm32-wasi` triple finds its headers and libraries.
WASI_CLANG_PACKAGES=(clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32)
# C++ adds wasi's libc++.
WASI_CLANG_CXX_PACKAGES=(libc++-19-dev-wasm32 libc++abi-19-dev-wasm32)

# Stops the build, naming the Debian packages that are missing and the
# command that installs them. A build script never installs system packages
# unasked: apt-get as root changes the whole machine.
# PRESENCE_ROUTER_INSTALL_PACKAGES=1 (as root) lets it.
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

# Debian's clang 19 with the wasi-libc sysroot (a 2022 snapshot, wasip1
# only: the module is a wasip1 reactor, made a component by presence-router).
# Only the `wasm32-wasi` triple finds its headers and libraries.
WASI_CLANG_PACKAGES=(clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32)

# Installs the Debian packages that are missing (apt-get, as root), or stops
# with the command to run.
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
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "$0: missing Debian packages: ${missing[*]}" >&2
    echo "$0: install them as root: apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "$0: installing ${missing[*]}" >&2
  # The package lists of a fresh machine are empty or stale.
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
}

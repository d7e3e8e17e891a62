# shellcheck shell=bash
# What setup.sh and build.sh share: sourced by both, never run. Every
# project `presence-router new` writes has this same file.
#
# setup.sh installs what the build needs, once, and says on stdout what it
# found and what it installed (`found: ...`, `installed: ...`; with
# --check it installs nothing and says what is `missing: ...`). build.sh
# only builds: when something it needs is missing it says what, and how to
# get it, and exits with status 3, which tells "not installed" from "the
# build failed".

set -euo pipefail

# Paths the caller gave are relative to where it was run from.
caller_dir="$PWD"
here="$(cd "$(dirname "$0")" && pwd)"
# Toolchains go into .toolchain/ here, or into the directory
# PRESENCE_ROUTER_TOOLCHAINS names, which several projects can share.
toolchains="${PRESENCE_ROUTER_TOOLCHAINS:-$here/.toolchain}"
case "$toolchains" in
  /*) ;;
  *) toolchains="$caller_dir/$toolchains" ;;
esac
cd "$here"

# Debian's clang 19 with the wasi-libc sysroot (a 2022 snapshot, wasip1
# only: the module is a wasip1 reactor, made a component by
# presence-router), for C; C++ adds wasi's libc++. Only the `wasm32-wasi`
# triple finds their headers and libraries.
# shellcheck disable=SC2034 # for the C and C++ scripts
WASI_CLANG_PACKAGES=(clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32)
# shellcheck disable=SC2034
WASI_CLANG_CXX_PACKAGES=(libc++-19-dev-wasm32 libc++abi-19-dev-wasm32)

# What a toolchain directory holds runs as you, so whoever else can change
# it runs code as you. presence-router checks it (`presence-router
# trusted-dir DIR...`) by the rule it applies to component files
# (OpenSSH's StrictModes): DIR, links resolved, belongs to you or root and
# nobody else can write it; so does every directory above it, unless that
# one is sticky (as /tmp, where only an entry's owner may rename or delete
# it). Stops, naming the directory and why, otherwise.
need_trusted_dir() {
  local said
  use_presence_router "which checks who can change the toolchain directory $1"
  if ! said="$("$PRESENCE_ROUTER" trusted-dir -- "$@" 2>&1 >/dev/null)"; then
    echo "$0: ${said:-$PRESENCE_ROUTER trusted-dir failed on $*}" >&2
    exit 1
  fi
}

# need_trusted_dir for each DIR that is there (or is a dangling link).
trusted_if_there() {
  local dir
  for dir in "$@"; do
    if [ -e "$dir" ] || [ -L "$dir" ]; then
      need_trusted_dir "$dir"
    fi
  done
}

# The virtualenv $toolchains/NAME has what requirements.txt pins.
venv_ready() {
  [ -x "$toolchains/$1/bin/python" ] && cmp -s requirements.txt "$toolchains/$1/.requirements.txt"
}

# What requirements.txt pins, for messages.
pins() {
  grep -v '^#' requirements.txt | tr '\n' ' ' | sed 's/ *$//'
}

# The Debian packages among PKG... that are not installed.
missing_debian_packages() {
  local pkg
  for pkg in "$@"; do
    if [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" != "install ok installed" ]; then
      echo "$pkg"
    fi
  done
}

# Rust's standard library for wasm32-wasip2, where the cargo here finds it
# (rustup's toolchain, or any other).
rust_target_ready() {
  [ -d "$(rustc --print sysroot 2>/dev/null)/lib/rustlib/wasm32-wasip2" ]
}

# Every package that package.json pins is installed in the toolchain
# directory DIR at that version.
js_toolchain_ready() {
  node -e '
    const fs = require("fs"), path = require("path");
    const [dir, manifest] = process.argv.slice(1);
    const pins = JSON.parse(fs.readFileSync(manifest, "utf8")).devDependencies || {};
    for (const [name, version] of Object.entries(pins)) {
      const file = path.join(dir, "node_modules", name, "package.json");
      try {
        if (JSON.parse(fs.readFileSync(file, "utf8")).version !== version) process.exit(1);
      } catch { process.exit(1); }
    }' "$1" package.json 2>/dev/null
}

# --- setup.sh

# `setup.sh [--check]`.
setup_start() {
  check_only=
  missing_any=
  case "$*" in
    "") ;;
    --check) check_only=1 ;;
    *)
      echo "usage: $0 [--check]   (--check: install nothing, say what is missing)" >&2
      exit 2
      ;;
  esac
}

found() { echo "found: $*"; }
installed() { echo "installed: $*"; }
missing() {
  echo "missing: $*"
  missing_any=1
}

# The last line of setup.sh: with --check, exit status 3 if anything is
# missing.
setup_end() {
  [ -z "$missing_any" ] || exit 3
}

# Installing into a toolchain directory another build may be using: one
# installation at a time (the lock is released when fd 8 is closed).
lock_toolchains() {
  mkdir -p "$toolchains"
  need_trusted_dir "$toolchains"
  if command -v flock >/dev/null; then
    exec 8<"$toolchains"
    flock 8
  fi
}
unlock_toolchains() {
  if command -v flock >/dev/null; then
    exec 8<&-
  fi
}

# Installs requirements.txt into the virtualenv $toolchains/NAME: made once,
# made again when requirements.txt changes.
setup_venv() {
  local name="$1" venv="$toolchains/$1" what
  what="$(pins) ($venv)"
  trusted_if_there "$toolchains" "$venv"
  if venv_ready "$name"; then
    found "$what"
    return
  fi
  if [ -n "$check_only" ]; then
    missing "$what"
    return
  fi
  if ! python3 -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    echo "$0: needs python3 (3.10 or later) with venv and pip (Debian: apt-get install python3-venv)" >&2
    exit 1
  fi
  lock_toolchains
  # Another setup may have installed it while this one waited.
  if ! venv_ready "$name"; then
    echo "$0: installing $what" >&2
    rm -f "$venv/.requirements.txt"
    python3 -m venv "$venv"
    need_trusted_dir "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.txt >&2
    cp requirements.txt "$venv/.requirements.txt"
  fi
  unlock_toolchains
  installed "$what"
}

# Installs the Debian packages PKG... that are missing, as root; otherwise
# names them and the command that installs them, and stops.
setup_debian_packages() {
  local absent
  mapfile -t absent < <(missing_debian_packages "$@")
  if [ ${#absent[@]} -eq 0 ]; then
    found "Debian's $*"
    return
  fi
  if [ -n "$check_only" ]; then
    missing "Debian's ${absent[*]}"
    return
  fi
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "$0: missing Debian packages: ${absent[*]}" >&2
    echo "$0: install them as root (apt-get install ${absent[*]}), or run this script as root" >&2
    exit 1
  fi
  echo "$0: installing ${absent[*]}" >&2
  # The package lists of a fresh machine are empty or stale.
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${absent[@]}" >/dev/null
  installed "Debian's ${absent[*]}"
}

# --- build.sh

# Stops the build: WHAT is missing. REMEDY says how to get it; by default,
# the setup.sh beside this script, named as this script was.
missing_toolchain() {
  local remedy="${2:-}"
  if [ -z "$remedy" ]; then
    case "$0" in
      */*) remedy="run ${0%/*}/setup.sh" ;;
      *) remedy="run ./setup.sh" ;;
    esac
  fi
  echo "$0: $1: $remedy" >&2
  exit 3
}

# `build.sh [OUT_DIR]`: sets out_dir and out, the component
# ($out_dir/$component), and waits for any other build of this project.
start_build() {
  if [ $# -gt 1 ]; then
    echo "usage: $0 [OUT_DIR]   (default: build/ beside this script)" >&2
    exit 2
  fi
  out_dir="${1:-$here/build}"
  case "$out_dir" in
    /*) ;;
    *) out_dir="$caller_dir/$out_dir" ;;
  esac
  mkdir -p "$out_dir"
  out_dir="$(cd "$out_dir" && pwd)"
  out="$out_dir/${component:?build.sh sets it}"
  # One build at a time: lock the script itself, so no lock file is left
  # around.
  if command -v flock >/dev/null; then
    exec 9<"$here/build.sh"
    flock 9
  fi
}

# The virtualenv $toolchains/NAME that setup.sh installs, checked.
use_venv() {
  trusted_if_there "$toolchains" "$toolchains/$1"
  venv_ready "$1" || missing_toolchain "$(pins) is not installed in $toolchains/$1"
}

use_debian_packages() {
  local absent
  mapfile -t absent < <(missing_debian_packages "$@")
  if [ ${#absent[@]} -gt 0 ]; then
    missing_toolchain "missing Debian packages: ${absent[*]}"
  fi
}

# presence-router writes the WIT bindings, makes the component and checks
# toolchain directories: the one PRESENCE_ROUTER names, or the one on PATH.
# Sets PRESENCE_ROUTER to its path; WHY, if given, says what it is needed
# for when it is missing.
#
# It is looked up from the caller's directory, not this one (a relative
# PATH entry or PRESENCE_ROUTER means what the caller meant, never a file
# in this project or its toolchain), must be a program (a shell builtin
# such as `true` would pass every check), and its own directory must pass
# the ownership rule it applies to others.
use_presence_router() {
  local named="${PRESENCE_ROUTER:-presence-router}" found said
  [ -z "${presence_router_checked:-}" ] || return 0
  if ! found="$(cd "$caller_dir" && command -v -- "$named")"; then
    missing_toolchain "cannot find $named${1:+, $1}" \
      "put presence-router on PATH, or set PRESENCE_ROUTER to its path"
  fi
  case "$found" in
    /*) ;;
    */*) found="$caller_dir/$found" ;;
    *)
      echo "$0: $named is not a program (a shell builtin or function): set PRESENCE_ROUTER to the path of presence-router" >&2
      exit 1
      ;;
  esac
  if ! said="$("$found" trusted-dir -- "$(dirname -- "$found")" 2>&1 >/dev/null)"; then
    echo "$0: refused $found: ${said:-its trusted-dir check failed}" >&2
    exit 1
  fi
  PRESENCE_ROUTER="$found"
  presence_router_checked=1
}

hash() { sha256sum "$@" | sha256sum | cut -d' ' -f1; }

# The component is up to date when it is there and was built from the same
# inputs (INPUTS_HASH: sources, scripts, the WIT, the toolchain): say so,
# print its path and stop.
up_to_date() {
  inputs_stamp="$out.inputs"
  inputs_hash="$1"
  if [ -f "$out" ] && [ -f "$inputs_stamp" ] && [ "$(cat "$inputs_stamp")" = "$inputs_hash" ]; then
    echo "$out is up to date" >&2
    echo "$out"
    exit 0
  fi
  rm -f "$inputs_stamp"
}

# Records what the component was built from, and prints its path: the last
# line of the output, for scripts.
built() {
  echo "$inputs_hash" >"$inputs_stamp"
  echo "$out"
}

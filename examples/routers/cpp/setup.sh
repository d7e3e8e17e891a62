#!/usr/bin/env bash
# Installs what ./build.sh needs: Debian's clang 19 and libc++ for
# wasm32-wasi (with apt-get, as root; otherwise it names the packages and
# stops), and says what it found and what it installed. The build also
# needs presence-router, which this script does not install.
#
#     ./setup.sh [--check]   # --check: install nothing, say what is missing
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
setup_start "$@"
setup_debian_packages "${WASI_CLANG_PACKAGES[@]}" "${WASI_CLANG_CXX_PACKAGES[@]}"
setup_end

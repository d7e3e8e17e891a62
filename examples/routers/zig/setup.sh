#!/usr/bin/env bash
# Installs what ./build.sh needs: the Zig that requirements.txt pins (PyPI's
# `ziglang`), into the virtualenv .toolchain/zig (or
# PRESENCE_ROUTER_TOOLCHAINS/zig), made once and made again when
# requirements.txt changes; and says what it found and what it installed.
# Needs python3 (3.10 or later) with venv and pip. The build also needs
# presence-router, which this script does not install.
#
#     ./setup.sh [--check]   # --check: install nothing, say what is missing
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
setup_start "$@"
setup_venv zig
setup_end

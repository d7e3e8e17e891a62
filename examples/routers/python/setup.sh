#!/usr/bin/env bash
# Installs what ./build.sh needs: the componentize-py that requirements.txt
# pins, into the virtualenv .toolchain/componentize-py (or
# PRESENCE_ROUTER_TOOLCHAINS/componentize-py), made once and made again when
# requirements.txt changes; and says what it found and what it installed.
# Needs python3 (3.10 or later) with venv and pip.
#
#     ./setup.sh [--check]   # --check: install nothing, say what is missing
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
setup_start "$@"
setup_venv componentize-py
setup_end

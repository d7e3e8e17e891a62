#!/usr/bin/env bash
# Builds this router (src/app.py) into a component:
#
#     ./build.sh [OUT_DIR]   # -> build/example_router.wasm, or OUT_DIR/example_router.wasm
#
# Needs the componentize-py that ./setup.sh installs (the virtualenv
# .toolchain/componentize-py, or PRESENCE_ROUTER_TOOLCHAINS/componentize-py);
# installs nothing (exit status 3 when something is missing). Skips the
# build when none of its inputs changed since the last one. Prints the
# component's path last.
component=example_router.wasm
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
start_build "$@"
use_venv componentize-py
venv="$toolchains/componentize-py"

# A build takes seconds, and its output differs every time, which would
# make the runtime compile it again: skip it when nothing changed.
up_to_date "$(hash src/*.py requirements.txt build.sh lib.sh wit/*.wit)"
# The bindings (wit_world, componentize_py_types) are generated into the
# component from wit/ on every build; -p src finds app.py.
"$venv/bin/componentize-py" -d wit -w presence-router componentize app -p src -o "$out.partial" >&2
mv "$out.partial" "$out"
built
